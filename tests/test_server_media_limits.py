"""Media limits against the running service (a real redis-server, API and worker processes, real
ffmpeg): an SDP polyglot that passes the upload's magic-byte sniffing, a video over the width limit
and an MKV whose header lies about its duration are refused with errors naming what was wrong, the
worker survives them, and a normal upload afterwards is ingested. Plus the worker's own resource
limits, applied in a real worker-like process."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import psutil
import pytest

from media_factory import make_video
from test_media_limits import SDP_TEXT, hls_text, make_lying_mkv
from test_server_harness import ROOT, SECRET, Service, make_settings, wait_job

pytest_plugins = ["test_server_harness"]

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

LIMITS = {
    "media_max_width": 400,
    "media_max_height": 400,
    "max_clip_duration_s": 10.0,
    "ffmpeg_max_cpu_s": 600,
    "ffmpeg_max_memory_mb": 2048,
    "worker_max_memory_mb": 4096,
}


@pytest.fixture(scope="module")
def service(tmp_path_factory, redis_server):
    """API + one worker with lowered media limits, on a new (empty) library."""
    tmp = tmp_path_factory.mktemp("svc-media")
    settings = make_settings(tmp, redis_server, tmp / "library", **LIMITS)
    (tmp / "logs").mkdir()
    svc = Service(settings, tmp / "logs")
    try:
        svc.start_workers(1, supervised=False)
        svc.start_api()
        svc.wait_workers(1, timeout_s=90)
        yield svc
    finally:
        svc.stop()


def _upload(c, name: str, data: bytes):
    return c.post("/v1/clips", files={"file": (name, data, "video/mp4")})


def _refused_or_failed(c, r, needle: str) -> str:
    """The upload was refused (4xx naming `needle`) or accepted and its ingest job failed naming it."""
    if r.status_code in (415, 422):
        msg = r.json()["error"]["message"]
        assert needle in msg, msg
        return msg
    assert r.status_code == 201, r.text
    job = wait_job(c, r.json()["job_id"], timeout_s=120)
    assert job["state"] == "failed", job
    clip = c.get(f"/v1/clips/{r.json()['clip_id']}").json()
    assert clip["state"] == "failed"
    assert needle in clip["error"]["message"], clip
    return clip["error"]["message"]


def test_hostile_media_is_refused_and_the_service_keeps_working(service, tmp_path):
    key = service.new_key("media")
    worker_pid = service.procs[0].pid
    with service.client(key) as c:
        # 1. SDP text behind an MPEG-TS sync pattern: passes sniffing, refused at the demuxer allow-list.
        r = _upload(c, "poly.mp4", SDP_TEXT.encode())
        assert r.status_code == 422, r.text
        assert "container format 'sdp' is not allowed" in r.text
        # An HLS playlist named .mp4 (pointing at a local file) never reaches ffmpeg either.
        seg = make_video(tmp_path / "seg.ts", duration_s=2.0, size="64x48", rate=5)
        r = _upload(c, "playlist.mp4", hls_text(seg).encode())
        assert r.status_code in (415, 422), r.text
        # 2. Over the width limit (400 px): refused at upload (the API probes with the service's limits),
        #    naming the limit and the value; nothing is stored.
        wide = make_video(tmp_path / "wide.mp4", duration_s=2.0, size="480x270", rate=10)
        r = _upload(c, "wide.mp4", wide.read_bytes())
        assert r.status_code == 422, r.text
        msg = _refused_or_failed(c, r, "width 480 px exceeds the limit of 400 px")
        assert str(tmp_path) not in msg
        # 3. An MKV claiming 2 s that really runs 10 minutes: the upload check believes the header; the
        #    worker's decode stops at the 10 s limit and fails the job (it does not decode 10 minutes).
        lie = make_lying_mkv(tmp_path / "lie.mkv", real_s=600.0, claimed_s=2.0)
        r = _upload(c, "lie.mkv", lie.read_bytes())
        assert r.status_code == 201, r.text
        assert r.json()["duration_s"] == pytest.approx(2.0, abs=0.1)  # what the header claimed
        t0 = time.monotonic()
        job = wait_job(c, r.json()["job_id"], timeout_s=120)
        assert job["state"] == "failed", job
        assert "runs longer than the duration limit of 10 s" in job["error"]["message"], job
        assert str(service.settings.data_dir) not in job["error"]["message"]  # no server path in errors
        assert time.monotonic() - t0 < 60  # the limit stopped it, not 10 minutes of decoding
        clip = c.get(f"/v1/clips/{r.json()['clip_id']}").json()
        assert clip["state"] == "failed" and "duration limit of 10 s" in clip["error"]["message"]
        # 4. The same worker process is alive and ingests a normal upload.
        assert psutil.pid_exists(worker_pid) and service.procs[0].poll() is None
        ok = make_video(tmp_path / "ok.mp4", duration_s=3.0, size="320x240", rate=25)
        r = _upload(c, "ok.mp4", ok.read_bytes())
        assert r.status_code == 201, r.text
        job = wait_job(c, r.json()["job_id"], timeout_s=180)
        assert job["state"] == "done", (job, service.logs())
        assert c.get(f"/v1/clips/{r.json()['clip_id']}").json()["state"] == "ready"
    assert service.procs[0].pid == worker_pid and service.procs[0].poll() is None


def test_worker_process_runs_under_its_limits(service):
    """The running worker: RLIMIT_DATA as configured, OOM score raised, ffmpeg children limited."""
    proc = psutil.Process(service.procs[0].pid)
    soft, _hard = proc.rlimit(psutil.RLIMIT_DATA)
    assert soft == LIMITS["worker_max_memory_mb"] * 1024 * 1024
    with open(f"/proc/{proc.pid}/oom_score_adj") as f:
        assert int(f.read()) == 1000
    # API and Redis keep their ordinary OOM score: the kernel picks a worker first.
    assert service.api is not None
    with open(f"/proc/{service.api.pid}/oom_score_adj") as f:
        assert int(f.read()) < 1000


_CHILD = r"""
import json, resource, sys
from server.settings import Settings
from server.worker import apply_worker_limits
from autocut.library.media import current_limits, _run_guarded
s = Settings(secret_key=sys.argv[1], worker_max_memory_mb=1024, ffmpeg_max_memory_mb=512, ffmpeg_max_cpu_s=30,
             media_max_width=999, max_clip_duration_s=42)
apply_worker_limits(s)
import numpy, torch  # the worker's heavy imports still work under the limit
out = {"data": resource.getrlimit(resource.RLIMIT_DATA)[0], "oom": open("/proc/self/oom_score_adj").read().strip()}
lim = current_limits()
out["limits"] = [lim.max_width, lim.max_duration_s, lim.child_memory_bytes, lim.child_cpu_s]
child = _run_guarded(["sh", "-c", "ulimit -d; ulimit -t"], lim)
out["child"] = child.stdout.decode().split()
try:
    big = bytearray(2 * 1024**3)
    out["alloc"] = "allowed"
except MemoryError:
    out["alloc"] = "MemoryError"
print(json.dumps(out))
"""


def test_worker_limits_are_applied_and_hold():
    res = subprocess.run(
        [sys.executable, "-c", _CHILD, SECRET], capture_output=True, text=True, cwd=ROOT, timeout=120, check=False
    )
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["data"] == 1024 * 1024 * 1024
    assert out["oom"] == "1000"
    assert out["limits"] == [999, 42.0, 512 * 1024 * 1024, 30]
    assert out["child"] == [str(512 * 1024), "30"]  # ulimit -d is in KiB
    assert out["alloc"] == "MemoryError"  # 2 GiB past a 1 GiB limit: an exception, not the OOM killer


def test_worker_memory_limit_below_what_it_needs_is_refused():
    from server.settings import Settings
    from server.worker import apply_worker_limits

    with pytest.raises(ValueError, match="AUTOCUT_WORKER_MAX_MEMORY_MB=512 is below the 1024 MiB"):
        apply_worker_limits(Settings(secret_key=SECRET, worker_max_memory_mb=512))
