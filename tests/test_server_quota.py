"""The per-key storage quota, black-box: a real API process and a real worker process on a real redis-server,
real ffmpeg (`max_stored_bytes_per_key`; docs/deploy.md, "Storage quota").

- uploads fill the quota: the next one answers 507 `storage_quota` naming the quota, the usage and its size
  (413 when larger than the whole quota), the same bytes again count once, deleting frees the room;
- a chunked upload is cut off while it streams, and of two parallel uploads that each fit but not together
  only one is accepted;
- a job's result files count when it is done; a job accepted under the quota publishes its results even when
  they take the key over it, and then new jobs and uploads are refused until the key deletes something;
- the retention sweep frees the bytes of what it deletes.
"""

from __future__ import annotations

import io
import json
import re
import select
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from test_server_harness import Service, copy_library, make_settings, tiny_edit, wait_for, wait_job

pytest_plugins = ["test_server_harness"]

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

QUOTA = 4 * 1024 * 1024
MB = 1_000_000
BOUNDARY = "autocut-quota-boundary"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, redis_server, seed_library: Path) -> Iterator[Service]:
    """API + one worker process, a 4 MiB quota per key, the retention sweep every second."""
    tmp = tmp_path_factory.mktemp("quota")
    settings = make_settings(
        tmp,
        redis_server,
        copy_library(seed_library, tmp / "library"),
        max_stored_bytes_per_key=QUOTA,
        retention_sweep_interval_s=1.0,
    )
    logs = tmp / "logs"
    logs.mkdir()
    svc = Service(settings, logs)
    svc.base_env = dict(svc.env)  # type: ignore[attr-defined]
    try:
        svc.start_workers(1, supervised=False)
        svc.start_api()
        svc.wait_workers(1)
        yield svc
    finally:
        svc.stop()


def _png(size: int, seed: int) -> bytes:
    """A valid PNG of exactly `size` bytes: random pixels (incompressible) padded with a text chunk."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    side = max(16, int((max(0, size - 4096) / 3) ** 0.5))
    img = Image.fromarray(np.random.default_rng(seed).integers(0, 255, (side, side, 3), dtype=np.uint8))

    def encode(pad: int) -> bytes:
        info = PngInfo()
        info.add_text("pad", "x" * pad)
        buf = io.BytesIO()
        img.save(buf, format="PNG", pnginfo=info, compress_level=0)
        return buf.getvalue()

    data = encode(1)
    data = encode(1 + size - len(data))
    assert len(data) == size, (len(data), size)
    return data


def _usage(c: httpx.Client) -> dict:
    r = c.get("/v1/usage")
    assert r.status_code == 200, r.text
    return r.json()


def _upload(c: httpx.Client, data: bytes, name: str = "p.png") -> httpx.Response:
    return c.post("/v1/images", files={"file": (name, data, "image/png")})


def _refused(r: httpx.Response, status: int, *figures: int, upload: int = 0) -> None:
    """`r` is a `storage_quota` refusal naming the quota and `figures` (the key's usage), and for an upload of
    `upload` bytes its size (the request's, as far as it is known when it is refused: at least the file's)."""
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == "storage_quota", err
    for n in (QUOTA, *figures):
        assert str(n) in err["message"], (n, err["message"])
    if upload:
        m = re.search(r"the upload[^0-9]*(\d+) bytes", err["message"])
        assert m and int(m.group(1)) >= upload, err["message"]


def _tmp_files(service: Service) -> list[Path]:
    d = service.settings.data_dir / "uploads" / "tmp"
    return sorted(d.glob("upload-*")) if d.exists() else []


def _restart_api(service: Service, **env: object) -> None:
    service.env = dict(service.base_env)  # type: ignore[attr-defined]
    for name, value in env.items():
        service.env[f"AUTOCUT_{name.upper()}"] = str(value)
    service.kill_api()
    service.start_api()


def _paced_upload(service: Service, key: str, data: bytes, out: list, i: int, pace_s: float = 0.004) -> None:
    """POST `data` as an image in a chunked body (no Content-Length), 32 KiB at a time, over a raw socket,
    watching for the answer while sending: out[i] = (status, error code or "", bytes of `data` sent)."""
    host, port = "127.0.0.1", int(service.base_url.rsplit(":", 1)[1])
    part = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="p{i}.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    head = (
        f"POST /v1/images HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {key}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()

    def chunk(b: bytes) -> bytes:
        return b"%x\r\n" % len(b) + b + b"\r\n"

    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(head + chunk(part))
        sent = 0
        answered = False
        while sent < len(data):
            if select.select([sock], [], [], pace_s)[0]:
                answered = True
                break
            piece = data[sent : sent + 32 * 1024]
            try:
                sock.sendall(chunk(piece))
            except OSError:
                answered = True
                break
            sent += len(piece)
        if not answered:
            sock.sendall(chunk(f"\r\n--{BOUNDARY}--\r\n".encode()) + b"0\r\n\r\n")
        raw = b""
        while b"\r\n\r\n" not in raw or len(raw.split(b"\r\n\r\n", 1)[1]) < _content_length(raw):
            got = sock.recv(65536)
            if not got:
                break
            raw += got
    status = int(raw.split(b" ", 2)[1])
    body = json.loads(raw.split(b"\r\n\r\n", 1)[1] or b"{}")
    out[i] = (status, (body.get("error") or {}).get("code", ""), sent)


def _content_length(raw: bytes) -> int:
    m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", raw.split(b"\r\n\r\n", 1)[0])
    return int(m.group(1)) if m else 0


# --------------------------------------------------------------------------- uploads


def test_uploads_fill_the_quota_and_deleting_frees_it(service: Service) -> None:
    with service.client(service.new_key("fill")) as c:
        assert _usage(c) == {
            "stored_bytes": 0,
            "upload_bytes": 0,
            "result_bytes": 0,
            "reserved_bytes": 0,
            "max_stored_bytes": QUOTA,
        }
        one, two, three = _png(int(1.6 * MB), 1), _png(int(1.6 * MB), 2), _png(int(1.2 * MB), 3)
        first = _upload(c, one)
        assert first.status_code == 201, first.text
        assert _usage(c)["upload_bytes"] == len(one)
        # The same bytes again: the existing image (200), not a second charge.
        again = _upload(c, one)
        assert again.status_code == 200 and again.json()["duplicate"], again.text
        assert _usage(c)["stored_bytes"] == len(one)
        second = _upload(c, two)
        assert second.status_code == 201, second.text
        used = len(one) + len(two)
        assert _usage(c)["stored_bytes"] == used
        # 1.2 MB more does not fit in 4 MiB beside 3.2 MB: 507 naming the quota, the usage and the size.
        r = _upload(c, three)
        _refused(r, 507, used, upload=len(three))
        # Larger than the whole quota: 413, before its body is read.
        r = _upload(c, _png(QUOTA + 100_000, 4))
        _refused(r, 413, upload=QUOTA + 100_000)
        assert _tmp_files(service) == []
        assert _usage(c) == {**_usage(c), "stored_bytes": used, "reserved_bytes": 0}
        assert c.get("/v1/clips").json()["total"] == 2  # nothing accepted was lost, nothing refused was kept
        # A new job is still accepted (the key is under its quota); deleting an image makes room for the third.
        assert c.delete(f"/v1/images/{second.json()['clip_id']}").status_code == 204
        assert _usage(c)["stored_bytes"] == len(one)
        r = _upload(c, three)
        assert r.status_code == 201, r.text
        assert _usage(c)["stored_bytes"] == len(one) + len(three)


def test_a_chunked_upload_is_cut_off_while_it_streams(service: Service) -> None:
    key = service.new_key("stream")
    with service.client(key) as c:
        assert _upload(c, _png(3 * MB, 5)).status_code == 201
        big = _png(2 * MB, 6)  # fits the quota alone, not beside the 3 MB stored
        out: list = [None]
        _paced_upload(service, key, big, out, 0)
        status, code, sent = out[0]
        assert (status, code) == (507, "storage_quota"), out
        # Refused when what arrived passed the room left (~1.2 MB), long before the 2 MB were sent.
        assert sent < 1.7 * MB, out
        assert _usage(c)["stored_bytes"] == 3 * MB and _usage(c)["reserved_bytes"] == 0
        wait_for(lambda: not _tmp_files(service), 5, "the refused upload's temp file to go")


def test_parallel_uploads_cannot_pass_the_quota_together(service: Service) -> None:
    key = service.new_key("parallel")
    datas = [_png(int(2.5 * MB), 7), _png(int(2.5 * MB), 8)]  # each fits in 4 MiB, not both
    out: list = [None, None]
    threads = [threading.Thread(target=_paced_upload, args=(service, key, d, out, i)) for i, d in enumerate(datas)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(o[0] for o in out) == [201, 507], out
    refused = next(o for o in out if o[0] == 507)
    assert refused[1] == "storage_quota" and refused[2] < len(datas[0]), out  # cut off while streaming
    with service.client(key) as c:
        assert _usage(c)["stored_bytes"] == len(datas[0]) and _usage(c)["reserved_bytes"] == 0
        assert c.get("/v1/clips").json()["total"] == 1


# --------------------------------------------------------------------------- results, over quota, retention


def _job_bytes(service: Service, job_id: str) -> int:
    jd = service.settings.data_dir / "jobs" / job_id
    return sum(f.stat().st_size for f in jd.rglob("*") if f.is_file() and ".attempt-" not in str(f))


def test_results_count_a_finished_render_is_kept_and_the_sweep_frees_the_bytes(service: Service) -> None:
    with service.client(service.new_key("results")) as c:
        first = c.post("/v1/edits", json=tiny_edit([1])).json()["job_id"]
        assert wait_job(c, first)["state"] == "done", service.logs()
        results = _job_bytes(service, first)
        assert results > 10_000
        assert _usage(c)["result_bytes"] == results
        # Uploads take the key to half a render below its quota: a job is still accepted ...
        fill = _png(QUOTA - results - results // 2, 9)
        assert _upload(c, fill).status_code == 201
        assert _usage(c)["stored_bytes"] == QUOTA - results // 2
        second = c.post("/v1/edits", json=tiny_edit([1]))
        assert second.status_code == 202, second.text
        done = wait_job(c, second.json()["job_id"])
        # ... and its results are published although they take the key over its quota.
        assert done["state"] == "done", service.logs()
        assert c.get(f"/v1/jobs/{done['job_id']}/results/1/video").status_code == 200
        over = _usage(c)["stored_bytes"]
        assert over == QUOTA - results // 2 + _job_bytes(service, done["job_id"]) and over > QUOTA
        # Over the quota: new jobs and uploads are refused, naming the quota and the usage.
        _refused(c.post("/v1/edits", json=tiny_edit([2])), 507, over)
        _refused(c.post("/v1/batches", json={"items": [tiny_edit([2])]}), 507, over)
        _refused(_upload(c, _png(20_000, 10)), 507, over)
        # Deleting the finished job frees its results: a small upload fits again.
        assert c.delete(f"/v1/jobs/{done['job_id']}", params={"purge": "true"}).status_code == 204
        assert _usage(c)["stored_bytes"] == QUOTA - results // 2
        assert _upload(c, _png(20_000, 10)).status_code == 201
        # The retention sweep deletes the rest (a retention of one second) and frees every byte.
        _restart_api(service, job_retention_s=1, upload_retention_s=1)
        try:
            wait_for(lambda: _usage(c)["stored_bytes"] == 0, 60, "the sweep to free the key's bytes")
            assert c.get("/v1/jobs").json()["total"] == 0 and c.get("/v1/clips").json()["total"] == 0
        finally:
            _restart_api(service)
        ns = service.settings.redis_namespace
        assert not list(service.store.r.scan_iter(match=f"{ns}:usage:*", count=1000))
