"""Process supervision for the single-machine default: a persistent local redis-server, the API
and the workers, each restarted when it dies.

`RedisServer` writes a private config (mode 0600, so the password is not on a command line)
with append-only persistence, `appendfsync` from `AUTOCUT_REDIS_APPENDFSYNC` (docs/deploy.md,
"Durability"). With "everysec" (the default) Redis fsyncs the AOF once a second and may even
postpone its write(2) by up to two seconds while an fsync is slow, answering meanwhile: a crash
of the API or a worker loses nothing, but a crash of redis-server or of the OS can lose the last
one to two seconds of acknowledged writes (the reconciler re-enqueues jobs whose queue message
was among them; other records written then are lost). With "always" every write is fsynced
before Redis answers, so nothing acknowledged is lost, at the cost of one fsync per write
(batched per event-loop turn). Its memory is bounded (`maxmemory`, `AUTOCUT_REDIS_MAXMEMORY_MB`)
with policy `noeviction`: at the limit Redis refuses writes (the API answers 503 + Retry-After) and
never evicts a job; the retention sweep (`server.retention`) keeps the data below it.

`Supervisor` starts each child in its own session. When a child dies, its whole process group
is killed before the restart: a worker killed mid-render leaves an orphaned ffmpeg in its group,
which would otherwise keep burning CPU for a job that is being redelivered elsewhere.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from server.settings import Settings

__all__ = ["ChildSpec", "RedisServer", "Supervisor", "redis_for_settings"]

log = logging.getLogger(__name__)


def _die_with_parent() -> None:
    """In a child before exec: get SIGTERM when the parent dies (Linux `PR_SET_PDEATHSIG`), so a
    SIGKILLed supervisor does not leave workers or Redis running on their own."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


@dataclass
class RedisServer:
    """A redis-server owned by this service: config, start, wait-ready, stop."""

    data_dir: Path
    port: int
    password: str
    binary: str = "redis-server"
    bind: str = "127.0.0.1"
    # "everysec" or "always" (see the module docstring); "no" is refused: it leaves fsyncs to the OS.
    appendfsync: str = "everysec"
    # `maxmemory` in MiB; 0 = no limit.
    maxmemory_mb: int = 0
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@{self.bind}:{self.port}/0"

    def config_text(self) -> str:
        """The configuration, built as data (tests read it)."""
        if self.appendfsync not in ("everysec", "always"):
            raise ValueError(f"appendfsync must be 'everysec' or 'always', not {self.appendfsync!r}")
        d = self.data_dir.resolve()
        return "\n".join(
            [
                f"port {self.port}",
                f"bind {self.bind}",
                "protected-mode yes",
                f"requirepass {self.password}",
                f"dir {d}",
                "appendonly yes",
                f"appendfsync {self.appendfsync}",
                "appendfilename appendonly.aof",
                # AOF is the persistence; no RDB snapshots on a timer (they fork the whole dataset).
                'save ""',
                f"maxmemory {self.maxmemory_mb}mb",
                "maxmemory-policy noeviction",
                "daemonize no",
                f"logfile {d / 'redis.log'}",
                "",
            ]
        )

    def write_config(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        path = self.data_dir / "redis.conf"
        tmp = path.with_name("redis.conf.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.config_text())
        os.replace(tmp, path)
        return path

    def command(self) -> list[str]:
        return [self.binary, str(self.data_dir.resolve() / "redis.conf")]

    def ping(self) -> bool:
        try:
            # No retries: this is a probe, called in a loop while the server starts.
            client = redis.Redis(
                host=self.bind,
                port=self.port,
                password=self.password,
                socket_timeout=1,
                socket_connect_timeout=1,
                retry=Retry(NoBackoff(), 0),
            )
            try:
                return bool(client.ping())
            finally:
                client.close()
        except redis.RedisError:
            return False

    def start(self, timeout_s: float = 15.0) -> None:
        """Start and wait until it answers PING with our password (AOF loaded)."""
        if self.ping():
            log.info("redis on port %d already answers; using it", self.port)
            return
        self.write_config()
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                log_tail = ""
                with contextlib.suppress(OSError):
                    log_tail = (self.data_dir / "redis.log").read_text(errors="replace")[-800:]
                raise RuntimeError(f"redis-server exited with code {self.proc.returncode}: {err}{log_tail}")
            if self.ping():
                log.info("redis-server ready on %s:%d (data in %s)", self.bind, self.port, self.data_dir)
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not become ready on port {self.port} within {timeout_s:.0f} s")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM: Redis flushes the AOF and exits."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL (tests: a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def redis_for_settings(settings: Settings) -> RedisServer:
    return RedisServer(
        data_dir=settings.data_dir / "redis",
        port=settings.redis_port,
        password=settings.local_redis_password,
        binary=settings.redis_server_bin,
        maxmemory_mb=settings.redis_maxmemory_mb,
        appendfsync=settings.redis_appendfsync,
    )


@dataclass
class ChildSpec:
    """A supervised child process."""

    name: str
    argv: list[str]
    env: dict[str, str] | None = None
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0
    next_start: float = 0.0


class Supervisor:
    """Keep children running: restart with backoff, kill a dead child's process group first."""

    def __init__(
        self, children: list[ChildSpec], *, on_tick: Callable[[], None] | None = None, stop_timeout_s: float = 60.0
    ) -> None:
        self.children = children
        self.on_tick = on_tick
        self.stop_timeout_s = stop_timeout_s
        self._stopping = False

    def _start(self, c: ChildSpec) -> None:
        c.proc = subprocess.Popen(
            c.argv, env=c.env, stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent
        )
        c.started_at = time.monotonic()
        log.info("started %s (pid %d)", c.name, c.proc.pid)

    @staticmethod
    def _kill_group(pgid: int) -> None:
        # The child led its own session, so its pgid is its pid; anything left in the group
        # (an ffmpeg it started) is an orphan of a dead process.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)

    def poll_once(self) -> None:
        now = time.monotonic()
        for c in self.children:
            if c.proc is None:
                if now >= c.next_start:
                    self._start(c)
                continue
            rc = c.proc.poll()
            if rc is None:
                continue
            self._kill_group(c.proc.pid)
            uptime = now - c.started_at
            c.restarts = 0 if uptime > 60 else c.restarts + 1
            delay = min(30.0, 0.5 * 2 ** min(c.restarts, 6)) if c.restarts else 0.2
            log.warning(
                "%s (pid %d) exited with %s after %.0f s; restarting in %.1f s", c.name, c.proc.pid, rc, uptime, delay
            )
            c.proc = None
            c.next_start = now + delay

    def stop(self) -> None:
        """SIGTERM every child (workers finish or hand back their job), then SIGKILL stragglers."""
        self._stopping = True
        for c in self.children:
            if c.proc is not None and c.proc.poll() is None:
                c.proc.terminate()
        deadline = time.monotonic() + self.stop_timeout_s
        for c in self.children:
            if c.proc is None:
                continue
            try:
                c.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                c.proc.kill()
                c.proc.wait()
            self._kill_group(c.proc.pid)

    def run(self, poll_s: float = 0.5) -> int:
        """Supervise until SIGTERM/SIGINT."""
        stop = False

        def on_signal(signum: int, _frame: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        while not stop:
            self.poll_once()
            if self.on_tick is not None:
                self.on_tick()
            time.sleep(poll_s)
        self.stop()
        return 0


def child_argv(*args: str) -> list[str]:
    """`python -m server <args>` with this interpreter."""
    return [sys.executable, "-m", "server", *args]
