"""Uploads: POST /v1/clips (videos, ingested as a job) and POST /v1/images (product photos).

The body is parsed as it arrives and written straight to a temp file (never held in memory),
with the size limit enforced while streaming. The file is then checked by its first bytes
(an allow-list of containers) and by ffprobe; anything rejected is deleted before answering.
Accepted files are stored content-addressed; the same key uploading the same bytes again gets
its existing clip back (200, `duplicate: true`) instead of a second copy and a second ingest, unless
the ingest of that clip failed or was cancelled: then the upload is a new clip and is ingested again.

DELETE removes an upload's record and its ingest job, and the file once no key owns that content (the
retention sweep does the same for uploads older than `upload_retention_s`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
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
    413: {"model": ErrorBody, "description": "File larger than the upload limit"},
    415: {"model": ErrorBody, "description": "Not an accepted media type"},
}


async def _receive(request: Request, services: Services, max_bytes: int, principal: Principal) -> ReceivedFile:
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
        return await receive_multipart_file(
            request.headers.get("content-type"),
            request.stream(),
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
    received = await _receive(request, services, s.max_upload_bytes, principal)
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
        adm = admit_jobs(services, principal.key_id, [job], clip=clip)  # 429 when the queue is full
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


@router.post(
    "/v1/images",
    status_code=201,
    response_model=ClipOut,
    responses=_UPLOAD_RESPONSES,
    openapi_extra=_multipart_doc("The product photo (JPEG, PNG or WebP)"),
    summary="Upload a product photo (used via product.image_id)",
)
async def upload_image(request: Request, response: Response, principal: KeyDep, services: ServicesDep) -> ClipOut:
    received = await _receive(request, services, services.settings.max_image_bytes, principal)
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
        adm = admit_jobs(services, principal.key_id, [], clip=rec)  # no job: never refused as busy
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
