"""Uploads: POST /v1/clips (videos, ingested as a job) and POST /v1/images (product photos).

The body is parsed as it arrives and written straight to a temp file (never held in memory),
with the size limit enforced while streaming. The file is then checked by its first bytes
(an allow-list of containers) and by ffprobe; anything rejected is deleted before answering.
Accepted files are stored content-addressed; the same key uploading the same bytes again gets
its existing clip back (200, `duplicate: true`) instead of a second copy and a second ingest, unless
the ingest of that clip failed or was cancelled: then the upload is a new clip and is ingested again.

DELETE removes an upload's record and its ingest job, and the file once no key owns that content (the
retention sweep does the same for uploads older than `upload_retention_s`).

Storage quota (`max_stored_bytes_per_key`, docs/deploy.md "Storage quota"): an upload holds room in its key's
quota while it streams (`_QuotaHold`: all of a declared Content-Length at once, else growing with the body), so
it is refused (507 `storage_quota`; 413 when larger than the whole quota) as soon as it cannot fit beside what
the key stores and its other uploads in flight, and its bytes are charged when it is admitted.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from autocut.errors import MediaError
from server.auth import Principal
from server.ids import new_id
from server.jobspec import IngestJobSpec
from server.retention import delete_upload
from server.routes.common import (
    ERROR_RESPONSES,
    KeyDep,
    Services,
    ServicesDep,
    admit_jobs,
    api_error,
    clip_out,
    enqueue_admitted,
    storage_quota_error,
)
from server.schemas import CLIP_ID_PATTERN, IMAGE_ID_PATTERN, ClipOut, ClipPage, ErrorBody
from server.settings import media_limits
from server.storage import (
    ReceivedFile,
    UploadError,
    check_upload_media,
    receive_multipart_file,
    sniff_image,
    sniff_video,
)
from server.store import ClipRecord, NewJob

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(tags=["uploads"])

# Multipart framing around the file: a request may exceed the file limit by this much.
_FRAMING_BYTES = 64 * 1024
# A streamed upload without a Content-Length holds this much quota ahead of what it has received (fewer round
# trips to Redis; at most this much more than it needs is held from the key's parallel uploads meanwhile).
_HOLD_AHEAD_BYTES = 1024 * 1024


def _multipart_doc(what: str) -> dict:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {"file": {"type": "string", "format": "binary", "description": what}},
                    }
                }
            },
        }
    }


_UPLOAD_RESPONSES = {
    **ERROR_RESPONSES,
    200: {"model": ClipOut, "description": "Same content already uploaded by this key: the existing record"},
    413: {"model": ErrorBody, "description": "File larger than the upload limit, or than the key's storage quota"},
    415: {"model": ErrorBody, "description": "Not an accepted media type"},
    507: {"model": ErrorBody, "description": "No room left in the key's storage quota (`storage_quota`)"},
}


class _QuotaHold:
    """One upload's hold on its key's storage quota (nothing to do when the quota is off). `grow(n)` makes the
    hold at least `n` bytes or refuses the upload; `admit_jobs` turns the hold into the charge; `release` drops
    what is left of it (an upload refused or deduplicated)."""

    def __init__(self, services: Services, key_id: str) -> None:
        self.store = services.store
        self.settings = services.settings
        self.key_id = key_id
        self.limit = services.settings.max_stored_bytes_per_key
        self.token = uuid.uuid4().hex if self.limit > 0 else ""
        self.held = 0

    async def grow(self, size: int, *, ahead: int = 0, upload: str = "") -> None:
        """Hold at least `size` bytes (and up to `ahead` more if there is room), else raise a `storage_quota`
        `UploadError` (`upload`: how its message names the upload)."""
        if not self.token or size <= self.held:
            return
        s = self.settings
        granted, used, others = await run_in_threadpool(
            functools.partial(
                self.store.reserve_upload_bytes,
                self.key_id,
                self.token,
                size,
                ahead_bytes=ahead,
                max_stored=self.limit,
                ttl_s=s.upload_timeout_s + 60,
            )
        )
        self.held = granted
        if granted < size:  # no room: the store dropped the hold
            exc = storage_quota_error(s, used, others, size, upload=upload)
            raise UploadError(exc.status_code, "storage_quota", exc.detail["message"])  # type: ignore[index]

    async def metered(self, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """`body`, refused (`UploadError`) as soon as what arrived cannot fit (the multipart framing, up to
        `_FRAMING_BYTES`, not counted: the exact file size is charged at admission)."""
        n = 0
        async for chunk in body:
            n += len(chunk)
            if n - _FRAMING_BYTES > self.held:
                received = f"the upload ({n} bytes received so far)"
                await self.grow(n - _FRAMING_BYTES, ahead=_HOLD_AHEAD_BYTES, upload=received)
            yield chunk

    async def release(self) -> None:
        if self.token:
            with contextlib.suppress(Exception):  # an unreleased hold expires by itself
                await run_in_threadpool(self.store.release_upload_bytes, self.key_id, self.token)


async def _receive(
    request: Request, services: Services, max_bytes: int, principal: Principal, hold: _QuotaHold
) -> ReceivedFile:
    cl = request.headers.get("content-length")
    if cl is not None and cl.isdigit() and int(cl) > max_bytes + _FRAMING_BYTES:
        raise api_error(413, "too_large", f"upload of {cl} bytes exceeds the limit of {max_bytes} bytes")
    s = services.settings
    store = services.store
    token = await run_in_threadpool(
        store.upload_slot, principal.key_id, s.max_parallel_uploads_per_key, int(s.upload_timeout_s) + 60
    )
    if token is None:
        raise api_error(
            429,
            "too_many_uploads",
            f"this key already streams {s.max_parallel_uploads_per_key} uploads; wait for one to finish",
            headers={"Retry-After": "5"},
        )
    try:
        if cl is not None and cl.isdigit():  # refused before a byte is read when it cannot fit
            await hold.grow(max(0, int(cl) - _FRAMING_BYTES), upload=f"the upload (a request of {cl} bytes)")
        return await receive_multipart_file(
            request.headers.get("content-type"),
            hold.metered(request.stream()),
            tmp_dir=services.layout.uploads_tmp,
            max_bytes=max_bytes,
            timeout_s=s.upload_timeout_s,
        )
    except UploadError as exc:
        raise api_error(exc.status, exc.code, exc.message) from None
    finally:
        with contextlib.suppress(Exception):  # an expired slot frees itself
            await run_in_threadpool(store.release_upload_slot, principal.key_id, token)


def _discard(received: ReceivedFile) -> None:
    with contextlib.suppress(FileNotFoundError):
        received.tmp_path.unlink()


@router.post(
    "/v1/clips",
    status_code=201,
    response_model=ClipOut,
    responses=_UPLOAD_RESPONSES,
    openapi_extra=_multipart_doc("The video (MP4, MOV, MKV, WebM, AVI, ...)"),
    summary="Upload a video clip (multipart, streamed); it is ingested as a job",
)
async def upload_clip(request: Request, response: Response, principal: KeyDep, services: ServicesDep) -> ClipOut:
    s = services.settings
    hold = _QuotaHold(services, principal.key_id)
    try:
        received = await _receive(request, services, s.max_upload_bytes, principal, hold)
    except BaseException:
        await hold.release()
        raise
    try:
        ext = sniff_video(received.head)
        if ext is None:
            raise api_error(
                415,
                "unsupported_media_type",
                f"{received.filename}: not a video container this service accepts "
                "(MP4/MOV/3GP, MKV/WebM, AVI, FLV, MPEG-PS/TS, WMV)",
            )
        try:
            info = await run_in_threadpool(
                check_upload_media,
                received.tmp_path,
                min_duration_s=s.min_clip_duration_s,
                max_duration_s=s.max_clip_duration_s,
                limits=media_limits(s),  # what the workers enforce, checked before anything is stored
            )
        except MediaError as exc:
            raise api_error(422, "invalid_media", f"{received.filename}: {exc.reason}") from None
        dest = services.layout.blob_path(received.sha256, ext)
        clip = ClipRecord(
            clip_id=new_id("clp"),
            owner=principal.key_id,
            kind="video",
            sha256=received.sha256,
            filename=received.filename,
            size_bytes=received.size_bytes,
            path=str(dest),
            created_at=time.time(),
            duration_s=info.duration_s,
            width=info.width,
            height=info.height,
            job_id=new_id("job"),
        )
        spec = IngestJobSpec(clip_id=clip.clip_id, path=str(dest), sha256=received.sha256, filename=received.filename)
        job = NewJob(job_id=clip.job_id, kind="ingest", clip_id=clip.clip_id, spec=spec.model_dump(mode="json"))
        # 429 when the queue is full, 507 when the key's storage quota has no room for the clip
        adm = admit_jobs(services, principal.key_id, [job], clip=clip, reservation=hold.token)
        if adm.status == "clip_exists":
            _discard(received)
            existing = services.store.get_clip(adm.clip_id)
            assert existing is not None
            response.status_code = 200
            return clip_out(
                existing, services.store.get_job(existing.job_id), duplicate=True, settings=services.settings
            )
        await run_in_threadpool(services.layout.store_blob, received.tmp_path, dest)
        enqueue_admitted(services, [job.job_id])
        response.headers["Location"] = f"/v1/clips/{clip.clip_id}"
        return clip_out(clip, services.store.get_job(job.job_id), settings=services.settings)
    finally:
        _discard(received)
        await hold.release()


@router.post(
    "/v1/images",
    status_code=201,
    response_model=ClipOut,
    responses=_UPLOAD_RESPONSES,
    openapi_extra=_multipart_doc("The product photo (JPEG, PNG or WebP)"),
    summary="Upload a product photo (used via product.image_id)",
)
async def upload_image(request: Request, response: Response, principal: KeyDep, services: ServicesDep) -> ClipOut:
    hold = _QuotaHold(services, principal.key_id)
    try:
        received = await _receive(request, services, services.settings.max_image_bytes, principal, hold)
    except BaseException:
        await hold.release()
        raise
    try:
        ext = sniff_image(received.head)
        if ext is None:
            raise api_error(415, "unsupported_media_type", f"{received.filename}: not a JPEG, PNG or WebP image")
        try:
            width, height = await run_in_threadpool(_check_image, received.tmp_path)
        except ValueError as exc:
            raise api_error(422, "invalid_media", f"{received.filename}: {exc}") from None
        dest = services.layout.blob_path(received.sha256, ext, image=True)
        rec = ClipRecord(
            clip_id=new_id("img"),
            owner=principal.key_id,
            kind="image",
            sha256=received.sha256,
            filename=received.filename,
            size_bytes=received.size_bytes,
            path=str(dest),
            created_at=time.time(),
            width=width,
            height=height,
        )
        # No job: never refused as busy; 507 when the key's storage quota has no room for the image.
        adm = admit_jobs(services, principal.key_id, [], clip=rec, reservation=hold.token)
        if adm.status == "clip_exists":
            existing = services.store.get_clip(adm.clip_id)
            assert existing is not None
            response.status_code = 200
            return clip_out(existing, None, duplicate=True)
        await run_in_threadpool(services.layout.store_blob, received.tmp_path, dest)
        response.headers["Location"] = f"/v1/images/{rec.clip_id}"
        return clip_out(rec, None)
    finally:
        _discard(received)
        await hold.release()


def _check_image(path: os.PathLike[str]) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            w, h = im.size
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"not a readable image ({exc})") from None
    except Image.DecompressionBombError:
        raise ValueError("image has too many pixels") from None
    if w < 16 or h < 16:
        raise ValueError(f"image is too small ({w}x{h})")
    return w, h


def _own_upload(services: Services, principal: Principal, upload_id: str, kind: str) -> ClipOut:
    rec = services.store.get_clip(upload_id)
    if rec is None or rec.owner != principal.key_id or rec.kind != kind:
        raise api_error(404, "not_found", f"{upload_id} does not exist")
    return clip_out(rec, services.store.get_job(rec.job_id) if rec.job_id else None, settings=services.settings)


@router.get("/v1/clips", response_model=ClipPage, responses=ERROR_RESPONSES, summary="Your uploads, newest first")
def list_clips(
    principal: KeyDep,
    services: ServicesDep,
    offset: Annotated[int, Query(ge=0, le=10**6)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ClipPage:
    recs, total = services.store.list_clips(principal.key_id, limit=limit, offset=offset)
    jobs = services.store.get_jobs([r.job_id for r in recs if r.job_id])
    by_id = {j.job_id: j for j in jobs if j is not None}
    return ClipPage(
        items=[clip_out(r, by_id.get(r.job_id), settings=services.settings) for r in recs],
        total=total,
        offset=offset,
        limit=limit,
    )


@router.get(
    "/v1/clips/{clip_id}",
    response_model=ClipOut,
    responses=ERROR_RESPONSES,
    summary="An uploaded clip and its ingest state",
)
def get_clip(
    clip_id: Annotated[str, Path(pattern=CLIP_ID_PATTERN)], principal: KeyDep, services: ServicesDep
) -> ClipOut:
    return _own_upload(services, principal, clip_id, "video")


@router.get(
    "/v1/images/{image_id}", response_model=ClipOut, responses=ERROR_RESPONSES, summary="An uploaded product photo"
)
def get_image(
    image_id: Annotated[str, Path(pattern=IMAGE_ID_PATTERN)], principal: KeyDep, services: ServicesDep
) -> ClipOut:
    return _own_upload(services, principal, image_id, "image")


def _delete_own_upload(services: Services, principal: Principal, upload_id: str, kind: str) -> Response:
    rec = services.store.get_clip(upload_id)
    if rec is None or rec.owner != principal.key_id or rec.kind != kind:
        raise api_error(404, "not_found", f"{upload_id} does not exist")
    res = delete_upload(services.store, services.layout, upload_id, principal.key_id)
    if res.status == "active":
        raise api_error(
            409,
            "ingesting",
            f"{upload_id} is still being ingested (job {res.job_id}); cancel that job first "
            f"(DELETE /v1/jobs/{res.job_id}) or wait for it to finish",
        )
    if res.status == "missing":
        raise api_error(404, "not_found", f"{upload_id} does not exist")
    return Response(status_code=204)


@router.delete(
    "/v1/clips/{clip_id}",
    status_code=204,
    response_class=Response,
    responses={
        **ERROR_RESPONSES,
        204: {"description": "Deleted: the record, its ingest job, and the file once no key owns that content"},
        409: {"model": ErrorBody, "description": "Its ingest job is still queued or running (`ingesting`)"},
    },
    summary="Delete an uploaded clip (its ingest job too; the file once no key owns the content)",
)
def delete_clip(
    clip_id: Annotated[str, Path(pattern=CLIP_ID_PATTERN)], principal: KeyDep, services: ServicesDep
) -> Response:
    return _delete_own_upload(services, principal, clip_id, "video")


@router.delete(
    "/v1/images/{image_id}",
    status_code=204,
    response_class=Response,
    responses={
        **ERROR_RESPONSES,
        204: {"description": "Deleted: the record, and the file once no key owns that content"},
    },
    summary="Delete an uploaded product photo",
)
def delete_image(
    image_id: Annotated[str, Path(pattern=IMAGE_ID_PATTERN)], principal: KeyDep, services: ServicesDep
) -> Response:
    return _delete_own_upload(services, principal, image_id, "image")
