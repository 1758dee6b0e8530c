"""Demo world, end to end: build the `small` world into a fresh library through the real ingest path."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from autocut.cli import main as cli_main
from autocut.demo_world import (
    ROLES,
    WorldConfig,
    build_world,
    contact_sheet_by_product,
    contact_sheet_by_role,
    load_manifest,
    world_stats,
)
from autocut.demo_world.media import normalise_sources
from autocut.demo_world.overlays import render_shot_layers
from autocut.demo_world.products import CATEGORIES, build_catalogue
from autocut.demo_world.reels import run_reel
from autocut.errors import CatalogError, ConfigError
from autocut.library.catalog import Catalog

CATEGORY_MOOD = {c.key: c.mood for c in CATEGORIES}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object, float]:
    lib = tmp_path_factory.mktemp("world-lib")
    t0 = time.perf_counter()
    summary = build_world(lib, WorldConfig.preset("small"))
    return lib, summary, time.perf_counter() - t0


def _frames(path: str) -> int:
    # The MP4 sample table's frame count (no decode needed).
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_frames",
            "-of",
            "csv=p=0",
            path,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip())


def test_small_world_summary_and_manifest(world) -> None:
    lib, summary, _ = world
    assert summary.products == 8 and not summary.cached
    assert summary.products_by_split == {"train": 6, "val": 1, "test": 1}
    assert summary.bgm_excerpts >= 2 and summary.frames > 200
    man = load_manifest(lib)
    assert man["generated"] is True and "no part of it is a real advertisement" in man["how"]
    assert man["complete"] is True
    assert len(man["products"]) == 8 and len(man["ads"]) == sum(summary.reference_edits.values())
    for p in man["products"]:  # product images exist and are real PNGs
        assert Path(p["image_path"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(Path(m).parent == lib / "world" / "music" for m in man["sources"]["music"])


def test_reels_hold_every_shot_frame_exact(world) -> None:
    lib, _, _ = world
    man = load_manifest(lib)
    cfg = WorldConfig.preset("small")
    by_reel: dict[str, list[dict]] = {}
    for s in man["shots"]:
        by_reel.setdefault(s["path"], []).append(s)
    for path, shots in by_reel.items():
        assert Path(path).is_relative_to(lib / "world")
        shots.sort(key=lambda s: s["offset_s"])
        t = 0.0
        for s in shots:  # shots tile the reel in order, without gaps
            assert s["offset_s"] == t
            t += s["duration_s"]
        assert _frames(path) == round(t * cfg.fps)


def test_reference_edits_are_stored_through_the_catalog(world) -> None:
    lib, summary, _ = world
    man = load_manifest(lib)
    shots_by_photo: dict[int, list[dict]] = {}
    for s in man["shots"]:
        shots_by_photo.setdefault(s["photo_id"], []).append(s)
    products = {p["product_id"]: p for p in man["products"]}
    with Catalog.open(lib, create=False) as cat:
        edits = cat.reference_edits()
        assert len(edits) == sum(summary.reference_edits.values())
        assert {p.product_id for p in cat.products()} == set(products)
        bgm = {b.audio_id: b for b in cat.bgm_tracks()}
        for e in edits:
            assert e.source == "demo-world" and e.language in ("en", "zh")
            assert e.split == products[e.product_id]["split"]
            assert e.audio_id in bgm and bgm[e.audio_id].mood
            for seg in e.segments:
                assert seg.role in ROLES and seg.sentence
                # The segment lies inside one shot of its product, whose role it carries.
                shot = next(
                    s
                    for s in shots_by_photo[seg.photo_id]
                    if s["offset_s"] <= seg.start_s < s["offset_s"] + s["duration_s"]
                )
                assert shot["product_id"] == e.product_id and shot["kind"] == "ad" and shot["role"] == seg.role
                assert seg.start_s + seg.duration_s <= shot["offset_s"] + shot["duration_s"]
                src = cat.source(seg.photo_id)
                assert src.path == str(Path(shot["path"]).resolve())
        # Ads of a category use BGM of the category's mood when the library has that mood.
        moods_present = {b.mood for b in bgm.values()}
        for e in edits:
            want = CATEGORY_MOOD[products[e.product_id]["category"]]
            if want in moods_present:
                assert bgm[e.audio_id].mood == want
        # Segmentation found the shots again as clips (boundaries where frames change sharply).
        n_clips = len(cat.clips())
    assert n_clips >= 0.6 * len(man["shots"])


def test_rerun_is_cached_and_cli_reports_it(world, capsys: pytest.CaptureFixture) -> None:
    lib, summary, _ = world
    with Catalog.open(lib, create=False) as cat:
        before = cat.stats()
    t0 = time.perf_counter()
    again = build_world(lib, WorldConfig.preset("small"))
    assert again.cached and time.perf_counter() - t0 < 5
    assert again.products == summary.products and again.reference_edits == summary.reference_edits
    assert cli_main(["--library", str(lib), "demo-world", "build", "--size", "small"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    with Catalog.open(lib, create=False) as cat:
        after = cat.stats()
    assert (after.sources, after.frames, after.bgm_tracks) == (before.sources, before.frames, before.bgm_tracks)


def test_another_world_config_in_the_same_library_is_refused(world) -> None:
    lib, _, _ = world
    with pytest.raises(ConfigError, match="fresh library"):
        build_world(lib, WorldConfig.preset("small", seed=1))


def test_a_deleted_reel_is_regenerated_identically(world) -> None:
    lib, _, _ = world
    man = load_manifest(lib)
    path = Path(man["shots"][0]["path"])
    original = path.read_bytes()
    path.unlink()
    again = build_world(lib, WorldConfig.preset("small"))
    assert not again.cached
    assert path.read_bytes() == original  # deterministic media: same seed, same bytes
    with Catalog.open(lib, create=False) as cat:
        assert len(cat.sources()) == 8  # same content hash: ingest had nothing to add


def test_stats_and_contact_sheets(world, tmp_path: Path) -> None:
    lib, _, _ = world
    st = world_stats(lib, split="test")
    assert st.n_products == 1 and st.n_ads >= 1
    for v in (st.role_frame_accuracy, st.role_clip_accuracy, st.colour_frame_accuracy, st.shape_frame_accuracy):
        assert 0.0 <= v <= 1.0
    assert set(st.selection) == {
        "random",
        "similarity heuristic",
        "attributes named in text",
        "learned relevance (train)",
    }
    assert all(0.0 <= v.auc <= 1.0 for v in st.selection.values())
    assert "similarity chain" in st.order and "brightness ascending" in st.order
    assert json.loads(json.dumps(st.to_dict()))["split"] == "test"
    with pytest.raises(ConfigError, match="val or test"):
        world_stats(lib, split="train")
    assert "role (nearest centroid" in st.to_text()
    a = contact_sheet_by_product(lib, tmp_path / "sheet.png", split="train", n_products=2)
    b = contact_sheet_by_role(lib, tmp_path / "roles.png", n_products=2)
    from PIL import Image

    with Image.open(a) as im:
        assert im.width > 800 and im.height > 400
        assert np.asarray(im.convert("L")).std() > 20  # real frames, not blank tiles
    with Image.open(b) as im:
        assert im.height > 6 * 200 and im.width > 2 * 120


def test_stats_refuse_a_library_without_world(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="no demo world"):
        world_stats(tmp_path)


def test_generated_reel_bytes_are_deterministic(world, tmp_path: Path) -> None:
    """Two renders of the same two-shot reel are byte-identical (x264 single-threaded)."""
    lib, _, _ = world
    cfg = WorldConfig.preset("small")
    # The world's own source cache: nothing is transcoded again.
    media = normalise_sources(
        lib / "world" / "cache" / "sources",
        fps=cfg.fps,
        max_video_s=cfg.max_video_s,
        min_loop_s=cfg.video_loop_s,
        max_photos=cfg.max_photos,
    )
    from autocut.demo_world.shots import plan_shots

    p = build_catalogue(8, seed=0, categories=4)[0]
    shots = list(plan_shots([p], cfg, media))[:2]
    outs = []
    for k in range(2):
        layers = [
            (
                s,
                render_shot_layers(
                    s, p, next((x for x in p.selling_points if x.key == s.selling_point), None), tmp_path / f"l{k}"
                ),
            )
            for s in shots
        ]
        out = tmp_path / f"reel{k}.mp4"
        run_reel(layers, out)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    assert not list(tmp_path.glob("*.tmp"))
