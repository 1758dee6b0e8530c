"""Delivery without double work or lost jobs, against the running service (real redis-server, real workers,
real ffmpeg): fencing tokens, the reconciler's lease, lost queue messages, results durable before "done".

- A worker frozen (SIGSTOP, with its ffmpeg) past its heartbeat mid-render has its job redelivered; when it
  is thawed (SIGCONT) it stops at once and records nothing: the newer delivery finishes the job, once.
- A stale delivery's failure, retry, deferral or completion is refused by the job store (a real JobRunner on
  the real Redis, each outcome in turn).
- A queued job whose broker message is deleted is found by the reconciler and enqueued again exactly once,
  and a worker (run under strace) fsyncs every result file and directory before it marks the job done.
- Two API processes reconcile one at a time (a lease); when the holder dies the other takes over; a holder
  whose lease expired cannot act.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import redis

from autocut.errors import PlanError, TransientError
from server.queue import LEASE_NAME, QUEUE_NAME, JobQueue, Reconciler
from server.settings import Settings
from server.store import JobStore, LeaseLost, NewJob, StaleDelivery
from server.supervisor import RedisServer, redis_for_settings
from server.tasks import Deferred, JobContext, JobOutput, JobRunner
from test_server_harness import ROOT, Service, copy_library, free_port, make_settings, tiny_edit, wait_for, wait_job

pytest_plugins = ["test_server_harness"]

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


# --------------------------------------------------------------------------- helpers


def _service(tmp: Path, redis_server: RedisServer, library: Path, name: str = "svc", **overrides: object) -> Service:
    logs = tmp / f"logs-{name}"
    logs.mkdir()
    return Service(make_settings(tmp, redis_server, library, **overrides), logs)


def _queue_client(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(settings.broker_url, db=settings.queue_db or 0, decode_responses=True)


def _delete_messages(settings: Settings, job_id: str) -> int:
    """Delete every broker message of `job_id` (what a Redis restarted from a stale AOF, or a hand, does)."""
    ns = f"{settings.redis_namespace}:dq"
    r = _queue_client(settings)
    n = 0
    try:
        for q in (QUEUE_NAME, f"{QUEUE_NAME}.DQ"):
            for mid, body in r.hgetall(f"{ns}:{q}.msgs").items():
                if json.loads(body)["args"][0] == job_id:
                    n += r.hdel(f"{ns}:{q}.msgs", mid)
                    r.lrem(f"{ns}:{q}", 0, mid)
    finally:
        r.close()
    return n


def _worker_pid(store: JobStore, job_id: str) -> int:
    return int(store.get_job(job_id).worker.split(":")[1])  # host:pid:random


def _ffmpegs(pid: int) -> list[psutil.Process]:
    out = []
    with contextlib.suppress(psutil.NoSuchProcess):
        for p in psutil.Process(pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if p.name() == "ffmpeg":
                    out.append(p)
    return out


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _job_files(settings: Settings, job_id: str) -> list[str]:
    jd = settings.data_dir / "jobs" / job_id
    return sorted(p.name for p in jd.iterdir()) if jd.exists() else []


def _key_id(svc: Service, raw: str) -> str:
    from server.auth import hash_api_key
    from test_server_harness import SECRET

    return svc.store.lookup_api_key(hash_api_key(raw, SECRET))["key_id"]


# --------------------------------------------------------------------------- fencing


def test_frozen_worker_thawed_after_redelivery_stops_and_records_nothing(tmp_path, redis_server, seed_library):
    """SIGSTOP a worker (and its ffmpeg) mid-render past its heartbeat: the job is redelivered to the other
    worker; SIGCONT the first while the second runs it: the first stops its ffmpeg within seconds and cannot
    complete, fail or requeue the job; the job is done once, by the newer delivery, with one result."""
    svc = _service(tmp_path, redis_server, copy_library(seed_library, tmp_path / "library"))
    frozen: list[int] = []
    try:
        svc.start_workers(2)
        svc.start_api()
        svc.wait_workers(2)
        key = svc.new_key()
        with svc.client(key) as c:
            script = ["Fresh juice in seconds.", "Take it anywhere."]
            edit = tiny_edit([1, 2], script=script, resolution=720, max_duration_s=6.0)
            job_id = c.post("/v1/edits", json=edit).json()["job_id"]

            def rendering() -> int | None:
                j = svc.store.get_job(job_id)
                if j.state == "running" and j.progress > 10:
                    pid = _worker_pid(svc.store, job_id)
                    return pid if _ffmpegs(pid) else None
                return None

            pid_a = wait_for(rendering, 60, "the first delivery to be rendering", poll_s=0.05)
            assert isinstance(pid_a, int)
            os.killpg(pid_a, signal.SIGSTOP)  # the worker and its ffmpeg: a frozen host
            frozen.append(pid_a)
            ffmpeg_a = _ffmpegs(pid_a)
            assert ffmpeg_a and svc.store.get_job(job_id).fence == 1

            # The broker sees the frozen worker's heartbeat stop and hands the message to the other worker.
            wait_for(lambda: svc.store.get_job(job_id).fence == 2, 30, "the job to be redelivered")
            rec = svc.store.get_job(job_id)
            assert rec.state == "running" and _worker_pid(svc.store, job_id) != pid_a and rec.lost == 1

            os.killpg(pid_a, signal.SIGCONT)
            frozen.clear()
            thawed = time.monotonic()
            # Within a few seconds (a 0.3 s ownership poll, then ffmpeg is stopped), not after its render.
            wait_for(lambda: not any(_alive(p) for p in ffmpeg_a), 10, "the stale delivery's ffmpeg to stop")
            stopped_s = time.monotonic() - thawed
            # Meanwhile the job stayed the newer delivery's: never failed, queued again or finished by the old one.
            seen: set[tuple[str, int]] = set()

            def finished() -> bool:
                j = svc.store.get_job(job_id)
                seen.add((j.state, j.fence))
                return j.state in ("done", "failed", "cancelled")

            wait_for(finished, 90, "the job to finish", poll_s=0.1)
            assert seen <= {("running", 2), ("done", 2)}, seen
            job = wait_job(c, job_id)
            assert job["state"] == "done", svc.logs()
            rec = svc.store.get_job(job_id)
            assert (rec.fence, rec.finished_fence, rec.deliveries, rec.lost, rec.retries) == (2, 2, 2, 1, 0)
            assert svc.store.completions().count(job_id) == 1
            assert _job_files(svc.settings, job_id) == ["plans.json", "v1"]  # no attempt directory left behind
            info = json.loads((svc.settings.data_dir / "jobs" / job_id / "v1" / "variant.json").read_text())
            assert job["results"][0]["duration_s"] == info["duration_s"]
            assert c.get(job["results"][0]["links"]["video"]).status_code == 200
            # The thawed worker said why it stopped, and it is alive and still takes jobs.
            logs = "".join(f.read_text(errors="replace") for f in svc.log_dir.glob("worker-*.log"))
            assert f"job {job_id}: delivery with fence 1 was superseded" in logs
            assert psutil.pid_exists(pid_a) and psutil.Process(pid_a).status() != psutil.STATUS_ZOMBIE
            svc.wait_workers(2)
            print(f"stale delivery stopped {stopped_s:.1f} s after SIGCONT; the job took {rec.timings}")
    finally:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGCONT)
        svc.stop()


@pytest.mark.parametrize("outcome", ["retry", "fail", "defer", "complete"])
def test_a_superseded_delivery_cannot_fail_requeue_or_finish_the_job(outcome, tmp_path, redis_server, seed_library):
    """The real JobRunner on the real Redis: while a delivery runs, a newer delivery of the same job starts
    (what a redelivery after a lost heartbeat does); the old delivery's outcome is refused by the store."""
    settings = make_settings(tmp_path, redis_server, seed_library)
    store = JobStore.from_url(settings.broker_url, settings.redis_namespace)
    enqueued: list[tuple[str, float]] = []
    runner = JobRunner(settings, store, lambda jid, delay: enqueued.append((jid, delay)))
    jid = "job_" + "f" * 24
    assert store.admit("key_x", [NewJob(jid, "test", {})], max_active=10, max_active_per_owner=10).status == "created"  # type: ignore[arg-type]

    def handler(ctx: JobContext) -> JobOutput:
        attempt = ctx.new_attempt_dir()
        (attempt / "partial.mp4").write_bytes(b"x")
        assert store.start(jid, "newer-worker", 5).fence == 2  # the redelivery takes the job over
        if outcome == "retry":
            raise TransientError("the disk is busy")
        if outcome == "fail":
            raise PlanError("no clip fits")
        if outcome == "defer":
            raise Deferred("waiting", 1.0)
        return JobOutput(results=[{"type": "test"}])

    runner.register_handler("test", handler)
    try:
        runner.handle(jid)  # returns normally: the stale delivery is dropped, not an error
        job = store.get_job(jid)
        assert (job.state, job.fence, job.worker, job.retries, job.error_code) == ("running", 2, "newer-worker", 0, "")
        assert job.finished_fence == 0 and store.completions() == [] and enqueued == []
        assert not list((settings.data_dir / "jobs" / jid).glob(".attempt-*"))  # its own attempt is removed
        # Each write of the stale fence is refused at the store, whatever the delivery tries.
        with pytest.raises(StaleDelivery):
            store.complete(jid, [], {}, fence=1)
        with pytest.raises(StaleDelivery):
            store.fail(jid, "x", "y", fence=1)
        with pytest.raises(StaleDelivery):
            store.requeue(jid, "retry", count_retry=True, fence=1)
        with pytest.raises(StaleDelivery):
            store.progress(jid, "rendering", 50.0, fence=1)
        assert store.complete(jid, [{"type": "test"}], {}, fence=2)  # the owner's completion is accepted
        assert store.get_job(jid).finished_fence == 2 and store.completions() == [jid]
    finally:
        store.r.close()


# --------------------------------------------------------------------------- lost messages, fsync


def _strace_ok() -> bool:
    if shutil.which("strace") is None:
        return False
    return subprocess.run(["strace", "-f", "-o", "/dev/null", "true"], capture_output=True).returncode == 0


def test_lost_queue_message_is_enqueued_once_and_results_are_fsynced_before_done(tmp_path, redis_server, seed_library):
    """The API runs alone; a job's broker message is deleted. Its reconciler finds the job (queued, no message)
    and enqueues it once, never again in later passes, and leaves a job whose message is there alone. A worker
    started under strace then runs both: each is done once, and every result file, its directory and the job
    directory were fsynced before the worker sent the completion to Redis."""
    svc = _service(
        tmp_path,
        redis_server,
        copy_library(seed_library, tmp_path / "library"),
        reconcile_interval_s=0.3,
        reconcile_min_age_s=1.0,
    )
    queue = JobQueue(svc.settings)
    worker: subprocess.Popen | None = None
    try:
        svc.start_api()
        key = svc.new_key()
        with svc.client(key) as c:
            lost = c.post("/v1/edits", json=tiny_edit([1])).json()["job_id"]
            kept = c.post("/v1/edits", json=tiny_edit([2])).json()["job_id"]
            assert queue.live_messages()[lost] == 1
            assert _delete_messages(svc.settings, lost) == 1 and queue.live_messages()[lost] == 0
            wait_for(lambda: queue.live_messages()[lost] == 1, 20, "the reconciler to enqueue the lost job again")
            time.sleep(2.0)  # several more passes: none enqueues it again, none touches the job that had its message
            live = queue.live_messages()
            assert (live[lost], live[kept]) == (1, 1)
            assert (svc.store.get_job(lost).recovered, svc.store.get_job(kept).recovered) == (1, 0)

            trace = tmp_path / "worker.strace"
            strace_ok = _strace_ok()
            prefix = ["strace", "-f", "-qq", "-y", "-s", "600", "-e", "trace=fsync,sendto", "-e", "signal=none"]
            prefix += ["--seccomp-bpf", "-o", str(trace)]
            log = open(svc.log_dir / "worker-strace.log", "wb")  # noqa: SIM115 - lives with the process
            worker = subprocess.Popen(
                [*(prefix if strace_ok else []), sys.executable, "-m", "server", "worker", "--processes", "0"],
                env=svc.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            for jid in (lost, kept):
                assert wait_job(c, jid, timeout_s=120)["state"] == "done", svc.logs()
            for jid in (lost, kept):
                rec = svc.store.get_job(jid)
                assert svc.store.completions().count(jid) == 1 and rec.deliveries == 1 and rec.fence == 1
                assert _job_files(svc.settings, jid) == ["plans.json", "v1"]
            assert svc.store.get_job(lost).recovered == 1
        if not strace_ok:
            pytest.skip("strace is not available here: the fsync order was not checked")
        for child in psutil.Process(worker.pid).children():  # the worker under strace: stopped, strace exits
            child.terminate()
        worker.wait(timeout=60)
        lines = trace.read_text(errors="replace").splitlines()
        for jid in (lost, kept):
            jd = svc.settings.data_dir.resolve() / "jobs" / jid
            # The completion script's call: EVALSHA with the job id and its results (strace escapes the quotes).
            done_at = next(
                i
                for i, ln in enumerate(lines)
                if "sendto(" in ln and "EVALSHA" in ln and jid in ln and '\\"type\\": \\"variant\\"' in ln
            )
            # An fsync call begun before (strace splits a call another thread interrupts: "<unfinished ...>"); the
            # worker thread makes the calls one after the other, so each returned before the completion was sent.
            fsynced = {m.group(1) for ln in lines[:done_at] if (m := re.search(r"fsync\(\d+<([^>]+)>", ln))}
            assert not [ln for ln in lines if "fsync" in ln and "= -1" in ln]
            must = {str(p) for p in (jd / "v1").iterdir()} | {
                str(jd / "v1"),
                str(jd / "plans.json"),
                str(jd),
                str(jd.parent),
            }
            assert must <= fsynced, sorted(must - fsynced)
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait()
        queue.close()
        svc.stop()


# --------------------------------------------------------------------------- one reconciler at a time


def test_two_api_processes_never_reconcile_at_once(tmp_path, redis_server, seed_library):
    """Two API processes on one Redis: only the lease holder reconciles (every pass is recorded with its
    holder and times; no two overlap), and each lost message is recovered once. SIGKILL the holder: the other
    takes the lease after it expires and recovers the next lost message."""
    lib = copy_library(seed_library, tmp_path / "library")
    fast = {"reconcile_interval_s": 0.3, "reconcile_min_age_s": 0.5}
    one = _service(tmp_path, redis_server, lib, "one", **fast)
    two = Service(one.settings, tmp_path / "logs-two")
    (tmp_path / "logs-two").mkdir()
    queue = JobQueue(one.settings)
    try:
        one.start_api()
        two.start_api()
        key = one.new_key()
        with one.client(key) as c:
            ids = [c.post("/v1/edits", json=tiny_edit([1 + i % 2])).json()["job_id"] for i in range(3)]
            for jid in ids:
                assert _delete_messages(one.settings, jid) == 1
            wait_for(lambda: all(queue.live_messages()[j] == 1 for j in ids), 20, "the lost jobs to be recovered")
            time.sleep(1.5)
            assert [one.store.get_job(j).recovered for j in ids] == [1, 1, 1]
            assert all(queue.live_messages()[j] == 1 for j in ids)

            passes = one.store.reconcile_passes()
            holders = {p["holder"] for p in passes}
            assert len(holders) == 1, holders  # both APIs try every 0.3 s; one holds the lease
            holder_pid = int(holders.pop().split(":")[1])
            api_pids = {one.api.pid, two.api.pid}  # type: ignore[union-attr]
            assert holder_pid in api_pids
            recovered = [j for p in passes for j in p["recovered"]]
            assert sorted(recovered) == sorted(ids)

            # The holder dies without releasing the lease: the other API takes over once it expires.
            holder = one if one.api.pid == holder_pid else two  # type: ignore[union-attr]
            holder.kill_api()
            assert _delete_messages(one.settings, ids[0]) == 1
            wait_for(lambda: queue.live_messages()[ids[0]] == 1, 20, "the other API to recover the job")
            assert one.store.get_job(ids[0]).recovered == 2
            passes = one.store.reconcile_passes()
            new_holders = {int(p["holder"].split(":")[1]) for p in passes}
            assert new_holders == api_pids
            for a in passes:  # no two passes of different holders overlap in time
                for b in passes:
                    if a["holder"] != b["holder"]:
                        assert a["end"] <= b["start"] or b["end"] <= a["start"], (a, b)
    finally:
        queue.close()
        two.stop()
        one.stop()


def test_a_reconciler_whose_lease_expired_cannot_act(tmp_path, redis_server, seed_library):
    """Two Reconciler objects on one Redis: the second does nothing while the first holds the lease; once the
    first stops renewing (paused) the second takes over, and the first's recovery is refused by the store."""
    settings = make_settings(tmp_path, redis_server, seed_library, reconcile_interval_s=0.3, reconcile_min_age_s=0.0)
    store = JobStore.from_url(settings.broker_url, settings.redis_namespace)
    queue = JobQueue(settings)
    first, second = Reconciler(store, queue), Reconciler(store, queue)
    try:
        assert first.run_once() == []
        jid = "job_" + "d" * 24
        assert (
            store.admit("key_x", [NewJob(jid, "edit", {})], max_active=10, max_active_per_owner=10).status == "created"
        )
        assert second.run_once() is None and queue.live_messages()[jid] == 0  # not the holder: did nothing
        assert first.run_once() == [jid] and queue.live_messages()[jid] == 1
        assert first.run_once() == [] and second.run_once() is None

        (marker,) = [m for j, m in store.queued_jobs(0.0) if j == jid]
        _delete_messages(settings, jid)
        time.sleep(first.lease_ttl_s + 0.2)  # the first is paused: its lease expires
        assert store.lease_holder(LEASE_NAME) is None
        threading.Thread(target=second.run_once).start()  # takes the lease
        wait_for(lambda: store.lease_holder(LEASE_NAME) == second.token, 5, "the second to take the lease")
        with pytest.raises(LeaseLost):  # the first wakes up mid-pass: its recovery is refused
            store.recover(jid, LEASE_NAME, first.token, "queued", marker)  # type: ignore[arg-type]
        wait_for(lambda: queue.live_messages()[jid] == 1, 5, "the second to recover the job")
        assert first.run_once() is None
        assert store.get_job(jid).recovered == 2
        second.stop()  # releases the lease: the first may take it at once
        assert store.lease_holder(LEASE_NAME) is None and first.run_once() == []
    finally:
        first.release()
        queue.close()
        store.r.close()


# --------------------------------------------------------------------------- Redis persistence setting


def test_appendfsync_always_is_a_setting_of_the_supervised_redis(tmp_path):
    """`AUTOCUT_REDIS_APPENDFSYNC=always` reaches the redis-server that `server all` supervises (asked with
    CONFIG GET on a real one); anything but everysec/always is refused."""
    settings = Settings(
        data_dir=tmp_path / "data", secret_key="s" * 32, redis_port=free_port(), redis_appendfsync="always"
    )
    srv = redis_for_settings(settings)
    assert "appendfsync always" in srv.config_text()
    srv.start()
    try:
        client = redis.Redis.from_url(srv.url, decode_responses=True)
        assert client.config_get("appendfsync") == {"appendfsync": "always"}
        client.close()
    finally:
        srv.stop()
    assert "appendfsync everysec" in redis_for_settings(Settings(secret_key="s" * 32)).config_text()
    with pytest.raises(ValueError):
        Settings(secret_key="s" * 32, redis_appendfsync="no")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        RedisServer(data_dir=tmp_path, port=1, password="p", appendfsync="no").config_text()
