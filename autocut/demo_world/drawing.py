"""PIL drawing for the demo world: fonts and wrapped text, colour shades, brand marks and their
patterns, patterned panels, the product sprite (shape, colour, pattern, brand badge), the product
image (PNG "shot") and the selling-point icons.
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from autocut.demo_world.products import Brand, Product
from autocut.errors import ConfigError
from autocut.files import atomic_path

__all__ = [
    "FONT_PATHS",
    "MARK_PATTERN",
    "contrast",
    "draw_icon",
    "draw_mark",
    "draw_product",
    "load_font",
    "luma",
    "panel",
    "pattern_image",
    "render_product_image",
    "shade",
    "text_block",
]

FONT_PATHS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
)


# --------------------------------------------------------------------------- fonts and colours
@lru_cache(maxsize=64)
def load_font(size: int, bold: bool = True) -> ImageFont.FreeTypeFont:
    """A bold (or regular) font with CJK glyphs, cached per size."""
    for p in FONT_PATHS if bold else FONT_PATHS[1:]:
        if os.path.exists(p):
            # Index 2 of the Noto CJK collection is "SC" (simplified Chinese) in Debian's build.
            return ImageFont.truetype(p, size, index=2 if p.endswith(".ttc") else 0)
    raise ConfigError("no usable font: install fonts-noto-cjk (make setup)")


def shade(rgb: tuple[int, int, int], f: float) -> tuple[int, int, int]:
    """f < 0 darkens towards black, f > 0 lightens towards white."""
    if f < 0:
        return tuple(int(c * (1 + f)) for c in rgb)  # type: ignore[return-value]
    return tuple(int(c + (255 - c) * f) for c in rgb)  # type: ignore[return-value]


def luma(rgb: tuple[int, int, int]) -> float:
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


def text_block(
    draw: ImageDraw.ImageDraw,
    text: str,
    box: tuple[int, int, int, int],
    *,
    size: int,
    fill: tuple[int, ...],
    max_lines: int = 3,
    align: str = "center",
) -> None:
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
def draw_mark(draw: ImageDraw.ImageDraw, mark: str, cx: float, cy: float, r: float, fill: tuple[int, ...]) -> None:
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
            draw.rectangle(
                (cx + k * bw * 1.3 - bw / 2, cy + r - 2 * h * 0.9, cx + k * bw * 1.3 + bw / 2, cy + r), fill=fill
            )
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
    draw.rounded_rectangle((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), radius=w * 0.12, fill=(250, 250, 248, 255))
    draw_mark(draw, brand.mark, cx, cy, h * 0.34, brand.badge_rgb + (255,))


# Each brand mark has a signature pattern, drawn on its products' bodies and on the panels of their
# clips. ImageNet CNN features are nearly colour-blind but texture-sensitive, so the pattern is what
# makes "which brand" visible in frame embeddings; it is learnable from text (the brand is named in
# the product info) and separates a product from its look-alike rival (another brand).
MARK_PATTERN = {
    "circle": "dots",
    "ring": "rings",
    "triangle": "zigzag",
    "diamond": "checks",
    "star": "crosses",
    "bars": "stripes",
    "cross": "grid",
    "square": "diagonal",
}


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


def contrast(rgb: tuple[int, int, int], amount: float) -> tuple[int, int, int]:
    """A shade of rgb `amount` away from it: darker for light colours, lighter for dark ones."""
    return shade(rgb, -amount if luma(rgb) > 110 else amount)


def panel(
    layout: Image.Image,
    box: tuple[float, float, float, float],
    *,
    radius: float,
    bg: tuple[int, ...],
    pattern: str,
    fg: tuple[int, ...],
    cell: float = 18.0,
    outline: tuple[int, ...] | None = None,
    width: int = 0,
) -> None:
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
    dark = shade(product.colour.rgb, -0.35) + (255,)
    light = shade(product.colour.rgb, 0.35) + (255,)

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
        d.polygon(
            [
                (0.08 * s, 0.72 * s),
                (0.1 * s, 0.45 * s),
                (0.3 * s, 0.42 * s),
                (0.45 * s, 0.3 * s),
                (0.58 * s, 0.32 * s),
                (0.66 * s, 0.5 * s),
                (0.9 * s, 0.58 * s),
                (0.94 * s, 0.72 * s),
            ],
            fill=col,
        )
        d.rounded_rectangle(R(0.06, 0.7, 0.96, 0.8), radius=0.03 * s, fill=(245, 245, 240, 255))
        for k in range(3):
            d.line(
                [(0.4 * s + k * 0.05 * s, 0.38 * s), (0.48 * s + k * 0.05 * s, 0.45 * s)],
                fill=light,
                width=int(0.02 * s),
            )
        badge_at = (0.3, 0.6, 0.18)
    elif shape == "bag":
        d.arc(R(0.32, 0.1, 0.68, 0.5), start=180, end=360, fill=dark, width=int(0.05 * s))
        d.polygon([(0.2 * s, 0.32 * s), (0.8 * s, 0.32 * s), (0.88 * s, 0.92 * s), (0.12 * s, 0.92 * s)], fill=col)
        badge_at = (0.5, 0.62, 0.3)
    else:
        raise ConfigError(f"unknown product shape {shape!r}")
    # The brand's pattern on the body (under the highlight and the badge).
    pat = pattern_image(
        MARK_PATTERN[product.brand.mark], (s, s), contrast(product.colour.rgb, 0.35) + (255,), cell=s * 0.13
    )
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
    return img.resize((size, size), Image.Resampling.LANCZOS)


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
    text_block(
        d,
        product.name_en,
        (10, int(size * 0.87), size - 10, size - 4),
        size=int(size * 0.05),
        fill=(40, 40, 40, 255),
        max_lines=1,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        img.convert("RGB").save(tmp, format="PNG")


# --------------------------------------------------------------------------- icons
def draw_icon(draw: ImageDraw.ImageDraw, name: str, cx: float, cy: float, r: float, fill: tuple[int, ...]) -> None:
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
        draw.polygon([(cx - r * 0.1, cy - r), (cx + r * 0.68, cy + r * 0.3), (cx - r * 0.68, cy + r * 0.3)], fill=fill)
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
        draw.line(
            [(cx - r * 0.8, cy), (cx - r * 0.2, cy + r * 0.6), (cx + r * 0.9, cy - r * 0.7)],
            fill=fill,
            width=int(w * 1.6),
            joint="curve",
        )
    elif name == "battery":
        draw.rounded_rectangle(
            (cx - r, cy - r * 0.5, cx + r * 0.8, cy + r * 0.5), radius=r * 0.1, outline=fill, width=w
        )
        draw.rectangle((cx + r * 0.8, cy - r * 0.2, cx + r, cy + r * 0.2), fill=fill)
        draw.rectangle((cx - r * 0.8, cy - r * 0.3, cx + r * 0.3, cy + r * 0.3), fill=fill)
    elif name == "feather":
        draw.polygon(
            [
                (cx + r * 0.8, cy - r),
                (cx + r * 0.3, cy + r * 0.3),
                (cx - r * 0.6, cy + r * 0.7),
                (cx - r * 0.3, cy - r * 0.2),
            ],
            fill=fill,
        )
        draw.line([(cx - r * 0.9, cy + r), (cx + r * 0.5, cy - r * 0.5)], fill=fill, width=max(1, w // 2))
    elif name == "sun":
        draw.ellipse((cx - r * 0.5, cy - r * 0.5, cx + r * 0.5, cy + r * 0.5), fill=fill)
        for k in range(8):
            a = k * math.pi / 4
            draw.line(
                [
                    (cx + r * 0.65 * math.cos(a), cy + r * 0.65 * math.sin(a)),
                    (cx + r * math.cos(a), cy + r * math.sin(a)),
                ],
                fill=fill,
                width=w,
            )
    elif name == "shield":
        draw.polygon(
            [
                (cx - r * 0.85, cy - r * 0.8),
                (cx, cy - r),
                (cx + r * 0.85, cy - r * 0.8),
                (cx + r * 0.75, cy + r * 0.2),
                (cx, cy + r),
                (cx - r * 0.75, cy + r * 0.2),
            ],
            fill=fill,
        )
    elif name == "bolt":
        draw.polygon(
            [
                (cx + r * 0.2, cy - r),
                (cx - r * 0.6, cy + r * 0.15),
                (cx - r * 0.05, cy + r * 0.15),
                (cx - r * 0.25, cy + r),
                (cx + r * 0.6, cy - r * 0.2),
                (cx + r * 0.05, cy - r * 0.2),
            ],
            fill=fill,
        )
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
            draw.line(
                [(cx - r * math.cos(a), cy - r * math.sin(a)), (cx + r * math.cos(a), cy + r * math.sin(a))],
                fill=fill,
                width=w,
            )
    elif name == "recycle":
        for k in range(3):
            a = -math.pi / 2 + k * 2 * math.pi / 3
            px, py = cx + r * 0.55 * math.cos(a), cy + r * 0.55 * math.sin(a)
            draw.polygon(
                [
                    (px + r * 0.4 * math.cos(a + 2.1), py + r * 0.4 * math.sin(a + 2.1)),
                    (px + r * 0.4 * math.cos(a - 0.5), py + r * 0.4 * math.sin(a - 0.5)),
                    (px + r * 0.4 * math.cos(a + 0.9), py + r * 0.4 * math.sin(a + 0.9)),
                ],
                fill=fill,
            )
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=fill, width=max(1, w // 2))
    else:
        raise ConfigError(f"unknown icon {name!r}")
