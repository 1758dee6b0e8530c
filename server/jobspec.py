"""What a job asks of a worker: the `spec` stored with each job record, as typed models.

The route builds a spec once, from the validated request (after checking its references), and
stores `spec.model_dump(mode="json")`; the worker reads it back with `model_validate`. Defaults
live in the request schema (`server.schemas`) only: the spec carries the values the request
ended up with, and the worker derives autocut's `PlanRequest` from them without defaulting
anything again. The stored JSON is the one these models dump (key order included):

    edit     {"request": <EditRequest>, "pool": [<PoolRef>...], "image_path": str|null, "planner": str}
    ingest   {"clip_id", "path", "sha256", "filename"}
    rebuild  {"kinds": ["frames", "clips", "bgm"]}
    render   {"request": <RenderRequest>, "photo_ids": [int...]}   (POST /v1/renders: a plan, checked)

Plans cross the API boundary as `RenderPlan`s (ids, never paths): `review_result` turns a planned
`EditPlan` into one for a `stop_after: plan` job's result; `build_edit_plan` turns one back into an
`EditPlan` with the library files its ids name (`RenderJobSpec.edit_plan` in the worker, and the API's
checks of POST /v1/renders).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from autocut.errors import PlanError
from autocut.render.outputs import RenderQuality
from autocut.types import (
    BgmChoice,
    EditPlan,
    EndCard,
    OutputSpec,
    PlanRequest,
    PlanSegment,
    PoolItem,
    ProductInfo,
    SubtitleStyle,
    VoiceSpec,
)
from server.schemas import EditOptions, EditRequest, IndexKind, PlanOutput, RebuildRequest, RenderPlan, RenderRequest

__all__ = [
    "EditJobSpec",
    "IngestJobSpec",
    "LibraryRef",
    "MediaRef",
    "PoolRef",
    "RebuildJobSpec",
    "RenderJobSpec",
    "UploadRef",
    "build_edit_plan",
    "output_spec",
    "render_choices",
    "review_result",
]


def output_spec(o: EditOptions | PlanOutput) -> OutputSpec:
    """The renderer's output format for request options `o`: the preset's (aspect, frame rate, safe area; the plan
    takes its loudness target) at a short side of `o.resolution`, else a free aspect."""
    return OutputSpec.for_aspect(o.aspect, short_side=o.resolution, transition=o.transition, preset=o.preset)


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
            output=output_spec(opts),
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


class RenderJobSpec(BaseModel):
    """A render of a plan sent back (POST /v1/renders): the plan as checked, and the library video of each
    segment (its `photo_id`, or the ingested upload its `clip_id` names), resolved by the API."""

    request: RenderRequest
    photo_ids: list[int]

    def edit_plan(self, library_dir: Path, plan_id: str) -> EditPlan:
        """The renderer's plan: each id looked up in the library again now (a video or track may have been
        deleted since the job was admitted: a `PlanError` naming the segment)."""
        from autocut.errors import CatalogError
        from autocut.library.catalog import Catalog

        sources: list[str] = []
        bgm = None
        with Catalog.open(library_dir, create=False) as cat:
            for i, pid in enumerate(self.photo_ids):
                try:
                    path = cat.source(pid).path
                except CatalogError:
                    raise PlanError(f"segments[{i}]: video {pid} is no longer in the library") from None
                if not Path(path).is_file():
                    raise PlanError(f"segments[{i}]: video {pid} was deleted after this job was submitted")
                sources.append(path)
            music = self.request.music
            if music is not None:
                try:
                    track = cat.bgm_track(music.audio_id)
                except CatalogError:
                    raise PlanError(f"music.audio_id: track {music.audio_id} is no longer in the library") from None
                bgm = BgmChoice(
                    path=track.source_path,
                    audio_id=track.audio_id,
                    start_s=track.start_s if music.start_s is None else music.start_s,
                )
        return build_edit_plan(self.request, self.photo_ids, sources, bgm, plan_id)


def build_edit_plan(
    plan: RenderPlan, photo_ids: list[int], sources: list[str], bgm: BgmChoice | None, plan_id: str
) -> EditPlan:
    """The `EditPlan` of a `RenderPlan` whose segments' videos are `photo_ids` at `sources` (resolved by the
    caller from the plan's ids; never from a client) with music `bgm`."""
    o = plan.output
    return EditPlan(
        plan_id=plan_id,
        product=ProductInfo.model_validate(plan.product.model_dump()),
        scenario="script",
        language=plan.language,
        segments=[
            PlanSegment(
                source_path=src, start_s=seg.start_s, duration_s=seg.duration_s, sentence=seg.line, photo_id=pid
            )
            for seg, pid, src in zip(plan.segments, photo_ids, sources, strict=True)
        ],
        bgm=bgm,
        voice=VoiceSpec.model_validate({**plan.voice.model_dump(), "language": plan.language}),
        output=output_spec(o),
        subtitles=subtitle_style(o),
        title_card=plan.title_card,
        end_card=EndCard.model_validate(plan.end_card.model_dump()) if plan.end_card is not None else None,
        planner=plan.planner,
    )


def subtitle_style(o: EditOptions | PlanOutput) -> SubtitleStyle:
    """The renderer's caption style for plan output options `o` (style preset, karaoke, position)."""
    fields: dict[str, Any] = {"enabled": o.subtitles}
    if o.captions is not None:
        c = o.captions
        given = {"preset": c.style, "karaoke": c.karaoke, "position": c.position}
        fields.update({k: v for k, v in given.items() if v is not None})
    return SubtitleStyle.model_validate(fields)


def _captions_of(style: SubtitleStyle) -> dict[str, Any] | None:
    """The API's `output.captions` of a plan's caption style (None: the default look)."""
    if style.preset is None and style.karaoke == "off" and style.position == "bottom":
        return None
    return {"style": style.preset, "karaoke": style.karaoke, "position": style.position}


def review_result(plan: EditPlan, request: EditRequest, variant: int) -> dict[str, Any]:
    """A planned variant as a `stop_after: plan` job's result (`type: plan`): the plan as a `RenderPlan`
    (ids, no paths), ready to be edited and sent to POST /v1/renders."""
    segments = []
    for i, seg in enumerate(plan.segments):
        if seg.photo_id is None:  # the planners ground every segment in a library video
            raise PlanError(f"segment {i + 1} of the plan names no library video; it cannot be reviewed")
        segments.append(
            {"photo_id": seg.photo_id, "start_s": seg.start_s, "duration_s": seg.duration_s, "line": seg.sentence}
        )
    o = plan.output
    music = None
    if plan.bgm is not None and plan.bgm.audio_id is not None:
        music = {"audio_id": plan.bgm.audio_id, "start_s": plan.bgm.start_s}
    review = RenderPlan.model_validate(
        {
            "product": plan.product.model_dump(exclude={"image_path"}),
            "language": plan.language,
            "voice": {"engine": plan.voice.engine, "name": plan.voice.name},
            "output": {
                **({"preset": o.preset} if o.preset is not None else {}),
                "aspect": o.aspect,
                "resolution": min(o.width, o.height),
                "transition": o.transition,
                "subtitles": plan.subtitles.enabled,
                **({"captions": c} if (c := _captions_of(plan.subtitles)) is not None else {}),
            },
            "max_duration_s": request.options.max_duration_s,
            "music": music,
            "segments": segments,
            "planner": plan.planner,
            **({"title_card": plan.title_card.model_dump()} if plan.title_card is not None else {}),
            **(
                {"end_card": plan.end_card.model_dump(include={"duration_s", "name", "price", "cta"})}
                if plan.end_card is not None
                else {}
            ),
        }
    )
    return {
        "type": "plan",
        "variant": variant,
        "duration_s": round(plan.duration_s, 3),
        "plan_id": plan.plan_id,
        "plan": review.model_dump(mode="json"),
    }


def render_choices(kind: str, spec: dict[str, Any]) -> tuple[Literal["plan"] | None, RenderQuality]:
    """What an edit or render job asks of the render step: stop after planning ("plan") or not, and the
    render quality."""
    if kind == "render":
        return None, RenderJobSpec.model_validate(spec).request.quality
    req = EditJobSpec.model_validate(spec).request
    return req.stop_after, req.options.quality
