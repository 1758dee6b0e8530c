"""Vision-only embedding-similarity baseline (docs/method.md, "Metrics": baseline planners).

No text-image model ships offline, so this planner sees frames only:

- selection: the candidates closest to the product photo (embedded with the library's frame
  encoder + PCA) when the request has one, else to the pool's dominant cluster (the densest
  candidate's neighbourhood). "Closest" is the raw cosine by default (`identity="cosine"`, the
  baseline every table compares with); `identity="learned"` or `"auto"` uses the library's learned
  identity metric (`autocut.planning.identity`) instead, an ablation that shows what identity alone buys;
- order: a greedy similarity chain that starts at the most "opening-like" candidate. Opening-
  likeness is the direction from the average reference clip to the average first clip of the
  training split's reference edits (what distinguishes openings); a library without reference
  edits falls back to closeness to the pool's mean (the most representative clip opens);
- BGM: the track nearest the mean BGM of reference edits of the request's category, else of all
  reference edits, else of the whole BGM library.

Variants: variant 0 is the deterministic answer; later variants perturb the scores with Gumbel
noise (sampling without replacement), so they differ in selection, order or script.
"""

from __future__ import annotations

import copy
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autocut.errors import AutoCutError, PlanError
from autocut.library.catalog import Catalog
from autocut.library.ids import split_frame_ids
from autocut.planning.planners.base import Decision, Planner, PlanningTask, select_under_budget

__all__ = [
    "HeuristicPlanner",
    "ReferenceStats",
    "category_bgm_query",
    "dominant_anchor",
    "embed_product_image",
    "reference_stats",
]

log = logging.getLogger(__name__)

# Gumbel temperature on the cosine scale for variants > 0 (cosines of related clips differ by ~0.05-0.2);
# it grows with each retry so a small pool still yields distinct variants.
_VARIANT_TEMPERATURE = 0.04


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    n = float(np.linalg.norm(x))
    return x / n if n > 1e-12 else x


@dataclass(frozen=True, eq=False)
class ReferenceStats:
    """What the heuristic learns from a split's reference edits (nothing else is learned)."""

    n_edits: int
    opening: np.ndarray | None  # (D,) unit direction first-clip mean minus all-clip mean
    category_bgm: dict[str, np.ndarray] = field(default_factory=dict)  # category -> unit mean BGM embedding
    all_bgm: np.ndarray | None = None  # unit mean BGM embedding over all reference edits


# Per library state (root, PCA version, edit and track counts); a few entries: a server plans for one
# library, and a changed library makes a new key.
_STATS_CACHE: dict[tuple, ReferenceStats] = {}
_STATS_CACHE_SIZE = 8
_STATS_LOCK = threading.Lock()


def _segment_mean(
    frame_ids: np.ndarray, vecs: np.ndarray, photo_id: int, start_s: float, duration_s: float
) -> np.ndarray | None:
    photo, idx = split_frame_ids(frame_ids)
    mask = (photo == photo_id) & (idx >= np.ceil(start_s - 1e-6)) & (idx < start_s + duration_s)
    if not mask.any():
        return None
    return _unit(vecs[mask].mean(axis=0))


def reference_stats(catalog: Catalog, split: str = "train") -> ReferenceStats:
    """Opening direction and per-category BGM means from `split`'s reference edits (cached per library state)."""
    edits = catalog.reference_edits(split)
    key = (
        str(catalog.root),
        catalog.pca_version,
        split,
        len(edits),
        tuple(e.edit_id for e in edits[:3]),
        len(catalog.bgm_tracks()),
    )
    with _STATS_LOCK:
        if key in _STATS_CACHE:
            return _STATS_CACHE[key]
    opening = None
    if edits:
        photos = sorted({s.photo_id for e in edits for s in e.segments})
        fids, fvecs = catalog.frame_vectors(photos)
        firsts, alls = [], []
        for e in edits:
            for k, s in enumerate(e.segments):
                v = _segment_mean(fids, fvecs, s.photo_id, s.start_s, s.duration_s)
                if v is None:
                    continue
                alls.append(v)
                if k == 0:
                    firsts.append(v)
        if firsts:
            first_mean, all_mean = np.mean(firsts, axis=0), np.mean(alls, axis=0)
            direction = first_mean - all_mean
            # With one edit (or openings like any other clip) the difference carries no signal.
            opening = _unit(direction if np.linalg.norm(direction) > 1e-3 else first_mean)
    category_bgm: dict[str, np.ndarray] = {}
    all_bgm = None
    bgm_ids, bgm_vecs = catalog.bgm_vectors()
    if len(bgm_ids):
        row = {int(a): i for i, a in enumerate(bgm_ids)}
        categories: dict[str, str] = {}
        for p in catalog.products():
            categories[p.product_id] = p.category.strip().lower()
        per_cat: dict[str, list[np.ndarray]] = {}
        used = []
        for e in edits:
            if e.audio_id is None or int(e.audio_id) not in row:
                continue
            v = bgm_vecs[row[int(e.audio_id)]]
            used.append(v)
            cat = categories.get(e.product_id, "")
            if cat:
                per_cat.setdefault(cat, []).append(v)
        category_bgm = {c: _unit(np.mean(vs, axis=0)) for c, vs in per_cat.items()}
        all_bgm = _unit(np.mean(used, axis=0)) if used else None
    stats = ReferenceStats(n_edits=len(edits), opening=opening, category_bgm=category_bgm, all_bgm=all_bgm)
    with _STATS_LOCK:
        _STATS_CACHE[key] = stats
        while len(_STATS_CACHE) > _STATS_CACHE_SIZE:
            _STATS_CACHE.pop(next(iter(_STATS_CACHE)))
    return stats


def embed_product_image(image_path: str, catalog: Catalog, frame_weights: Path | None = None) -> np.ndarray:
    """A product photo -> (D,) unit vector in the library's frame space (frame encoder + library PCA)."""
    from PIL import Image, UnidentifiedImageError

    from autocut.encoders import load_frame_encoder
    from autocut.library.pca import current_pca

    path = Path(image_path)
    if not path.is_absolute() and not path.exists():
        path = catalog.root / path
    if not path.is_file():
        raise PlanError(f"product image {image_path} not found (give an absolute path or one inside the library)")
    encoder_name = catalog.frame_encoder
    if not encoder_name:
        raise PlanError(f"library {catalog.root} records no frame encoder (no footage ingested)")
    enc = load_frame_encoder(encoder_name, weights_dir=frame_weights)
    h, w = enc.input_size
    try:
        img = Image.open(path).convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise PlanError(f"product image {image_path} cannot be read: {exc}") from None
    # Same geometry as ingest: scale to cover the encoder's size, then centre-crop.
    scale = max(w / img.width, h / img.height)
    img = img.resize((max(w, round(img.width * scale)), max(h, round(img.height * scale))), Image.Resampling.BILINEAR)
    x0, y0 = (img.width - w) // 2, (img.height - h) // 2
    pixels = np.asarray(img.crop((x0, y0, x0 + w, y0 + h)), dtype=np.uint8)[None]  # (1, H, W, 3)
    raw = enc.encode(pixels)
    vec = current_pca(catalog, encoder_name).transform(raw)[0]
    return _unit(vec)


def dominant_anchor(vectors: np.ndarray) -> np.ndarray:
    """The centre of the pool's densest region: the candidate with the most similar neighbours, and them."""
    n = len(vectors)
    if n <= 2:
        return _unit(vectors.mean(axis=0))
    sims = vectors @ vectors.T  # (N, N) cosine (rows are unit)
    np.fill_diagonal(sims, -np.inf)
    m = max(1, n // 3)
    top = np.sort(sims, axis=1)[:, ::-1][:, :m]  # (N, m) each candidate's m best neighbours
    centre = int(np.argmax(top.mean(axis=1)))
    neighbours = np.argsort(-sims[centre])[:m]
    return _unit(vectors[[centre, *neighbours.tolist()]].mean(axis=0))


def _gumbel(rng: np.random.Generator, n: int, temperature: float) -> np.ndarray:
    return temperature * rng.gumbel(size=n) if temperature > 0 else np.zeros(n)


@dataclass(frozen=True, eq=False)
class _State:
    """What the heuristic derives once per request."""

    anchor: np.ndarray  # (D,) selection target
    anchor_from: str
    stats: ReferenceStats
    scores: np.ndarray | None = None  # (N,) selection similarity when the identity prior gives it


class HeuristicPlanner(Planner):
    """Embedding-similarity baseline; deterministic for variant 0."""

    name = "heuristic"

    def __init__(self, *, identity: str = "cosine") -> None:
        from autocut.planning.identity import IdentityPrior

        self.identity = IdentityPrior(identity)
        self._state: _State | None = None

    def plan(self, task: PlanningTask, n_variants: int) -> list[Decision]:
        # Per-request state lives on a copy, so one planner object can serve concurrent requests.
        worker = copy.copy(self)
        worker._state = self._prepare(task)
        return Planner.plan(worker, task, n_variants)

    def _prepare(self, task: PlanningTask) -> _State:
        anchor_from = "pool dominant cluster"
        anchor = None
        image = task.request.product.image_path
        if image:
            try:
                anchor = embed_product_image(image, task.catalog, task.frame_weights)
                anchor_from = "product image"
            except PlanError:
                raise
            except AutoCutError as exc:
                # An encoder that cannot load here (e.g. resnet50 without weights) must not sink the
                # plan: the pool's own structure is the documented fallback.
                log.warning("cannot embed the product image (%s); anchoring on the pool's dominant cluster", exc)
        scores = None
        if anchor is None:
            anchor = dominant_anchor(task.pool.vectors)
        elif self.identity.mode != "cosine":
            scores, how = self.identity.scores(
                task.library_dir, task.catalog.pca_version, anchor, np.asarray(task.pool.vectors)
            )
            anchor_from += f" ({how} identity)"
        return _State(anchor, anchor_from, reference_stats(task.catalog, task.reference_split), scores)

    @property
    def state(self) -> _State:
        assert self._state is not None, "HeuristicPlanner steps run inside plan()"
        return self._state

    def _temperature(self, variant: int, attempt: int) -> float:
        return 0.0 if variant == 0 and attempt == 0 else _VARIANT_TEMPERATURE * (1 + attempt)

    def notes(self, task: PlanningTask) -> dict[str, str]:
        st = self.state
        return {
            "selection_anchor": st.anchor_from,
            "opening": f"reference edits ({st.stats.n_edits}, split {task.reference_split})"
            if st.stats.opening is not None
            else "pool mean (no reference edits)",
        }

    def candidate_scores(self, task: PlanningTask) -> np.ndarray:
        """The selection similarity of each candidate to the anchor (cosine, or the learned identity metric's;
        without the variants' noise)."""
        if self.state.scores is not None:
            return self.state.scores
        return np.asarray(task.pool.vectors @ self.state.anchor, np.float64)

    # ---------------------------------------------------------------- steps
    def select(self, task: PlanningTask, variant: int, attempt: int, rng: np.random.Generator) -> list[int]:
        noise = _gumbel(rng, task.n_candidates, self._temperature(variant, attempt))
        scores = self.candidate_scores(task) + noise
        priority = [int(i) for i in np.argsort(-scores, kind="stable")]
        if task.n_select is not None:
            return sorted(priority[: task.n_select])
        return select_under_budget(priority, task.pool.durations_s, task.budget_s)

    def order(
        self, task: PlanningTask, selected: list[int], variant: int, attempt: int, rng: np.random.Generator
    ) -> list[int]:
        stats = self.state.stats
        vecs = task.pool.vectors[selected]  # (n, D)
        opening = stats.opening if stats.opening is not None else _unit(task.pool.vectors.mean(axis=0))
        temp = self._temperature(variant, attempt)
        start = int(np.argmax(vecs @ opening + _gumbel(rng, len(selected), temp)))
        chain = [start]
        left = set(range(len(selected))) - {start}
        while left:
            rest = sorted(left)
            sims = vecs[rest] @ vecs[chain[-1]] + _gumbel(rng, len(rest), temp)
            nxt = rest[int(np.argmax(sims))]
            chain.append(nxt)
            left.remove(nxt)
        return [int(selected[i]) for i in chain]

    def bgm_query(
        self, task: PlanningTask, order: list[int], sentences: list[str], variant: int, rng: np.random.Generator
    ) -> np.ndarray | None:
        return category_bgm_query(task, self.state.stats)


def category_bgm_query(task: PlanningTask, stats: ReferenceStats) -> np.ndarray | None:
    """The heuristic's BGM target (also the caption baselines', which cannot emit audio tokens): the mean
    BGM of the category's reference edits, else of all reference edits, else of the whole BGM library."""
    if len(task.bgm_ids) == 0:
        return None
    category = task.request.product.category.strip().lower()
    if category and category in stats.category_bgm:
        return stats.category_bgm[category]
    if stats.all_bgm is not None:
        return stats.all_bgm
    return _unit(task.bgm_vectors.mean(axis=0))
