"""Caption style presets: named sets of `autocut.types.SubtitleStyle` fields (font, size, colours, outline or
box, position, karaoke highlight).

`SubtitleStyle(preset="karaoke")` fills in the preset's fields unless the same fields are given, as
`OutputSpec(preset=...)` does with `autocut.render.presets`. Positions are relative to the output's safe area
(`autocut.render.subtitles.caption_box`), so one style works on every platform preset.

Colours are ASS ``&HAABBGGRR`` (alpha first, 00 = opaque; blue, green, red).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from autocut.errors import ConfigError

__all__ = ["CAPTION_STYLES", "caption_style_names", "get_caption_style"]

_WHITE = "&H00FFFFFF"
_BLACK = "&H00000000"
_YELLOW = "&H0000FFFF"
_GREEN = "&H0066FF33"

CAPTION_STYLES: MappingProxyType[str, MappingProxyType[str, Any]] = MappingProxyType(
    {
        name: MappingProxyType(fields)
        for name, fields in {
            # Today's default look: white bold text with a black outline at the bottom.
            "classic": {"primary_colour": _WHITE, "outline_colour": _BLACK, "outline_px": 3.0, "bold": True},
            # White on a translucent black box, a little larger.
            "bold-box": {
                "primary_colour": _WHITE,
                "box": True,
                "box_colour": "&H60000000",
                "outline_px": 8.0,
                "size_frac": 0.05,
                "bold": True,
            },
            # The spoken word turns yellow, word by word (Chinese: jieba words).
            "karaoke": {
                "primary_colour": _WHITE,
                "outline_colour": _BLACK,
                "outline_px": 4.0,
                "size_frac": 0.05,
                "bold": True,
                "karaoke": "word",
                "highlight_colour": _YELLOW,
            },
            # Karaoke on a box, the spoken word green; in the middle of the frame.
            "karaoke-box": {
                "primary_colour": _WHITE,
                "box": True,
                "box_colour": "&H50000000",
                "outline_px": 8.0,
                "size_frac": 0.05,
                "bold": True,
                "position": "middle",
                "karaoke": "word",
                "highlight_colour": _GREEN,
            },
            # Captions at the top of the safe area (for footage whose action is at the bottom).
            "top-banner": {
                "primary_colour": _WHITE,
                "box": True,
                "box_colour": "&H40000000",
                "outline_px": 6.0,
                "position": "top",
                "margin_v_frac": 0.1,
            },
        }.items()
    }
)


def caption_style_names() -> list[str]:
    """The known caption style names, in table order."""
    return list(CAPTION_STYLES)


def get_caption_style(name: str) -> dict[str, Any]:
    """The `SubtitleStyle` fields of caption style `name`; ConfigError naming it and the known ones otherwise."""
    try:
        return dict(CAPTION_STYLES[name])
    except (KeyError, TypeError):
        raise ConfigError(
            f"subtitles.preset: unknown caption style {name!r}; known styles: {', '.join(CAPTION_STYLES)}"
        ) from None
