"""The delivery policy of `JobRunner` and the durable store, on a real redis-server.

The runner is driven in-process here, one delivery per `handle` call (what the broker does on
each delivery), so every branch is deterministic: retries with backoff for TransientError,
none for other AutoCutErrors, the completion compare-and-set, redelivery after a lost worker,
cancellation, timeout and shutdown. The multi-process version of these paths is in
test_server_e2e.py.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from autocut.errors import PlanError, TransientError
from server.jobspec import EditJobSpec, UploadRef
from server.schemas import ClipRef, EditRequest, ProductIn
from server.storage import (
    PathRefError,
    publish_dir,
    resolve_media_path,
    sniff_image,
    sniff_video,
    write_json_once,
)
from server.store import ClipRecord, JobStore, NewJob
from server.supervisor import RedisServer
from server.tasks import JobContext, JobOutput, JobRunner
from test_server_harness import free_port, make_settings

# Shared session fixtures (redis_server, seed_library): one instance for all server test modules.
pytest_plugins = ["test_server_harness"]


@pytest.fixture
def rig(tmp_path, redis_server, seed_library):
    settings = make_settings(
        tmp_path,
        redis_server,
        seed_library,
        max_retries=2,
        retry_min_backoff_s=1.0,
        retry_max_backoff_s=10.0,
        max_lost_deliveries=3,
    )
    store = JobStore.from_url(settings.broker_url, settings.redis_namespace)
    enqueued: list[tuple[str, float]] = []
    runner = JobRunner(settings, store, lambda jid, delay: enqueued.append((jid, delay)))
    yield runner, store, enqueued
    store.r.close()


def admit(store: JobStore, kind: str = "test", spec: dict | None = None, job_id: str = "job_" + "a" * 24) -> str:
    adm = store.admit(
        "key_owner",
        [NewJob(job_id=job_id, kind=kind, spec=spec or {})],  # type: ignore[arg-type]
        max_active=10,
        max_active_per_owner=10,
    )
    assert adm.status == "created"
    return job_id


def test_transient_errors_are_retried_with_backoff_then_succeed(rig):
    runner, store, enqueued = rig
    calls: list[int] = []

    def flaky(ctx: JobContext) -> JobOutput:
        calls.append(ctx.job.retries)
        if len(calls) <= 2:
            raise TransientError("the disk is momentarily full")
        return JobOutput(results=[{"type": "test"}])

    runner.register_handler("test", flaky)
    jid = admit(store)
    runner.handle(jid)
    job = store.get_job(jid)
    assert job.state == "queued" and job.retries == 1 and "retry 1/2" in job.stage
    assert job.last_error == "the disk is momentarily full"
    runner.handle(jid)
    runner.handle(jid)
    assert calls == [0, 1, 2]
    # Exponential backoff with jitter: retry k waits in [min * 2^k / 2, min * 2^k].
    delays = [d for _, d in enqueued]
    assert len(delays) == 2 and 0.5 <= delays[0] <= 1.0 and 1.0 <= delays[1] <= 2.0
    job = store.get_job(jid)
    assert job.state == "done" and job.deliveries == 3 and store.completions() == [jid]
    assert store.active_count() == 0


def test_transient_errors_give_up_after_max_retries(rig):
    runner, store, enqueued = rig
    runner.register_handler("test", lambda ctx: (_ for _ in ()).throw(TransientError("broker down")))
    jid = admit(store)
    for _ in range(3):
        runner.handle(jid)
    job = store.get_job(jid)
    assert job.state == "failed" and job.error_code == "transient_error"
    assert "gave up after 2 retries" in job.error_message and len(enqueued) == 2
    runner.handle(jid)  # a stray redelivery of a failed job does nothing
    assert store.get_job(jid).deliveries == 3 and store.completions() == []


def test_permanent_errors_fail_at_once_with_the_message(rig):
    runner, store, enqueued = rig

    def bad(ctx: JobContext) -> JobOutput:
        raise PlanError(f"the script has 3 sentences but the pool yields 1 clip ({runner.settings.data_dir}/x)")

    runner.register_handler("test", bad)
    jid = admit(store)
    runner.handle(jid)
    job = store.get_job(jid)
    assert job.state == "failed" and job.error_code == "plan_error" and enqueued == []
    assert "3 sentences" in job.error_message
    assert str(runner.settings.data_dir) not in job.error_message and "<data>/x" in job.error_message


def test_bugs_fail_without_leaking_details(rig):
    runner, store, _ = rig
    runner.register_handler("test", lambda ctx: {}["secret-internal-key"])
    jid = admit(store)
    runner.handle(jid)
    job = store.get_job(jid)
    assert job.state == "failed" and job.error_code == "internal_error" and "secret" not in job.error_message


def test_completion_is_recorded_once_however_often_the_job_runs(rig):
    runner, store, _ = rig
    runs: list[int] = []
    runner.register_handler("test", lambda ctx: runs.append(1) or JobOutput(results=[{"type": "test"}]))
    jid = admit(store)
    runner.handle(jid)
    runner.handle(jid)  # duplicate delivery after completion: acknowledged, not run
    assert runs == [1] and store.completions() == [jid]
    # Two deliveries running at once (a redelivery racing a slow original): both finish, one record.
    jid2 = admit(store, job_id="job_" + "b" * 24)
    store.start(jid2, "w1", 5)
    store.start(jid2, "w2", 5)
    results = [store.complete(jid2, [{"n": i}], {}) for i in range(2)]
    assert results == [True, False]
    assert store.get_job(jid2).results == [{"n": 0}] and store.completions().count(jid2) == 1


def test_job_of_a_dead_worker_is_redelivered_until_it_looks_like_poison(rig):
    _runner, store, _ = rig
    jid = admit(store)
    # Each start that finds the job still "running" means the previous worker died mid-job.
    assert store.start(jid, "w1", 3).action == "run"
    assert store.start(jid, "w2", 3).action == "run"
    assert store.start(jid, "w3", 3).action == "run"
    d = store.start(jid, "w4", 3)
    assert d.action == "poison"
    job = store.get_job(jid)
    assert job.state == "failed" and job.error_code == "worker_lost" and job.lost == 3


def test_cancel_while_queued_and_while_running(rig):
    runner, store, _ = rig
    jid = admit(store)
    assert store.request_cancel(jid) == "cancelled"
    runner.register_handler("test", lambda ctx: pytest.fail("a cancelled job must not run"))
    runner.handle(jid)
    assert store.get_job(jid).state == "cancelled"

    started = threading.Event()

    def long_job(ctx: JobContext) -> JobOutput:
        started.set()
        ctx.cancel.wait(30)
        ctx.check_cancel()
        return JobOutput()

    runner.register_handler("test", long_job)
    jid2 = admit(store, job_id="job_" + "c" * 24)
    t = threading.Thread(target=runner.handle, args=(jid2,))
    t.start()
    assert started.wait(10)
    assert store.request_cancel(jid2) == "cancelling"
    t.join(10)
    job = store.get_job(jid2)
    assert job.state == "cancelled" and job.error_code == "cancelled" and store.completions() == []


def test_shutdown_hands_the_job_back_and_timeout_fails_it(rig):
    runner, store, enqueued = rig
    started = threading.Event()

    def long_job(ctx: JobContext) -> JobOutput:
        started.set()
        ctx.cancel.wait(30)
        ctx.check_cancel()
        return JobOutput()

    runner.register_handler("test", long_job)
    jid = admit(store)
    t = threading.Thread(target=runner.handle, args=(jid,))
    t.start()
    assert started.wait(10)
    assert runner.stop_current("shutdown")
    t.join(10)
    job = store.get_job(jid)
    assert job.state == "queued" and job.retries == 0 and enqueued == [(jid, 0.0)]
    runner.settings.job_timeout_s = 0.5
    runner.handle(jid)
    job = store.get_job(jid)
    assert job.state == "failed" and job.error_code == "timeout"


def test_edit_waits_for_its_upload_to_finish_ingesting(rig, seed_library):
    runner, store, enqueued = rig
    clip = ClipRecord(
        clip_id="clp_" + "d" * 24,
        owner="key_owner",
        kind="video",
        sha256="f" * 64,
        filename="u.mp4",
        size_bytes=1,
        path="/nonexistent/u.mp4",
        created_at=time.time(),
        job_id="job_" + "d" * 24,
    )
    store.admit(
        "key_owner",
        [NewJob(job_id=clip.job_id, kind="ingest", spec={}, clip_id=clip.clip_id)],
        max_active=10,
        max_active_per_owner=10,
        clip=clip,
    )
    spec = EditJobSpec(
        request=EditRequest(product=ProductIn(name="x"), clips=[ClipRef(clip_id=clip.clip_id)]),
        pool=[
            UploadRef(
                kind="upload",
                clip_id=clip.clip_id,
                sha256=clip.sha256,
                path=clip.path,
                ingest_job_id=clip.job_id,
                text="",
            )
        ],
        image_path=None,
        planner="heuristic",
    )
    jid = admit(store, "edit", spec.model_dump(mode="json"))
    runner.handle(jid)
    job = store.get_job(jid)
    assert job.state == "queued" and job.stage.startswith("waiting for 1 clip") and job.retries == 0
    assert enqueued == [(jid, 2.0)]
    # The ingest failed: the edit fails naming the clip (permanent, no retry).
    store.fail(clip.job_id, "media_error", "u.mp4: no video stream")
    runner.handle(jid)
    job = store.get_job(jid)
    assert job.state == "failed" and clip.clip_id in job.error_message and "no video stream" in job.error_message


# --------------------------------------------------------------------------- storage rules


def test_publish_is_first_writer_wins(tmp_path):
    dst = tmp_path / "v1"
    attempts = []
    for i in range(8):
        d = tmp_path / f".attempt-{i}"
        d.mkdir()
        (d / "edit.mp4").write_text(str(i))
        attempts.append(d)
    barrier = threading.Barrier(len(attempts))
    won: list[bool] = []

    def go(d: Path) -> None:
        barrier.wait()
        won.append(publish_dir(d, dst))

    threads = [threading.Thread(target=go, args=(d,)) for d in attempts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert won.count(True) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v1"]  # losers cleaned up
    assert (dst / "edit.mp4").read_text() in {str(i) for i in range(8)}
    # And the plans file: concurrent writers agree on one content.
    out = []
    barrier2 = threading.Barrier(6)

    def write(i: int) -> None:
        barrier2.wait()
        out.append(write_json_once(tmp_path / "plans.json", {"writer": i}))

    ts = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert len({o["writer"] for o in out}) == 1


def test_path_references_stay_inside_the_root(tmp_path):
    root = tmp_path / "media"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.mp4").write_bytes(b"x")
    (tmp_path / "secret.mp4").write_bytes(b"s")
    (root / "link-out.mp4").symlink_to(tmp_path / "secret.mp4")
    (root / "link-in.mp4").symlink_to(root / "a" / "x.mp4")
    (root / "loop").symlink_to(root / "loop")
    assert resolve_media_path(root, "a/x.mp4") == (root / "a" / "x.mp4").resolve()
    assert resolve_media_path(root, "link-in.mp4") == (root / "a" / "x.mp4").resolve()
    for bad in [
        "../secret.mp4",
        "a/../../secret.mp4",
        str(tmp_path / "secret.mp4"),
        "link-out.mp4",
        "a",
        "loop",
        "https://example.com/x.mp4",
        "",
        "a/x.mp4\x00.png",
        "~root/x",
    ]:
        with pytest.raises(PathRefError):
            resolve_media_path(root, bad)


def test_sniffers_accept_media_and_refuse_playlists():
    assert sniff_video(b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00") == ".mp4"
    assert sniff_video(b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00") == ".mov"
    assert sniff_video(b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01webm") == ".webm"
    assert sniff_video(b"RIFF\x00\x00\x00\x00AVI LIST") == ".avi"
    for not_allowed in [
        b"#EXTM3U\n#EXT-X-VERSION:3\nhttp://evil/seg.ts",
        b"ffconcat version 1.0\nfile '/etc/passwd'",
        b"<?xml version='1.0'?><MPD>",
        b"v=0\r\no=- 0 0 IN IP4 127.0.0.1",
        b"hello",
    ]:
        assert sniff_video(not_allowed) is None
    assert sniff_image(b"\x89PNG\r\n\x1a\n....") == ".png" and sniff_image(b"\xff\xd8\xff\xe0") == ".jpg"
    assert sniff_image(b"GIF89a") is None


def test_store_survives_a_redis_crash(tmp_path):
    """AOF persistence: records acknowledged before a SIGKILL of redis-server are there after restart."""
    srv = RedisServer(data_dir=tmp_path / "redis", port=free_port(), password="p" * 32)
    srv.start()
    try:
        store = JobStore.from_url(srv.url, "dur")
        ids = [f"job_{i:024x}" for i in range(20)]
        for jid in ids:
            store.admit(
                "k", [NewJob(job_id=jid, kind="edit", spec={"n": jid})], max_active=100, max_active_per_owner=100
            )
        store.complete(ids[0], [{"type": "x"}], {})
        store.r.close()
        srv.kill()
        srv.start()
        store = JobStore.from_url(srv.url, "dur")
        assert store.get_job(ids[0]).state == "done" and store.completions() == [ids[0]]
        assert [store.get_job(j).spec for j in ids[1:]] == [{"n": j} for j in ids[1:]]
        assert store.active_count() == 19
        assert "appendonly yes" in (tmp_path / "redis" / "redis.conf").read_text()
        assert (tmp_path / "redis" / "redis.conf").stat().st_mode & 0o077 == 0
        store.r.close()
    finally:
        srv.stop()


def test_supervisor_restarts_children_and_takes_them_down_with_it(tmp_path):
    """A dead child is restarted (its process group killed first); a SIGKILLed supervisor takes its
    children with it (PR_SET_PDEATHSIG) instead of leaving workers running unsupervised."""
    import subprocess
    import sys

    import psutil

    root = str(Path(__file__).resolve().parents[1])
    code = (
        f"import sys; sys.path.insert(0, {root!r})\n"
        "from server.supervisor import ChildSpec, Supervisor\n"
        "Supervisor([ChildSpec('a', ['sh', '-c', 'sleep 60 & exec sleep 61'])]).run(poll_s=0.1)\n"
    )
    sup = subprocess.Popen([sys.executable, "-c", code])
    try:

        def child() -> psutil.Process | None:
            kids = [k for k in psutil.Process(sup.pid).children() if "61" in _cmdline(k)]
            return kids[0] if kids else None

        first = _wait(child, 20)
        # The background `sleep 60` is the child's own process: it outlives the child (an orphan,
        # like the ffmpeg of a killed worker) unless the supervisor kills the child's group.
        orphan = _wait(
            lambda: next(
                (
                    p
                    for p in psutil.process_iter(["cmdline"])
                    if p.info["cmdline"] == ["sleep", "60"] and _pgid(p.pid) == first.pid
                ),
                None,
            ),
            10,
        )
        first.kill()
        second = _wait(lambda: (c := child()) is not None and c.pid != first.pid and c, 20)
        _wait(lambda: not _alive(orphan), 10)
        sup.kill()
        sup.wait()
        _wait(lambda: not _alive(second), 10)
    finally:
        if sup.poll() is None:
            sup.kill()


def _cmdline(p) -> str:
    import psutil

    try:
        return " ".join(p.cmdline())
    except (psutil.NoSuchProcess, psutil.ZombieProcess):  # exited while we looked
        return ""


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _alive(p) -> bool:
    import psutil

    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait(cond, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_unrecordable_outcome_stops_the_worker_without_acknowledging(tmp_path, seed_library):
    """Redis gone when a job finishes: the runner must not return (the broker would acknowledge a job
    whose state was never written); it fail-stops, and the redelivered job completes once.
    appendfsync always: under everysec a loaded disk may delay the AOF write past the SIGKILL, losing the
    "running" state this test checks survived (what it tests is the fail-stop, not the fsync policy)."""
    srv = RedisServer(data_dir=tmp_path / "redis", port=free_port(), password="q" * 32, appendfsync="always")
    srv.start()
    settings = make_settings(tmp_path, srv, seed_library)
    store = JobStore.from_url(settings.broker_url, settings.redis_namespace)
    stopped: list[str] = []
    runner = JobRunner(settings, store, lambda *a: None, on_store_lost=lambda: stopped.append("exit"))
    runner.persist_attempts = 2
    runs: list[int] = []

    def job_that_outlives_redis(ctx: JobContext) -> JobOutput:
        runs.append(1)
        if len(runs) == 1:
            srv.kill()
        return JobOutput(results=[{"type": "test"}])

    runner.register_handler("test", job_that_outlives_redis)
    try:
        jid = admit(store)
        runner.handle(jid)
        assert stopped == ["exit"]
        srv.start()
        assert store.get_job(jid).state == "running"  # nothing was recorded; the message was not acked
        runner.handle(jid)  # the redelivery
        job = store.get_job(jid)
        assert job.state == "done" and job.lost == 1 and store.completions() == [jid] and runs == [1, 1]
    finally:
        store.r.close()
        srv.stop()


def test_running_job_of_a_long_gone_worker_is_found(rig):
    _runner, store, _ = rig
    jid = admit(store)
    store.start(jid, "host:111", 5)
    store.r.hset(store.k("job", jid), "heartbeat_at", repr(time.time() - 600))
    assert store.stale_running_jobs(300) == [jid]
    store.worker_heartbeat("host:111")  # the worker is alive (a long step without progress): not stale
    assert store.stale_running_jobs(300) == []
