"""Hostile clients, black-box: a real API process (and its real redis-server) under request floods,
multipart bombs and slow or parallel uploads. Each answers fast with a clear 4xx and loses nothing;
no temp file stays behind.
"""

from __future__ import annotations

import re
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from test_server_harness import Service, copy_library, make_settings

pytest_plugins = ["test_server_harness"]

BOUNDARY = "autocut-test-boundary"


@pytest.fixture
def api(tmp_path: Path, redis_server, seed_library) -> Iterator[Service]:
    settings = make_settings(
        tmp_path,
        redis_server,
        copy_library(seed_library, tmp_path / "library"),
        rate_limit_per_minute=40,
        upload_timeout_s=2.0,
        max_parallel_uploads_per_key=3,
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    svc = Service(settings, logs)
    try:
        svc.start_api()
        yield svc
    finally:
        svc.stop()


def _tmp_files(svc: Service) -> list[Path]:
    d = svc.settings.data_dir / "uploads" / "tmp"
    return sorted(d.glob("upload-*")) if d.exists() else []


def _headers(key: str) -> dict[str, str]:
    return {"X-API-Key": key, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def test_request_flood_gets_429_with_retry_after_per_key(api: Service) -> None:
    flood, calm = api.new_key("flood"), api.new_key("calm")
    codes = []
    while time.time() % 60 > 50:  # the windows are calendar minutes: do not straddle one
        time.sleep(0.5)
    with api.client(flood) as c:
        for _ in range(50):
            r = c.get("/v1/jobs", params={"limit": 1})
            codes.append(r.status_code)
            if r.status_code == 429:
                assert 1 <= int(r.headers["retry-after"]) <= 60
                assert r.json()["error"]["code"] == "rate_limited"
    assert codes[:40] == [200] * 40 and codes[40:] == [429] * 10
    with api.client(calm) as c:  # another key is not slowed down by the flood
        assert c.get("/v1/jobs", params={"limit": 1}).status_code == 200


def test_a_million_tiny_multipart_fields_are_cut_off_early(api: Service) -> None:
    key = api.new_key("bomb")
    part = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="f"\r\n\r\nx\r\n'.encode()

    def body() -> Iterator[bytes]:
        for _ in range(1_000_000 // 1000):
            yield part * 1000  # 1,000,000 fields, about 60 MB, in 1,000-field chunks

    t0 = time.monotonic()
    try:
        r = httpx.post(f"{api.base_url}/v1/clips", content=body(), headers=_headers(key), timeout=60)
        assert r.status_code == 400 and r.json()["error"]["code"] == "too_many_parts", r.text
    except httpx.TransportError:
        pass  # the server answered and closed while the client was still sending: also a refusal
    assert time.monotonic() - t0 < 30
    # A header bomb (one part whose headers never end) is refused too.
    huge = f"--{BOUNDARY}\r\nX-Junk: ".encode() + b"a" * 100_000 + b"\r\n\r\nx\r\n"
    r = httpx.post(f"{api.base_url}/v1/clips", content=huge, headers=_headers(key), timeout=30)
    # (python-multipart's own header limit, or ours, whichever trips first)
    assert r.status_code == 400 and "header" in r.json()["error"]["message"].lower(), r.text
    assert _tmp_files(api) == []
    assert httpx.get(f"{api.base_url}/healthz", timeout=5).status_code == 200


def _slow_upload(api: Service, key: str, seconds: float, out: list, i: int) -> None:
    """Trickle a multipart upload over a raw socket for `seconds` (64 bytes every 0.2 s), watching for the
    server's answer while still sending: out[i] = (status, error code, seconds until the answer)."""
    host, port = "127.0.0.1", int(api.base_url.rsplit(":", 1)[1])
    sock = socket.create_connection((host, port), timeout=10)
    t0 = time.monotonic()
    try:
        head = (
            f"POST /v1/clips HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {key}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        part = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n'
            "Content-Type: video/mp4\r\n\r\n"
        ).encode()
        sock.sendall(head.encode() + b"%x\r\n" % len(part) + part + b"\r\n")
        end = t0 + seconds
        while time.monotonic() < end:
            ready, _, _ = select.select([sock], [], [], 0.2)
            if ready:
                break
            try:
                sock.sendall(b"40\r\n" + b"\0" * 64 + b"\r\n")
            except OSError:
                break
        ready, _, _ = select.select([sock], [], [], max(0.1, end - time.monotonic()))
        took = time.monotonic() - t0
        data = b""
        while ready:
            chunk = sock.recv(65536)
            data += chunk
            if not chunk or re.search(rb'"code":"[a-z_]+"', data):
                break
            ready, _, _ = select.select([sock], [], [], 1.0)
        status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0
        body = data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else b""
        m = re.search(rb'"code":"([a-z_]+)"', body)
        out[i] = (status, m.group(1).decode() if m else "", took)
    finally:
        sock.close()


def test_slow_parallel_uploads_are_bounded_in_count_and_time(api: Service) -> None:
    key, other = api.new_key("slow"), api.new_key("other")
    n = 20
    out: list = [None] * n
    threads = [threading.Thread(target=_slow_upload, args=(api, key, 6.0, out, i)) for i in range(n)]
    for t in threads:
        t.start()
        time.sleep(0.02)
    for t in threads:
        t.join(60)
    refused = [o for o in out if o[0] == 429]
    timed_out = [o for o in out if o[0] != 429]
    # Three parallel uploads per key; the rest answered 429 at once, the three were cut off at 2 s (408).
    assert len(refused) == n - 3 and all(o[1] == "too_many_uploads" and o[2] < 2.0 for o in refused), out
    assert len(timed_out) == 3, out
    assert all(o[0] == 408 and o[1] == "upload_timeout" and 1.9 < o[2] < 4.0 for o in timed_out), out
    # Nothing was kept, the slots are free again, and another key was never affected.
    deadline = time.monotonic() + 5
    while _tmp_files(api) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _tmp_files(api) == []
    for k in (key, other):
        r = httpx.post(
            f"{api.base_url}/v1/clips", files={"file": ("x.mp4", b"not a video", "video/mp4")}, headers={"X-API-Key": k}
        )
        assert r.status_code == 415, r.text  # reached the content check: a slot was free
