"""Types shared across the planner, the renderer and the API.

The planner produces an `EditPlan`, the renderer consumes it, and the API returns it
(docs/method.md, "Rendering and voice fit"). These are pydantic models so the same definition
validates JSON from users, serialises the plan sidecar, and documents the OpenAPI schema.

Times are seconds (float) in source or output time, named with a `_s` suffix.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "ASPECT_DEFAULT_SIZE",
    "PLAN_FORMAT_VERSION",
    "Aspect",
    "BgmChoice",
    "CaptionPosition",
    "Corner",
    "EditPlan",
    "EndCard",
    "FitMode",
    "KaraokeMode",
    "Language",
    "OutputSpec",
    "PlanRequest",
    "PlanSegment",
    "PoolItem",
    "ProductInfo",
    "SafeArea",
    "Scenario",
    "SegmentMode",
    "SubtitleStyle",
    "TitleCard",
    "Transition",
    "VoiceSpec",
    "Watermark",
]

PLAN_FORMAT_VERSION = 1

Aspect = Literal["9:16", "16:9", "1:1", "4:5"]
FitMode = Literal["crop", "blur_pad"]
Language = Literal["en", "zh"]
Scenario = Literal["script", "footage"]
# by_frame: start at a retrieved frame, length = the candidate's stored length;
# by_clip: a whole visual clip found by segmentation (docs/method.md, "Decoding and grounding").
SegmentMode = Literal["by_frame", "by_clip"]
# "cut" plus a subset of ffmpeg's xfade transitions.
Transition = Literal["cut", "fade", "dissolve", "wipeleft", "wiperight", "slideleft", "slideright", "circleopen"]

# Where burned-in captions sit, inside the output's safe area.
CaptionPosition = Literal["bottom", "middle", "top"]
# Karaoke highlight of the spoken word: off, per word (Chinese: jieba words), or per character (Chinese
# characters one by one; Latin text still per word).
KaraokeMode = Literal["off", "word", "character"]
Corner = Literal["top-left", "top-right", "bottom-left", "bottom-right"]
# Colours: ASS "&HAABBGGRR" (alpha first, 00 = opaque) for captions, "#RRGGBB" for cards.
_ASS_COLOUR = r"^&H[0-9A-Fa-f]{8}&?$"
_RGB_COLOUR = r"^#[0-9A-Fa-f]{6}$"

# Default output size per aspect, portrait 1080x1920 first (short-video platforms).
ASPECT_DEFAULT_SIZE: dict[str, tuple[int, int]] = {
    "9:16": (1080, 1920),
    "16:9": (1920, 1080),
    "1:1": (1080, 1080),
    "4:5": (1080, 1350),
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class ProductInfo(_Model):
    """What is being advertised; heads every prompt (docs/method.md, "Corpus format")."""

    name: str = Field(min_length=1, max_length=200, examples=["Juicer Cup"])
    brand: str = Field(default="", max_length=200, examples=["FreshCo"])
    category: str = Field(default="", max_length=100, examples=["kitchen"])
    selling_points: list[str] = Field(default_factory=list, max_length=20, examples=[["30 s juice", "washable blade"]])
    description: str = Field(default="", max_length=4000)
    # Path (inside the library or upload root) of a product photo, used by the similarity baseline.
    image_path: str | None = None


class SafeArea(_Model):
    """Margins of the frame that a platform's interface may cover, as fractions of the frame's height (top,
    bottom) or width (left, right); burned-in captions stay inside the rest. Zero: nothing is covered."""

    top_frac: float = Field(default=0.0, ge=0.0, lt=0.5)
    bottom_frac: float = Field(default=0.0, ge=0.0, lt=0.5)
    left_frac: float = Field(default=0.0, ge=0.0, lt=0.5)
    right_frac: float = Field(default=0.0, ge=0.0, lt=0.5)


def _with_preset(data: object, fields: Callable[[str], dict]) -> object:
    """Model input `data` with the fields its named `preset` sets filled in where `data` does not give them
    (an unknown name is a validation error naming it)."""
    if not isinstance(data, dict) or data.get("preset") is None:
        return data
    from autocut.errors import ConfigError

    try:
        return {**fields(data["preset"]), **data}
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


class OutputSpec(_Model):
    """Target video format: a platform preset (`autocut.render.presets`) or a free size."""

    # A platform preset name (tiktok, reels, shorts, feed-square, feed-portrait, youtube): fills in the
    # aspect, size, frame rate and safe area below (and the plan's loudness target) unless they are given.
    preset: str | None = Field(
        default=None,
        description="Platform preset (tiktok, reels, shorts, feed-square, feed-portrait, youtube): sets the "
        "aspect, size, frame rate, caption safe area and loudness target unless given explicitly",
    )
    aspect: Aspect = "9:16"
    width: int = Field(default=1080, ge=64, le=4096)
    height: int = Field(default=1920, ge=64, le=4096)
    fps: float = Field(default=30.0, gt=0, le=120)
    fit: FitMode = "crop"
    transition: Transition = "cut"
    transition_duration_s: float = Field(default=0.3, ge=0.0, le=2.0)
    video_crf: int = Field(default=23, ge=0, le=51)
    x264_preset: str = "veryfast"
    safe_area: SafeArea = Field(default_factory=SafeArea)

    @model_validator(mode="before")
    @classmethod
    def _expand_preset(cls, data: object) -> object:
        """Fill in the fields the named preset sets and `data` does not give."""
        from dataclasses import asdict

        from autocut.render.presets import get_preset

        def fields(name: str) -> dict:
            p = get_preset(name)
            return {"aspect": p.aspect, "width": p.width, "height": p.height, "fps": p.fps, "safe_area": asdict(p.safe)}

        return _with_preset(data, fields)

    @model_validator(mode="after")
    def _even_and_matching(self) -> OutputSpec:
        if self.width % 2 or self.height % 2:
            raise ValueError(f"width and height must be even for yuv420p, got {self.width}x{self.height}")
        aw, ah = (int(x) for x in self.aspect.split(":"))
        if abs(self.width * ah - self.height * aw) > max(aw, ah) * 2:
            raise ValueError(f"{self.width}x{self.height} does not have aspect {self.aspect}")
        return self

    @classmethod
    def for_aspect(cls, aspect: Aspect, *, short_side: int = 1080, **kw: object) -> OutputSpec:
        """Build a spec whose short side is `short_side` pixels for the given aspect."""
        aw, ah = (int(x) for x in aspect.split(":"))
        if aw >= ah:
            h = short_side
            w = int(round(short_side * aw / ah / 2)) * 2
        else:
            w = short_side
            h = int(round(short_side * ah / aw / 2)) * 2
        return cls(aspect=aspect, width=w, height=h, **kw)  # type: ignore[arg-type]


class VoiceSpec(_Model):
    """Voice-over settings; `engine` + `name` select a voice in `autocut.speech.tts`."""

    engine: Literal["espeak", "piper", "none"] = "espeak"
    # espeak-ng voice name (e.g. "en-us", "cmn-latn-pinyin") or piper voice id; None = language default.
    name: str | None = None
    language: Language = "en"
    # Base speaking rate; None = the voice's default for `language` (`autocut.speech.tts.base_words_per_minute`:
    # espeak-ng en 165, zh 248, measured to speak the WCD rates of 2.5 words/s and 5 characters/s). The renderer
    # may stretch each sentence by at most +-15 % (docs/method.md, "Rendering and voice fit").
    words_per_minute: int | None = Field(
        default=None,
        ge=80,
        le=400,
        description="Base speaking rate; null = the voice's default for the language (espeak-ng: en 165, "
        "zh 248, about 2.5 words or 5 Chinese characters a second)",
    )
    volume_db: float = 0.0


class SubtitleStyle(_Model):
    """ASS styling for burned-in subtitles: a caption style preset (`autocut.render.caption_styles`) or the
    fields one by one; fields given explicitly win over the preset's."""

    # A caption style preset name (classic, bold-box, karaoke, karaoke-box, top-banner): fills in the fields
    # below that are not given.
    preset: str | None = Field(
        default=None,
        description="Caption style preset (classic, bold-box, karaoke, karaoke-box, top-banner); fields given "
        "explicitly win over the preset's",
    )
    enabled: bool = True
    font: str = "Noto Sans CJK SC"
    # Font size as a fraction of output height (scales with resolution).
    size_frac: float = Field(default=0.045, gt=0.005, lt=0.2)
    primary_colour: str = "&H00FFFFFF"
    outline_colour: str = "&H00000000"
    outline_px: float = 3.0
    # Distance from the caption's edge (bottom or top position) as a fraction of output height; the output's
    # safe area pushes it further in where that is larger.
    margin_v_frac: float = Field(default=0.12, ge=0.0, lt=0.5)
    bold: bool = True
    position: CaptionPosition = "bottom"
    # An opaque box behind each caption (ASS BorderStyle 3) instead of an outline.
    box: bool = False
    box_colour: str = Field(default="&H60000000", pattern=_ASS_COLOUR)
    karaoke: KaraokeMode = "off"
    # Colour of the word being spoken when `karaoke` is on (ASS &HAABBGGRR; default yellow).
    highlight_colour: str = Field(default="&H0000FFFF", pattern=_ASS_COLOUR)

    @model_validator(mode="before")
    @classmethod
    def _expand_preset(cls, data: object) -> object:
        """Fill in the fields the named caption style sets and `data` does not give."""
        from autocut.render.caption_styles import get_caption_style

        return _with_preset(data, get_caption_style)


class Watermark(_Model):
    """A logo burned into a corner of the whole video (inside the output's safe area)."""

    path: str = Field(description="Logo image (PNG with transparency works best); absolute or library-relative")
    corner: Corner = "top-right"
    # Logo width as a fraction of the output width (height follows the image's aspect).
    width_frac: float = Field(default=0.15, gt=0.0, le=0.5)
    opacity: float = Field(default=0.8, gt=0.0, le=1.0)
    # Gap between the logo and the safe area's edge, as a fraction of the output's short side.
    margin_frac: float = Field(default=0.03, ge=0.0, lt=0.25)


class TitleCard(_Model):
    """A title over the opening seconds of the footage (the edit keeps its length): the product name (or
    `text`) on a band near the top of the safe area, faded in and out."""

    text: str | None = Field(default=None, max_length=200, description="Title; null = the product name")
    subtitle: str = Field(default="", max_length=200, description="A smaller second line (e.g. the brand)")
    duration_s: float = Field(default=2.0, gt=0.0, le=10.0)
    text_colour: str = Field(default="#FFFFFF", pattern=_RGB_COLOUR)
    box_colour: str = Field(default="#000000", pattern=_RGB_COLOUR)
    box_opacity: float = Field(default=0.55, ge=0.0, le=1.0)


class EndCard(_Model):
    """A branded card appended after the last segment (the edit gets `duration_s` longer; the music plays on
    under it): the product image, name, price and a call to action on a plain background."""

    duration_s: float = Field(default=3.0, gt=0.0, le=15.0)
    image_path: str | None = Field(
        default=None, description="Product image (absolute or library-relative); null = product.image_path, if any"
    )
    name: str | None = Field(default=None, max_length=200, description="Null = the product name")
    price: str = Field(default="", max_length=40, examples=["$29.99"])
    cta: str = Field(default="", max_length=120, examples=["Shop now"])
    # Not black: the self-check's black detector would flag a near-black card.
    background_colour: str = Field(default="#1E2A3A", pattern=_RGB_COLOUR)
    text_colour: str = Field(default="#FFFFFF", pattern=_RGB_COLOUR)
    accent_colour: str = Field(default="#FFD400", pattern=_RGB_COLOUR)  # price and CTA


class PlanSegment(_Model):
    """One clip of the ad: a source interval plus the sentence spoken over it."""

    source_path: str = Field(description="Video file to cut from (absolute, or relative to the library root)")
    start_s: float = Field(ge=0.0)
    duration_s: float = Field(gt=0.0)
    sentence: str = Field(description="Voice-over and subtitle text for this clip; one sentence")
    mode: SegmentMode = "by_frame"
    photo_id: int | None = None
    clip_id: int | None = None
    frame_id: int | None = None
    # Playback speed of the voice for this sentence (1.0 = the voice's base rate);
    # the planner may set it within [0.85, 1.15].
    speech_rate: float = Field(default=1.0, ge=0.85, le=1.15)
    # Keep the source's own audio under the voice (0 = mute source).
    source_audio_gain: float = Field(default=0.0, ge=0.0, le=2.0)

    @field_validator("sentence")
    @classmethod
    def _strip(cls, v: str) -> str:
        return v.strip()


class BgmChoice(_Model):
    """Background music: a library track (audio_id) and the file behind it."""

    path: str
    audio_id: int | None = None
    start_s: float = Field(default=0.0, ge=0.0)
    # Level of the music bed before ducking, relative to the voice.
    gain_db: float = -8.0
    fade_out_s: float = Field(default=1.5, ge=0.0)


class EditPlan(_Model):
    """Everything the renderer needs, and nothing it must guess."""

    version: int = PLAN_FORMAT_VERSION
    plan_id: str = ""
    product: ProductInfo
    scenario: Scenario = "footage"
    language: Language = "en"
    segments: list[PlanSegment] = Field(min_length=1)
    bgm: BgmChoice | None = None
    voice: VoiceSpec = Field(default_factory=VoiceSpec)
    output: OutputSpec = Field(default_factory=OutputSpec)
    subtitles: SubtitleStyle = Field(default_factory=SubtitleStyle)
    # Branding (`autocut.render.branding`), all off by default: a logo in a corner, a title over the opening
    # seconds, a card appended at the end.
    watermark: Watermark | None = None
    title_card: TitleCard | None = None
    end_card: EndCard | None = None
    # Loudness target of the final mix: -14 LUFS, true peak <= -1 dBTP; an output preset sets its own
    # (`autocut.render.presets`) unless these are given.
    loudness_lufs: float = Field(default=-14.0, ge=-40, le=-5)
    true_peak_db: float = Field(default=-1.0, ge=-9, le=0)
    # A clip may appear twice only when the plan says so.
    allow_reuse: bool = False
    planner: str = ""
    notes: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _preset_loudness(self) -> EditPlan:
        """An output preset sets the loudness target unless the plan gives one."""
        if self.output.preset is not None:
            from autocut.render.presets import get_preset

            p = get_preset(self.output.preset)
            if "loudness_lufs" not in self.model_fields_set:
                self.loudness_lufs = p.loudness_lufs
            if "true_peak_db" not in self.model_fields_set:
                self.true_peak_db = p.true_peak_db
        return self

    @property
    def duration_s(self) -> float:
        """Output duration, accounting for transition overlaps and the end card."""
        total = sum(s.duration_s for s in self.segments)
        if self.output.transition != "cut":
            total -= self.output.transition_duration_s * (len(self.segments) - 1)
        if self.end_card is not None:
            total += self.end_card.duration_s
        return total


class PoolItem(_Model):
    """One entry of a request's clip pool: a library video or an uploaded clip."""

    photo_id: int | None = None
    path: str | None = None
    # Optional text known for this item (e.g. an existing caption), used as a text snippet in prompts.
    text: str = ""

    @model_validator(mode="after")
    def _one_ref(self) -> PoolItem:
        if (self.photo_id is None) == (self.path is None):
            raise ValueError("a pool item needs exactly one of photo_id or path")
        return self


class PlanRequest(_Model):
    """Planner input: product, pool and (script-driven) the script."""

    product: ProductInfo
    pool: list[PoolItem] = Field(min_length=1)
    script: list[str] | None = Field(
        default=None, description="One sentence per clip (script-driven); omit for footage-driven"
    )
    language: Language = "en"
    max_duration_s: float = Field(default=60.0, gt=0, le=120)
    n_variants: int = Field(default=1, ge=1, le=8)
    exclude_audio_ids: list[int] = Field(default_factory=list)
    allow_outside_pool: bool = False
    output: OutputSpec = Field(default_factory=OutputSpec)
    voice: VoiceSpec = Field(default_factory=VoiceSpec)
    seed: int = 0

    @property
    def scenario(self) -> Scenario:
        return "script" if self.script else "footage"
