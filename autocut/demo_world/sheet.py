"""Contact sheets of the demo world: PNG grids of sampled frames per product and per role."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from autocut.demo_world.drawing import load_font
from autocut.demo_world.manifest import load_manifest
from autocut.demo_world.products import ROLES
from autocut.errors import ConfigError, MediaError
from autocut.files import atomic_path

__all__ = ["contact_sheet_by_product", "contact_sheet_by_role"]

log = logging.getLogger(__name__)

TILE_W, TILE_H = 126, 224  # 9:16 tiles
LABEL_H = 18


def _frame_at(path: str, t_s: float) -> Image.Image:
    res = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-ss",
            f"{t_s:.2f}",
            "-i",
            path,
            "-frames:v",
            "1",
            "-vf",
            f"scale={TILE_W}:{TILE_H}:flags=area,format=rgb24",
            "-f",
            "rawvideo",
            "pipe:1",
        ],
        capture_output=True,
        check=False,
    )
    if res.returncode != 0 or len(res.stdout) != TILE_W * TILE_H * 3:
        raise MediaError(path, f"could not read a frame at {t_s:.2f} s")
    return Image.fromarray(np.frombuffer(res.stdout, np.uint8).reshape(TILE_H, TILE_W, 3))


def _shot_tile(shot: dict) -> Image.Image:
    return _frame_at(shot["path"], shot["offset_s"] + shot["duration_s"] * 0.6)


def _image_tile(path: str) -> Image.Image:
    with Image.open(path) as src:
        im = src.convert("RGB")
        tile = Image.new("RGB", (TILE_W, TILE_H), (236, 236, 232))
        s = TILE_W
        tile.paste(im.resize((s, s), Image.Resampling.LANCZOS), (0, (TILE_H - s) // 2))
        return tile


def _grid(rows: list[tuple[str, list[tuple[str, Image.Image]]]], title: str) -> Image.Image:
    row_label_w = 150
    n_cols = max(len(tiles) for _, tiles in rows)
    w = row_label_w + n_cols * (TILE_W + 4) + 4
    h = 30 + len(rows) * (TILE_H + LABEL_H + 6)
    sheet = Image.new("RGB", (w, h), (250, 250, 250))
    d = ImageDraw.Draw(sheet)
    d.text((8, 6), title, font=load_font(16), fill=(20, 20, 20))
    small = load_font(11, bold=False)
    for r, (row_label, tiles) in enumerate(rows):
        y = 30 + r * (TILE_H + LABEL_H + 6)
        lines = row_label.split("\n")
        for k, ln in enumerate(lines):
            d.text((6, y + 4 + 14 * k), ln, font=small, fill=(30, 30, 30))
        for c, (label, img) in enumerate(tiles):
            x = row_label_w + c * (TILE_W + 4)
            sheet.paste(img, (x, y))
            d.text((x + 2, y + TILE_H + 2), label, font=small, fill=(60, 60, 60))
    return sheet


def _save(img: Image.Image, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    # A 256-colour palette keeps the committed docs images small (~4x) at no visible cost here.
    with atomic_path(out) as tmp:
        img.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG).save(
            tmp, format="PNG", optimize=True
        )


def contact_sheet_by_product(
    library: str | os.PathLike[str], out: str | os.PathLike[str], *, n_products: int = 6, split: str = "test"
) -> Path:
    """Rows = products (one per category where possible), columns = product image, one frame per
    role, and the look-alike rival's distractor shot."""
    man = load_manifest(library)
    cands = [p for p in man["products"] if p["split"] == split] or man["products"]
    picked, cats = [], set()
    for p in cands:  # one per category first
        if p["category"] not in cats:
            picked.append(p)
            cats.add(p["category"])
    picked += [p for p in cands if p not in picked]
    picked = picked[:n_products]
    if not picked:
        raise ConfigError("the demo world has no products")
    rows = []
    for p in picked:
        shots = [s for s in man["shots"] if s["product_id"] == p["product_id"]]
        tiles = [("product image", _image_tile(p["image_path"]))]
        for role in ROLES:
            s = next((s for s in shots if s["role"] == role and s["kind"] == "ad"), None)
            if s is not None:
                tiles.append((role, _shot_tile(s)))
        rival = next((s for s in shots if s["kind"] == "distractor"), None)
        if rival is not None:
            tiles.append((f"distractor ({rival['role']})", _shot_tile(rival)))
        label = f"{p['product_id']} ({p['split']})\n{p['category']}\n" + "\n".join(_wrap_words(p["name_en"], 22))
        rows.append((label, tiles))
    title = (
        "AutoCut demo world (generated): per product, the product image, one frame per narrative role, "
        "and a look-alike distractor"
    )
    path = Path(out)
    _save(_grid(rows, title), path)
    return path


def contact_sheet_by_role(library: str | os.PathLike[str], out: str | os.PathLike[str], *, n_products: int = 8) -> Path:
    """Rows = narrative roles, columns = products (spread over categories): what each role looks like."""
    man = load_manifest(library)
    prods, cats = [], set()
    for p in man["products"]:
        if p["category"] not in cats:
            prods.append(p)
            cats.add(p["category"])
    prods += [p for p in man["products"] if p not in prods]
    prods = prods[:n_products]
    rows = []
    for role in ROLES:
        tiles = []
        for p in prods:
            s = next(
                (
                    s
                    for s in man["shots"]
                    if s["product_id"] == p["product_id"] and s["role"] == role and s["kind"] == "ad"
                ),
                None,
            )
            if s is not None:
                tiles.append((f"{p['product_id']} {p['category']}", _shot_tile(s)))
        rows.append((role, tiles))
    path = Path(out)
    _save(_grid(rows, "AutoCut demo world (generated): one row per narrative role, one column per product"), path)
    return path


def _wrap_words(text: str, width: int) -> list[str]:
    lines, cur = [], ""
    for w in text.split():
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}".strip()
    return lines + ([cur] if cur else [])
