"""Platform presets: named output formats (size, frame rate, caption safe area, loudness target).

A preset is a starting point, not a cage: `OutputSpec(preset="tiktok")` fills in the preset's aspect, size,
frame rate and safe area (`autocut.types.OutputSpec`), and a plan built on it takes the preset's loudness
target (`EditPlan`), unless the same fields are given explicitly. Free sizes (no preset) stay possible.

The safe area is the part of the frame that the platform's own interface does not cover (the top bar,
the like/share column on the right, the caption and CTA block at the bottom); burned-in captions are
placed inside it (`autocut.render.subtitles`). Platforms change their interface often and publish few
exact figures, so the margins below are the commonly published working margins, rounded outwards:

* TikTok, 1080x1920: about 130-150 px at the top, 320-420 px at the bottom, 60 px left and 120-170 px right
  (https://blitzcutai.com/blog/best-caption-placement-short-form-video,
  https://socaptions.com/blog/tiktok-safe-zones-2026).
* Instagram / Facebook Reels: Meta's "keep 14 % at the top, 35 % at the bottom and 6 % at the sides free of
  text and logos" (Meta Business Help Center, summarised at
  https://houseofmarketers.com/guide-to-safe-zones-tiktok-facebook-instagram-stories-reels/).
* YouTube Shorts: about 120 px at the top, 300 px at the bottom and the right action column
  (https://blitzcutai.com/blog/best-caption-placement-short-form-video).
* Feed posts (4:5, 1:1): about 64 px on every side
  (https://www.imagefactory.co.kr/en/guides/instagram-story-ad-text-safe-zone).
* YouTube 16:9: no interface covers a playing video; the broadcast title-safe area, 5 % on each side
  (EBU R 95, "Safe areas for 16:9 television production").

Loudness: YouTube normalises playback to -14 LUFS, and -14 LUFS / -1 dBTP is the commonly recommended
delivery level for TikTok, Reels and Shorts, which publish no official figure.
"""

from __future__ import annotations

from dataclasses import dataclass

from autocut.errors import ConfigError

__all__ = ["PRESETS", "PlatformPreset", "SafeMargins", "get_preset", "preset_names"]


@dataclass(frozen=True)
class SafeMargins:
    """Margins of the frame that platform UI may cover, as fractions of its height (top, bottom) or width; the
    fields of `autocut.types.SafeArea`, which a plan records (this module cannot import the types)."""

    top_frac: float
    bottom_frac: float
    left_frac: float
    right_frac: float


@dataclass(frozen=True)
class PlatformPreset:
    """One named output format."""

    name: str
    description: str
    aspect: str  # one of `autocut.types.Aspect`
    width: int
    height: int
    fps: float
    safe: SafeMargins
    loudness_lufs: float  # integrated loudness target of the mix (EBU R128)
    true_peak_db: float  # true-peak ceiling, dBTP


def _preset(name: str, description: str, size: tuple[str, int, int], safe: SafeMargins) -> PlatformPreset:
    aspect, width, height = size
    return PlatformPreset(
        name=name,
        description=description,
        aspect=aspect,
        width=width,
        height=height,
        fps=30.0,
        safe=safe,
        loudness_lufs=-14.0,
        true_peak_db=-1.0,
    )


_VERTICAL = ("9:16", 1080, 1920)

PRESETS: dict[str, PlatformPreset] = {
    p.name: p
    for p in (
        # TikTok: 154 px top, 384 px bottom, 65 px left, 162 px right at 1080x1920.
        _preset("tiktok", "TikTok in-feed", _VERTICAL, SafeMargins(0.08, 0.20, 0.06, 0.15)),
        # Meta Reels: 14 % top, 35 % bottom, 6 % sides.
        _preset("reels", "Instagram/Facebook Reels", _VERTICAL, SafeMargins(0.14, 0.35, 0.06, 0.06)),
        # YouTube Shorts: ~150 px top, ~384 px bottom, the action column on the right.
        _preset("shorts", "YouTube Shorts", _VERTICAL, SafeMargins(0.08, 0.20, 0.06, 0.12)),
        _preset(
            "feed-square", "Instagram/Facebook feed, square", ("1:1", 1080, 1080), SafeMargins(0.06, 0.06, 0.06, 0.06)
        ),
        _preset(
            "feed-portrait",
            "Instagram/Facebook feed, portrait 4:5",
            ("4:5", 1080, 1350),
            SafeMargins(0.05, 0.05, 0.06, 0.06),
        ),
        _preset("youtube", "YouTube, landscape 16:9", ("16:9", 1920, 1080), SafeMargins(0.05, 0.05, 0.05, 0.05)),
    )
}


def preset_names() -> list[str]:
    """The known preset names, in table order."""
    return list(PRESETS)


def get_preset(name: str) -> PlatformPreset:
    """The preset called `name`; ConfigError naming it and listing the known ones otherwise."""
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown output preset {name!r}; known presets: {', '.join(PRESETS)}") from None
