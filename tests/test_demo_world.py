"""Demo world, fast parts: catalogue, templates, ad composition, drawing, ffmpeg commands, stats core."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from autocut.demo_world import music
from autocut.demo_world.config import MIN_CLIP_S, WorldConfig
from autocut.demo_world.drawing import draw_icon, draw_product
from autocut.demo_world.frame import SAFE_BOTTOM, SAFE_TOP
from autocut.demo_world.media import SourceMedia
from autocut.demo_world.overlays import render_shot_layers
from autocut.demo_world.products import (
    CATEGORIES,
    COLOURS,
    ROLES,
    build_catalogue,
    count_words,
    lookalike,
    sentence,
)
from autocut.demo_world.reels import build_reel_command
from autocut.demo_world.reference_ads import WORDS_PER_S, compose_ads
from autocut.demo_world.shots import plan_shots
from autocut.demo_world.stats import (
    greedy_chain_order,
    pairwise_order_accuracy,
    select_by_similarity,
)
from autocut.errors import ConfigError


def _fake_media(tmp_path: Path) -> SourceMedia:
    """Source media for planning only (no file is read while planning)."""
    return SourceMedia(
        photos=tuple(str(tmp_path / f"p{i}.png") for i in range(5)), videos=((str(tmp_path / "v.mp4"), 30.0),)
    )


# --------------------------------------------------------------------------- catalogue
def test_full_catalogue_is_deterministic_split_by_product_and_distinct() -> None:
    a = build_catalogue(160, seed=0)
    b = build_catalogue(160, seed=0)
    assert [(p.product_id, p.name_en, p.split, [s.key for s in p.selling_points]) for p in a] == [
        (p.product_id, p.name_en, p.split, [s.key for s in p.selling_points]) for p in b
    ]
    assert len(a) == 160 and len({p.product_id for p in a}) == 160
    assert {p.category for p in a} == {c.key for c in CATEGORIES}
    splits = [p.split for p in a]
    assert (splits.count("train"), splits.count("val"), splits.count("test")) == (120, 20, 20)
    for cat in CATEGORIES:  # every split covers every category
        assert {p.split for p in a if p.category == cat.key} == {"train", "val", "test"}
    looks = [(p.category, p.shape, p.colour.key) for p in a]
    assert len(set(looks)) == len(looks), "two products of a category look identical"
    c = build_catalogue(160, seed=1)
    assert [p.name_en for p in a] != [p.name_en for p in c]


def test_product_names_are_compositional_and_bilingual() -> None:
    p = build_catalogue(8, seed=0, categories=4)[0]
    assert p.colour.en in p.name_en and p.brand.en in p.name_en and p.noun_en in p.name_en
    assert p.colour.zh in p.name_zh and p.noun_zh in p.name_zh
    assert p.price_text("en").startswith("$") and p.price_text("zh").startswith("¥")
    assert all(sp.zh in p.description("zh") for sp in p.selling_points)


def test_lookalike_shares_shape_but_not_brand_or_colour() -> None:
    for p in build_catalogue(40, seed=3):
        r = lookalike(p, seed=3)
        assert r.shape == p.shape and r.category == p.category
        assert r.brand.en != p.brand.en and r.colour.key != p.colour.key
        i, j = COLOURS.index(p.colour), COLOURS.index(r.colour)
        assert (i - j) % len(COLOURS) in (1, len(COLOURS) - 1)  # a neighbouring colour: a hard negative


def test_count_words_counts_cjk_characters_and_latin_words() -> None:
    assert count_words("Grab yours today for just $19.99.") == 6
    assert count_words("现在下单只要¥199！") == 7  # 6 characters + the price
    assert count_words("它还有USB充电。") == 6  # 5 characters + 1 latin word
    assert count_words("") == 0


def test_sentences_fill_slots_in_both_languages() -> None:
    p = build_catalogue(8, seed=0, categories=4)[1]
    rng = random.Random(0)
    for role in ROLES:
        for lang in ("en", "zh"):
            for sp in p.selling_points:
                s = sentence(role, p, lang, rng, sp)
                assert "{" not in s and s.strip() == s and len(s) > 3
                if role == "feature":
                    assert (sp.en if lang == "en" else sp.zh).lower() in s.lower()
                if role == "cta":
                    assert p.price_text(lang) in s
    with pytest.raises(ConfigError):
        sentence("feature", p, "en", rng, None)
    with pytest.raises(ConfigError):
        sentence("intro", p, "en", rng)


# --------------------------------------------------------------------------- planning
def test_plan_shots_one_reel_per_product_in_shuffled_order(tmp_path: Path) -> None:
    cfg = WorldConfig.preset("full")
    products = build_catalogue(20, seed=0)
    shots = plan_shots(products, cfg, _fake_media(tmp_path))
    assert shots == plan_shots(products, cfg, _fake_media(tmp_path))
    canonical = 0
    for p in products:
        ss = [s for s in shots if s.product_id == p.product_id]
        kinds = [s.kind for s in ss]
        assert kinds.count("distractor") == cfg.distractor_shots
        assert len(ss) == cfg.hook_shots + 1 + len(p.selling_points) + cfg.usage_shots + 2 + cfg.distractor_shots
        assert {s.selling_point for s in ss if s.role == "feature" and s.kind == "ad"} == {
            sp.key for sp in p.selling_points
        }
        assert all(s.duration_s == int(s.duration_s) and cfg.shot_s[0] <= s.duration_s <= cfg.shot_s[1] for s in ss)
        ad_roles = [ROLES.index(s.role) for s in ss if s.kind == "ad"]
        canonical += ad_roles == sorted(ad_roles)
    # Reel position must not give a shot's narrative role away.
    assert canonical <= 1


def test_compose_ads_fit_clip_length_to_sentence(tmp_path: Path) -> None:
    cfg = WorldConfig.preset("full")
    products = build_catalogue(30, seed=0)
    shots = plan_shots(products, cfg, _fake_media(tmp_path))
    langs = []
    n_ads = 0
    for i, p in enumerate(products):
        ss = [s for s in shots if s.product_id == p.product_id]
        by_id = {s.shot_id: s for s in ss}
        ads = compose_ads(p, ss, cfg, i)
        assert ads == compose_ads(p, ss, cfg, i)
        n_ads += len(ads)
        for ad in ads:
            langs.append(ad.language)
            roles = [g.role for g in ad.segments]
            assert roles[-1] == "cta" and "hook" not in roles[1:]
            assert len({g.shot_id for g in ad.segments}) == len(roles)  # a shot at most once per ad
            for g in ad.segments:
                shot = by_id[g.shot_id]
                assert shot.kind == "ad" and shot.role == g.role
                assert g.start_s == int(g.start_s) and g.start_s + g.duration_s <= shot.duration_s - 0.1 + 1e-9
                assert g.duration_s >= MIN_CLIP_S
                speak = count_words(g.sentence) / WORDS_PER_S[ad.language]
                # As long as the sentence takes to say (up to 15 % slack), unless the shot is shorter.
                assert g.duration_s >= min(MIN_CLIP_S, speak) - 1e-9
                assert g.duration_s <= max(MIN_CLIP_S, speak * 1.15 + 0.05)
    assert n_ads >= 30 * cfg.ads_per_product - 3
    assert abs(langs.count("en") - langs.count("zh")) <= 2


def test_world_config_presets_and_key() -> None:
    small, full = WorldConfig.preset("small"), WorldConfig.preset("full")
    assert small.key() != full.key()
    assert WorldConfig.preset("small", jobs=1).key() == small.key()  # jobs do not change the output
    assert WorldConfig.preset("small", seed=1).key() != small.key()
    assert full.n_products >= 150
    with pytest.raises(ConfigError):
        WorldConfig.preset("huge")
    with pytest.raises(ConfigError):
        WorldConfig(shot_s=(1, 2)).validate()


# --------------------------------------------------------------------------- drawing
def test_every_shape_icon_and_mark_draws() -> None:
    shapes = {s for c in CATEGORIES for s in c.shapes}
    products = build_catalogue(160, seed=0)
    for shape in shapes:
        p = next(x for x in products if x.shape == shape)
        sprite = draw_product(p, 96)
        alpha = np.asarray(sprite.getchannel("A"))
        assert sprite.size == (96, 96) and (alpha > 0).mean() > 0.1
        # The product's own colour dominates its opaque pixels.
        rgb = np.asarray(sprite.convert("RGB"))[alpha > 250].astype(float)
        assert np.abs(np.median(rgb, axis=0) - np.array(p.colour.rgb)).max() < 90
    icons = {sp.icon for c in CATEGORIES for sp in c.selling_points}
    img = Image.new("RGBA", (64, 64))
    for icon in icons:
        draw_icon(ImageDraw.Draw(img), icon, 32, 32, 20, (255, 0, 0, 255))
    with pytest.raises(ConfigError):
        draw_icon(ImageDraw.Draw(img), "nope", 32, 32, 20, (0, 0, 0, 255))


def test_role_layers_keep_their_content_in_the_encoder_square(tmp_path: Path) -> None:
    cfg = WorldConfig.preset("small")
    products = build_catalogue(8, seed=0, categories=4)
    shots = plan_shots(products[:2], cfg, _fake_media(tmp_path))
    for s in shots:
        p = next(x for x in products if x.product_id == s.product_id)
        sp = next((x for x in p.selling_points if x.key == s.selling_point), None)
        layers = render_shot_layers(s, p, sp, tmp_path / "layers")
        a = np.asarray(Image.open(layers.layout).getchannel("A")) > 0
        inside = a[SAFE_TOP:SAFE_BOTTOM].sum()
        assert inside > 0.9 * a.sum(), f"{s.role}: role graphics outside the square the encoder sees"


# --------------------------------------------------------------------------- ffmpeg command
def test_reel_command_concatenates_every_shot(tmp_path: Path) -> None:
    cfg = WorldConfig.preset("small")
    products = build_catalogue(8, seed=0, categories=4)
    shots = [s for s in plan_shots(products, cfg, _fake_media(tmp_path)) if s.product_id == "p0001"]
    p = products[0]
    layers = [
        (s, render_shot_layers(s, p, next((x for x in p.selling_points if x.key == s.selling_point), None), tmp_path))
        for s in shots
    ]
    cmd = build_reel_command(layers, tmp_path / "out.mp4")
    graph = cmd[cmd.index("-filter_complex") + 1]
    assert f"concat=n={len(shots)}:v=1:a=0" in graph
    total = int(sum(s.duration_s for s in shots) * cfg.fps)
    assert cmd[cmd.index("-frames:v") + 1] == str(total)
    assert graph.count("zoompan") == sum(s.background.kind == "photo" for s in shots)
    assert cmd[-1] == str(tmp_path / "out.mp4") and "libx264" in cmd
    with pytest.raises(ConfigError):
        build_reel_command([], tmp_path / "x.mp4")


# --------------------------------------------------------------------------- music
def test_moods_follow_arousal_quartiles() -> None:
    feats = [
        music.MoodFeatures(tempo_bpm=100.0, loudness_db=-40.0 + 2 * i, onset_rate_hz=1.0 + 0.1 * i, centroid_hz=1000.0)
        for i in range(8)
    ]
    moods = music.assign_moods(feats)
    assert moods == ["calm", "calm", "warm", "warm", "playful", "playful", "energetic", "energetic"]
    assert music.assign_moods([]) == []
    assert {c.mood for c in CATEGORIES} <= set(music.MOODS)


def test_excerpt_features_see_loudness_and_onsets() -> None:
    sr = music.ANALYSIS_RATE_HZ
    t = np.arange(10 * sr) / sr
    quiet = (0.05 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    clicks = np.zeros_like(quiet)
    clicks[:: sr // 4] = 0.9  # 4 clicks per second: 240 bpm pulse
    busy = quiet * 8 + np.convolve(clicks, np.hanning(64), mode="same").astype(np.float32)
    fq, fb = music.excerpt_features(quiet), music.excerpt_features(busy)
    assert fb.loudness_db > fq.loudness_db + 10
    assert fb.onset_rate_hz > fq.onset_rate_hz + 1


# --------------------------------------------------------------------------- stats core
def test_similarity_selection_and_greedy_chain() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=16)
    cands = np.stack([ref + rng.normal(scale=s, size=16) for s in (5.0, 0.1, 5.0, 0.2, 5.0)])
    assert select_by_similarity(cands, ref, 2) == [1, 3]
    # A chain of points along a line, shown shuffled: the chain from the end recovers the line.
    base, step = rng.normal(size=16), rng.normal(size=16)
    line = np.stack([base + k * step for k in range(6)])
    shown = [3, 0, 5, 1, 4, 2]
    order = greedy_chain_order(line[shown], opening=line[0])
    assert [shown[i] for i in order] == [0, 1, 2, 3, 4, 5]
    assert pairwise_order_accuracy([0, 1, 2], [0, 1, 2]) == 1.0
    assert pairwise_order_accuracy([2, 1, 0], [0, 1, 2]) == 0.0
    assert pairwise_order_accuracy([1, 0, 2], [0, 1, 2]) == pytest.approx(2 / 3)
