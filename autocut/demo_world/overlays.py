"""Role overlays of one generated shot, drawn once per shot as PNG layers for ffmpeg.

A shot is a real background (`autocut.demo_world.shots.Background`) under a full-frame layout PNG
with the graphics of the clip's narrative role (hook banner, showcase spotlight, feature callout with
the selling point's icon, usage picture-in-picture, proof stars and review card, call-to-action price
tag and button) and, in most roles, a product sprite PNG that ffmpeg animates (`ShotLayers`). Identity
and role graphics stay inside the square the frame encoder sees (`autocut.demo_world.frame`).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

from autocut.demo_world.drawing import (
    MARK_PATTERN,
    contrast,
    draw_icon,
    draw_mark,
    draw_product,
    load_font,
    luma,
    panel,
    shade,
    text_block,
)
from autocut.demo_world.frame import SAFE_BOTTOM, SAFE_TOP, H, W
from autocut.demo_world.products import CATEGORIES, Product, SellingPoint, stable_seed
from autocut.demo_world.shots import ShotSpec
from autocut.errors import ConfigError

__all__ = ["ShotLayers", "render_shot_layers"]


@dataclass
class ShotLayers:
    """PNG layers of one shot and how ffmpeg animates them."""

    layout: Path  # full-frame RGBA, static
    sprite: Path | None  # product sprite, animated by the expressions below
    sprite_x: str = "0"
    sprite_y: str = "0"


_UI_TEXT = {
    "new": ("NEW", "新品"),
    "how": ("HOW TO USE", "使用方法"),
    "buy": ("BUY NOW", "立即购买"),
    "reviews": ("{k}k reviews", "{k}千条好评"),
    "off": ("-{p}%", "减{p}%"),
    "only": ("ONLY", "仅需"),
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
    draw.polygon(
        [
            (cx, cy - r),
            (cx + r * 0.25, cy - r * 0.25),
            (cx + r, cy),
            (cx + r * 0.25, cy + r * 0.25),
            (cx, cy + r),
            (cx - r * 0.25, cy + r * 0.25),
            (cx - r, cy),
            (cx - r * 0.25, cy - r * 0.25),
        ],
        fill=fill,
    )


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
    # visible in frame embeddings, where a small sprite alone is swamped by the background (the world
    # must make relevance visible in the frames; docs/demo_world.md). A look-alike rival is themed in its
    # own, neighbouring colour.
    theme = product.colour.rgb
    on_theme = (30, 30, 30, 255) if luma(theme) > 165 else (255, 255, 255, 255)
    dark_theme = shade(theme, -0.6)
    pastel = shade(theme, 0.78)
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
        panel(
            layout,
            (14, y0, W - 14, y0 + 130),
            radius=18,
            bg=dark_theme + (225,),
            pattern=pattern,
            fg=shade(dark_theme, 0.22) + (225,),
        )
        cat = next(c for c in CATEGORIES if c.key == product.category)
        line = rng.choice(cat.pains)[0 if lang == "en" else 1]
        text_block(d, line, (30, y0 + 10, W - 30, y0 + 120), size=28, fill=white, max_lines=3)
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
        panel(
            layout,
            (30, bot - 52, W - 30, bot - 8),
            radius=22,
            bg=theme + (245,),
            pattern=pattern,
            fg=contrast(theme, 0.15) + (245,),
            cell=14,
        )
        text_block(d, name, (40, bot - 50, W - 40, bot - 10), size=20, fill=on_theme, max_lines=1)
        for _ in range(rng.randint(3, 6)):
            _sparkle(d, rng.randint(20, W - 20), rng.randint(top, cy + 120), rng.randint(8, 16), (255, 240, 170, 255))
        if rng.random() < 0.5:
            d.rounded_rectangle((W - 92, top + 8, W - 14, top + 42), radius=10, fill=(230, 40, 60, 255))
            text_block(d, _ui("new", lang), (W - 90, top + 9, W - 16, top + 41), size=18, fill=white, max_lines=1)
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
        d.line([(px + sprite_size * (0.8 if left else 0.2), py + sprite_size * 0.5), (icx, icy)], fill=white, width=3)
        d.ellipse((icx - 62, icy - 62, icx + 62, icy + 62), fill=white)
        d.ellipse((icx - 56, icy - 56, icx + 56, icy + 56), fill=theme + (255,))
        draw_icon(d, sp.icon, icx, icy, 34, on_theme)
        ty = max(py + sprite_size, icy + 70) + 6
        panel(
            layout,
            (16, ty, W - 16, min(ty + 86, bot - 4)),
            radius=14,
            bg=pastel + (240,),
            pattern=pattern,
            fg=shade(pastel, -0.12) + (240,),
        )
        text_block(
            d,
            sp.en if lang == "en" else sp.zh,
            (28, ty + 6, W - 28, min(ty + 80, bot - 10)),
            size=24,
            fill=(30, 30, 30, 255),
            max_lines=2,
        )
        if rng.random() < 0.5:
            text_block(d, _ui("why", lang), (16, top - 40, W - 16, top - 4), size=22, fill=white, max_lines=1)
    elif role == "usage":
        # Real footage fills the frame; product in a picture-in-picture card, a pointer, a label chip.
        card = rng.randint(150, 170)
        cx0 = rng.choice((14, W - card - 14))
        cy0 = rng.randint(top + 55, bot - card - 8)
        panel(
            layout,
            (cx0, cy0, cx0 + card, cy0 + card),
            radius=16,
            bg=pastel + (245,),
            pattern=pattern,
            fg=shade(pastel, -0.15) + (245,),
            outline=theme + (255,),
            width=8,
        )
        sprite_size = card - 24
        sprite_xy = (cx0 + 12, cy0 + 12)
        chip = _ui("how", lang)
        d.rounded_rectangle((16, top + 8, 200, top + 46), radius=19, fill=dark_theme + (220,))
        text_block(d, chip, (24, top + 10, 192, top + 44), size=20, fill=white, max_lines=1)
        # A pointer "hand" (circle + finger) next to the card.
        hx = cx0 + card + 30 if cx0 < W / 2 else cx0 - 30
        hy = cy0 + card // 2 + rng.randint(-20, 20)
        d.ellipse((hx - 22, hy - 10, hx + 22, hy + 34), fill=(245, 205, 170, 255))
        d.rounded_rectangle((hx - 7, hy - 40, hx + 7, hy + 4), radius=7, fill=(245, 205, 170, 255))
        for k in range(3):
            d.arc(
                (hx - 30 - 10 * k, hy - 60 - 10 * k, hx + 30 + 10 * k, hy - 20 + 10 * k),
                start=200,
                end=340,
                fill=white,
                width=3,
            )
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
        text_block(
            d,
            _ui("reviews", lang, k=product.reviews_k),
            (110, ry + 4, W - 20, ry + 48),
            size=22,
            fill=white,
            max_lines=1,
            align="left",
        )
        cy0 = ry + 60
        panel(
            layout,
            (16, cy0, W - 16, bot - 6),
            radius=16,
            bg=pastel + (245,),
            pattern=pattern,
            fg=shade(pastel, -0.1) + (245,),
            outline=theme + (255,),
            width=5,
        )
        d.ellipse((30, cy0 + 16, 76, cy0 + 62), fill=theme + (255,))
        for k in range(rng.randint(3, 4)):
            lw = rng.randint(150, 240)
            d.rounded_rectangle(
                (90, cy0 + 20 + k * 22, 90 + lw, cy0 + 32 + k * 22), radius=6, fill=(200, 200, 200, 255)
            )
        sprite_size = rng.randint(110, 130)
        sprite_xy = (W - sprite_size - 22, bot - sprite_size - 10)
    elif role == "cta":
        # Product, a price tag in the product's colour, a "buy now" button with an arrow, a discount badge.
        sprite_size = rng.randint(170, 195)
        sprite_xy = (rng.randint(20, W - sprite_size - 20), top + rng.randint(0, 15))
        ty = top + 200
        panel(
            layout,
            (40, ty, W - 40, ty + 62),
            radius=14,
            bg=theme + (245,),
            pattern=pattern,
            fg=contrast(theme, 0.15) + (245,),
            cell=14,
        )
        text_block(
            d,
            f"{_ui('only', lang)} {product.price_text(lang)}",
            (50, ty + 4, W - 50, ty + 58),
            size=32,
            fill=on_theme,
            max_lines=1,
        )
        by = ty + 78
        d.rounded_rectangle((60, by, W - 60, by + 52), radius=26, fill=(255, 90, 20, 255))
        text_block(d, _ui("buy", lang), (70, by + 3, W - 70, by + 49), size=26, fill=white, max_lines=1)
        d.polygon([(W - 52, by + 26), (W - 30, by + 12), (W - 30, by + 40)], fill=white)
        pct = rng.choice((10, 15, 20, 25, 30, 40))
        bx = W - 62 if sprite_xy[0] < W / 2 - sprite_size / 2 else 62
        _burst(d, bx, top + 60, 46, (230, 30, 50, 255), n=10)
        text_block(d, _ui("off", lang, p=pct), (bx - 40, top + 40, bx + 40, top + 80), size=22, fill=white, max_lines=1)
    else:
        raise ConfigError(f"unknown role {role!r}")

    out_dir.mkdir(parents=True, exist_ok=True)
    layout_path = out_dir / f"{spec.shot_id}-layout.png"
    layout.save(layout_path, compress_level=1)
    if not sprite_size:
        return ShotLayers(layout_path, None)
    sprite = draw_product(product, sprite_size)
    if rng.random() < 0.3:  # a slight tilt, as a hand-held product shot would have
        sprite = sprite.rotate(rng.uniform(-12, 12), resample=Image.Resampling.BICUBIC)
    sprite_path = out_dir / f"{spec.shot_id}-sprite.png"
    sprite.save(sprite_path, compress_level=1)
    xs, ys = _bob(sprite_xy[0], sprite_xy[1], rng, slide_from=slide)
    return ShotLayers(layout_path, sprite_path, xs, ys)
