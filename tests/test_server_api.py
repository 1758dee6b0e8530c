"""The HTTP API in-process against a real redis-server: auth, isolation, bad input, idempotency,
the queue bound, uploads. No workers run here, so admitted jobs stay queued; every rejected
request is checked to have stored nothing (no job, no clip record, no file)."""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from media_factory import make_video
from server.auth import create_api_key
from server.main import create_app
from server.settings import Settings
from test_server_harness import SECRET, make_settings, tiny_edit

# Shared session fixtures (redis_server, seed_library): one instance for all server test modules.
pytest_plugins = ["test_server_harness"]

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture
def api(tmp_path, redis_server, seed_library):
    """(client factory, services, settings): a fresh namespace and data dir per test."""
    media = tmp_path / "media"
    media.mkdir()
    settings = make_settings(
        tmp_path,
        redis_server,
        seed_library,
        media_root=media,
        max_upload_bytes=300_000,
        max_active_jobs=4,
        max_active_jobs_per_key=4,
    )
    app = create_app(settings)
    with TestClient(app) as client:
        yield client, app.state.services


def key(services, name: str = "k", admin: bool = False) -> dict[str, str]:
    return new_key(services, name, admin)[1]


def new_key(services, name: str = "k", admin: bool = False) -> tuple[str, dict[str, str]]:
    key_id, raw = create_api_key(services.store, SECRET, name=name, admin=admin)
    return key_id, {"X-API-Key": raw}


def nothing_stored(services) -> None:
    st = services.store
    assert st.active_count() == 0
    assert not list(st.r.scan_iter(f"{st.ns}:job:*"))
    assert not list(st.r.scan_iter(f"{st.ns}:clip:*"))
    assert services.queue.depth() == 0
    lay = services.layout
    assert not any(lay.uploads_tmp.iterdir()), "a rejected upload left a temp file"
    assert not any(p.is_file() for p in lay.blobs.rglob("*")), "a rejected upload left a file"


# --------------------------------------------------------------------------- auth and isolation


def test_missing_or_wrong_key_is_401(api):
    client, services = api
    r = client.get("/v1/jobs")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert "Bearer" in r.headers["www-authenticate"]
    assert client.get("/v1/jobs", headers={"X-API-Key": "ak_wrong"}).status_code == 401
    assert client.post("/v1/edits", json=tiny_edit([1]), headers={"X-API-Key": "ak_wrong"}).status_code == 401
    h = key(services)
    assert client.get("/v1/jobs", headers=h).status_code == 200
    bearer = {"Authorization": "Bearer " + h["X-API-Key"]}
    assert client.get("/v1/jobs", headers=bearer).status_code == 200
    nothing_stored(services)


def test_keys_are_stored_hashed(api):
    _client, services = api
    raw = key(services)["X-API-Key"]
    dump = json.dumps({k: services.store.r.dump(k).hex() for k in services.store.r.scan_iter(f"{services.store.ns}:*")})
    assert raw not in dump and raw.encode().hex() not in dump


def test_another_keys_job_clip_and_batch_are_404(api):
    client, services = api
    a, b = key(services, "a"), key(services, "b")
    job = client.post("/v1/edits", json=tiny_edit([1]), headers=a).json()["job_id"]
    batch = client.post("/v1/batches", json={"items": [tiny_edit([2])]}, headers=a).json()["batch_id"]
    clip = client.post("/v1/clips", headers=a, files={"file": ("c.mp4", _video_bytes(services), "video/mp4")})
    clip_id = clip.json()["clip_id"]
    for method, url in [
        ("GET", f"/v1/jobs/{job}"),
        ("DELETE", f"/v1/jobs/{job}"),
        ("GET", f"/v1/jobs/{job}/results/1/video"),
        ("GET", f"/v1/batches/{batch}"),
        ("GET", f"/v1/clips/{clip_id}"),
    ]:
        r = client.request(method, url, headers=b)
        assert r.status_code == 404, (method, url, r.text)
        assert r.json()["error"]["code"] == "not_found"
    # Using another key's upload in a pool is refused like a missing id, and stores nothing.
    before = services.store.active_count()
    r = client.post("/v1/edits", json={**tiny_edit([1]), "clips": [{"clip_id": clip_id}]}, headers=b)
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_clip"
    assert services.store.active_count() == before
    assert client.get("/v1/jobs", headers=b).json()["total"] == 0
    assert client.get("/v1/jobs", headers=a).json()["total"] == 3  # edit, batch item, ingest


def _video_bytes(services, name: str = "v.mp4", **kw) -> bytes:
    path = services.layout.data_dir.parent / name
    if not path.exists():
        make_video(path, duration_s=kw.pop("duration_s", 1.0), size=kw.pop("size", "64x48"), **kw)
    return path.read_bytes()


# --------------------------------------------------------------------------- bad requests


def test_malformed_json_is_400_and_stores_nothing(api):
    client, services = api
    h = {**key(services), "Content-Type": "application/json"}
    r = client.post("/v1/edits", content=b'{"product": {"name": "x"}, "clips": [', headers=h)
    assert r.status_code == 400 and r.json()["error"]["code"] == "malformed_json"
    r = client.post("/v1/batches", content=b"[1, 2", headers=h)
    assert r.status_code == 400
    r = client.post("/v1/edits", content=b"not json at all", headers={"X-API-Key": h["X-API-Key"]})
    assert r.status_code == 400
    nothing_stored(services)


@pytest.mark.parametrize(
    "body, code",
    [
        ({"product": {"name": "x"}, "clips": []}, "invalid_request"),
        ({"product": {"name": ""}, "clips": [{"photo_id": 1}]}, "invalid_request"),
        ({"product": {"name": "x"}, "clips": [{"photo_id": 1, "path": "a.mp4"}]}, "invalid_request"),
        ({"product": {"name": "x"}, "clips": [{"photo_id": 1}], "options": {"resolution": 101}}, "invalid_request"),
        ({"product": {"name": "x"}, "clips": [{"photo_id": 1}], "surprise": 1}, "invalid_request"),
        ({"product": {"name": "x"}, "clips": [{"photo_id": 1}], "script": ["  "]}, "invalid_request"),
        ({"product": {"name": "x"}, "clips": [{"clip_id": "clp_000000000000000000000000"}]}, "unknown_clip"),
        ({"product": {"name": "x"}, "clips": [{"photo_id": 99999}]}, "unknown_video"),
        (
            {"product": {"name": "x", "image_id": "img_000000000000000000000000"}, "clips": [{"photo_id": 1}]},
            "unknown_image",
        ),
        ({"product": {"name": "x"}, "clips": [{"photo_id": 1}], "options": {"planner": "oracle"}}, "unknown_planner"),
        (
            {
                "product": {"name": "x"},
                "clips": [{"photo_id": 1}],
                "options": {"bgm": {"policy": "track", "audio_id": 999}},
            },
            "unknown_bgm",
        ),
        (
            {"product": {"name": "x"}, "clips": [{"photo_id": 1}], "options": {"voice": {"name": "klingon-xx"}}},
            "unknown_voice",
        ),
    ],
)
def test_invalid_edits_are_422_with_a_clear_message(api, body, code):
    client, services = api
    r = client.post("/v1/edits", json=body, headers=key(services))
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["message"]
    # The same item inside a batch is refused as a whole, naming the item.
    r = client.post("/v1/batches", json={"items": [tiny_edit([1]), body]}, headers=key(services, "b"))
    assert r.status_code == 422
    if code != "invalid_request":
        assert r.json()["error"]["message"].startswith("items[1].")
    nothing_stored(services)


def test_path_traversal_and_symlink_escapes_are_refused(api, tmp_path):
    client, services = api
    media = services.settings.media_dir
    secret = tmp_path / "outside.mp4"
    secret.write_bytes(_video_bytes(services))
    (media / "inside.mp4").write_bytes(secret.read_bytes())
    (media / "sub").mkdir()
    os.symlink(secret, media / "escape.mp4")
    os.symlink(tmp_path, media / "sub" / "dirlink")
    os.symlink(media / "inside.mp4", media / "sub" / "ok-link.mp4")
    h = key(services)
    bad = [
        "../outside.mp4",
        "sub/../../outside.mp4",
        str(secret),
        "/etc/passwd",
        "escape.mp4",
        "sub/dirlink/outside.mp4",
        "http://127.0.0.1:6379/",
        "file:///etc/passwd",
        "missing.mp4",
        "sub",
        "~/x.mp4",
        "a\x00b.mp4",
    ]
    for ref in bad:
        r = client.post("/v1/edits", json={**tiny_edit([1]), "clips": [{"path": ref}]}, headers=h)
        assert r.status_code == 422, (ref, r.text)
        assert r.json()["error"]["code"] in ("bad_path", "invalid_request"), ref
    nothing_stored(services)
    # Inside the root (also through a symlink that stays inside) is fine.
    for ref in ["inside.mp4", "sub/ok-link.mp4"]:
        r = client.post("/v1/edits", json={**tiny_edit([1]), "clips": [{"path": ref}]}, headers=h)
        assert r.status_code == 202, r.text
        spec = services.store.get_job(r.json()["job_id"]).spec
        assert spec["pool"][0] == {"kind": "media", "path": "inside.mp4", "text": ""}


def test_library_listing_hides_other_keys_uploads(api):
    from autocut.library.catalog import Catalog
    from autocut.library.ingest import ingest_paths
    from server.store import ClipRecord

    client, services = api
    (key_a, a), b = new_key(services, "a"), key(services, "b")
    lib = services.settings.data_dir.parent / "lib"
    shutil.copytree(services.settings.library_dir, lib)
    services.settings.library_dir = lib
    blob = services.layout.blob_path("ab" * 32, ".mp4")
    blob.parent.mkdir(parents=True)
    make_video(blob, duration_s=2.0, size="96x64", src="mandelbrot")
    ingest_paths(lib, [blob])
    with Catalog.open(lib) as cat:
        src = cat.video_by_path(blob)
    # Register the upload as key a's, as POST /v1/clips does.
    services.store.admit(
        key_a,
        [],
        max_active=10,
        max_active_per_owner=10,
        clip=ClipRecord(
            clip_id="clp_" + "1" * 24,
            owner=key_a,
            kind="video",
            sha256=src.content_hash,
            filename="x.mp4",
            size_bytes=1,
            path=str(blob),
            created_at=0.0,
        ),
    )
    seen_a = {v["photo_id"]: v for v in client.get("/v1/library/videos", headers=a).json()["items"]}
    seen_b = {v["photo_id"] for v in client.get("/v1/library/videos", headers=b).json()["items"]}
    assert src.photo_id in seen_a and seen_a[src.photo_id]["uploaded"]
    assert src.photo_id not in seen_b and {1, 2} <= seen_b
    r = client.post("/v1/edits", json=tiny_edit([src.photo_id]), headers=b)
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_video"
    assert client.post("/v1/edits", json=tiny_edit([src.photo_id]), headers=a).status_code == 202
    bgm = client.get("/v1/library/bgm", headers=b).json()
    assert bgm["total"] == 1


# --------------------------------------------------------------------------- idempotency, bound, cancel


def test_idempotency_key_replays_and_refuses_another_body(api):
    client, services = api
    h = {**key(services), "Idempotency-Key": "order-42"}
    r1 = client.post("/v1/edits", json=tiny_edit([1]), headers=h)
    r2 = client.post("/v1/edits", json=tiny_edit([1]), headers=h)
    assert r1.status_code == r2.status_code == 202
    assert r1.json()["job_id"] == r2.json()["job_id"] and r2.json()["replayed"]
    assert r2.headers["idempotent-replayed"] == "true"
    r3 = client.post("/v1/edits", json=tiny_edit([2]), headers=h)
    assert r3.status_code == 422 and r3.json()["error"]["code"] == "idempotency_key_reused"
    assert services.store.active_count() == 1 and services.queue.depth() == 1
    # The key is per API key: another key's same Idempotency-Key is a new request.
    h2 = {**key(services, "other"), "Idempotency-Key": "order-42"}
    assert client.post("/v1/edits", json=tiny_edit([1]), headers=h2).json()["job_id"] != r1.json()["job_id"]
    # Batches too.
    hb = {**h, "Idempotency-Key": "batch-7"}
    b1 = client.post("/v1/batches", json={"items": [tiny_edit([1]), tiny_edit([2])]}, headers=hb).json()
    b2 = client.post("/v1/batches", json={"items": [tiny_edit([1]), tiny_edit([2])]}, headers=hb).json()
    assert b1["batch_id"] == b2["batch_id"] and b1["job_ids"] == b2["job_ids"] and b2["replayed"]


def test_full_queue_answers_429_with_retry_after(api):
    client, services = api
    h = key(services)
    for _ in range(4):
        assert client.post("/v1/edits", json=tiny_edit([1]), headers=h).status_code == 202
    r = client.post("/v1/edits", json=tiny_edit([1]), headers=h)
    assert r.status_code == 429 and r.json()["error"]["code"] == "queue_full"
    assert int(r.headers["retry-after"]) >= 1
    r = client.post("/v1/batches", json={"items": [tiny_edit([1])]}, headers=h)
    assert r.status_code == 429
    r = client.post("/v1/clips", headers=h, files={"file": ("c.mp4", _video_bytes(services), "video/mp4")})
    assert r.status_code == 429
    assert services.store.active_count() == 4 and services.queue.depth() == 4
    assert not any(p.is_file() for p in services.layout.blobs.rglob("*"))
    # A cancelled job frees its slot.
    job = client.get("/v1/jobs", headers=h).json()["items"][0]["job_id"]
    assert client.delete(f"/v1/jobs/{job}", headers=h).json()["state"] == "cancelled"
    assert client.post("/v1/edits", json=tiny_edit([1]), headers=h).status_code == 202


def test_cancel_a_queued_job_then_409(api):
    client, services = api
    h = key(services)
    job = client.post("/v1/edits", json=tiny_edit([1]), headers=h).json()["job_id"]
    r = client.delete(f"/v1/jobs/{job}", headers=h)
    assert r.status_code == 202 and r.json()["state"] == "cancelled"
    assert r.json()["error"]["code"] == "cancelled"
    r = client.delete(f"/v1/jobs/{job}", headers=h)
    assert r.status_code == 409 and r.json()["error"]["code"] == "already_finished"
    assert client.get(f"/v1/jobs/{job}/results/1/video", headers=h).status_code == 404


# --------------------------------------------------------------------------- uploads


def _multipart(name: str, data: bytes, field: str = "file") -> dict:
    return {field: (name, io.BytesIO(data), "application/octet-stream")}


def test_upload_accepts_video_dedupes_and_refuses_bad_files(api):
    client, services = api
    h = key(services)
    good = _video_bytes(services)
    r = client.post("/v1/clips", headers=h, files=_multipart("holiday clip.mp4", good))
    assert r.status_code == 201, r.text
    clip = r.json()
    assert clip["state"] == "ingesting" and clip["duration_s"] == pytest.approx(1.0, abs=0.1)
    assert r.headers["location"] == f"/v1/clips/{clip['clip_id']}"
    blobs = [p for p in services.layout.blobs.rglob("*") if p.is_file()]
    assert len(blobs) == 1 and blobs[0].read_bytes() == good and blobs[0].name.startswith(clip["sha256"])
    ingest = services.store.get_job(clip["job_id"])
    assert ingest.kind == "ingest" and ingest.spec["path"] == str(blobs[0])
    # Same content again (another name): the existing clip, no second file or ingest job.
    r = client.post("/v1/clips", headers=h, files=_multipart("copy.mp4", good))
    assert r.status_code == 200 and r.json()["clip_id"] == clip["clip_id"] and r.json()["duplicate"]
    assert services.store.active_count() == 1
    before = services.store.active_count()
    bad = [
        (_multipart("notes.mp4", b"just some text, not a video" * 50), 415, "unsupported_media_type"),
        (_multipart("fake.mp4", b"\x00\x00\x00\x18ftypisom" + os.urandom(5000)), 422, "invalid_media"),
        (
            _multipart(
                "big.mp4", _video_bytes(services, "big.mp4", duration_s=4.0, size="640x480", extra=("-qp", "0"))
            ),
            413,
            "too_large",
        ),
        (_multipart("v.mp4", good, field="video"), 400, "unexpected_file"),
        (_multipart("tiny.png", b"\x89PNG\r\n\x1a\n" + b"0" * 100), 415, "unsupported_media_type"),
    ]
    for files, status, code in bad:
        r = client.post("/v1/clips", headers=h, files=files)
        assert r.status_code == status, (code, r.text)
        assert r.json()["error"]["code"] == code
    r = client.post("/v1/clips", headers=h, content=good, params={})
    assert r.status_code == 415
    r = client.post("/v1/clips", headers=h, data={"note": "no file"})
    assert r.status_code in (400, 415)
    assert services.store.active_count() == before
    assert [p for p in services.layout.blobs.rglob("*") if p.is_file()] == blobs
    assert not any(services.layout.uploads_tmp.iterdir())
    listed = client.get("/v1/clips", headers=h).json()
    assert listed["total"] == 1 and listed["items"][0]["clip_id"] == clip["clip_id"]


def test_oversize_upload_is_refused_from_content_length(api):
    client, services = api
    h = key(services)
    body = b"x" * (services.settings.max_upload_bytes + 100_000)
    r = client.post("/v1/clips", headers={**h, "Content-Type": "multipart/form-data; boundary=zz"}, content=body)
    assert r.status_code == 413
    assert not any(services.layout.uploads_tmp.iterdir())


def test_product_image_upload_and_use(api, tmp_path):
    from PIL import Image

    client, services = api
    h = key(services)
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buf, format="PNG")
    r = client.post("/v1/images", headers=h, files=_multipart("product.png", buf.getvalue()))
    assert r.status_code == 201, r.text
    img = r.json()
    assert img["kind"] == "image" and (img["width"], img["height"]) == (64, 48)
    assert client.get(f"/v1/images/{img['clip_id']}", headers=h).status_code == 200
    assert client.get(f"/v1/images/{img['clip_id']}", headers=key(services, "b")).status_code == 404
    body = tiny_edit([1])
    body["product"]["image_id"] = img["clip_id"]
    r = client.post("/v1/edits", json=body, headers=h)
    assert r.status_code == 202
    spec = services.store.get_job(r.json()["job_id"]).spec
    assert Path(spec["image_path"]).read_bytes() == buf.getvalue()
    r = client.post("/v1/images", headers=h, files=_multipart("x.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64))
    assert r.status_code == 422


def test_admin_only_index_rebuild(api):
    client, services = api
    r = client.post("/v1/indexes/rebuild", json={"kinds": ["bgm"]}, headers=key(services))
    assert r.status_code == 403
    assert services.store.active_count() == 0
    r = client.post("/v1/indexes/rebuild", json={"kinds": ["bgm"]}, headers=key(services, "root", admin=True))
    assert r.status_code == 202
    assert services.store.get_job(r.json()["job_id"]).spec == {"kinds": ["bgm"]}


# --------------------------------------------------------------------------- settings and spec


def test_settings_refuse_placeholder_secrets_outside_dev_mode():
    from pydantic import ValidationError

    for bad in ("change-me", "secret", "short"):
        with pytest.raises(ValidationError, match="placeholder"):
            Settings(secret_key=bad)
    with pytest.raises(ValidationError, match="BOOTSTRAP_ADMIN_KEY"):
        Settings(secret_key=SECRET, bootstrap_admin_key="changeme")
    assert Settings(secret_key="change-me", dev_mode=True).dev_mode
    assert Settings(secret_key=SECRET).secret_key.get_secret_value() == SECRET


def test_openapi_documents_every_operation(api):
    client, _ = api
    spec = client.get("/openapi.json").json()
    assert spec["info"]["version"] == "1.0.0"
    schemes = spec["components"]["securitySchemes"]
    assert {"APIKeyHeader", "HTTPBearer"} <= set(schemes)
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            assert op.get("summary"), (method, path)
            if path.startswith("/v1/"):
                assert "401" in op["responses"] and op.get("security"), (method, path)
    edit = spec["paths"]["/v1/edits"]["post"]
    assert set(edit["requestBody"]["content"]["application/json"]["examples"]) == {"script-driven", "footage-driven"}
    assert "multipart/form-data" in spec["paths"]["/v1/clips"]["post"]["requestBody"]["content"]
    assert "206" in spec["paths"]["/v1/jobs/{job_id}/results/{variant}/{artifact}"]["get"]["responses"]


def test_oversized_json_body_is_413(api):
    client, services = api
    body = json.dumps({**tiny_edit([1]), "pad": "x" * (5 * 1024 * 1024)})
    r = client.post("/v1/edits", content=body, headers={**key(services), "Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"

    def chunks():
        for _ in range(6):
            yield b" " * (1024 * 1024)

    r = client.post("/v1/edits", content=chunks(), headers={**key(services), "Content-Type": "application/json"})
    assert r.status_code == 413
    nothing_stored(services)


def test_store_down_is_503_not_500(tmp_path, redis_server, seed_library):
    from test_server_harness import free_port

    settings = make_settings(tmp_path, redis_server, seed_library, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
        r = client.get("/readyz")
        assert r.status_code == 503 and r.json()["checks"]["store"] == "unreachable"
        r = client.get("/v1/jobs", headers={"X-API-Key": "ak_x"})
        assert r.status_code == 503 and r.headers["retry-after"] == "5"


def test_readyz_shows_load_figures_only_to_a_keyed_caller(api):
    client, services = api
    anonymous = client.get("/readyz")
    assert anonymous.status_code == 200 and anonymous.json()["ready"]
    body = anonymous.json()
    assert body["queue_depth"] is None and body["active_jobs"] is None and body["live_workers"] is None
    assert "workers" not in body["checks"]
    assert client.get("/readyz", headers={"X-API-Key": "ak_not_a_key"}).json()["queue_depth"] is None
    keyed = client.get("/readyz", headers=key(services)).json()
    assert keyed["queue_depth"] == 0 and keyed["active_jobs"] == 0 and keyed["live_workers"] is not None
    assert client.get("/healthz").status_code == 200


def test_a_rotated_bootstrap_admin_key_replaces_the_old_one(tmp_path, redis_server, seed_library):
    old, new = "ak_bootstrap_old_" + "x" * 20, "ak_bootstrap_new_" + "y" * 20
    ns = "t" + secrets.token_hex(5)

    def admin_ok(client, raw: str) -> bool:
        return client.get("/v1/jobs", headers={"X-API-Key": raw}).status_code == 200

    def wait(pred) -> bool:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if pred():
                return True
            time.sleep(0.1)
        return False

    s1 = make_settings(tmp_path / "a", redis_server, seed_library, redis_namespace=ns, bootstrap_admin_key=old)
    with TestClient(create_app(s1)) as client:
        assert wait(lambda: admin_ok(client, old))
    # The operator rotates the key: the service restarts with the new value; the old one stops working.
    s2 = make_settings(tmp_path / "b", redis_server, seed_library, redis_namespace=ns, bootstrap_admin_key=new)
    with TestClient(create_app(s2)) as client:
        assert wait(lambda: admin_ok(client, new))
        assert client.get("/v1/jobs", headers={"X-API-Key": old}).status_code == 401
