"""POST /v1/edits, POST /v1/batches, GET /v1/batches/{id}: admission of edit jobs.

Every reference in a request is checked before anything is stored (unknown or foreign clip ids,
photo ids of other keys' uploads, paths outside the media root): a rejected request leaves no
record. Admission itself is one atomic step in the job store (idempotency key, queue bound,
records), then the job ids are enqueued.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Path, Response, status

from autocut.errors import AutoCutError, CatalogError
from autocut.library.catalog import Catalog
from server.auth import Principal
from server.ids import new_id
from server.jobspec import EditJobSpec, LibraryRef, MediaRef, PoolRef, UploadRef
from server.routes.common import (
    ERROR_RESPONSES,
    KeyDep,
    Services,
    ServicesDep,
    admit_jobs,
    api_error,
    enqueue_admitted,
)
from server.schemas import (
    BATCH_ID_PATTERN,
    BatchAccepted,
    BatchItemStatus,
    BatchRequest,
    BatchStatus,
    ClipRef,
    EditRequest,
    ErrorInfo,
    JobAccepted,
    job_state_name,
)
from server.storage import PathRefError, resolve_media_path
from server.store import JobState, NewJob
from server.tasks import AUTO_PLANNER

__all__ = ["IdempotencyKey", "Resolver", "accepted", "admit", "request_fingerprint", "router"]

log = logging.getLogger(__name__)

router = APIRouter(tags=["edits"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        pattern=r"^[\x21-\x7e]{1,255}$",
        description="Repeat a POST safely: the same key with the same body returns the first answer; "
        "with another body it is refused (422). Kept for 24 h.",
    ),
]


def request_fingerprint(route: str, body: Any) -> str:
    return hashlib.sha256(f"{route}|{json.dumps(body, sort_keys=True, separators=(',', ':'))}".encode()).hexdigest()


class Resolver:
    """Checks one request's references; opens the catalog only if a reference needs it."""

    def __init__(self, services: Services, principal: Principal) -> None:
        self.s = services
        self.p = principal
        self._cat: Catalog | None = None
        self._cat_error: str | None = None

    def catalog(self) -> Catalog:
        if self._cat is None:
            if self._cat_error is not None:
                raise api_error(422, "no_library", self._cat_error)
            try:
                self._cat = Catalog.open(self.s.settings.library_dir, create=False)
            except CatalogError:
                self._cat_error = "the material library is empty (nothing ingested yet)"
                raise api_error(422, "no_library", self._cat_error) from None
        return self._cat

    def close(self) -> None:
        if self._cat is not None:
            self._cat.close()

    def edit_spec(self, req: EditRequest, where: str = "") -> EditJobSpec:
        s = self.s.settings
        if len(req.clips) > s.max_pool_items:
            raise api_error(
                422,
                "pool_too_large",
                f"{where}the clip pool has {len(req.clips)} items; the limit is {s.max_pool_items}",
            )
        from autocut.planning.planners.base import PLANNERS

        planner = req.options.planner or s.default_planner
        if planner not in PLANNERS and planner != AUTO_PLANNER:
            raise api_error(
                422,
                "unknown_planner",
                f"{where}unknown planner {planner!r}; choose one of {', '.join(sorted([*PLANNERS, AUTO_PLANNER]))}",
            )
        pool = [self._pool_ref(i, ref, where) for i, ref in enumerate(req.clips)]
        image_path = None
        if req.product.image_id is not None:
            img = self.s.store.get_clip(req.product.image_id)
            if img is None or img.owner != self.p.key_id or img.kind != "image":
                raise api_error(422, "unknown_image", f"{where}product image {req.product.image_id} does not exist")
            image_path = img.path
        bgm = req.options.bgm
        if bgm.policy == "track":
            try:
                self.catalog().bgm_track(int(bgm.audio_id))  # type: ignore[arg-type]
            except CatalogError:
                raise api_error(422, "unknown_bgm", f"{where}BGM track {bgm.audio_id} is not in the library") from None
        self._check_voice(req, where)
        return EditJobSpec(request=req, pool=pool, image_path=image_path, planner=planner)

    def _pool_ref(self, i: int, ref: ClipRef, where: str) -> PoolRef:
        item = f"{where}clips[{i}]"
        if ref.clip_id is not None:
            clip = self.s.store.get_clip(ref.clip_id)
            if clip is None or clip.owner != self.p.key_id or clip.kind != "video":
                raise api_error(422, "unknown_clip", f"{item}: clip {ref.clip_id} does not exist")
            job = self.s.store.get_job(clip.job_id) if clip.job_id else None
            if job is not None and job.state in (JobState.FAILED, JobState.CANCELLED):
                raise api_error(
                    422, "clip_not_usable", f"{item}: clip {ref.clip_id} could not be ingested: {job.error_message}"
                )
            return UploadRef(
                kind="upload",
                clip_id=clip.clip_id,
                sha256=clip.sha256,
                path=clip.path,
                ingest_job_id=clip.job_id,
                text=ref.text,
            )
        if ref.photo_id is not None:
            cat = self.catalog()
            try:
                src = cat.source(ref.photo_id)
            except CatalogError:
                raise api_error(
                    422, "unknown_video", f"{item}: photo_id {ref.photo_id} is not in the library"
                ) from None
            if self.s.layout.is_upload(src.path) and not self.s.store.owned_upload_hashes(
                self.p.key_id, [src.content_hash]
            ):
                # Another key's upload: indistinguishable from a missing id.
                raise api_error(422, "unknown_video", f"{item}: photo_id {ref.photo_id} is not in the library")
            return LibraryRef(kind="library", photo_id=src.photo_id, text=ref.text)
        try:
            path = resolve_media_path(self.s.settings.media_dir, ref.path)  # type: ignore[arg-type]
        except PathRefError as exc:
            raise api_error(422, "bad_path", f"{item}: {exc}") from None
        return MediaRef(kind="media", path=str(path.relative_to(self.s.settings.media_dir)), text=ref.text)

    @staticmethod
    def _check_voice(req: EditRequest, where: str) -> None:
        v = req.options.voice
        if v.engine != "espeak" or v.name is None:
            return  # defaults always exist; piper voices are checked by the worker (loading one is heavy)
        from autocut.speech.tts import check_voice
        from autocut.types import VoiceSpec

        try:
            check_voice(VoiceSpec(engine="espeak", name=v.name, language=req.options.language))
        except AutoCutError as exc:
            raise api_error(422, "unknown_voice", f"{where}{exc}") from None


def admit(
    services: Services,
    principal: Principal,
    jobs: list[NewJob],
    *,
    idem: str | None,
    fingerprint: str,
    batch_id: str = "",
) -> tuple[str, tuple[str, ...], str]:
    adm = admit_jobs(services, principal.key_id, jobs, idempotency_key=idem, fingerprint=fingerprint, batch_id=batch_id)
    if adm.status == "conflict":
        raise api_error(422, "idempotency_key_reused", "this Idempotency-Key was used with a different request body")
    if adm.status == "created":
        enqueue_admitted(services, adm.job_ids)
    return adm.status, adm.job_ids, adm.batch_id


_EDIT_BODY = Body(
    openapi_examples={
        "script-driven": {
            "summary": "Script-driven: one clip per sentence",
            "value": {
                "product": {"name": "Juicer Cup", "brand": "FreshCo", "selling_points": ["juice in 30 seconds"]},
                "clips": [{"clip_id": "clp_0123456789abcdef01234567"}, {"photo_id": 3}],
                "script": ["No time for breakfast?", "Fresh juice in thirty seconds."],
                "options": {"aspect": "9:16", "resolution": 1080, "max_duration_s": 30},
            },
        },
        "footage-driven": {
            "summary": "Footage-driven: the planner writes the script",
            "value": {
                "product": {"name": "Trail Shoe", "brand": "Peak", "category": "sports"},
                "clips": [{"photo_id": 1}, {"photo_id": 2}, {"path": "shoot-2024/run.mp4"}],
                "options": {"aspect": "1:1", "resolution": 720, "n_variants": 2, "bgm": {"policy": "auto"}},
            },
        },
    }
)


@router.post(
    "/v1/edits",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    responses={
        **ERROR_RESPONSES,
        202: {
            "description": "Accepted; poll the Location",
            "headers": {"Location": {"schema": {"type": "string"}, "description": "The job's status URL"}},
        },
    },
    summary="Make ads from product info and a clip pool",
)
def create_edit(
    response: Response,
    req: Annotated[EditRequest, _EDIT_BODY],
    principal: KeyDep,
    services: ServicesDep,
    idempotency_key: IdempotencyKey = None,
) -> JobAccepted:
    res = Resolver(services, principal)
    try:
        spec = res.edit_spec(req)
    finally:
        res.close()
    job = NewJob(job_id=new_id("job"), kind="edit", spec=spec.model_dump(mode="json"))
    fp = request_fingerprint("edits", req.model_dump(mode="json"))
    st, ids, _ = admit(services, principal, [job], idem=idempotency_key, fingerprint=fp)
    return accepted(response, services, st, ids[0])


def accepted(response: Response, services: Services, st: str, job_id: str) -> JobAccepted:
    """The 202 answer for one admitted job (`st`: created or replay)."""
    response.headers["Location"] = f"/v1/jobs/{job_id}"
    if st == "replay":
        response.headers["Idempotent-Replayed"] = "true"
        rec = services.store.get_job(job_id)
        return JobAccepted(
            job_id=job_id,
            state=job_state_name(rec.state if rec else JobState.QUEUED),
            status_url=f"/v1/jobs/{job_id}",
            replayed=True,
        )
    return JobAccepted(job_id=job_id, state=job_state_name(JobState.QUEUED), status_url=f"/v1/jobs/{job_id}")


@router.post(
    "/v1/batches",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BatchAccepted,
    responses=ERROR_RESPONSES,
    summary="Submit many edits under one batch id",
)
def create_batch(
    response: Response,
    req: BatchRequest,
    principal: KeyDep,
    services: ServicesDep,
    idempotency_key: IdempotencyKey = None,
) -> BatchAccepted:
    if len(req.items) > services.settings.max_batch_items:
        raise api_error(
            422,
            "batch_too_large",
            f"the batch has {len(req.items)} items; the limit is {services.settings.max_batch_items}",
        )
    batch_id = new_id("bat")
    res = Resolver(services, principal)
    try:
        specs = [res.edit_spec(item, f"items[{i}].") for i, item in enumerate(req.items)]
    finally:
        res.close()
    jobs = [
        NewJob(job_id=new_id("job"), kind="edit", spec=spec.model_dump(mode="json"), batch_id=batch_id, batch_index=i)
        for i, spec in enumerate(specs)
    ]
    fp = request_fingerprint("batches", req.model_dump(mode="json"))
    st, ids, bid = admit(services, principal, jobs, idem=idempotency_key, fingerprint=fp, batch_id=batch_id)
    response.headers["Location"] = f"/v1/batches/{bid}"
    if st == "replay":
        response.headers["Idempotent-Replayed"] = "true"
    return BatchAccepted(batch_id=bid, job_ids=list(ids), status_url=f"/v1/batches/{bid}", replayed=st == "replay")


@router.get(
    "/v1/batches/{batch_id}",
    response_model=BatchStatus,
    responses=ERROR_RESPONSES,
    summary="Per-item status of a batch",
)
def get_batch(
    batch_id: Annotated[str, Path(pattern=BATCH_ID_PATTERN)], principal: KeyDep, services: ServicesDep
) -> BatchStatus:
    found = services.store.get_batch(batch_id)
    if found is None or found[0] != principal.key_id:
        raise api_error(404, "not_found", f"batch {batch_id} does not exist")
    _, created_at, job_ids = found
    items: list[BatchItemStatus] = []
    counts: dict[str, int] = {}
    for i, (jid, job) in enumerate(zip(job_ids, services.store.get_jobs(job_ids))):
        if job is None:
            continue
        counts[job.state.value] = counts.get(job.state.value, 0) + 1
        err = ErrorInfo(code=job.error_code, message=job.error_message) if job.error_code else None
        items.append(
            BatchItemStatus(
                index=i,
                job_id=jid,
                state=job_state_name(job.state),
                stage=job.stage,
                progress_pct=job.progress,
                error=err,
                status_url=f"/v1/jobs/{jid}",
            )
        )
    return BatchStatus(
        batch_id=batch_id,
        state=_batch_state(counts, len(items)),  # type: ignore[arg-type]
        counts=counts,
        created_at=datetime.fromtimestamp(created_at, UTC),
        items=items,
    )


def _batch_state(counts: dict[str, int], n: int) -> str:
    """A batch of `n` items with `counts` jobs per state: running while any item is active (unless all
    are still queued: queued), else the state every item shares, else partial."""
    queued = counts.get(JobState.QUEUED)
    if counts.get(JobState.RUNNING) or (queued and queued != n):
        return "running"
    for state in (JobState.QUEUED, JobState.DONE, JobState.CANCELLED, JobState.FAILED):
        if counts.get(state) == n:
            return state.value
    return "partial"
