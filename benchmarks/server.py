"""Service overhead and throughput: the API + queue + workers vs calling the library directly.

1. Overhead: one edit at a time (nothing queued), submit-to-done over HTTP (polled every 20 ms)
   minus the render time the worker measured; also minus render *and* planning (the job's own
   work), the service's share proper. Baseline in the same run: the same request planned and
   rendered by a direct library call in this process. Target: overhead < 5 % of render.
2. Throughput: a batch of small edits through the service with 2 workers, in jobs/minute, vs
   1 worker and vs sequential direct library calls (the scaling a second worker buys here).

Everything is real: a redis-server on a free port, `python -m server api|worker` processes,
generated footage ingested into a scratch library. Run: .venv/bin/python -m benchmarks.server [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.common import print_table

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def _library(root: Path) -> Path:
    """Two generated two-shot 720p videos and one music bed, ingested."""
    from autocut.library.ingest import IngestConfig, ingest_paths

    media = root / "media"
    media.mkdir(parents=True)
    vids = []
    for i, (a, b) in enumerate([("testsrc2", "mandelbrot"), ("smptebars", "rgbtestsrc")]):
        p = media / f"v{i}.mp4"
        _ffmpeg(
            "-f",
            "lavfi",
            "-t",
            "6",
            "-i",
            f"{a}=size=1280x720:rate=30",
            "-f",
            "lavfi",
            "-t",
            "6",
            "-i",
            f"{b}=size=1280x720:rate=30",
            "-filter_complex",
            "[0:v][1:v]concat=n=2:v=1:a=0,format=yuv420p[o]",
            "-map",
            "[o]",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            str(p),
        )
        vids.append(p)
    music = root / "music.wav"
    _ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=220:duration=20",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=330:duration=20",
        "-filter_complex",
        "amix=inputs=2",
        str(music),
    )
    lib = root / "library"
    assert not ingest_paths(lib, vids).failed
    assert not ingest_paths(lib, [music], kind="bgm", config=IngestConfig(bgm_excerpt_s=None)).failed
    return lib


def _request(resolution: int, max_s: float, sentence: str, voice: str = "espeak", bgm: str = "auto") -> dict:
    return {
        "product": {"name": "Juicer Cup", "brand": "FreshCo", "selling_points": ["juice in 30 seconds"]},
        "clips": [{"photo_id": 1}, {"photo_id": 2}],
        "script": [sentence, "Fresh juice, anywhere you go."],
        "options": {
            "resolution": resolution,
            "max_duration_s": max_s,
            "voice": {"engine": voice},
            "bgm": {"policy": bgm},
        },
    }


class _Service:
    def __init__(self, tmp: Path, lib: Path, redis_url: str, workers: int) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        ns = "b" + secrets.token_hex(4)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOCUT_")}
        self.env.update(
            {
                "AUTOCUT_DATA_DIR": str(tmp / f"data-{ns}"),
                "AUTOCUT_LIBRARY_DIR": str(lib),
                "AUTOCUT_REDIS_URL": redis_url,
                "AUTOCUT_REDIS_NAMESPACE": ns,
                "AUTOCUT_SECRET_KEY": secrets.token_urlsafe(32),
                "AUTOCUT_LOG_LEVEL": "WARNING",
                "AUTOCUT_POLL_INTERVAL_MS": "100",
                "PYTHONPATH": str(ROOT),
            }
        )
        self.procs = [self._spawn("worker", "--processes", str(workers)), self._spawn("api", "--port", str(self.port))]
        from server.auth import create_api_key
        from server.store import JobStore

        self.store = JobStore.from_url(redis_url, ns)
        self.key = create_api_key(self.store, self.env["AUTOCUT_SECRET_KEY"], name="bench")[1]
        self.client = httpx.Client(base_url=self.url, headers={"X-API-Key": self.key}, timeout=60)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                r = self.client.get("/readyz")
                if r.status_code == 200 and r.json()["live_workers"] >= workers:
                    return
            time.sleep(0.2)
        raise RuntimeError("service did not become ready")

    def _spawn(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "server", *args],
            env=self.env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def wait(self, job_id: str, poll_s: float) -> dict:
        while True:
            j = self.client.get(f"/v1/jobs/{job_id}").json()
            if j["state"] in ("done", "failed", "cancelled"):
                if j["state"] != "done":
                    raise RuntimeError(f"job {job_id} {j['state']}: {j['error']}")
                return j
            time.sleep(poll_s)

    def close(self) -> None:
        import psutil

        self.client.close()
        self.store.r.close()
        # Workers run in their own sessions under the supervisor: collect the whole family first.
        family = [c for p in self.procs for c in psutil.Process(p.pid).children(recursive=True)]
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=40)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for c in psutil.wait_procs(family, timeout=10)[1]:
            c.kill()


def _direct(lib: Path, body: dict, out: Path) -> tuple[float, float]:
    """(plan_s, render_s) of the same request through the library, in this process."""
    from autocut.planning import plan_edit
    from autocut.render import render
    from autocut.types import OutputSpec, PlanRequest, PoolItem, ProductInfo, VoiceSpec

    o = body["options"]
    req = PlanRequest(
        product=ProductInfo(**body["product"]),
        pool=[PoolItem(**c) for c in body["clips"]],
        script=body["script"],
        max_duration_s=o["max_duration_s"],
        output=OutputSpec.for_aspect("9:16", short_side=o["resolution"]),
        voice=VoiceSpec(engine=o["voice"]["engine"]),
    )
    t0 = time.perf_counter()
    plan = plan_edit(lib, req, "heuristic")[0]
    if o["bgm"]["policy"] == "none":
        plan.bgm = None
    t1 = time.perf_counter()
    render(plan, out, library_root=lib)
    return t1 - t0, time.perf_counter() - t1


def main(quick: bool = False) -> dict:
    from server.supervisor import RedisServer

    n_overhead = 2 if quick else 4
    n_batch = 8 if quick else 24
    with tempfile.TemporaryDirectory(prefix="bench_server_") as d:
        tmp = Path(d)
        lib = _library(tmp / "lib")
        redis = RedisServer(data_dir=tmp / "redis", port=_free_port(), password=secrets.token_hex(16))
        redis.start()
        try:
            # ---- 1. overhead, one job at a time (realistic render: 720x1280, voice, music, subtitles)
            big = [_request(720, 10.0, f"No time for breakfast, day {i}?") for i in range(n_overhead)]
            _direct(lib, big[0], tmp / "warmup.mp4")  # imports, TTS and font caches: not render time
            svc = _Service(tmp, lib, redis.url, workers=2)
            walls, renders, plans, direct = [], [], [], []
            try:
                # Interleaved, so the direct baseline and the service see the same machine load.
                for i, body in enumerate(big):
                    direct.append(_direct(lib, body, tmp / f"direct{i}.mp4"))
                    t0 = time.perf_counter()
                    jid = svc.client.post("/v1/edits", json=body).json()["job_id"]
                    job = svc.wait(jid, poll_s=0.02)
                    walls.append(time.perf_counter() - t0)
                    renders.append(job["timings"]["render_s"])
                    plans.append(job["timings"]["plan_s"])
            finally:
                svc.close()
            over_render = [w - r for w, r in zip(walls, renders)]
            over_work = [w - r - p for w, r, p in zip(walls, renders, plans)]
            render_med = statistics.median(renders)
            direct_total = statistics.median(p + r for p, r in direct)

            # ---- 2. throughput with 2 workers vs 1 worker vs direct sequential calls (small renders)
            small = [_request(240, 3.0, f"Deal number {i}.", voice="none", bgm="none") for i in range(n_batch)]
            rates = {}
            for workers in (2, 1):
                svc = _Service(tmp, lib, redis.url, workers=workers)
                try:
                    t0 = time.perf_counter()
                    ids = [svc.client.post("/v1/edits", json=b).json()["job_id"] for b in small]
                    for jid in ids:
                        svc.wait(jid, poll_s=0.2)
                    rates[workers] = len(ids) / (time.perf_counter() - t0) * 60
                finally:
                    svc.close()
            n_direct = max(3, n_batch // 4)
            t0 = time.perf_counter()
            for i, b in enumerate(small[:n_direct]):
                _direct(lib, b, tmp / f"d{i}.mp4")
            direct_rate = n_direct / (time.perf_counter() - t0) * 60
        finally:
            redis.stop()

    figures = {
        "overhead_jobs": n_overhead,
        "submit_to_done_s_median": statistics.median(walls),
        "render_s_median": render_med,
        "plan_s_median": statistics.median(plans),
        "overhead_vs_render_pct": 100 * statistics.median(over_render) / render_med,
        "service_overhead_s_median": statistics.median(over_work),
        "service_overhead_vs_render_pct": 100 * statistics.median(over_work) / render_med,
        "direct_plan_render_s_median": direct_total,
        "service_vs_direct_ratio": statistics.median(walls) / direct_total,
        "batch_jobs": n_batch,
        "jobs_per_min_2_workers": rates[2],
        "jobs_per_min_1_worker": rates[1],
        "jobs_per_min_direct_sequential": direct_rate,
        "scaling_2_vs_1_workers": rates[2] / rates[1],
        "cpu_cores": os.cpu_count(),
        "load_avg_1min": os.getloadavg()[0],
    }
    print_table(
        "server: API overhead (720x1280 edits with voice, BGM, subtitles; one at a time)",
        [
            ("submit-to-done (median)", f"{figures['submit_to_done_s_median']:.2f} s"),
            ("render time in the worker", f"{render_med:.2f} s   (planning {figures['plan_s_median']:.2f} s)"),
            (
                "submit-to-done minus render",
                f"{statistics.median(over_render):.3f} s = {figures['overhead_vs_render_pct']:.1f} % of render",
            ),
            (
                "minus render and planning",
                f"{figures['service_overhead_s_median']:.3f} s = "
                f"{figures['service_overhead_vs_render_pct']:.1f} % of render   target < 5 %",
            ),
            (
                "direct library call (plan+render)",
                f"{direct_total:.2f} s   service/direct = {figures['service_vs_direct_ratio']:.3f}",
            ),
        ],
    )
    print_table(
        f"server: throughput ({n_batch} small edits, 240x426, 3 s)",
        [
            ("2 workers", f"{rates[2]:.1f} jobs/min"),
            ("1 worker", f"{rates[1]:.1f} jobs/min   (2 workers = {figures['scaling_2_vs_1_workers']:.2f}x)"),
            ("direct, sequential, in-process", f"{direct_rate:.1f} jobs/min"),
            ("machine", f"{os.cpu_count()} cores, load average {figures['load_avg_1min']:.1f}"),
        ],
    )
    return figures


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    main(quick=ap.parse_args().quick)
