"""Shared set-up for the server tests: a real redis-server, a small real library, real processes.

Nothing here is mocked: the Redis is a redis-server started on a free port with its data under
pytest's tmp dir, the library is generated footage ingested by `autocut.library.ingest`, and services
run as `python -m server ...` subprocesses. Each test gets its own Redis namespace, so tests
share one redis-server without seeing each other's jobs or queues.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from media_factory import make_audio, make_shots
from server.auth import create_api_key
from server.settings import Settings
from server.store import JobStore
from server.supervisor import RedisServer

__all__ = ["Service", "free_port", "make_settings", "redis_server", "seed_library", "wait_for"]

ROOT = Path(__file__).resolve().parents[1]
SECRET = "test-secret-" + "k" * 24
# Fast failure detection and queue latency for tests (defaults are tuned for production).
FAST = {
    "heartbeat_timeout_s": 2.0,
    "maintenance_chance_ppm": 1_000_000,
    "poll_interval_ms": 100,
    "retry_min_backoff_s": 0.2,
    "retry_max_backoff_s": 1.0,
    "reconcile_interval_s": 1.0,
    "reconcile_min_age_s": 1.0,
    "shutdown_grace_s": 5.0,
    "rate_limit_per_minute": 0,  # tests poll fast; tests/test_server_limits.py sets its own
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond: Callable[[], object], timeout_s: float, what: str, poll_s: float = 0.2) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    srv = RedisServer(data_dir=tmp_path_factory.mktemp("redis"), port=free_port(), password=secrets.token_hex(16))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def seed_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small library: two generated two-shot videos and one BGM track, really ingested."""
    from autocut.library.ingest import IngestConfig, ingest_paths

    root = tmp_path_factory.mktemp("seedlib")
    media = root / "library" / "media"
    media.mkdir(parents=True)
    vids = []
    for i, shots in enumerate([[("testsrc2", 4.0), ("red", 4.0)], [("mandelbrot", 4.0), ("blue", 4.0)]]):
        vids.append(make_shots(media / f"shoot{i}.mp4", shots, size="320x240"))
    music = make_audio(root / "music.wav", duration_s=11.0, freq=330)
    lib = root / "library"
    rep = ingest_paths(lib, vids, kind="footage")
    assert not rep.failed, rep.summary()
    rep = ingest_paths(lib, [music], kind="bgm", config=IngestConfig(bgm_excerpt_s=None))
    assert not rep.failed, rep.summary()
    return lib


def copy_library(seed: Path, dest: Path) -> Path:
    """A private copy (ingest jobs write to it); source paths in the catalog stay valid."""
    shutil.copytree(seed, dest, symlinks=True)
    return dest


def make_settings(tmp_path: Path, redis: RedisServer, library: Path, **overrides: object) -> Settings:
    values: dict = {
        "data_dir": tmp_path / "data",
        "library_dir": library,
        "redis_url": redis.url,
        "redis_namespace": "t" + secrets.token_hex(5),
        "secret_key": SECRET,
        **FAST,
    }
    values.update(overrides)
    return Settings(**values)


def settings_env(settings: Settings) -> dict[str, str]:
    """The same settings as AUTOCUT_* environment variables, for subprocesses."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOCUT_")}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"AUTOCUT_{name.upper()}"] = str(value)
    env["PYTHONPATH"] = str(ROOT)
    return env


class Service:
    """API and worker processes for one test's settings, killed (whole process groups) at the end."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.env = settings_env(settings)
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen] = []
        self.api: subprocess.Popen | None = None
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.store = JobStore.from_url(settings.broker_url, settings.redis_namespace)

    def _spawn(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}-{len(self.procs)}.log", "wb")  # noqa: SIM115 - lives with the process
        p = subprocess.Popen(
            [sys.executable, "-m", "server", *args],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(p)
        return p

    def start_api(self) -> None:
        self.api = self._spawn("api", "api", "--port", str(self.port))

        def ready() -> bool:
            try:
                return httpx.get(f"{self.base_url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 60, "the API to answer /readyz", poll_s=0.2)

    def kill_api(self) -> None:
        assert self.api is not None
        self.api.kill()
        self.api.wait()

    def start_workers(self, n: int, *, supervised: bool = True) -> subprocess.Popen:
        return self._spawn("worker", "worker", "--processes", str(n if supervised else 0))

    def wait_workers(self, n: int, timeout_s: float = 60) -> None:
        timeout = self.settings.heartbeat_timeout_s
        wait_for(lambda: self.store.live_workers(timeout) >= n, timeout_s, f"{n} live workers")

    def client(self, key: str, **kw: object) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers={"X-API-Key": key}, timeout=30, **kw)

    def new_key(self, name: str = "tester", admin: bool = False) -> str:
        return create_api_key(self.store, SECRET, name=name, admin=admin)[1]

    def logs(self) -> str:
        out = []
        for f in sorted(self.log_dir.glob("*.log")):
            out.append(f"--- {f.name}\n{f.read_text(errors='replace')[-4000:]}")
        return "\n".join(out)

    def stop(self) -> None:
        """SIGTERM (graceful), then SIGKILL whatever is left, including supervised children that run
        in their own sessions (a process-group kill of the supervisor would not reach them)."""
        family = []
        for p in self.procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                family += psutil.Process(p.pid).children(recursive=True)
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + 20
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
        _gone, alive = psutil.wait_procs(family, timeout=max(0.1, deadline - time.monotonic()))
        for p in [*alive, *(psutil.Process(q.pid) for q in self.procs if q.poll() is None)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=5)
        self.store.r.close()


@contextlib.contextmanager
def running_service(
    tmp: Path,
    redis: RedisServer,
    seed_library: Path,
    *,
    workers: int,
    supervised: bool = True,
    wait_workers_s: float = 60,
) -> Iterator[Service]:
    """API + `workers` worker processes (a supervised pool, or one unsupervised worker process) on a
    private copy of the seed library under `tmp`; stopped on exit."""
    lib = copy_library(seed_library, tmp / "library")
    settings = make_settings(tmp, redis, lib)
    logs = tmp / "logs"
    logs.mkdir()
    svc = Service(settings, logs)
    try:
        svc.start_workers(workers, supervised=supervised)
        svc.start_api()
        svc.wait_workers(workers, timeout_s=wait_workers_s)
        yield svc
    finally:
        svc.stop()


def wait_job(
    client: httpx.Client, job_id: str, timeout_s: float = 120, states: tuple[str, ...] = ("done", "failed", "cancelled")
) -> dict:
    def finished() -> dict | None:
        body = client.get(f"/v1/jobs/{job_id}").json()
        return body if body["state"] in states else None

    return wait_for(finished, timeout_s, f"job {job_id} to reach {states}", poll_s=0.3)  # type: ignore[return-value]


def tiny_edit(
    photo_ids: list[int],
    *,
    script: list[str] | None = None,
    resolution: int = 144,
    max_duration_s: float = 2.0,
    voice: str = "none",
    bgm: str = "none",
    **options: object,
) -> dict:
    """A request that renders fast (small frame, no voice, no music): for tests about delivery."""
    opts = {
        "resolution": resolution,
        "max_duration_s": max_duration_s,
        "voice": {"engine": voice},
        "bgm": {"policy": bgm},
        "subtitles": False,
        **options,
    }
    return {
        "product": {"name": "Juicer Cup", "brand": "FreshCo", "selling_points": ["fast"]},
        "clips": [{"photo_id": p} for p in photo_ids],
        "script": script or ["Fresh juice now."],
        "options": opts,
    }
