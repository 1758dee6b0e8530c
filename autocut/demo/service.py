"""The service `make demo` talks to: `python -m server all` (local redis-server, the API, workers) as a
child process in its own process group, on free ports, with a fresh secret and admin key."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from typing import IO

from autocut.demo.config import DemoConfig
from autocut.errors import ConfigError

__all__ = ["DemoServer", "free_port"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DemoServer:
    """`python -m server all` in its own process group, on free ports, with a fresh secret and admin key."""

    def __init__(self, cfg: DemoConfig) -> None:
        self.cfg = cfg
        self.data_dir = (cfg.demo_dir / "server").resolve()
        self.log_path = cfg.demo_dir / "server.log"
        self.port = free_port()
        self.redis_port = free_port()
        self.api_key = "ak_" + secrets.token_urlsafe(32)
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        lib = str(self.cfg.library.resolve())
        env.update(
            {
                "AUTOCUT_SECRET_KEY": secrets.token_urlsafe(32),
                "AUTOCUT_BOOTSTRAP_ADMIN_KEY": self.api_key,
                "AUTOCUT_LIBRARY_DIR": lib,
                "AUTOCUT_LIBRARY": lib,
                "AUTOCUT_DATA_DIR": str(self.data_dir),
                "AUTOCUT_API_PORT": str(self.port),
                "AUTOCUT_REDIS_PORT": str(self.redis_port),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.pop("AUTOCUT_REDIS_URL", None)  # the demo runs its own local redis-server
        if self.cfg.planner:
            env["AUTOCUT_DEFAULT_PLANNER"] = self.cfg.planner
        return env

    def start(self, timeout_s: float = 300.0) -> None:
        import httpx

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        # A new session: Ctrl-C in the terminal reaches the demo only, which then stops the service
        # in order (SIGTERM to the supervisor, which stops workers, API and redis-server).
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server", "all"],
            env=self.env(),
            cwd=self.data_dir,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        headers = {"X-API-Key": self.api_key}
        shown = ""
        with httpx.Client(base_url=self.base_url, timeout=5.0) as c:
            while True:
                if self.proc.poll() is not None:
                    raise ConfigError(
                        f"the service exited with code {self.proc.returncode} during start-up; see {self.log_path}"
                    )
                if time.monotonic() > deadline:
                    raise ConfigError(f"the service did not become ready within {timeout_s:.0f} s; see {self.log_path}")
                try:
                    ready = c.get("/readyz", headers=headers).json()  # load figures need the key
                    keyed = c.get("/v1/jobs", params={"limit": 1}, headers=headers).status_code == 200
                except (httpx.HTTPError, ValueError):
                    ready, keyed = {}, False
                workers = int(ready.get("live_workers") or 0)
                state = f"api {'up' if ready else 'starting'}, key {'ok' if keyed else 'pending'}, {workers} worker(s)"
                if state != shown:
                    print(f"  {state}", flush=True)
                    shown = state
                if ready.get("ready") and keyed and workers >= 1:
                    return
                time.sleep(0.5)

    def stop(self, timeout_s: float = 90.0) -> str:
        if self.proc is None:
            return "not started"
        code = self.proc.poll()
        if code is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=timeout_s)
            except (subprocess.TimeoutExpired, KeyboardInterrupt):  # too slow, or a second Ctrl-C
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                code = None
        if self._log is not None:
            self._log.close()
        return f"stopped (exit code {code})" if code is not None else "killed (it did not stop in time)"
