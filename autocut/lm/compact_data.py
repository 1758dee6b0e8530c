"""Training examples for the compact planner, built the way requests look (docs/method.md, "The compact
planner"): from a library's reference ads of one split and, for the labels, the demo world's manifest.

`load_world_data` turns each product's reel into the candidates a request over it gets
(`autocut.planning.candidates.build_candidates`, the planner's own path), each encoded as the 8 video codes of
its clip-mean embedding and labelled with the world shot it shows (role, selling point, ad shot or the
look-alike rival's distractor). `ExampleSampler` then draws examples afresh at every step, so pool order and
negatives are resampled every epoch:

- script-driven: the ad's sentences as the script; the pool = the product's whole reel (its unused shots and
  the rival's distractor shots are hard negatives) + the reels of 1-2 other products (same category first),
  sources in random order, at most 64 candidates;
- footage-driven: the product's reel alone; the answer is the ad's clips in order, each with its sentence.

The target of a reference position is a set: every candidate showing an ad shot of the product with the
segment's role (and selling point, script-driven) is right (the role-equivalent positives of
`autocut.evaluation.samples`); the token fed back is the ad's own clip.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autocut.errors import ConfigError
from autocut.lm.compact import MATCH_EDGES, MAX_CANDIDATES, Row, match_buckets
from autocut.lm.prompts import ProductView, product_view

__all__ = ["AdRec", "Example", "ExampleSampler", "ReelClip", "WorldData", "load_world_data"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReelClip:
    """One candidate of a product's reel."""

    codes: np.ndarray  # (8,) video codes of the clip-mean embedding
    shot_id: str  # the world shot it shows ("" none)
    role: str
    kind: str  # "ad" | "distractor" | ""
    selling_point: str | None
    duration_s: float
    # (M, 8) codes of views of the clip for training (means of random subsets of its shown frames): an
    # example shows one at random, so the model cannot learn a product's clips by their exact codes.
    variants: np.ndarray | None = None
    # The embedding of the clip-mean (row 0) and of each view (rows 1..M, as `variants`): the product-match
    # buckets are computed from them, as the planner computes them from the candidates' vectors.
    vectors: np.ndarray | None = None


@dataclass(frozen=True)
class AdRec:
    edit_id: str
    product_id: str
    language: str
    shots: tuple[str, ...]  # per segment, the shot it cuts
    roles: tuple[str, ...]
    selling_points: tuple[str | None, ...]
    sentences: tuple[str, ...]
    audio_codes: np.ndarray | None  # (8,) of the ad's BGM track
    mood: str = ""
    seg_durations: tuple[float, ...] = ()  # per segment, how long the ad cut it (seconds)


@dataclass
class WorldData:
    """Everything examples are drawn from, for one split."""

    split: str
    reels: dict[str, list[ReelClip]]  # product_id -> its reel's candidates, in reel order
    views: dict[tuple[str, str], ProductView]  # (product_id, language) -> what prompts show
    photos: dict[str, np.ndarray]  # product_id -> (8,) video codes of the product photo
    categories: dict[str, str]
    ads: list[AdRec]
    notes: list[str] = field(default_factory=list)
    # product_id -> (M, 8) codes of the photo's embedding plus small noise (training views, as `variants`)
    photo_variants: dict[str, np.ndarray] = field(default_factory=dict)
    # product_id -> (M + 1, D) the photo's embedding and its noisy views (rows as `photo_variants`)
    photo_vectors: dict[str, np.ndarray] = field(default_factory=dict)
    # product_id -> (D, D) learned identity map its examples' match buckets are computed through
    # (`CompactTrainConfig.match_metric` "learned": cross-fitted, so never fitted on that product); none: cosine
    identity_maps: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class Example:
    scenario: str
    language: str
    product: ProductView
    clip_codes: list[np.ndarray]
    photo_codes: np.ndarray | None
    rows: list[Row]
    positives: list[frozenset[int]]  # per row, the candidates that are right at its reference position
    audio_codes: np.ndarray | None
    match: np.ndarray | None = None  # (n,) product-match bucket per candidate (with a photo, when enabled)
    durations: tuple[float, ...] = ()  # per candidate, seconds
    row_durations: tuple[float, ...] = ()  # per row, the reference segment's duration (seconds)


def _shows(a0: float, a1: float, b0: float, b1: float) -> bool:
    ov = max(0.0, min(a1, b1) - max(a0, b0))
    return ov > 0 and ov >= 0.5 * min(a1 - a0, b1 - b0)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def load_world_data(
    library_dir: str | Path, split: str, *, video, audio=None, frame_weights=None, views: int = 6, seed: int = 0
) -> WorldData:
    """Reels, products and ads of `split` (see the module docstring). `video` / `audio` are RQ-VAE codecs;
    `views` training views per clip and photo (0: none)."""
    from autocut.demo_world.manifest import load_manifest
    from autocut.library.catalog import Catalog
    from autocut.planning.candidates import build_candidates
    from autocut.planning.planners.heuristic import embed_product_image
    from autocut.types import PoolItem

    library_dir = Path(library_dir)
    world = load_manifest(library_dir)
    shots_by_photo: dict[int, list[dict]] = {}
    shot_by_id: dict[str, dict] = {}
    for s in world["shots"]:
        shots_by_photo.setdefault(int(s["photo_id"]), []).append(s)
        shot_by_id[s["shot_id"]] = s
    data = WorldData(split, {}, {}, {}, {}, [])
    rng = np.random.default_rng(seed)
    with Catalog.open(library_dir, create=False) as cat:
        edits = cat.reference_edits(split)
        if not edits:
            raise ConfigError(f"library {library_dir} has no reference edits in split {split!r}")
        products = {p.product_id: p for p in cat.products()}
        audio_ids, audio_vecs = cat.bgm_vectors()
        audio_row = {int(a): i for i, a in enumerate(audio_ids)}
        moods = {int(b.audio_id): str(b.mood or "") for b in cat.bgm_tracks()}
        reel_ids: dict[str, list[int]] = {}
        for e in edits:
            ids = reel_ids.setdefault(e.product_id, [])
            for s in e.segments:
                if s.photo_id not in ids:
                    ids.append(s.photo_id)
        for pid, photo_ids in reel_ids.items():
            pool = build_candidates(cat, [PoolItem(photo_id=p) for p in photo_ids])
            clips: list[ReelClip] = []
            vecs = np.stack([c.vector for c in pool.candidates])
            codes = np.asarray(video.encode(vecs))
            variants: list[np.ndarray | None] = [None] * len(pool.candidates)
            vectors: list[np.ndarray] = [v[None].astype(np.float32) for v in vecs]
            if views:
                rows = []
                for c in pool.candidates:
                    f = np.asarray(c.frame_vectors, np.float32)
                    for _ in range(views):
                        pick = rng.random(len(f)) < 0.5
                        if not pick.any():
                            pick[rng.integers(len(f))] = True
                        rows.append(_unit(f[pick].mean(axis=0)))
                view_vecs = np.stack(rows).astype(np.float32)
                allv = np.asarray(video.encode(view_vecs)).reshape(len(pool.candidates), views, -1)
                variants = [np.concatenate([codes[i : i + 1], allv[i]]).astype(np.int64) for i in range(len(allv))]
                vv = view_vecs.reshape(len(pool.candidates), views, -1)
                vectors = [np.concatenate([vecs[i : i + 1], vv[i]]).astype(np.float32) for i in range(len(vv))]
            for c, code, var, vec_rows in zip(pool.candidates, codes, variants, vectors):
                shot = None
                for s in shots_by_photo.get(c.photo_id, []):
                    s0 = float(s["offset_s"])
                    if _shows(c.start_s, c.end_s, s0, s0 + float(s["duration_s"])):
                        shot = s
                        break
                clips.append(
                    ReelClip(
                        codes=code.astype(np.int64),
                        shot_id=shot["shot_id"] if shot else "",
                        role=shot["role"] if shot else "",
                        kind=shot["kind"] if shot else "",
                        selling_point=shot.get("selling_point") if shot else None,
                        duration_s=float(c.duration_s),
                        variants=var,
                        vectors=vec_rows,
                    )
                )
            data.reels[pid] = clips
            prod = products[pid]
            data.categories[pid] = prod.category
            for lang in ("en", "zh"):
                data.views[(pid, lang)] = product_view(prod, lang)
            if prod.image_path:
                vec = embed_product_image(prod.image_path, cat, frame_weights)
                data.photos[pid] = np.asarray(video.encode(vec[None]))[0].astype(np.int64)
                data.photo_vectors[pid] = np.asarray(vec, np.float32)[None]
                if views:
                    noisy = _unit(vec[None] + 0.05 * rng.standard_normal((views, vec.shape[0])).astype(np.float32))
                    data.photo_variants[pid] = np.concatenate(
                        [data.photos[pid][None], np.asarray(video.encode(noisy))]
                    ).astype(np.int64)
                    data.photo_vectors[pid] = np.concatenate([data.photo_vectors[pid], noisy]).astype(np.float32)
        skipped = 0
        for e in edits:
            shots, roles, sps = [], [], []
            for s in e.segments:
                mid = s.start_s + s.duration_s / 2
                shot = next(
                    (
                        w
                        for w in shots_by_photo.get(s.photo_id, [])
                        if float(w["offset_s"]) <= mid < float(w["offset_s"]) + float(w["duration_s"])
                    ),
                    None,
                )
                if shot is None:
                    break
                shots.append(shot["shot_id"])
                roles.append(shot["role"])
                sps.append(shot.get("selling_point"))
            if len(shots) != len(e.segments) or not any(c.shot_id in shots for c in data.reels[e.product_id]):
                skipped += 1
                continue
            codes_a = None
            if audio is not None and e.audio_id is not None and int(e.audio_id) in audio_row:
                codes_a = np.asarray(audio.encode(audio_vecs[audio_row[int(e.audio_id)]][None]))[0].astype(np.int64)
            data.ads.append(
                AdRec(
                    e.edit_id,
                    e.product_id,
                    e.language,
                    tuple(shots),
                    tuple(roles),
                    tuple(sps),
                    tuple(s.sentence for s in e.segments),
                    codes_a,
                    moods.get(int(e.audio_id), "") if e.audio_id is not None else "",
                    tuple(float(s.duration_s) for s in e.segments),
                )
            )
        if skipped:
            data.notes.append(f"{skipped} reference ad(s) not matched to world shots: left out")
    log.info("compact data (%s): %d reels, %d ads", split, len(data.reels), len(data.ads))
    return data


class ExampleSampler:
    """Draws training examples from `WorldData` (fresh pools every draw; see the module docstring)."""

    def __init__(
        self,
        data: WorldData,
        *,
        seed: int = 0,
        script_share: float = 0.6,
        max_negative_products: int = 2,
        same_category: float = 0.7,
        photo_dropout: float = 0.15,
        augment: bool = True,
        match_edges: tuple[int, ...] | None = MATCH_EDGES,
    ) -> None:
        if not data.ads:
            raise ConfigError("no reference ads to draw training examples from")
        self.data = data
        self.rng = random.Random(seed)
        self.script_share = script_share
        self.max_negative_products = max_negative_products
        self.same_category = same_category
        self.photo_dropout = photo_dropout
        self.augment = augment
        self.match_edges = match_edges
        self._by_cat: dict[str, list[str]] = {}
        for pid, cat in data.categories.items():
            self._by_cat.setdefault(cat, []).append(pid)

    def draw(self, scenario: str | None = None) -> Example:
        ad = self.rng.choice(self.data.ads)
        if scenario is None:
            scenario = "script" if self.rng.random() < self.script_share else "footage"
        return self.example(ad, scenario)

    def _negatives(self, pid: str) -> list[str]:
        n = self.rng.randint(1, max(1, self.max_negative_products))
        same = [p for p in self._by_cat.get(self.data.categories[pid], []) if p != pid]
        other = [p for p in self.data.reels if p != pid and p not in same]
        out: list[str] = []
        for _ in range(n):
            src = same if (same and self.rng.random() < self.same_category) or not other else other
            choices = [p for p in src if p not in out]
            if choices:
                out.append(self.rng.choice(choices))
        return out

    def example(self, ad: AdRec, scenario: str) -> Example:
        own = ad.product_id
        sources = [own] + (self._negatives(own) if scenario == "script" else [])
        if scenario == "script":
            self.rng.shuffle(sources)
        clips: list[ReelClip] = []
        owner: list[str] = []
        for pid in sources:
            reel = self.data.reels[pid]
            if len(clips) + len(reel) > MAX_CANDIDATES:
                continue
            clips += reel
            owner += [pid] * len(reel)
        rows: list[Row] = []
        positives: list[frozenset[int]] = []
        row_durations: list[float] = []
        used: set[int] = set()
        seg_durs = ad.seg_durations or (0.0,) * len(ad.shots)
        for shot, role, sp, sentence, seg_dur in zip(ad.shots, ad.roles, ad.selling_points, ad.sentences, seg_durs):
            strict = next(
                (i for i, c in enumerate(clips) if owner[i] == own and c.shot_id == shot and i not in used), None
            )
            if strict is None:
                continue
            ok = {
                i
                for i, c in enumerate(clips)
                if owner[i] == own
                and c.kind == "ad"
                and c.role == role
                and (scenario == "footage" or c.selling_point == sp)
                and i not in used
            }
            ok.add(strict)
            used.add(strict)
            rows.append(Row(strict, sentence))
            positives.append(frozenset(ok))
            row_durations.append(float(seg_dur))
        photo = self.data.photos.get(own)
        pv = self.data.photo_variants.get(own)
        p_view = 0
        if self.augment and pv is not None:
            p_view = self.rng.randrange(len(pv))
            photo = pv[p_view]
        if photo is not None and self.rng.random() < self.photo_dropout:
            photo = None
        picks = [self.rng.randrange(len(c.variants)) if self.augment and c.variants is not None else 0 for c in clips]
        shown = [c.variants[j] if c.variants is not None else c.codes for c, j in zip(clips, picks)]
        match = None
        pvec = self.data.photo_vectors.get(own)
        views = [c.vectors for c in clips]
        if self.match_edges and photo is not None and pvec is not None and all(v is not None for v in views):
            cvecs = np.stack([v[min(j, len(v) - 1)] for v, j in zip(views, picks) if v is not None])
            pv_row = pvec[min(p_view, len(pvec) - 1)]
            w = self.data.identity_maps.get(own)
            if w is not None:
                cvecs, pv_row = cvecs @ w.T, pv_row @ w.T
            match = match_buckets(pv_row, cvecs, self.match_edges)
        return Example(
            scenario=scenario,
            language=ad.language,
            product=self.data.views[(own, ad.language)],
            clip_codes=shown,
            photo_codes=photo,
            rows=rows,
            positives=positives,
            audio_codes=ad.audio_codes,
            match=match,
            durations=tuple(float(c.duration_s) for c in clips),
            row_durations=tuple(row_durations) if ad.seg_durations else (),
        )

    def corpus_texts(self) -> list[str]:
        """Every text a prompt or answer of this data holds (what the pruned vocabulary must cover)."""
        out: list[str] = []
        for v in self.data.views.values():
            out += [v.name, v.brand, *v.selling_points]
        for ad in self.data.ads:
            out += list(ad.sentences)
        return out
