"""Failing infrastructure, black-box: a real API process against a real redis-server that stalls.

A stopped (SIGSTOP) Redis accepts connections but never answers. Every Redis command of the service is
bounded by `redis_timeout_s` (retried once), so a request answers 503 + Retry-After instead of hanging,
and the service answers normally again once Redis resumes.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.supervisor import RedisServer
from test_server_harness import Service, copy_library, free_port, make_settings, tiny_edit

pytest_plugins = ["test_server_harness"]

TIMEOUT_S = 1.0  # the service's per-command Redis timeout in this test


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test alone (stopping the shared one would stall every other test)."""
    srv = RedisServer(data_dir=tmp_path / "redis", port=free_port(), password=secrets.token_hex(16))
    srv.start()
    try:
        yield srv
    finally:
        assert srv.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(srv.proc.pid, signal.SIGCONT)
        srv.stop()


def test_a_stalled_redis_answers_503_with_retry_after_then_recovers(
    tmp_path: Path, own_redis: RedisServer, seed_library: Path
) -> None:
    settings = make_settings(
        tmp_path, own_redis, copy_library(seed_library, tmp_path / "library"), redis_timeout_s=TIMEOUT_S
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    svc = Service(settings, logs)
    assert own_redis.proc is not None
    try:
        svc.start_api()
        key = svc.new_key()
        with svc.client(key) as c:
            ok = c.post("/v1/edits", json=tiny_edit([1]))
            assert ok.status_code == 202, ok.text

            os.kill(own_redis.proc.pid, signal.SIGSTOP)
            t0 = time.monotonic()
            stalled = c.post("/v1/edits", json=tiny_edit([1]))
            took_s = time.monotonic() - t0
            assert stalled.status_code == 503, stalled.text
            assert stalled.json()["error"]["code"] == "unavailable"
            assert int(stalled.headers["Retry-After"]) > 0
            # One timeout and its one retry (plus a connection health check), far below the 30 s it hung before.
            assert took_s < 6 * TIMEOUT_S + 2, f"503 took {took_s:.1f} s"
            assert c.get(f"/v1/jobs/{ok.json()['job_id']}").status_code == 503

            os.kill(own_redis.proc.pid, signal.SIGCONT)
            again = c.post("/v1/edits", json=tiny_edit([1]))
            assert again.status_code == 202, again.text
            # Nothing accepted before the stall was lost.
            assert c.get(f"/v1/jobs/{ok.json()['job_id']}").json()["state"] == "queued"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(own_redis.proc.pid, signal.SIGCONT)
        svc.stop()
