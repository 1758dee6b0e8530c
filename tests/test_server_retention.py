"""Nothing grows without bound, black-box: a real API process and a real worker process on a real
redis-server of this module's own (so its memory figures are this service's alone), real ffmpeg.

- the DELETE routes free the records and the files (jobs with their results, clips with their ingest
  job, images; a file shared by two keys stays until its last owner deletes it);
- an ingest that was cancelled does not poison its content: uploading the same bytes again ingests them;
- 200 x submit-and-cancel: the per-key cap trims the finished jobs, then the retention sweep (run by the
  API's background loop) brings Redis back to its baseline (figures printed);
- Redis at maxmemory: the service answers 503 + Retry-After (never 500), reads and deletes still work.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import httpx
import numpy as np
import pytest
import redis

from media_factory import make_shots
from server.settings import Settings
from server.storage import Layout
from server.supervisor import RedisServer, redis_for_settings
from test_server_harness import Service, copy_library, free_port, make_settings, tiny_edit, wait_for, wait_job

pytest_plugins = ["test_server_harness"]

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

MAXMEMORY_MB = 256
LOOP = 200
CAP = 20


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    srv = RedisServer(
        data_dir=tmp_path_factory.mktemp("retention-redis"),
        port=free_port(),
        password=secrets.token_hex(16),
        maxmemory_mb=MAXMEMORY_MB,
    )
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, own_redis: RedisServer, seed_library: Path) -> Iterator[Service]:
    """API + one worker process; the sweep runs every second (retention itself: the defaults, days)."""
    tmp = tmp_path_factory.mktemp("retention")
    settings = make_settings(
        tmp, own_redis, copy_library(seed_library, tmp / "library"), retention_sweep_interval_s=1.0
    )
    logs = tmp / "logs"
    logs.mkdir()
    svc = Service(settings, logs)
    svc.base_env = dict(svc.env)  # type: ignore[attr-defined]  # what `_restart_api` starts from
    try:
        svc.start_workers(1, supervised=False)
        svc.start_api()
        svc.wait_workers(1)
        yield svc
    finally:
        svc.stop()


@pytest.fixture(scope="module")
def raw(own_redis: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(own_redis.url, decode_responses=True)
    yield client
    client.close()


def _layout(service: Service) -> Layout:
    return Layout(service.settings.data_dir.resolve())


def _restart_api(service: Service, **env: object) -> None:
    """The API again with the module's settings but `env` (the worker keeps running)."""
    service.env = dict(service.base_env)  # type: ignore[attr-defined]
    for name, value in env.items():
        service.env[f"AUTOCUT_{name.upper()}"] = str(value)
    service.kill_api()
    service.start_api()


def _png(seed: int) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _key_id(service: Service, raw_key: str) -> str:
    from server.auth import hash_api_key
    from test_server_harness import SECRET

    rec = service.store.lookup_api_key(hash_api_key(raw_key, SECRET))
    assert rec is not None
    return rec["key_id"]


def _wait_clip(client: httpx.Client, clip_id: str) -> dict:
    """The clip once its ingest has finished (ready or failed)."""

    def finished() -> dict | None:
        body = client.get(f"/v1/clips/{clip_id}").json()
        return body if body["state"] != "ingesting" else None

    return cast(dict, wait_for(finished, 120, f"the ingest of {clip_id}"))


def _slow_edit() -> dict:
    """Renders for seconds: keeps the one worker busy so what is uploaded meanwhile stays queued."""
    return tiny_edit(
        [1, 2], script=["Fresh juice in seconds.", "Take it anywhere."], resolution=1080, max_duration_s=8.0
    )


# --------------------------------------------------------------------------- DELETE routes


def test_delete_routes_free_records_and_files(service: Service, raw: redis.Redis, tmp_path: Path) -> None:
    ns, lay = service.settings.redis_namespace, _layout(service)
    ka, kb = service.new_key("a"), service.new_key("b")
    with service.client(ka) as a, service.client(kb) as b:
        # An image uploaded by two keys: one file; it goes with its last owner.
        png = _png(1)
        img_a = a.post("/v1/images", files={"file": ("p.png", png, "image/png")}).json()
        img_b = b.post("/v1/images", files={"file": ("p.png", png, "image/png")}).json()
        path = lay.blob_path(img_a["sha256"], ".png", image=True)
        assert path.is_file()
        assert b.delete(f"/v1/images/{img_a['clip_id']}").status_code == 404  # another key's: like a missing one
        assert a.delete(f"/v1/clips/{img_a['clip_id']}").status_code == 422  # an image id is not a clip id
        r = a.delete(f"/v1/images/{img_a['clip_id']}")
        assert r.status_code == 204, r.text
        assert a.get(f"/v1/images/{img_a['clip_id']}").status_code == 404
        assert a.delete(f"/v1/images/{img_a['clip_id']}").status_code == 404
        assert not raw.exists(f"{ns}:clip:{img_a['clip_id']}")
        assert path.is_file(), "the file was removed while another key still owns that content"
        assert b.delete(f"/v1/images/{img_b['clip_id']}").status_code == 204
        assert not path.exists(), "the file outlived the last key that uploaded it"

        # A clip: record, ingest job and file go; the key no longer sees the video in the library.
        footage = make_shots(tmp_path / "del.mp4", [("testsrc2", 1.5), ("green", 1.5)], size="160x120")
        clip = a.post("/v1/clips", files={"file": ("del.mp4", footage.read_bytes(), "video/mp4")}).json()
        ready = _wait_clip(a, clip["clip_id"])
        assert ready["state"] == "ready", (ready, service.logs())
        blob = lay.blob_path(clip["sha256"], ".mp4")
        assert blob.is_file()
        listed = {v["photo_id"] for v in a.get("/v1/library/videos").json()["items"]}
        assert ready["photo_id"] in listed
        # The ingest job belongs to the clip: it is deleted with it, not on its own.
        r = a.delete(f"/v1/jobs/{clip['job_id']}", params={"purge": "true"})
        assert r.status_code == 409 and r.json()["error"]["code"] == "upload_job", r.text
        assert b.delete(f"/v1/clips/{clip['clip_id']}").status_code == 404
        assert a.delete(f"/v1/clips/{clip['clip_id']}").status_code == 204
        assert a.get(f"/v1/clips/{clip['clip_id']}").status_code == 404
        assert a.get(f"/v1/jobs/{clip['job_id']}").status_code == 404
        assert not blob.exists()
        assert not raw.exists(f"{ns}:clip:{clip['clip_id']}", f"{ns}:job:{clip['job_id']}")
        assert ready["photo_id"] not in {v["photo_id"] for v in a.get("/v1/library/videos").json()["items"]}

        # A finished edit: records, completion entry and result directory go; only with purge=true.
        job_id = a.post("/v1/edits", json=tiny_edit([1])).json()["job_id"]
        assert wait_job(a, job_id)["state"] == "done", service.logs()
        assert (lay.job_dir(job_id) / "v1" / "edit.mp4").is_file()
        assert job_id in raw.lrange(f"{ns}:completions", 0, -1)
        r = a.delete(f"/v1/jobs/{job_id}")  # without purge: cancel, as before
        assert r.status_code == 409 and r.json()["error"]["code"] == "already_finished"
        assert b.delete(f"/v1/jobs/{job_id}", params={"purge": "true"}).status_code == 404
        r = a.delete(f"/v1/jobs/{job_id}", params={"purge": "true"})
        assert r.status_code == 204, r.text
        assert a.get(f"/v1/jobs/{job_id}").status_code == 404
        assert a.get(f"/v1/jobs/{job_id}/results/1/video").status_code == 404
        assert not lay.job_dir(job_id).exists()
        assert not raw.exists(f"{ns}:job:{job_id}")
        assert job_id not in raw.lrange(f"{ns}:completions", 0, -1)
        owner = _key_id(service, ka)
        assert raw.zscore(f"{ns}:jobs:owner:{owner}", job_id) is None
        assert raw.zscore(f"{ns}:jobs:done:{owner}", job_id) is None


# --------------------------------------------------------------------------- cancel an ingest, upload again


def test_a_cancelled_ingest_does_not_poison_its_content(service: Service, tmp_path: Path) -> None:
    lay = _layout(service)
    with service.client(service.new_key("reupload")) as c:
        busy = c.post("/v1/edits", json=_slow_edit()).json()["job_id"]
        wait_for(lambda: c.get(f"/v1/jobs/{busy}").json()["state"] == "running", 60, "the slow edit to start")
        data = make_shots(tmp_path / "re.mp4", [("mandelbrot", 1.5), ("yellow", 1.5)], size="160x120").read_bytes()
        first = c.post("/v1/clips", files={"file": ("re.mp4", data, "video/mp4")}).json()
        assert first["state"] == "ingesting"
        # Its ingest is queued behind the slow edit: the clip cannot be deleted yet, its job can be cancelled.
        r = c.delete(f"/v1/clips/{first['clip_id']}")
        assert r.status_code == 409 and r.json()["error"]["code"] == "ingesting", r.text
        assert c.delete(f"/v1/jobs/{first['job_id']}").json()["state"] == "cancelled"
        failed = c.get(f"/v1/clips/{first['clip_id']}").json()
        assert failed["state"] == "failed" and failed["error"]["code"] == "cancelled"
        assert c.delete(f"/v1/jobs/{busy}").status_code == 202

        # The same bytes again: a new clip, ingested (before the fix: the cancelled clip, forever).
        again = c.post("/v1/clips", files={"file": ("re.mp4", data, "video/mp4")})
        assert again.status_code == 201, again.text
        second = again.json()
        assert second["clip_id"] != first["clip_id"] and not second["duplicate"]
        done = _wait_clip(c, second["clip_id"])
        assert done["state"] == "ready" and done["photo_id"], (done, service.logs())
        # Now the content is held by a usable clip: a third upload is its duplicate.
        third = c.post("/v1/clips", files={"file": ("re.mp4", data, "video/mp4")})
        assert third.status_code == 200 and third.json()["clip_id"] == second["clip_id"]
        assert third.json()["duplicate"]
        # The cancelled clip stays listed until deleted (or expired); deleting it keeps the live clip's file.
        assert c.delete(f"/v1/clips/{first['clip_id']}").status_code == 204
        assert lay.blob_path(second["sha256"], ".mp4").is_file()
        assert c.get(f"/v1/clips/{second['clip_id']}").json()["state"] == "ready"
        assert wait_job(c, busy)["state"] == "cancelled"


# --------------------------------------------------------------------------- submit-and-cancel x 200


@dataclass
class Figures:
    used_memory: int  # all of it, connections' buffers included
    dataset: int  # the data alone (used_memory_dataset)
    keys: int  # this service's keys
    job_dirs: int
    job_bytes: int  # on disk under jobs/

    def __str__(self) -> str:
        return (
            f"used_memory {self.used_memory / 1024:.0f} KiB (dataset {self.dataset / 1024:.0f} KiB), "
            f"{self.keys} keys, {self.job_dirs} job dirs ({self.job_bytes / 1024:.0f} KiB)"
        )


def _figures(raw: redis.Redis, service: Service) -> Figures:
    ns = service.settings.redis_namespace
    jobs = service.settings.data_dir / "jobs"
    mem = raw.info("memory")
    return Figures(
        used_memory=int(mem["used_memory"]),
        dataset=int(mem["used_memory_dataset"]),
        keys=sum(1 for _ in raw.scan_iter(match=f"{ns}:*", count=1000)),
        job_dirs=sum(1 for _ in jobs.iterdir()) if jobs.is_dir() else 0,
        job_bytes=_bytes_under(jobs),
    )


def _bytes_under(d: Path) -> int:
    total = 0
    for f in d.rglob("*"):
        with contextlib.suppress(FileNotFoundError):  # the sweep may be deleting meanwhile
            total += f.stat().st_size if f.is_file() else 0
    return total


def _quiet(service: Service) -> None:
    """No job queued or running, no message waiting."""
    wait_for(lambda: service.store.active_count() == 0, 120, "no active job")
    ns = service.settings.redis_namespace
    wait_for(lambda: service.store.r.llen(f"{ns}:dq:jobs") == 0, 60, "the queue to drain")
    time.sleep(1.0)  # the worker acknowledges the last message


def _submit_and_cancel(service: Service, key: str, n: int) -> None:
    with service.client(key) as c:
        for i in range(n):
            r = c.post("/v1/edits", json=tiny_edit([1 + i % 2], script=[f"Deal number {i}."]))
            assert r.status_code == 202, r.text
            r = c.delete(f"/v1/jobs/{r.json()['job_id']}")
            assert r.status_code in (202, 409), r.text  # 409: the worker finished it first (a tiny edit)
    _quiet(service)


def test_submit_and_cancel_loop_does_not_grow_redis(service: Service, raw: redis.Redis) -> None:
    ns = service.settings.redis_namespace
    key = service.new_key("flood")
    owner = _key_id(service, key)
    with service.client(key) as c:  # an upload: job retention must leave it alone
        img = c.post("/v1/images", files={"file": ("keep.png", _png(3), "image/png")}).json()
    _quiet(service)
    base = _figures(raw, service)
    print(f"\nbaseline:                    {base}")

    _submit_and_cancel(service, key, LOOP)
    grown = _figures(raw, service)
    per_job = (grown.dataset - base.dataset) / LOOP
    print(f"after {LOOP} x submit+cancel:   {grown} ({per_job / 1024:.1f} KiB per job)")
    assert raw.zcard(f"{ns}:jobs:owner:{owner}") == LOOP

    # The per-key cap deletes the oldest finished jobs beyond it (the retention period is still days).
    _restart_api(service, max_finished_jobs_per_key=CAP)
    wait_for(lambda: raw.zcard(f"{ns}:jobs:owner:{owner}") <= CAP, 60, f"the per-key cap ({CAP}) to apply")
    capped = _figures(raw, service)
    print(f"per-key cap {CAP}:              {capped}")
    assert raw.zcard(f"{ns}:jobs:done:{owner}") == CAP
    assert capped.dataset < grown.dataset - (LOOP - CAP) * per_job / 2, (grown, capped)

    # A retention of one second: the sweep deletes every finished job (and its directory).
    _restart_api(service, job_retention_s=1)

    def swept() -> bool:
        # Left: the ingest jobs of live uploads (they go with their upload).
        left = [raw.hget(k, "kind") for k in raw.scan_iter(match=f"{ns}:job:*", count=1000)]
        return (
            raw.zcard(f"{ns}:jobs:owner:{owner}") == 0
            and raw.llen(f"{ns}:completions") == 0
            and set(left) <= {"ingest"}
        )

    wait_for(swept, 60, "the retention sweep to delete the finished jobs")
    first = _figures(raw, service)
    print(f"after the sweep:             {first}")
    # The same loop again, the sweep running meanwhile: Redis ends where the first round ended.
    _submit_and_cancel(service, key, LOOP)
    wait_for(swept, 60, "the retention sweep to delete the second round")
    second = _figures(raw, service)
    print(f"after a second round + sweep: {second}")
    # Keys: back to the baseline (which held the earlier tests' jobs: those were swept too). Memory: Redis
    # keeps a one-off ~0.1-0.3 MiB of internal tables after its first growth; beyond that, no growth per round.
    for fig in (first, second):
        assert fig.keys <= base.keys, (base, fig)
        assert fig.job_dirs == 0, sorted(p.name for p in (service.settings.data_dir / "jobs").iterdir())
        assert fig.dataset - base.dataset < (grown.dataset - base.dataset) / 2, (base, grown, fig)
    assert second.dataset <= first.dataset + 16 * 1024, (first, second)
    with service.client(key) as c:
        assert c.get("/v1/jobs").json()["total"] == 0
        assert c.get(f"/v1/images/{img['clip_id']}").status_code == 200  # uploads have their own retention


def test_a_short_upload_retention_deletes_uploads_and_their_files(service: Service, raw: redis.Redis) -> None:
    ns, lay = service.settings.redis_namespace, _layout(service)
    with service.client(service.new_key("old-uploads")) as c:
        img = c.post("/v1/images", files={"file": ("x.png", _png(7), "image/png")}).json()
    path = lay.blob_path(img["sha256"], ".png", image=True)
    assert path.is_file()
    clips_before = len([p for p in lay.blobs.rglob("*") if p.is_file()])  # the earlier tests' clip, if run
    _restart_api(service, upload_retention_s=1)
    wait_for(lambda: not any(raw.scan_iter(match=f"{ns}:clip:*", count=1000)), 60, "uploads to expire")
    assert not path.exists()
    left = [p for p in lay.blobs.rglob("*") if p.is_file()]
    assert not left, f"{len(left)} of {clips_before} stored clip files outlived their records"
    assert not any(raw.scan_iter(match=f"{ns}:clipsha:*", count=1000))
    assert not any(raw.scan_iter(match=f"{ns}:upload_owners:*", count=1000))
    assert not any(raw.scan_iter(match=f"{ns}:job:*", count=1000)), "an ingest job outlived its upload"
    _restart_api(service)


def test_crash_leftovers_are_removed_recent_files_are_not(service: Service) -> None:
    """What a crash can leave without a record (a job dir, a stored file, an upload's temp file) goes once
    older than an hour; the same things younger than that (maybe mid-write) stay."""
    lay = _layout(service)
    old = time.time() - 2 * 3600

    def make(path: Path, *, aged: bool) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"left over")
        if aged:
            os.utime(path, (old, old))
            if path.parent != lay.uploads_tmp and path.parent.parent == lay.jobs:
                os.utime(path.parent, (old, old))
        return path

    stale = [
        make(lay.jobs / ("job_" + "d" * 24) / "plans.json", aged=True).parent,
        make(lay.blob_path("d" * 64, ".mp4"), aged=True),
        make(lay.blob_path("e" * 64, ".png", image=True), aged=True),
        make(lay.uploads_tmp / "upload-deadbeef.part", aged=True),
    ]
    fresh = [
        make(lay.jobs / ("job_" + "f" * 24) / "plans.json", aged=False).parent,
        make(lay.blob_path("f" * 64, ".mp4"), aged=False),
        make(lay.uploads_tmp / "upload-fresh.part", aged=False),
    ]
    wait_for(lambda: not any(p.exists() for p in stale), 30, f"the sweep to remove {stale}")
    assert all(p.exists() for p in fresh), [p for p in fresh if not p.exists()]
    for p in fresh:  # not to disturb the next test
        shutil.rmtree(p) if p.is_dir() else p.unlink()


# --------------------------------------------------------------------------- Redis at maxmemory


def test_redis_at_maxmemory_answers_503_with_retry_after(
    service: Service, own_redis: RedisServer, raw: redis.Redis, tmp_path: Path
) -> None:
    # The supervised redis-server runs with a memory limit (the setting's default; this module's: 256 MiB).
    default_mb = Settings.model_fields["redis_maxmemory_mb"].default
    assert default_mb > 0
    conf = redis_for_settings(make_settings(tmp_path, own_redis, tmp_path)).config_text()
    assert f"maxmemory {default_mb}mb" in conf.splitlines() and "maxmemory-policy noeviction" in conf
    assert raw.config_get("maxmemory")["maxmemory"] == str(MAXMEMORY_MB * 1024 * 1024)
    assert raw.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
    lay = _layout(service)
    with service.client(service.new_key("oom")) as c:
        old = c.post("/v1/edits", json=tiny_edit([1])).json()["job_id"]
        c.delete(f"/v1/jobs/{old}")
        finished = wait_job(c, old, timeout_s=60)
        footage = make_shots(tmp_path / "oom.mp4", [("testsrc2", 1.0)], size="160x120").read_bytes()
        used = int(raw.info("memory")["used_memory"])
        raw.config_set("maxmemory", str(used // 2))  # over the limit now: every write is refused
        try:
            r = c.post("/v1/edits", json=tiny_edit([1]))
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "store_full"
            assert int(r.headers["Retry-After"]) > 0
            r = c.post("/v1/batches", json={"items": [tiny_edit([1])]})
            assert r.status_code == 503 and r.json()["error"]["code"] == "store_full", r.text
            r = c.post("/v1/clips", files={"file": ("oom.mp4", footage, "video/mp4")})
            assert r.status_code == 503 and r.json()["error"]["code"] == "store_full", r.text
            assert int(r.headers["Retry-After"]) > 0
            r = c.post("/v1/images", files={"file": ("o.png", _png(9), "image/png")})
            assert r.status_code == 503 and r.json()["error"]["code"] == "store_full", r.text
            assert int(r.headers["Retry-After"]) > 0
            assert not any(lay.uploads_tmp.iterdir()), "a refused upload left its temp file"
            # Reads still answer, and deleting (which frees memory) still works.
            assert c.get(f"/v1/jobs/{old}").json()["state"] == finished["state"]
            assert c.get("/v1/jobs").status_code == 200
            r = c.delete(f"/v1/jobs/{old}", params={"purge": "true"})
            assert r.status_code == 204, r.text
        finally:
            raw.config_set("maxmemory", str(MAXMEMORY_MB * 1024 * 1024))
        r = c.post("/v1/edits", json=tiny_edit([1]))
        assert r.status_code == 202, r.text
        c.delete(f"/v1/jobs/{r.json()['job_id']}")
