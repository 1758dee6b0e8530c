"""Pieces every route module uses: the services bundle and the dependency aliases (`ServicesDep`,
`KeyDep`, `AdminDep`), error helpers, admission (`admit_jobs`: the one place a 429 is answered),
record -> response mapping."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import redis
from fastapi import Depends, HTTPException, Request

from autocut.render.outputs import RESULT_FILES
from server.auth import Principal, require_admin, require_key, sign_download, verify_download
from server.queue import JobQueue
from server.schemas import (
    ClipOut,
    ErrorBody,
    ErrorInfo,
    IngestOutcome,
    JobStatus,
    PlanReview,
    RebuiltIndex,
    ResultLinks,
    SignedLinks,
    VariantResult,
    job_state_name,
)
from server.settings import Settings
from server.storage import Layout
from server.store import ACTIVE_STATES, Admission, ClipRecord, JobKind, JobRecord, JobState, JobStore, NewJob

__all__ = [
    "ARTIFACTS",
    "ERROR_RESPONSES",
    "AdminDep",
    "KeyDep",
    "Services",
    "ServicesDep",
    "admit_jobs",
    "api_error",
    "clip_out",
    "enqueue_admitted",
    "get_services",
    "job_status",
    "retry_after_s",
    "storage_quota_error",
    "thumbnail_link",
]

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    store: JobStore
    queue: JobQueue
    layout: Layout


def get_services(request: Request) -> Services:
    return request.app.state.services


# Route parameters: the services bundle, the caller's API key (401 without one), an admin key (403).
ServicesDep = Annotated[Services, Depends(get_services)]
KeyDep = Annotated[Principal, Depends(require_key)]
AdminDep = Annotated[Principal, Depends(require_admin)]


def scrub_paths(message: str, settings: Settings) -> str:
    """`message` without the server's own directories: a path under the library or the data directory is
    shown relative to it (``media/kitchen.mp4``, ``jobs/job_x/...``), so an error names the file but not
    where the server keeps it."""
    import re

    out = message
    for root in (settings.library_dir, settings.data_dir):
        if not root:
            continue
        for form in {str(root).rstrip("/"), str(Path(root).resolve()).rstrip("/")}:
            out = re.sub(re.escape(form) + r"/?", "", out)
    return out


def api_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> HTTPException:
    return HTTPException(status, detail={"code": code, "message": message}, headers=headers)


def _resp(desc: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": desc}


# Documented error answers, shared by the routes' `responses=`.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _resp("Malformed request (e.g. invalid JSON)"),
    401: _resp("Missing or invalid API key"),
    404: _resp("No such resource for this API key"),
    422: _resp("Well-formed but invalid (unknown clip ids, bad options, reused idempotency key)"),
    429: _resp("Queue full: retry after the number of seconds in Retry-After"),
}


def _ts(x: float | None) -> datetime | None:
    return datetime.fromtimestamp(x, UTC) if x else None


def _created(x: float) -> datetime:
    return datetime.fromtimestamp(x, UTC)


# The downloadable files of one variant, by the names the API uses (`autocut.render.outputs`).
ARTIFACTS = tuple(RESULT_FILES)


def result_links(job_id: str, variant: int) -> ResultLinks:
    base = f"/v1/jobs/{job_id}/results/{variant}"
    return ResultLinks(**{a: f"{base}/{a}" for a in ARTIFACTS})


def signed_links(settings: Settings, job_id: str, variant: int, owner: str) -> SignedLinks | None:
    ttl = settings.signed_link_ttl_s
    if ttl <= 0:
        return None
    pepper = settings.secret_key.get_secret_value()
    links = {a: sign_download(pepper, f"/v1/jobs/{job_id}/results/{variant}/{a}", ttl, owner) for a in ARTIFACTS}
    return SignedLinks(**links, expires_at=datetime.fromtimestamp(int(time.time()) + ttl, UTC))


def signed_or_key(
    request: Request,
    services: Services,
    job_id: str,
    path: str,
    expires: int | None,
    signature: str | None,
    api_key: str | None,
    bearer: Any,
) -> Principal | None:
    """The caller of a job's download `path`: None for a valid signed link (made for the job's owner, whose
    key still exists), 403 for an invalid one; without a signature, the caller's key as usual."""
    if signature is None:
        return require_key(request, api_key, bearer)
    job = services.store.get_job(job_id)
    owner = job.owner if job is not None else ""
    alive = bool(owner) and services.store.api_key_exists(owner)
    if verify_download(services.settings.secret_key.get_secret_value(), path, expires, signature, owner, alive):
        return None
    raise api_error(403, "bad_signature", "the signed link is invalid or has expired")


def thumbnail_link(job_id: str, variant: int, segment: int) -> str:
    """Where segment `segment` (0-based) of plan `variant` of a `stop_after: plan` job is downloaded."""
    return f"/v1/jobs/{job_id}/plans/{variant}/thumbnails/{segment}"


def plan_review(job_id: str, r: dict[str, Any], settings: Settings, owner: str) -> PlanReview:
    """A `type: plan` result (`server.jobspec.review_result`) with its thumbnail links (signed ones too)."""
    links = [thumbnail_link(job_id, r["variant"], k) for k in range(len(r["plan"]["segments"]))]
    ttl, pepper = settings.signed_link_ttl_s, settings.secret_key.get_secret_value()
    signed = [sign_download(pepper, link, ttl, owner) for link in links] if ttl > 0 else None
    return PlanReview(
        variant=r["variant"], duration_s=r["duration_s"], plan=r["plan"], thumbnails=links, signed_thumbnails=signed
    )


def job_status(job: JobRecord, settings: Settings) -> JobStatus:
    variants, ingest, rebuild = [], None, None
    plans: list[PlanReview] = []
    for r in job.results:
        if r.get("type") == "variant":
            v = r["variant"]
            variants.append(
                VariantResult(
                    variant=v,
                    duration_s=r["duration_s"],
                    width=r["width"],
                    height=r["height"],
                    planner=r.get("planner", ""),
                    plan_id=r.get("plan_id", ""),
                    quality=r.get("quality", "final"),
                    render_s=r.get("render_s"),
                    preset=r.get("preset"),
                    selfcheck=r.get("selfcheck"),
                    links=result_links(job.job_id, v),
                    signed_links=signed_links(settings, job.job_id, v, job.owner),
                )
            )
        elif r.get("type") == "plan":
            plans.append(plan_review(job.job_id, r, settings, job.owner))
        elif r.get("type") == "ingest":
            ingest = IngestOutcome(clip_id=r["clip_id"], photo_id=r.get("photo_id"), status=r["status"])
        elif r.get("type") == "rebuild":
            rebuild = (rebuild or []) + [
                RebuiltIndex(kind=r["kind"], count=r["count"], factory=r["factory"], total_time_s=r["total_time_s"])
            ]
    error = None
    if job.state in (JobState.FAILED, JobState.CANCELLED) and job.error_code:
        error = ErrorInfo(code=job.error_code, message=scrub_paths(job.error_message, settings))
    return JobStatus(
        job_id=job.job_id,
        kind=cast(JobKind, job.kind),  # admitted as a JobKind (the model validates it again)
        state=job_state_name(job.state),
        stage=job.stage,
        progress_pct=job.progress,
        error=error,
        created_at=_created(job.created_at),
        started_at=_ts(job.started_at),
        finished_at=_ts(job.finished_at),
        attempts=job.deliveries,
        batch_id=job.batch_id or None,
        results=variants,
        plans=plans,
        ingest=ingest,
        rebuild=rebuild,
        timings=job.timings,
    )


def clip_out(
    clip: ClipRecord, job: JobRecord | None, *, duplicate: bool = False, settings: Settings | None = None
) -> ClipOut:
    state: Literal["ingesting", "ready", "failed"] = "ready"
    photo_id: int | None = None
    error: ErrorInfo | None = None
    if clip.kind == "video":
        if job is None or job.state in ACTIVE_STATES:
            state = "ingesting"
        elif job.state == JobState.DONE:
            state = "ready"
            photo_id = next((r.get("photo_id") for r in job.results if r.get("type") == "ingest"), None)
        else:
            state = "failed"
            error = ErrorInfo(
                code=job.error_code or "ingest_failed",
                message=scrub_paths(job.error_message or job.state, settings)
                if settings
                else job.error_message or job.state,
            )
    return ClipOut(
        clip_id=clip.clip_id,
        kind=clip.kind,
        filename=clip.filename,
        sha256=clip.sha256,
        size_bytes=clip.size_bytes,
        duration_s=clip.duration_s or None,
        width=clip.width,
        height=clip.height,
        state=state,
        photo_id=photo_id,
        error=error,
        job_id=clip.job_id or None,
        created_at=_created(clip.created_at),
        duplicate=duplicate,
    )


def enqueue_admitted(services: Services, job_ids: tuple[str, ...] | list[str]) -> None:
    """Hand admitted jobs to the queue. A failure here loses nothing: the jobs are recorded with
    `enqueued=0` and the reconciler enqueues them, so the client still gets its 202."""
    try:
        for jid in job_ids:
            services.queue.enqueue(jid)
        services.store.mark_enqueued(job_ids)
    except redis.RedisError as exc:
        log.warning("enqueue of %d admitted job(s) failed (%s); the reconciler will enqueue them", len(job_ids), exc)


def admit_jobs(
    services: Services,
    owner: str,
    jobs: Sequence[NewJob],
    *,
    idempotency_key: str | None = None,
    fingerprint: str = "",
    batch_id: str = "",
    clip: ClipRecord | None = None,
    reservation: str = "",
) -> Admission:
    """`JobStore.admit` under the service's bounds. A full queue, or a key at its own limit of
    active jobs, is answered here: 429 with a Retry-After estimate; a key without room in its storage quota
    too (`storage_quota_error`: 507, or 413 for an upload larger than the whole quota). Other outcomes
    (created, replay, conflict, clip_exists) are the caller's to answer. `reservation`: the upload's hold on
    the quota (`JobStore.reserve_upload_bytes`), replaced by the charge when the clip is created."""
    s = services.settings
    adm = services.store.admit(
        owner,
        jobs,
        max_active=s.max_active_jobs,
        max_active_per_owner=s.max_active_jobs_per_key,
        idempotency_key=idempotency_key,
        fingerprint=fingerprint,
        idempotency_ttl_s=s.idempotency_ttl_s,
        batch_id=batch_id,
        clip=clip,
        max_stored=s.max_stored_bytes_per_key,
        reservation=reservation,
    )
    if adm.status == "over_quota":
        raise storage_quota_error(s, adm.stored_bytes, adm.reserved_bytes, clip.size_bytes if clip else None)
    if adm.status == "busy":
        wait = retry_after_s(services, adm.active + len(jobs) - s.max_active_jobs)
        raise api_error(
            429, "queue_full", f"too many jobs queued or running; retry in {wait} s", headers={"Retry-After": str(wait)}
        )
    return adm


def storage_quota_error(
    settings: Settings, stored: int, reserved: int, size: int | None, *, upload: str = ""
) -> HTTPException:
    """The answer when a key's storage quota has no room: for an upload of `size` bytes (None: a new job)
    that would pass it 507 (413 when larger than the whole quota), for a job once the key is at or over it 507;
    code `storage_quota`, naming the quota, the key's usage and the request's size (`upload`: how to name the
    upload when its exact size is not known yet)."""
    limit = settings.max_stored_bytes_per_key
    held = f" (+{reserved} held by its uploads in progress)" if reserved else ""
    usage = f"this key stores {stored} bytes{held} of its storage quota of {limit} bytes"
    fix = "; delete uploads (DELETE /v1/clips/{id}, /v1/images/{id}) or finished jobs (DELETE /v1/jobs/{id}?purge=true)"
    if size is None:
        return api_error(507, "storage_quota", f"{usage}: no room for a new job's results{fix}")
    upload = upload or f"the upload of {size} bytes"
    if size > limit:
        return api_error(413, "storage_quota", f"{upload} exceeds the storage quota of {limit} bytes")
    return api_error(507, "storage_quota", f"{upload} does not fit: {usage}{fix}")


def retry_after_s(services: Services, excess_jobs: int) -> int:
    """A Retry-After estimate: recent mean job time x jobs ahead / live workers, clamped to [1 s, 1 h]."""
    mean = services.store.stats_mean("job_s") or 30.0
    try:
        workers = max(1, services.store.live_workers(services.settings.heartbeat_timeout_s))
    except Exception:  # noqa: BLE001 - the estimate must not turn a 429 into a 500
        workers = 1
    return int(min(3600, max(1, math.ceil(mean * max(1, excess_jobs) / workers))))
