"""Admin operations (admin API keys only): index rebuilds run as jobs on the workers."""

from __future__ import annotations

from fastapi import APIRouter, Body, Response, status

from server.ids import new_id
from server.jobspec import RebuildJobSpec
from server.routes.common import ERROR_RESPONSES, AdminDep, ServicesDep, admit_jobs, enqueue_admitted
from server.schemas import ErrorBody, JobAccepted, RebuildRequest, job_state_name
from server.store import JobState, NewJob

__all__ = ["router"]

router = APIRouter(tags=["admin"])


@router.post(
    "/v1/indexes/rebuild",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    responses={**ERROR_RESPONSES, 403: {"model": ErrorBody, "description": "Not an admin key"}},
    summary="Rebuild the library's FAISS indexes (frames, clips, BGM) as a job",
)
def rebuild_indexes(
    response: Response,
    principal: AdminDep,
    services: ServicesDep,
    req: RebuildRequest = Body(default_factory=RebuildRequest),
) -> JobAccepted:
    job = NewJob(job_id=new_id("job"), kind="rebuild", spec=RebuildJobSpec.from_request(req).model_dump(mode="json"))
    admit_jobs(services, principal.key_id, [job])
    enqueue_admitted(services, [job.job_id])
    response.headers["Location"] = f"/v1/jobs/{job.job_id}"
    return JobAccepted(job_id=job.job_id, state=job_state_name(JobState.QUEUED), status_url=f"/v1/jobs/{job.job_id}")
