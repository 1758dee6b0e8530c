"""Request and response bodies of the HTTP API (v1); they are also its OpenAPI schema.

Requests forbid unknown fields (a typo is an error, not a silently ignored option). Clip
references name an upload (`clip_id`), a library video (`photo_id`) or a file under the media
root (`path`, relative); the server never fetches URLs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.config import JsonDict

from autocut.render.caption_styles import CAPTION_STYLES
from autocut.render.outputs import PREVIEW_SHORT_SIDE, RenderQuality
from autocut.render.presets import PRESETS
from autocut.types import Aspect, CaptionPosition, KaraokeMode, Language, TitleCard, Transition
from server.ids import id_pattern
from server.store import JobKind, JobState

__all__ = [
    "BATCH_ID_PATTERN",
    "CLIP_ID_PATTERN",
    "IMAGE_ID_PATTERN",
    "JOB_ID_PATTERN",
    "BatchAccepted",
    "BatchItemStatus",
    "BatchRequest",
    "BatchStatus",
    "BgmOptions",
    "BgmTrackOut",
    "ClipOut",
    "ClipPage",
    "ClipRef",
    "EditOptions",
    "EditRequest",
    "ErrorBody",
    "ErrorInfo",
    "Health",
    "IndexKind",
    "IngestOutcome",
    "JobAccepted",
    "JobPage",
    "JobStatus",
    "LibraryBgmPage",
    "LibraryVideo",
    "LibraryVideoPage",
    "PlanCaptions",
    "PlanEndCard",
    "PlanMusic",
    "PlanOutput",
    "PlanProduct",
    "PlanReview",
    "PlanSegmentIn",
    "ProductIn",
    "Readiness",
    "RebuildRequest",
    "RebuiltIndex",
    "RenderPlan",
    "RenderRequest",
    "ResultLinks",
    "SelfCheckItem",
    "SelfCheckOut",
    "SignedLinks",
    "Usage",
    "VariantResult",
    "VoiceOptions",
]

JOB_ID_PATTERN = id_pattern("job")
BATCH_ID_PATTERN = id_pattern("bat")
CLIP_ID_PATTERN = id_pattern("clp")
IMAGE_ID_PATTERN = id_pattern("img")

# A job state in a response: `JobState`'s values as a Literal, so the OpenAPI schema shows them as an
# inline string enum (as it always has) rather than as a named component. A `JobState` validates.
JobStateName = Literal["queued", "running", "done", "failed", "cancelled"]
assert get_args(JobStateName) == tuple(JobState), "JobStateName must list JobState's values in order"


def job_state_name(state: JobState) -> JobStateName:
    """`state` as the response Literal (the assert above keeps the two in step)."""
    return state.value


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- edit requests


class PlanProduct(_In):
    """The product being advertised (as a plan carries it)."""

    name: str = Field(min_length=1, max_length=200, examples=["Juicer Cup"])
    brand: str = Field(default="", max_length=200, examples=["FreshCo"])
    category: str = Field(default="", max_length=100, examples=["kitchen"])
    selling_points: list[str] = Field(
        default_factory=list, max_length=20, examples=[["juice in 30 seconds", "washable blade"]]
    )
    description: str = Field(default="", max_length=4000, examples=["A portable USB blender cup."])

    @field_validator("selling_points")
    @classmethod
    def _points(cls, v: list[str]) -> list[str]:
        if any(len(p) > 200 for p in v):
            raise ValueError("each selling point is at most 200 characters")
        return [p.strip() for p in v if p.strip()]


class ProductIn(PlanProduct):
    """The product being advertised; heads every prompt."""

    image_id: str | None = Field(
        default=None,
        pattern=IMAGE_ID_PATTERN,
        description="An uploaded product photo (POST /v1/images), used by the "
        "similarity planner to pick matching footage",
    )


class ClipRef(_In):
    """One pool entry: exactly one of `clip_id`, `photo_id` or `path`."""

    clip_id: str | None = Field(
        default=None,
        pattern=CLIP_ID_PATTERN,
        description="An upload (POST /v1/clips)",
        examples=["clp_0123456789abcdef01234567"],
    )
    photo_id: int | None = Field(
        default=None, ge=1, le=2**53, description="A video of the material library", examples=[3]
    )
    path: str | None = Field(
        default=None,
        min_length=1,
        max_length=1024,
        description="A file under the server's media root, relative (no '..', no URLs)",
        examples=["shoot-2024/kitchen/blender-closeup.mp4"],
    )
    text: str = Field(default="", max_length=500, description="Optional text known for this clip (a caption)")

    @model_validator(mode="after")
    def _one(self) -> ClipRef:
        given = [x for x in (self.clip_id, self.photo_id, self.path) if x is not None]
        if len(given) != 1:
            raise ValueError("a clip reference needs exactly one of clip_id, photo_id or path")
        return self


class VoiceOptions(_In):
    engine: Literal["espeak", "piper", "none"] = Field(
        default="espeak", description="TTS engine; 'none' = no voice-over"
    )
    name: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.:+-]{1,64}$",
        description="Engine voice (espeak-ng voice name or piper voice id); default = the language's default voice",
        examples=["en-us"],
    )


class BgmOptions(_In):
    policy: Literal["auto", "none", "track"] = Field(
        default="auto", description="auto: the planner retrieves music; none: no music; track: use `audio_id`"
    )
    audio_id: int | None = Field(default=None, ge=1, le=2**53, description="Library BGM track for policy 'track'")
    exclude_audio_ids: list[int] = Field(
        default_factory=list, max_length=1000, description="Tracks the planner must not pick"
    )

    @model_validator(mode="after")
    def _track(self) -> BgmOptions:
        if (self.policy == "track") != (self.audio_id is not None):
            raise ValueError("audio_id is required with policy 'track' and only allowed with it")
        return self


_PRESET_HELP = (
    "Platform preset: "
    + ", ".join(f"{p.name} ({p.description}, {p.aspect})" for p in PRESETS.values())
    + ". Sets the aspect, frame rate, caption safe area and loudness target; `resolution` still sets the short "
    "side. Omit for a free aspect at 30 fps"
)


def _known_preset(v: str) -> str:
    if v not in PRESETS:
        raise ValueError(f"unknown preset {v!r}; known presets: {', '.join(PRESETS)}")
    return v


PresetName = Annotated[str, AfterValidator(_known_preset)]


def _known_caption_style(v: str) -> str:
    if v not in CAPTION_STYLES:
        raise ValueError(f"unknown caption style {v!r}; known styles: {', '.join(CAPTION_STYLES)}")
    return v


CaptionStyleName = Annotated[str, AfterValidator(_known_caption_style)]


def _preset_aspect(preset: str | None, aspect: Aspect, aspect_given: bool) -> None:
    """A preset fixes the aspect: an explicit other aspect is a conflict."""
    if preset is not None and aspect_given and aspect != PRESETS[preset].aspect:
        raise ValueError(
            f"aspect {aspect} conflicts with preset {preset!r} ({PRESETS[preset].aspect}); give one or the other"
        )


class PlanCaptions(_In):
    """The caption look: a style preset and, optionally, the karaoke highlight and position on their own."""

    style: CaptionStyleName | None = Field(
        default=None, description=f"Caption style preset ({', '.join(CAPTION_STYLES)}); null = the classic look"
    )
    karaoke: KaraokeMode | None = Field(
        default=None,
        description="Highlight the spoken word: word (Chinese: jieba words), character (Chinese characters one by "
        "one) or off; null = the style's",
    )
    position: CaptionPosition | None = Field(
        default=None, description="bottom, middle or top of the safe area; null = the style's"
    )


class PlanEndCard(_In):
    """A card appended after the last segment: the product name, price and a call to action (the edit gets
    `duration_s` longer; the music plays on)."""

    duration_s: float = Field(default=3.0, gt=0.0, le=15.0)
    name: str | None = Field(default=None, max_length=200, description="Null = the product name")
    price: str = Field(default="", max_length=40, examples=["$29.99"])
    cta: str = Field(default="", max_length=120, examples=["Shop now"])


class EditOptions(_In):
    preset: PresetName | None = Field(
        default=None,
        exclude_if=lambda v: v is None,  # not stored when unset (specs stored before it existed read back unchanged)
        description=_PRESET_HELP,
        examples=["tiktok"],
    )
    aspect: Aspect = Field(default="9:16", description="Output aspect; with `preset`, the preset's")
    resolution: int = Field(
        default=1080,
        ge=144,
        le=2160,
        multiple_of=2,
        description="Short side of the output in pixels (1080 -> 1080x1920 at 9:16)",
    )
    max_duration_s: float = Field(default=60.0, gt=0, le=120)
    language: Language = "en"
    voice: VoiceOptions = Field(default_factory=VoiceOptions)
    bgm: BgmOptions = Field(default_factory=BgmOptions)
    n_variants: int = Field(default=1, ge=1, le=8, description="Distinct plans (and videos) to make")
    planner: str | None = Field(
        default=None,
        pattern=r"^[a-z][a-z0-9_-]{0,31}$",
        description="Planner name (e.g. heuristic, random); default = the server's",
    )
    transition: Transition = "cut"
    subtitles: bool = True
    # Left out of the stored JSON when unset (specs stored before them read back unchanged).
    captions: PlanCaptions | None = Field(
        default=None, exclude_if=lambda v: v is None, description="Caption style and karaoke highlight"
    )
    title_card: TitleCard | None = Field(
        default=None,
        exclude_if=lambda v: v is None,
        description="A title (default: the product name) over the opening seconds; null = none",
    )
    end_card: PlanEndCard | None = Field(
        default=None,
        exclude_if=lambda v: v is None,
        description="A branded card after the last segment (the product photo, when the request has one); null = none",
    )
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    # Left out of the stored JSON at its default, so specs stored before it existed read back unchanged.
    quality: RenderQuality = Field(
        default="final",
        exclude_if=lambda v: v == "final",
        description=f"final: the requested resolution; preview: the same plan and audio at a short side of at "
        f"most {PREVIEW_SHORT_SIDE} px with the fastest encoder settings (for a quick look before the final render)",
    )

    @model_validator(mode="after")
    def _preset_fixes_aspect(self) -> EditOptions:
        _preset_aspect(self.preset, self.aspect, "aspect" in self.model_fields_set)
        if self.preset is not None:
            self.aspect = PRESETS[self.preset].aspect  # type: ignore[assignment]
        return self


_EDIT_EXAMPLE: JsonDict = {
    "product": {
        "name": "Juicer Cup",
        "brand": "FreshCo",
        "category": "kitchen",
        "selling_points": ["juice in 30 seconds", "washable blade"],
    },
    "clips": [{"clip_id": "clp_0123456789abcdef01234567"}, {"photo_id": 3}],
    "script": ["No time for breakfast?", "Fresh juice in thirty seconds."],
    "options": {
        "aspect": "9:16",
        "resolution": 1080,
        "max_duration_s": 30,
        "language": "en",
        "bgm": {"policy": "auto"},
        "n_variants": 1,
        "planner": "heuristic",
    },
}


class EditRequest(_In):
    """Product info plus a clip pool -> finished ads. With `script` the edit is script-driven (one clip
    per sentence); without, footage-driven (one sentence written per clip)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_EDIT_EXAMPLE]})

    product: ProductIn
    clips: list[ClipRef] = Field(min_length=1, max_length=256)
    script: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=50,
        description="One sentence per clip (script-driven); omit for footage-driven",
    )
    options: EditOptions = Field(default_factory=EditOptions)
    stop_after: Literal["plan"] | None = Field(
        default=None,
        exclude_if=lambda v: v is None,  # not stored when unset (specs stored before it existed read back unchanged)
        description="plan: plan only, no render; the job's `plans` hold each plan (ids, no paths) with a "
        "thumbnail per segment, to edit and send to POST /v1/renders",
    )

    @field_validator("script")
    @classmethod
    def _sentences(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        for i, s in enumerate(v):
            if not s.strip():
                raise ValueError(f"script line {i + 1} is empty")
            if len(s) > 500:
                raise ValueError(f"script line {i + 1} is longer than 500 characters")
        return [s.strip() for s in v]


class BatchRequest(_In):
    """Many edits under one id; each item becomes its own job."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"items": [_EDIT_EXAMPLE]}]})

    items: list[EditRequest] = Field(min_length=1, max_length=1000)


# --------------------------------------------------------------------------- plans (review, edit, render)


class PlanSegmentIn(_In):
    """One segment of a plan: a span of a video (exactly one of `photo_id` or `clip_id`) and its line."""

    photo_id: int | None = Field(default=None, ge=1, le=2**53, description="A video of the library", examples=[1])
    clip_id: str | None = Field(
        default=None, pattern=CLIP_ID_PATTERN, description="An upload of yours (POST /v1/clips), once ingested"
    )
    start_s: float = Field(ge=0.0, le=86400.0, description="Where the span starts in its video", examples=[0.0])
    duration_s: float = Field(gt=0.0, le=120.0, description="How long the span (and the segment) lasts", examples=[2.5])
    line: str = Field(
        min_length=1, max_length=500, description="Voice-over and subtitle of this segment", examples=["Fresh juice."]
    )

    @field_validator("line")
    @classmethod
    def _line(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("the line is empty")
        return v.strip()

    @model_validator(mode="after")
    def _one(self) -> PlanSegmentIn:
        if (self.photo_id is None) == (self.clip_id is None):
            raise ValueError("a segment needs exactly one of photo_id or clip_id")
        return self


class PlanMusic(_In):
    """The music bed: a library track."""

    audio_id: int = Field(ge=1, le=2**53, description="A track of GET /v1/library/bgm", examples=[1])
    start_s: float | None = Field(
        default=None, ge=0.0, le=86400.0, description="Where in the track the music starts; null = the track's start"
    )


class PlanOutput(_In):
    preset: PresetName | None = Field(
        default=None, exclude_if=lambda v: v is None, description=_PRESET_HELP, examples=["reels"]
    )
    aspect: Aspect = Field(default="9:16", description="Output aspect; with `preset`, the preset's")
    resolution: int = Field(default=1080, ge=144, le=2160, multiple_of=2, description="Short side in pixels")
    transition: Transition = "cut"
    subtitles: bool = True
    captions: PlanCaptions | None = Field(
        default=None, exclude_if=lambda v: v is None, description="Caption style and karaoke highlight"
    )

    @model_validator(mode="after")
    def _preset_fixes_aspect(self) -> PlanOutput:
        _preset_aspect(self.preset, self.aspect, "aspect" in self.model_fields_set)
        if self.preset is not None:
            self.aspect = PRESETS[self.preset].aspect  # type: ignore[assignment]
        return self


class RenderPlan(_In):
    """A plan as the API shows it (`plans` of a `stop_after: plan` job) and takes it back (POST /v1/renders):
    ids, never paths. Edit it freely (swap a clip, change a line, change or drop the music, reorder); the
    server checks it again before rendering."""

    product: PlanProduct
    language: Language = "en"
    voice: VoiceOptions = Field(default_factory=VoiceOptions)
    output: PlanOutput = Field(default_factory=PlanOutput)
    max_duration_s: float = Field(default=60.0, gt=0, le=120, description="The duration budget of the whole ad")
    music: PlanMusic | None = Field(default=None, description="null = no music")
    segments: list[PlanSegmentIn] = Field(min_length=1, max_length=50, description="In playing order")
    planner: str = Field(default="", max_length=64, description="The planner that made the plan (informational)")
    title_card: TitleCard | None = Field(
        default=None,
        exclude_if=lambda v: v is None,
        description="A title (default: the product name) over the opening seconds; null = none",
    )
    end_card: PlanEndCard | None = Field(
        default=None, exclude_if=lambda v: v is None, description="A branded card after the last segment; null = none"
    )


_PLAN_EXAMPLE: JsonDict = {
    "product": {"name": "Juicer Cup", "brand": "FreshCo", "selling_points": ["juice in 30 seconds"]},
    "language": "en",
    "voice": {"engine": "espeak"},
    "output": {"aspect": "9:16", "resolution": 1080, "transition": "cut", "subtitles": True},
    "max_duration_s": 30,
    "music": {"audio_id": 1},
    "segments": [
        {"photo_id": 1, "start_s": 0.0, "duration_s": 3.0, "line": "No time for breakfast?"},
        {"clip_id": "clp_0123456789abcdef01234567", "start_s": 1.5, "duration_s": 3.5, "line": "Fresh juice now."},
    ],
}


class RenderRequest(RenderPlan):
    """A plan to render (typically one of a `stop_after: plan` job's `plans`, edited), and how."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{**_PLAN_EXAMPLE, "quality": "preview"}]})

    quality: RenderQuality = Field(
        default="final",
        description=f"final: the plan's resolution; preview: the same plan and audio at a short side of at most "
        f"{PREVIEW_SHORT_SIDE} px with the fastest encoder settings",
    )


IndexKind = Literal["frames", "clips", "bgm"]


def _all_index_kinds() -> list[IndexKind]:
    return ["frames", "clips", "bgm"]


class RebuildRequest(_In):
    kinds: list[IndexKind] = Field(default_factory=_all_index_kinds, min_length=1, max_length=3)


# --------------------------------------------------------------------------- responses


class ErrorInfo(BaseModel):
    code: str = Field(examples=["unknown_clip"])
    message: str = Field(examples=["clip clp_0123456789abcdef01234567 does not exist"])
    details: list[dict] | None = None


class ErrorBody(BaseModel):
    error: ErrorInfo


class JobAccepted(BaseModel):
    job_id: str = Field(examples=["job_0123456789abcdef01234567"])
    state: JobStateName
    status_url: str = Field(examples=["/v1/jobs/job_0123456789abcdef01234567"])
    replayed: bool = Field(default=False, description="True when an Idempotency-Key matched an earlier request")


class ResultLinks(BaseModel):
    video: str = Field(examples=["/v1/jobs/job_0123456789abcdef01234567/results/1/video"])
    subtitles: str
    timeline: str
    plan: str


class SignedLinks(ResultLinks):
    """The same files, downloadable without the API key until `expires_at` (e.g. for `<video src>`)."""

    expires_at: datetime


CheckStatusName = Literal["ok", "warn", "fail"]


class SelfCheckItem(BaseModel):
    """One check of a rendered video (`autocut.render.selfcheck`)."""

    name: str = Field(
        description="format, segments, av_duration, black, freeze, narration_silence, loudness, true_peak"
    )
    status: CheckStatusName
    value: float | int | str | None = Field(description="What was measured (seconds, frames, LUFS or dBTP)")
    threshold: str = Field(description="The rule the value was held to")
    detail: str = ""


class SelfCheckOut(BaseModel):
    """The self-check of a rendered video: ffprobe and ffmpeg's detectors on the output, against the plan.
    A failed check fails the job; warnings are listed here."""

    status: CheckStatusName
    wall_s: float
    failures: list[str]
    warnings: list[str]
    checks: list[SelfCheckItem]


class VariantResult(BaseModel):
    variant: int = Field(ge=1)
    duration_s: float
    width: int
    height: int
    planner: str
    plan_id: str
    quality: RenderQuality = "final"
    render_s: float | None = Field(default=None, description="Seconds the render of this variant took")
    preset: str | None = Field(default=None, description="The platform preset the variant was rendered for")
    selfcheck: SelfCheckOut | None = Field(
        default=None, description="The self-check of the rendered file (absent for videos rendered before it existed)"
    )
    links: ResultLinks
    signed_links: SignedLinks | None = None


class PlanReview(BaseModel):
    """One plan of a `stop_after: plan` job: edit `plan` and POST it to /v1/renders."""

    variant: int = Field(ge=1)
    duration_s: float
    plan: RenderPlan
    thumbnails: list[str] = Field(description="A JPEG per segment (a frame from the middle of its span), in order")
    signed_thumbnails: list[str] | None = Field(
        default=None, description="The same, downloadable without the API key until they expire (for `<img src>`)"
    )


class IngestOutcome(BaseModel):
    clip_id: str
    photo_id: int | None
    status: Literal["added", "skipped"]


class RebuiltIndex(BaseModel):
    kind: str
    count: int
    factory: str
    total_time_s: float


class JobStatus(BaseModel):
    job_id: str
    kind: JobKind
    state: JobStateName
    stage: str = Field(examples=["rendering variant 1/1"])
    progress_pct: float = Field(ge=0, le=100)
    error: ErrorInfo | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int = Field(description="Times a worker started this job (retries and redeliveries included)")
    batch_id: str | None = None
    results: list[VariantResult] = Field(default_factory=list)
    plans: list[PlanReview] = Field(default_factory=list, description="stop_after=plan: the plans, nothing rendered")
    ingest: IngestOutcome | None = None
    rebuild: list[RebuiltIndex] | None = None
    timings: dict[str, float] = Field(default_factory=dict, description="Seconds spent per stage")


class JobPage(BaseModel):
    items: list[JobStatus]
    total: int
    offset: int
    limit: int


class BatchAccepted(BaseModel):
    batch_id: str = Field(examples=["bat_0123456789abcdef01234567"])
    job_ids: list[str]
    status_url: str
    replayed: bool = False


class BatchItemStatus(BaseModel):
    index: int
    job_id: str
    state: JobStateName
    stage: str
    progress_pct: float
    error: ErrorInfo | None = None
    status_url: str


class BatchStatus(BaseModel):
    batch_id: str
    state: Literal["queued", "running", "done", "partial", "failed", "cancelled"] = Field(
        description="done: every item done; partial: all finished, some not done; running: any item active"
    )
    counts: dict[str, int]
    created_at: datetime
    items: list[BatchItemStatus]


class ClipOut(BaseModel):
    clip_id: str
    kind: Literal["video", "image"]
    filename: str
    sha256: str
    size_bytes: int
    duration_s: float | None = None
    width: int
    height: int
    state: Literal["ingesting", "ready", "failed"]
    photo_id: int | None = None
    error: ErrorInfo | None = None
    job_id: str | None = None
    created_at: datetime
    duplicate: bool = Field(default=False, description="True when this content was already uploaded by this key")


class ClipPage(BaseModel):
    items: list[ClipOut]
    total: int
    offset: int
    limit: int


class LibraryVideo(BaseModel):
    photo_id: int
    duration_s: float
    width: int
    height: int
    fps: float
    has_audio: bool
    kind: str
    uploaded: bool = Field(description="True for your own uploads; library material otherwise")


class LibraryVideoPage(BaseModel):
    items: list[LibraryVideo]
    total: int
    offset: int
    limit: int


class BgmTrackOut(BaseModel):
    audio_id: int
    title: str
    duration_s: float
    mood: str


class LibraryBgmPage(BaseModel):
    items: list[BgmTrackOut]
    total: int
    offset: int
    limit: int


class Usage(BaseModel):
    """What the calling key stores, against its storage quota (`GET /v1/usage`)."""

    stored_bytes: int = Field(description="Counted against the quota: upload_bytes + result_bytes")
    upload_bytes: int = Field(description="Its uploaded clips and images (the same content once)")
    result_bytes: int = Field(description="Its finished jobs' result files")
    reserved_bytes: int = Field(description="Held by its uploads still streaming")
    max_stored_bytes: int = Field(description="The storage quota in bytes (0: none)")


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, str]
    queue_depth: int | None = None
    active_jobs: int | None = None
    live_workers: int | None = None
