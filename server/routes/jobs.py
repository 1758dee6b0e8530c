"""Job status, listing, cancellation, deletion and result downloads (HTTP Range supported).

`DELETE /v1/jobs/{id}` cancels a queued or running job (as it always did); with `?purge=true` it deletes a
finished one (done, failed or cancelled) with its result files. Finished jobs are also deleted by the
retention sweep (`server.retention`)."""

from __future__ import annotations

import json
from pathlib import Path as FsPath
from typing import Annotated, Any, Literal, get_args
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import FileResponse
from fastapi.security import HTTPAuthorizationCredentials

from autocut.render.outputs import RESULT_FILES, RESULT_SUFFIXES
from server.auth import Principal, api_key_header, bearer_scheme
from server.retention import delete_job
from server.routes.common import (
    ARTIFACTS,
    ERROR_RESPONSES,
    KeyDep,
    Services,
    ServicesDep,
    api_error,
    job_status,
    signed_or_key,
)
from server.schemas import JOB_ID_PATTERN, ErrorBody, JobPage, JobStatus
from server.store import JobRecord, JobState

__all__ = ["router"]

router = APIRouter(tags=["jobs"])

JobId = Annotated[str, Path(pattern=JOB_ID_PATTERN, examples=["job_0123456789abcdef01234567"])]

# The path parameter's values: the result files by their API names (`autocut.render.outputs.RESULT_FILES`).
Artifact = Literal["video", "subtitles", "timeline", "plan"]
assert get_args(Artifact) == ARTIFACTS, "Artifact must list RESULT_FILES' kinds in order"

_MEDIA_TYPES = {
    "video": "video/mp4",
    "subtitles": "application/x-subrip",
    "timeline": "application/json",
    "plan": "application/json",
}


def _own_job(services: Services, principal: Principal, job_id: str) -> JobRecord:
    job = services.store.get_job(job_id)
    if job is None or job.owner != principal.key_id:
        # Another key's job answers exactly like a missing one.
        raise api_error(404, "not_found", f"job {job_id} does not exist")
    return job


@router.get("/v1/jobs", response_model=JobPage, responses=ERROR_RESPONSES, summary="Your jobs, newest first")
def list_jobs(
    principal: KeyDep,
    services: ServicesDep,
    offset: Annotated[int, Query(ge=0, le=10**6)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> JobPage:
    jobs, total = services.store.list_jobs(principal.key_id, limit=limit, offset=offset)
    return JobPage(items=[job_status(j, services.settings) for j in jobs], total=total, offset=offset, limit=limit)


@router.get(
    "/v1/jobs/{job_id}",
    response_model=JobStatus,
    responses=ERROR_RESPONSES,
    summary="State, stage, progress, error and result links of a job",
)
def get_job(job_id: JobId, principal: KeyDep, services: ServicesDep) -> JobStatus:
    return job_status(_own_job(services, principal, job_id), services.settings)


@router.delete(
    "/v1/jobs/{job_id}",
    response_model=JobStatus,
    status_code=202,
    responses={
        **ERROR_RESPONSES,
        204: {"description": "purge=true: the finished job, its records and its result files are deleted"},
        409: {
            "model": ErrorBody,
            "description": "Cancel: the job already finished (`already_finished`). Purge: the job is still queued "
            "or running (`job_active`), or it is an upload's ingest (`upload_job`: delete the upload instead)",
        },
    },
    summary="Cancel a job (a running render's ffmpeg is stopped); with purge=true delete a finished job",
)
def cancel_job(
    job_id: JobId,
    principal: KeyDep,
    services: ServicesDep,
    purge: Annotated[
        bool,
        Query(description="Delete the finished job (its status, results and files) instead of cancelling it"),
    ] = False,
) -> JobStatus | Response:
    job = _own_job(services, principal, job_id)
    if purge:
        status, clip = delete_job(services.store, services.layout, job_id, principal.key_id)
        if status == "active":
            raise api_error(
                409,
                "job_active",
                f"job {job_id} is still {job.state.value}; cancel it first (DELETE without purge), "
                "then delete it once it has finished",
            )
        if status == "clip":
            raise api_error(
                409,
                "upload_job",
                f"job {job_id} is the ingest of upload {clip}; delete the upload instead (DELETE /v1/clips/{clip})",
            )
        if status == "missing":
            raise api_error(404, "not_found", f"job {job_id} does not exist")
        return Response(status_code=204)
    outcome = services.store.request_cancel(job_id)
    if outcome.startswith("finished:"):
        raise api_error(
            409,
            "already_finished",
            f"job {job_id} already finished ({outcome.split(':', 1)[1]}); "
            f"delete it with DELETE /v1/jobs/{job_id}?purge=true",
        )
    return job_status(_own_job(services, principal, job_id), services.settings)


def _download_principal(
    request: Request,
    services: Services,
    job_id: str,
    variant: int,
    artifact: str,
    expires: int | None,
    signature: str | None,
    api_key: str | None,
    bearer: HTTPAuthorizationCredentials | None,
) -> Principal | None:
    """A valid signed link needs no key (None); otherwise the caller's key as usual."""
    path = f"/v1/jobs/{job_id}/results/{variant}/{artifact}"
    return signed_or_key(request, services, job_id, path, expires, signature, api_key, bearer)


def without_server_paths(doc: Any, roots: list[FsPath]) -> Any:
    """`doc` (parsed JSON) with every absolute path or file URL made relative: to the first of `roots` that
    holds it (e.g. ``media/kitchen.mp4`` for a library file), else its file name. Applied to the plan and
    OTIO downloads, so a client never learns where the server keeps its files."""
    bases = [str(FsPath(r).resolve()) for r in roots if r]

    def fix(v: str) -> str:
        url = v.startswith("file://")
        raw = unquote(v[7:]) if url else v
        if not raw.startswith("/"):
            return v
        for b in bases:
            if raw == b or raw.startswith(b.rstrip("/") + "/"):
                return raw[len(b) :].lstrip("/") or "."
        return raw.rsplit("/", 1)[-1]

    if isinstance(doc, dict):
        return {k: without_server_paths(v, roots) for k, v in doc.items()}
    if isinstance(doc, list):
        return [without_server_paths(v, roots) for v in doc]
    if isinstance(doc, str):
        return fix(doc)
    return doc


@router.get(
    "/v1/jobs/{job_id}/results/{variant}/{artifact}",
    response_class=FileResponse,
    responses={
        **ERROR_RESPONSES,
        200: {
            "description": "The file (byte ranges supported)",
            "content": {
                "video/mp4": {"schema": {"type": "string", "format": "binary"}},
                "application/x-subrip": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "object"}},
            },
        },
        206: {"description": "Partial content (Range request)"},
        403: {"model": ErrorBody, "description": "Invalid or expired signed link"},
        416: {"description": "Range not satisfiable"},
    },
    summary="Download a result: video (MP4), subtitles (SRT), timeline (OTIO) or plan (JSON)",
)
def get_result(
    request: Request,
    services: ServicesDep,
    job_id: JobId,
    variant: Annotated[int, Path(ge=1, le=8)],
    artifact: Artifact,
    expires: Annotated[int | None, Query(ge=0, le=2**40, description="Signed links: expiry (Unix s)")] = None,
    signature: Annotated[
        str | None, Query(pattern=r"^[0-9a-f]{32}$", description="Signed links: the signature")
    ] = None,
    api_key: str | None = Depends(api_key_header),
    bearer: HTTPAuthorizationCredentials | None = Depends(bearer_scheme),
) -> Response:
    principal = _download_principal(request, services, job_id, variant, artifact, expires, signature, api_key, bearer)
    job = services.store.get_job(job_id)
    if job is None or (principal is not None and job.owner != principal.key_id):
        raise api_error(404, "not_found", f"job {job_id} does not exist")
    if job.state != JobState.DONE:
        raise api_error(404, "not_ready", f"job {job_id} has no results (state {job.state})")
    if not any(r.get("type") == "variant" and r.get("variant") == variant for r in job.results):
        raise api_error(404, "not_found", f"job {job_id} has no variant {variant}")
    path = services.layout.variant_dir(job_id, variant) / RESULT_FILES[artifact]
    if not path.is_file():
        raise api_error(404, "not_found", f"{artifact} of job {job_id} variant {variant} is missing")
    if artifact in ("plan", "timeline"):
        # The sidecars name the server's media files; a client gets them without the server's paths.
        s = services.settings
        doc = without_server_paths(json.loads(path.read_text(encoding="utf-8")), [s.library_dir, s.data_dir])
        return Response(
            json.dumps(doc, indent=2, ensure_ascii=False),
            media_type=_MEDIA_TYPES[artifact],
            headers={"Content-Disposition": f'attachment; filename="{job_id}-v{variant}{RESULT_SUFFIXES[artifact]}"'},
        )
    return FileResponse(
        path,
        media_type=_MEDIA_TYPES[artifact],
        filename=f"{job_id}-v{variant}{RESULT_SUFFIXES[artifact]}",
        content_disposition_type="inline" if artifact == "video" else "attachment",
    )
