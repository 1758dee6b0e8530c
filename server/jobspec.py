"""What a job asks of a worker: the `spec` stored with each job record, as typed models.

The route builds a spec once, from the validated request (after checking its references), and
stores `spec.model_dump(mode="json")`; the worker reads it back with `model_validate`. Defaults
live in the request schema (`server.schemas`) only: the spec carries the values the request
ended up with, and the worker derives autocut's `PlanRequest` from them without defaulting
anything again. The stored JSON is the one these models dump (key order included):

    edit     {"request": <EditRequest>, "pool": [<PoolRef>...], "image_path": str|null, "planner": str}
    ingest   {"clip_id", "path", "sha256", "filename"}
    rebuild  {"kinds": ["frames", "clips", "bgm"]}
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from autocut.types import OutputSpec, PlanRequest, PoolItem, ProductInfo, VoiceSpec
from server.schemas import EditRequest, IndexKind, RebuildRequest

__all__ = [
    "EditJobSpec",
    "IngestJobSpec",
    "LibraryRef",
    "MediaRef",
    "PoolRef",
    "RebuildJobSpec",
    "UploadRef",
]


class UploadRef(BaseModel):
    """A pool entry naming an upload; it may still be ingesting (`ingest_job_id`) when the edit starts."""

    kind: Literal["upload"]
    clip_id: str
    sha256: str
    path: str
    ingest_job_id: str
    text: str


class LibraryRef(BaseModel):
    """A pool entry naming a library video."""

    kind: Literal["library"]
    photo_id: int
    text: str


class MediaRef(BaseModel):
    """A pool entry naming a file under the media root (relative; re-checked by the worker)."""

    kind: Literal["media"]
    path: str
    text: str


PoolRef = Annotated[UploadRef | LibraryRef | MediaRef, Field(discriminator="kind")]


class EditJobSpec(BaseModel):
    """An edit job: the request as validated, its pool references resolved, the planner chosen."""

    request: EditRequest
    pool: list[PoolRef]
    image_path: str | None
    planner: str

    def plan_request(self, pool: list[PoolItem]) -> PlanRequest:
        """autocut's planner input for this edit, given the pool resolved to library videos."""
        req, opts = self.request, self.request.options
        product = ProductInfo.model_validate(
            {**req.product.model_dump(exclude={"image_id"}), "image_path": self.image_path}
        )
        return PlanRequest(
            product=product,
            pool=pool,
            script=req.script,
            language=opts.language,
            max_duration_s=opts.max_duration_s,
            n_variants=opts.n_variants,
            exclude_audio_ids=list(opts.bgm.exclude_audio_ids),
            allow_outside_pool=False,
            output=OutputSpec.for_aspect(opts.aspect, short_side=opts.resolution, transition=opts.transition),
            voice=VoiceSpec.model_validate({**opts.voice.model_dump(), "language": opts.language}),
            seed=opts.seed,
        )


class IngestJobSpec(BaseModel):
    """An ingest job: one accepted upload (its stored blob `path`)."""

    clip_id: str
    path: str
    sha256: str
    filename: str


class RebuildJobSpec(BaseModel):
    """An index rebuild: the kinds to rebuild, in order, each once."""

    kinds: list[IndexKind]

    @classmethod
    def from_request(cls, req: RebuildRequest) -> RebuildJobSpec:
        return cls(kinds=list(dict.fromkeys(req.kinds)))
