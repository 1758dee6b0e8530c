"""Admin operations (admin API keys only): index rebuilds run as jobs on the workers."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Body, Depends, Response, status

from server.auth import Principal, require_admin
from server.routes.common import (
    ERROR_RESPONSES,
    Services,
    api_error,
    enqueue_admitted,
    get_services,
    retry_after_s,
)
from server.schemas import ErrorBody, JobAccepted, RebuildRequest
from server.store import NewJob

__all__ = ["router"]

router = APIRouter(tags=["admin"])


@router.post("/v1/indexes/rebuild", status_code=status.HTTP_202_ACCEPTED, response_model=JobAccepted,
             responses={**ERROR_RESPONSES, 403: {"model": ErrorBody, "description": "Not an admin key"}},
             summary="Rebuild the library's FAISS indexes (frames, clips, BGM) as a job")
def rebuild_indexes(response: Response, req: RebuildRequest = Body(default_factory=RebuildRequest),
                    principal: Principal = Depends(require_admin),
                    services: Services = Depends(get_services)) -> JobAccepted:
    s = services.settings
    job = NewJob(job_id=f"job_{secrets.token_hex(12)}", kind="rebuild", spec={"kinds": list(dict.fromkeys(req.kinds))})
    adm = services.store.admit(principal.key_id, [job], max_active=s.max_active_jobs,
                               max_active_per_owner=s.max_active_jobs_per_key)
    if adm.status == "busy":
        wait = retry_after_s(services, adm.active + 1 - s.max_active_jobs)
        raise api_error(429, "queue_full", f"too many jobs queued or running; retry in {wait} s",
                        headers={"Retry-After": str(wait)})
    enqueue_admitted(services, [job.job_id])
    response.headers["Location"] = f"/v1/jobs/{job.job_id}"
    return JobAccepted(job_id=job.job_id, state="queued", status_url=f"/v1/jobs/{job.job_id}")
