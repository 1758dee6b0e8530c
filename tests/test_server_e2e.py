"""The service as it runs: API and worker processes over HTTP, a real redis-server, the real
planner and renderer, and the faults the service must ride out (a worker SIGKILLed mid-render, the
API restarted mid-batch, 50 concurrent submissions)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest

from autocut.library.media import probe
from autocut.types import EditPlan
from media_factory import make_shots
from server.store import NewJob
from test_server_harness import Service, copy_library, running_service, tiny_edit, wait_for, wait_job

# Shared session fixtures (redis_server, seed_library): one instance for all server test modules.
pytest_plugins = ["test_server_harness"]

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture(scope="module")
def service(tmp_path_factory, redis_server, seed_library):
    """API + a supervised pool of two workers on a private copy of the library."""
    with running_service(tmp_path_factory.mktemp("svc"), redis_server, seed_library, workers=2) as svc:
        yield svc


@pytest.fixture(scope="module")
def key(service):
    return service.new_key("e2e")


def _named_children(pid: int, name: str) -> list[psutil.Process]:
    out = []
    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    for p in kids:
        with contextlib.suppress(psutil.Error):  # it may exit while we look
            if p.name() == name:
                out.append(p)
    return out


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _ffmpeg_children(pid: int) -> list[psutil.Process]:
    return _named_children(pid, "ffmpeg")


def _worker_pid(service: Service, job_id: str) -> int:
    return int(service.store.get_job(job_id).worker.split(":")[1])  # host:pid:random


def _variant_dirs(service: Service, job_id: str) -> list[str]:
    jd = service.settings.data_dir / "jobs" / job_id
    return sorted(p.name for p in jd.iterdir()) if jd.exists() else []


def _slow_edit() -> dict:
    """Big enough that ffmpeg's main pass runs for seconds (something to kill or cancel)."""
    return tiny_edit(
        [1, 2], script=["Fresh juice in seconds.", "Take it anywhere."], resolution=1080, max_duration_s=8.0
    )


def test_upload_submit_poll_download_ffprobe(service, key, tmp_path):
    with service.client(key) as c:
        footage = make_shots(tmp_path / "kitchen.mp4", [("yuvtestsrc", 3.0), ("orange", 3.0)], size="320x240")
        r = c.post("/v1/clips", files={"file": ("kitchen.mp4", footage.read_bytes(), "video/mp4")})
        assert r.status_code == 201, r.text
        clip = r.json()
        req = {
            "product": {"name": "Juicer Cup", "brand": "FreshCo", "selling_points": ["juice in 30 seconds"]},
            "clips": [{"clip_id": clip["clip_id"]}, {"photo_id": 1}],
            "script": ["No time for breakfast?", "Fresh juice in seconds."],
            "options": {"aspect": "9:16", "resolution": 360, "max_duration_s": 12, "bgm": {"policy": "auto"}},
        }
        # Submitted while the upload is still ingesting: the edit waits for it.
        r = c.post("/v1/edits", json=req, headers={"Idempotency-Key": "e2e-1"})
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        assert r.headers["location"] == f"/v1/jobs/{job_id}"
        job = wait_job(c, job_id, timeout_s=240)
        assert job["state"] == "done", (job, service.logs())
        assert c.get(f"/v1/clips/{clip['clip_id']}").json()["state"] == "ready"
        assert job["attempts"] == 1  # waiting for the upload is not an attempt
        (res,) = job["results"]
        assert (res["width"], res["height"]) == (360, 640)
        video = c.get(res["links"]["video"])
        assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
        out = tmp_path / "out.mp4"
        out.write_bytes(video.content)
        info = probe(out)
        assert (info.width, info.height) == (360, 640)
        assert info.video_codec == "h264" and info.audio_codec == "aac"
        assert info.duration_s == pytest.approx(res["duration_s"], abs=0.1)
        # Byte ranges (players seek with them).
        part = c.get(res["links"]["video"], headers={"Range": "bytes=100-1099"})
        assert part.status_code == 206 and part.content == video.content[100:1100]
        assert part.headers["content-range"] == f"bytes 100-1099/{len(video.content)}"
        assert c.get(res["links"]["video"], headers={"Range": f"bytes={10**9}-"}).status_code == 416
        srt = c.get(res["links"]["subtitles"]).text
        assert "breakfast" in srt and "-->" in srt
        # The plan and OTIO downloads name media relative to the library: no server path leaks.
        for artifact in ("plan", "timeline"):
            text = c.get(res["links"][artifact]).text
            for root in (service.settings.library_dir, service.settings.data_dir, tmp_path):
                assert str(Path(root).resolve()) not in text and str(root) not in text, artifact
        plan = EditPlan.model_validate(c.get(res["links"]["plan"]).json())
        assert [s.sentence for s in plan.segments] == req["script"]
        assert plan.bgm is not None and plan.planner == "heuristic"
        import opentimelineio as otio

        (tmp_path / "t.otio").write_bytes(c.get(res["links"]["timeline"]).content)
        tl = otio.adapters.read_from_file(str(tmp_path / "t.otio"))
        assert len(list(tl.find_clips())) >= 2
        # Signed links work without the key (a <video src> cannot send headers), for that file only.
        signed = res["signed_links"]["video"]
        with httpx.Client(base_url=service.base_url, timeout=30) as anon:
            assert anon.get(res["links"]["video"]).status_code == 401
            assert anon.get(signed).content == video.content
            tampered = signed.replace("/video?", "/plan?")
            assert anon.get(tampered).status_code == 403
            assert anon.get(signed.replace("expires=", "expires=1")).status_code == 403
        # Replaying the POST gives the same job, and one result exists.
        again = c.post("/v1/edits", json=req, headers={"Idempotency-Key": "e2e-1"})
        assert again.json()["job_id"] == job_id and again.json()["replayed"]
        assert _variant_dirs(service, job_id) == ["plans.json", "v1"]
        assert service.store.completions().count(job_id) == 1
    # The access log shows signed links without their signature (a bearer credential until it expires).
    sig = signed.split("signature=")[1]
    api_log = "".join(f.read_text(errors="replace") for f in service.log_dir.glob("api*.log"))
    assert "signature=<redacted>" in api_log and sig not in api_log


def test_signed_links_die_with_the_key_that_owns_the_job(service):
    from server.auth import hash_api_key
    from test_server_harness import SECRET

    raw = service.new_key("doomed")
    with service.client(raw) as c:
        job = wait_job(c, c.post("/v1/edits", json=tiny_edit([1])).json()["job_id"], timeout_s=120)
        assert job["state"] == "done", job
        signed = job["results"][0]["signed_links"]["video"]
    with httpx.Client(base_url=service.base_url, timeout=30) as anon:
        assert anon.get(signed).status_code == 200
        owner = service.store.lookup_api_key(hash_api_key(raw, SECRET))
        assert owner is not None and service.store.revoke_api_key(owner["key_id"])
        assert anon.get(signed).status_code == 403


def test_admin_rebuilds_indexes_through_a_worker(service):
    with service.client(service.new_key("ops", admin=True)) as c:
        r = c.post("/v1/indexes/rebuild", json={"kinds": ["bgm", "clips"]})
        assert r.status_code == 202
        job = wait_job(c, r.json()["job_id"], timeout_s=120)
        assert job["state"] == "done", job
        from autocut.library.catalog import Catalog

        with Catalog.open(service.settings.library_dir, create=False) as cat:
            expected = {"bgm": len(cat.bgm_tracks()), "clips": len(cat.clips())}
        assert {x["kind"]: x["count"] for x in job["rebuild"]} == expected
        assert (service.settings.library_dir / "indexes" / "bgm").is_dir()


def test_cancel_stops_the_running_ffmpeg(service, key):
    with service.client(key) as c:
        job_id = c.post("/v1/edits", json=_slow_edit()).json()["job_id"]

        def rendering() -> list[psutil.Process] | None:
            j = service.store.get_job(job_id)
            if j.state == "running" and j.progress > 10:
                return _ffmpeg_children(_worker_pid(service, job_id)) or None
            return None

        ffmpegs = wait_for(rendering, 120, "ffmpeg to be rendering")
        r = c.delete(f"/v1/jobs/{job_id}")
        assert r.status_code == 202
        job = wait_job(c, job_id, timeout_s=30)
        assert job["state"] == "cancelled" and job["error"]["code"] == "cancelled"
        wait_for(lambda: not any(_alive(p) for p in ffmpegs), 15, "ffmpeg to stop")
        assert _variant_dirs(service, job_id) == ["plans.json"]  # no result, no attempt left behind
        assert c.get(f"/v1/jobs/{job_id}/results/1/video").status_code == 404


def test_sigkill_worker_mid_render_then_one_result(service, key, tmp_path):
    with service.client(key) as c:
        job_id = c.post("/v1/edits", json=_slow_edit()).json()["job_id"]

        def rendering() -> tuple[int, list[psutil.Process]] | None:
            j = service.store.get_job(job_id)
            if j.state == "running" and j.progress > 10:
                pid = _worker_pid(service, job_id)
                kids = _ffmpeg_children(pid)
                return (pid, kids) if kids else None
            return None

        pid, ffmpegs = wait_for(rendering, 120, "ffmpeg to be rendering")
        progress = service.store.get_job(job_id).progress
        assert progress > 10
        os.kill(pid, signal.SIGKILL)
        # The supervisor restarts the worker and kills the orphaned ffmpeg of the dead one.
        wait_for(lambda: not any(_alive(p) for p in ffmpegs), 20, "the orphaned ffmpeg to be killed")
        job = wait_job(c, job_id, timeout_s=240)
        assert job["state"] == "done", (job, service.logs())
        rec = service.store.get_job(job_id)
        assert rec.deliveries == 2 and rec.lost == 1
        assert _worker_pid(service, job_id) != pid
        assert _variant_dirs(service, job_id) == ["plans.json", "v1"]
        assert service.store.completions().count(job_id) == 1
        out = tmp_path / "k.mp4"
        out.write_bytes(c.get(job["results"][0]["links"]["video"]).content)
        info = probe(out)
        assert (info.width, info.height) == (1080, 1920) and info.duration_s == pytest.approx(
            job["results"][0]["duration_s"], abs=0.1
        )
    service.wait_workers(2)


def test_restart_api_mid_batch_loses_nothing(service, key):
    items = [tiny_edit([1 + i % 2], script=[f"Offer number {i}."]) for i in range(6)]
    with service.client(key) as c:
        batch = c.post("/v1/batches", json={"items": items}).json()
        wait_for(
            lambda: any(j.state != "queued" for j in service.store.get_jobs(batch["job_ids"])), 60, "the batch to start"
        )
        service.kill_api()
        with pytest.raises(httpx.TransportError):
            c.post("/v1/edits", json=tiny_edit([1]), headers={"Idempotency-Key": "while-down"})
        service.start_api()
        # The client retries its failed POST with the same key: one job, however often it retries.
        ids = {
            c.post("/v1/edits", json=tiny_edit([1]), headers={"Idempotency-Key": "while-down"}).json()["job_id"]
            for _ in range(3)
        }
        assert len(ids) == 1
        status = wait_for(
            lambda: (b := c.get(batch["status_url"]).json())["state"] in ("done", "partial", "failed") and b,
            240,
            "the batch to finish",
        )
        assert status["state"] == "done", (status, service.logs())
        assert status["counts"] == {"done": 6}
        for item in status["items"]:
            assert _variant_dirs(service, item["job_id"]) == ["plans.json", "v1"]
        wait_job(c, ids.pop(), timeout_s=120)
        done = service.store.completions()
        assert all(done.count(j) == 1 for j in batch["job_ids"])


def test_admitted_but_never_enqueued_job_is_recovered(service, key):
    """The API died between recording a job and enqueuing it: the workers' reconciler enqueues it."""
    with service.client(key) as c:
        owner = _key_id(service, key)
        spec_source = c.post("/v1/edits", json=tiny_edit([2])).json()["job_id"]
        spec = service.store.get_job(spec_source).spec
        adm = service.store.admit(
            owner, [NewJob(job_id="job_" + "e" * 24, kind="edit", spec=spec)], max_active=100, max_active_per_owner=100
        )
        assert adm.status == "created"
        job = wait_job(c, "job_" + "e" * 24, timeout_s=120)
        assert job["state"] == "done"
        assert service.store.get_job(job["job_id"]).enqueued


def _key_id(service: Service, raw: str) -> str:
    from server.auth import hash_api_key
    from test_server_harness import SECRET

    return service.store.lookup_api_key(hash_api_key(raw, SECRET))["key_id"]


@pytest.mark.slow
def test_fifty_concurrent_submissions_fifty_results(service, key):
    n = 50
    start = threading.Barrier(n)

    def submit(i: int) -> str:
        with service.client(key) as c:
            start.wait()
            r = c.post(
                "/v1/edits",
                json=tiny_edit([1 + i % 2], script=[f"Deal number {i}."]),
                headers={"Idempotency-Key": f"fifty-{i}"},
            )
            assert r.status_code == 202, r.text
            return r.json()["job_id"]

    with ThreadPoolExecutor(n) as pool:
        ids = list(pool.map(submit, range(n)))
    assert len(set(ids)) == n
    with service.client(key) as c:

        def all_done() -> bool:
            states = [j.state for j in service.store.get_jobs(ids)]
            assert "failed" not in states, service.logs()
            return all(s == "done" for s in states)

        wait_for(all_done, 600, "50 jobs to finish", poll_s=1.0)
        done = service.store.completions()
        assert sorted(j for j in done if j in set(ids)) == sorted(ids)
        for jid in ids:
            assert _variant_dirs(service, jid) == ["plans.json", "v1"]
            meta = json.loads((service.settings.data_dir / "jobs" / jid / "v1" / "variant.json").read_text())
            assert meta["variant"] == 1
        assert c.get(f"/v1/jobs/{ids[0]}/results/1/video").status_code == 200


@pytest.mark.slow
def test_single_machine_default_runs_and_supervises_its_own_redis(tmp_path, seed_library):
    """`python -m server all` with no AUTOCUT_REDIS_URL: it starts a persistent redis-server, the
    API and a worker; a crashed redis-server is restarted from its AOF; SIGTERM stops everything."""
    import subprocess
    import sys

    from test_server_harness import ROOT, SECRET, free_port

    lib = copy_library(seed_library, tmp_path / "library")
    api_port, redis_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOCUT_")}
    env.update(
        {
            "AUTOCUT_DATA_DIR": str(tmp_path / "data"),
            "AUTOCUT_LIBRARY_DIR": str(lib),
            "AUTOCUT_REDIS_PORT": str(redis_port),
            "AUTOCUT_API_PORT": str(api_port),
            "AUTOCUT_SECRET_KEY": SECRET,
            "AUTOCUT_WORKER_PROCESSES": "1",
            "AUTOCUT_POLL_INTERVAL_MS": "100",
            "PYTHONPATH": str(ROOT),
        }
    )
    log = open(tmp_path / "all.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "all"],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{api_port}"

    headers: dict[str, str] = {}  # /readyz shows its load figures to a caller with a key only

    def ready() -> bool:
        try:
            r = httpx.get(f"{base}/readyz", headers=headers, timeout=2)
            return r.status_code == 200 and (not headers or (r.json()["live_workers"] or 0) >= 1)
        except httpx.HTTPError:
            return False

    try:
        wait_for(ready, 90, "`python -m server all` to be ready")
        anonymous = httpx.get(f"{base}/readyz", timeout=2).json()
        assert anonymous["ready"] and anonymous["live_workers"] is None and anonymous["queue_depth"] is None
        out = subprocess.run(
            [sys.executable, "-m", "server", "keys", "create", "--name", "me"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        raw = out.split()[1]
        headers["X-API-Key"] = raw
        wait_for(ready, 90, "a live worker")
        with httpx.Client(base_url=base, headers={"X-API-Key": raw}, timeout=30) as c:
            job_id = c.post("/v1/edits", json=tiny_edit([1])).json()["job_id"]
            assert wait_job(c, job_id)["state"] == "done"
            (redis_proc,) = _named_children(proc.pid, "redis-server")
            redis_proc.kill()
            wait_for(
                lambda: any(p.pid != redis_proc.pid for p in _named_children(proc.pid, "redis-server")),
                30,
                "redis-server to be restarted",
            )
            wait_for(ready, 60, "the service to be ready again")
            assert c.get(f"/v1/jobs/{job_id}").json()["state"] == "done"  # persisted in the AOF
            assert (tmp_path / "data" / "redis" / "appendonlydir").is_dir()
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        psutil.wait_procs(children, timeout=30)
        assert not any(_alive(p) for p in children)
    finally:
        if proc.poll() is None:
            # Children run in their own sessions (so the supervisor can kill each group): kill them one by one.
            for p in psutil.Process(proc.pid).children(recursive=True):
                p.kill()
            proc.kill()
            proc.wait()
        log.close()
