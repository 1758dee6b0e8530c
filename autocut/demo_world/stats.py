"""Learnability statistics of the demo world, on one split (test by default).

The world must be learnable but not trivial (docs/demo_world.md, "Learnable, not trivial"). These
figures check both halves:
- learnable: nearest-centroid classifiers fitted on the train split recover a clip's narrative role
  and the product's brand pattern, shape and colour from frame embeddings of unseen (test) products;
  a relevance function fitted on the train split (logistic regression on candidate/product-image
  pairs) and an order by recognised role beat chance and the heuristic on unseen products;
- not trivial: the vision-only similarity heuristic of the baseline planners (docs/method.md,
  "Metrics"; `autocut.planning.planners.heuristic`) (selection = the candidates closest to the
  product image; order = a greedy similarity chain from the most opening-like clip) does not solve
  selection or ordering, and no single global cue (frame brightness, saturation, hue) tracks a
  clip's position in its ad.

The heuristic's core lives here minimally; the planner package owns the real baseline.
"""

from __future__ import annotations

import logging
import math
import os
import random
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from itertools import combinations

import numpy as np
from numpy.typing import ArrayLike

from autocut.demo_world.manifest import load_manifest
from autocut.demo_world.products import ROLES, stable_seed
from autocut.errors import CatalogError, ConfigError, MediaError
from autocut.library.catalog import Catalog
from autocut.library.ids import split_frame_id

__all__ = [
    "OrderScores",
    "SelectionScores",
    "WorldStats",
    "greedy_chain_order",
    "pairwise_order_accuracy",
    "select_by_similarity",
    "world_stats",
]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- the heuristic's core
def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def select_by_similarity(candidates: np.ndarray, reference: np.ndarray, k: int) -> list[int]:
    """Indices of the k candidates (C, D) closest in cosine to `reference` (D,), ascending."""
    sims = _unit(candidates) @ _unit(reference)
    return sorted(int(i) for i in np.argsort(-sims, kind="stable")[:k])


def greedy_chain_order(clips: np.ndarray, opening: np.ndarray) -> list[int]:
    """Order clips (N, D): start at the clip closest to `opening`, then always the unused clip
    most similar to the last one (the heuristic baseline planner's order; docs/method.md, "Metrics")."""
    c = _unit(clips)
    n = len(c)
    if n == 0:
        return []
    order = [int(np.argmax(c @ _unit(opening)))]
    left = set(range(n)) - set(order)
    while left:
        last = c[order[-1]]
        nxt = max(sorted(left), key=lambda j: float(c[j] @ last))
        order.append(nxt)
        left.remove(nxt)
    return order


def pairwise_order_accuracy(pred: Sequence[int], true: Sequence[int]) -> float:
    """Share of item pairs whose relative order agrees (Kendall tau = 2 * this - 1)."""
    pos_p = {x: i for i, x in enumerate(pred)}
    pos_t = {x: i for i, x in enumerate(true)}
    pairs = list(combinations(list(true), 2))
    if not pairs:
        return 1.0
    ok = sum((pos_p[a] < pos_p[b]) == (pos_t[a] < pos_t[b]) for a, b in pairs)
    return ok / len(pairs)


# --------------------------------------------------------------------------- results
@dataclass
class SelectionScores:
    csa: float  # share of ads whose selected set holds only positives (AutoCut 4.2)
    precision: float  # share of selected candidates that are positives
    auc: float  # chance that a positive scores above a negative of the same pool (0.5 = no signal)


@dataclass
class OrderScores:
    cra: float  # share of ads ordered exactly right
    pairwise: float  # share of clip pairs in the right relative order

    @property
    def kendall_tau(self) -> float:
        return 2 * self.pairwise - 1


@dataclass
class WorldStats:
    split: str
    n_products: int
    n_ads: int
    n_frames_train: int
    n_frames_eval: int
    role_frame_accuracy: float
    role_clip_accuracy: float
    role_majority_baseline: float
    role_accuracy_by_role: dict[str, float]
    colour_frame_accuracy: float  # chance = 1 / number of colours
    shape_frame_accuracy: float
    brand_mark_frame_accuracy: float  # the brand's badge mark and signature pattern
    n_colours: int
    n_shapes: int
    n_marks: int
    selection: dict[str, SelectionScores] = field(default_factory=dict)
    order: dict[str, OrderScores] = field(default_factory=dict)
    position_cue_spearman: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        for k, v in self.order.items():
            d["order"][k]["kendall_tau"] = v.kendall_tau
        return d

    def to_text(self) -> str:
        lines = [
            f"split {self.split}: {self.n_products} products, {self.n_ads} reference ads; "
            f"centroids fitted on {self.n_frames_train} train frames, evaluated on {self.n_frames_eval} frames",
            f"role (nearest centroid, 6 classes): frame acc {self.role_frame_accuracy:.3f}, clip acc "
            f"{self.role_clip_accuracy:.3f} (majority class {self.role_majority_baseline:.3f})",
            "  per role: " + ", ".join(f"{r} {a:.2f}" for r, a in self.role_accuracy_by_role.items()),
            f"identity (nearest centroid): brand pattern acc {self.brand_mark_frame_accuracy:.3f} (chance "
            f"{1 / max(self.n_marks, 1):.3f}), shape acc {self.shape_frame_accuracy:.3f} (chance "
            f"{1 / max(self.n_shapes, 1):.3f}), colour acc {self.colour_frame_accuracy:.3f} (chance "
            f"{1 / max(self.n_colours, 1):.3f})",
            "selection (pool = positives + as many negatives; CSA = only positives chosen):",
        ]
        lines += [
            f"  {k:<28} CSA {v.csa:.3f}  precision {v.precision:.3f}  AUC {v.auc:.3f}"
            for k, v in self.selection.items()
        ]
        lines.append("order (the ad's own clips, shuffled):")
        lines += [
            f"  {k:<28} CRA {v.cra:.3f}  pairwise {v.pairwise:.3f}  tau {v.kendall_tau:+.3f}"
            for k, v in self.order.items()
        ]
        lines.append(
            "global cues vs position in the ad (Spearman rho; 0 = no cue): "
            + ", ".join(f"{k} {v:+.3f}" for k, v in self.position_cue_spearman.items())
        )
        return "\n".join(lines)


# --------------------------------------------------------------------------- data access
@dataclass
class _Shot:
    shot_id: str
    product_id: str
    split: str
    role: str
    kind: str
    photo_id: int
    offset_s: float
    duration_s: float


def _frames_by_photo(cat: Catalog, photo_ids: Sequence[int]) -> dict[int, np.ndarray]:
    fids, vecs = cat.frame_vectors(sorted(set(photo_ids)))
    out: dict[int, list[tuple[int, np.ndarray]]] = {}
    for fid, v in zip(fids.tolist(), vecs):
        photo, index = split_frame_id(fid)
        out.setdefault(photo, []).append((index, v))
    res = {}
    for pid, rows in out.items():
        rows.sort(key=lambda r: r[0])
        arr = np.zeros((rows[-1][0] + 1, vecs.shape[1]), np.float32)
        for i, v in rows:
            arr[i] = v
        res[pid] = arr
    return res


def _window(frames: np.ndarray, start_s: float, duration_s: float) -> np.ndarray:
    """1 fps frames i with start <= i < start + duration (at least one)."""
    a = int(math.ceil(start_s - 1e-6))
    b = max(a + 1, int(math.ceil(start_s + duration_s - 1e-6)))
    return frames[a : min(b, len(frames))]


def _embed_images(cat: Catalog, paths: Sequence[str], num_threads: int | None) -> np.ndarray:
    """Product images through the library's own frame pipeline (encoder + PCA), (N, 128)."""
    from PIL import Image

    from autocut.encoders import load_frame_encoder
    from autocut.library.pca import current_pca

    enc = load_frame_encoder(cat.frame_encoder, num_threads=num_threads)
    pca = current_pca(cat, cat.frame_encoder)
    h, w = enc.input_size
    imgs = []
    for p in paths:
        with Image.open(p) as src:
            im = src.convert("RGB")
            s = min(im.size)  # centre crop to square, as frame sampling does
            x0, y0 = (im.width - s) // 2, (im.height - s) // 2
            imgs.append(np.asarray(im.crop((x0, y0, x0 + s, y0 + s)).resize((w, h), Image.Resampling.BILINEAR)))
    return pca.transform(enc.encode(np.stack(imgs)))


def _pixel_cues(path: str) -> np.ndarray:
    """Per 1 fps frame (same sampling as ingest): mean luma, mean saturation, mean hue in degrees."""
    w, h = 32, 56
    res = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-i",
            path,
            "-vf",
            f"fps=1:round=near,scale={w}:{h}:flags=area,format=rgb24",
            "-f",
            "rawvideo",
            "pipe:1",
        ],
        capture_output=True,
        check=False,
    )
    if res.returncode != 0:
        raise MediaError(path, f"ffmpeg could not decode: {res.stderr.decode(errors='replace')[-200:]}")
    px = np.frombuffer(res.stdout, np.uint8).reshape(-1, h * w, 3).astype(np.float32) / 255.0
    r, g, b = px[..., 0], px[..., 1], px[..., 2]
    mx, mn = px.max(-1), px.min(-1)
    luma = (0.299 * r + 0.587 * g + 0.114 * b).mean(-1)
    sat = np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-6), 0).mean(-1)
    # Circular mean hue (weighted by chroma), in degrees.
    ang = np.arctan2(np.sqrt(3) * (g - b), 2 * r - g - b)
    chroma = mx - mn
    hue = np.degrees(np.arctan2((np.sin(ang) * chroma).sum(-1), (np.cos(ang) * chroma).sum(-1))) % 360
    return np.stack([luma, sat, hue], axis=1)


def _spearman(x: ArrayLike, y: ArrayLike) -> float:
    xa, ya = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(xa) < 3:
        return float("nan")
    rx, ry = np.argsort(np.argsort(xa)), np.argsort(np.argsort(ya))
    c = np.corrcoef(rx, ry)[0, 1]
    return float(c) if np.isfinite(c) else 0.0


@dataclass(frozen=True)
class _Centroids:
    """A nearest-centroid classifier: one unit centroid (row of `vectors`) per label."""

    labels: list[str]
    vectors: np.ndarray  # (len(labels), D)

    def predict(self, x: np.ndarray) -> list[str]:
        return [self.labels[i] for i in np.argmax(_unit(x) @ self.vectors.T, axis=1)]


def _nearest_centroid(train_x: np.ndarray, train_y: Sequence[str]) -> _Centroids:
    labels = sorted(set(train_y))
    y = np.asarray(train_y)
    return _Centroids(labels, np.stack([_unit(train_x[y == lab].mean(0)) for lab in labels]))


@dataclass(frozen=True)
class _Pool:
    """A selection pool: candidate clip vectors (shuffled), which are the ad's own, and the pool's rng."""

    clips: np.ndarray  # (C, D)
    is_pos: np.ndarray  # (C,) bool
    rng: random.Random


# --------------------------------------------------------------------------- the statistics
def world_stats(
    library: str | os.PathLike[str], *, split: str = "test", seed: int = 0, num_threads: int | None = 1
) -> WorldStats:
    """Compute the learnability statistics of the demo world in `library` on `split`."""
    if split == "train":
        raise ConfigError("evaluate on val or test: the centroids and the learned baseline are fitted on train")
    man = load_manifest(library)
    products = {p["product_id"]: p for p in man["products"]}
    shots = [
        _Shot(
            s["shot_id"],
            s["product_id"],
            s["split"],
            s["role"],
            s["kind"],
            s["photo_id"],
            s["offset_s"],
            s["duration_s"],
        )
        for s in man["shots"]
    ]
    eval_pids = sorted(p for p, d in products.items() if d["split"] == split)
    if not eval_pids:
        raise CatalogError(f"the demo world has no products in split {split!r}")
    with Catalog.open(library, create=False) as cat:
        frames = _frames_by_photo(cat, [s.photo_id for s in shots])
        ads = [a for a in cat.reference_edits(split) if a.source == "demo-world"]
        train_ads = [a for a in cat.reference_edits("train") if a.source == "demo-world"]
        img_pids = sorted(p for p, d in products.items() if d["split"] in ("train", split))
        img_vecs = _embed_images(cat, [products[p]["image_path"] for p in img_pids], num_threads)
    image_of = dict(zip(img_pids, img_vecs))

    # Frame-level labelled data: every frame of every shot.
    def shot_frames(s: _Shot) -> np.ndarray:
        return _window(frames[s.photo_id], s.offset_s, s.duration_s)

    tr_x, tr_role, ev_x, ev_role = [], [], [], []
    tr_id: dict[str, list[str]] = {"colour": [], "shape": [], "brand_mark": []}
    ev_id: dict[str, list[str]] = {"colour": [], "shape": [], "brand_mark": []}
    clip_x, clip_role = [], []
    for s in shots:
        f = shot_frames(s)
        p = products[s.product_id]
        if s.split == "train":
            tr_x.append(f)
            tr_role += [s.role] * len(f)
        elif s.split == split:
            ev_x.append(f)
            ev_role += [s.role] * len(f)
            clip_x.append(f.mean(0))
            clip_role.append(s.role)
        if s.kind == "ad":  # identity labels only where the product itself is shown
            for key in tr_id:
                if s.split == "train":
                    tr_id[key] += [p[key]] * len(f)
                elif s.split == split:
                    ev_id[key] += [p[key]] * len(f)
    tr_all, ev_all = np.concatenate(tr_x), np.concatenate(ev_x)
    role_model = _nearest_centroid(tr_all, tr_role)
    pred = role_model.predict(ev_all)
    role_acc = float(np.mean([a == b for a, b in zip(pred, ev_role)]))
    clip_pred = role_model.predict(np.stack(clip_x))
    clip_acc = float(np.mean([a == b for a, b in zip(clip_pred, clip_role)]))
    majority = max(ev_role.count(r) for r in set(ev_role)) / len(ev_role)
    by_role = {r: float(np.mean([a == r for a, t in zip(pred, ev_role) if t == r])) for r in ROLES if r in ev_role}

    tr_ad = np.concatenate([shot_frames(s) for s in shots if s.split == "train" and s.kind == "ad"])
    ev_ad = np.concatenate([shot_frames(s) for s in shots if s.split == split and s.kind == "ad"])
    id_model = {key: _nearest_centroid(tr_ad, tr_id[key]) for key in tr_id}
    id_acc = {key: float(np.mean([a == b for a, b in zip(id_model[key].predict(ev_ad), ev_id[key])])) for key in tr_id}

    # Selection: each ad's clips plus as many negatives -- one shot of the product's look-alike rival
    # (the hard negative), the rest shots of other products of the same category in the same split.
    by_pid: dict[str, list[_Shot]] = {}
    for s in shots:
        by_pid.setdefault(s.product_id, []).append(s)

    def make_pool(ad, split_pids: list[str]) -> _Pool:
        rng = random.Random(stable_seed("stats-select", seed, ad.edit_id))
        p = products[ad.product_id]
        pos = [_window(frames[g.photo_id], g.start_s, g.duration_s).mean(0) for g in ad.segments]
        k = len(pos)
        rivals = [s for s in by_pid[ad.product_id] if s.kind == "distractor"]
        others = [
            s
            for pid in split_pids
            if pid != ad.product_id and products[pid]["category"] == p["category"]
            for s in by_pid[pid]
        ]
        if len(others) < k:
            others += [s for pid in split_pids if products[pid]["category"] != p["category"] for s in by_pid[pid]]
        neg_shots = rng.sample(rivals, 1) if rivals else []
        neg_shots += rng.sample(others, min(len(others), k - len(neg_shots)))
        neg = []
        for s in neg_shots:  # a clip-sized window of the negative shot, like the positives
            d = min(s.duration_s, float(rng.randint(2, 4)))
            st = s.offset_s + rng.randint(0, int(s.duration_s - d))
            neg.append(_window(frames[s.photo_id], st, d).mean(0))
        pool = np.stack(pos + neg)
        is_pos = np.array([True] * k + [False] * len(neg))
        perm = rng.sample(range(len(pool)), len(pool))
        return _Pool(pool[perm], is_pos[perm], rng)

    def pair_features(pool: np.ndarray, ref: np.ndarray) -> np.ndarray:
        u, r = _unit(pool), _unit(ref)
        return np.hstack([u * r, np.abs(u - r)])  # (C, 2D)

    # A learned relevance function in its simplest form: logistic regression on (candidate, product
    # image) pair features, fitted on the train split's pools; evaluated on unseen products.
    from sklearn.linear_model import LogisticRegression

    train_pids = sorted(p for p, d in products.items() if d["split"] == "train")
    fx, fy = [], []
    for ad in train_ads:
        pp = make_pool(ad, train_pids)
        fx.append(pair_features(pp.clips, image_of[ad.product_id]))
        fy.append(pp.is_pos)
    relevance = LogisticRegression(max_iter=3000, C=1.0).fit(np.vstack(fx), np.concatenate(fy))

    sel_hits: dict[str, list[float]] = {
        "random": [],
        "similarity heuristic": [],
        "attributes named in text": [],
        "learned relevance (train)": [],
    }
    sel_prec: dict[str, list[float]] = {k: [] for k in sel_hits}
    sel_auc: dict[str, list[float]] = {k: [] for k in sel_hits}
    for ad in ads:
        pp = make_pool(ad, eval_pids)
        pool, is_pos, rng = pp.clips, pp.is_pos, pp.rng
        p = products[ad.product_id]
        k = int(is_pos.sum())
        # Zero-shot use of the text: the brand, shape and colour named in the product info, each
        # recognised by its train-split centroid, summed.
        attr = np.zeros(len(pool), np.float32)
        for key, cents in id_model.items():
            if p[key] in cents.labels:
                attr += _unit(pool) @ cents.vectors[cents.labels.index(p[key])]
        scores = {
            "random": np.array([rng.random() for _ in range(len(pool))]),
            "similarity heuristic": _unit(pool) @ _unit(image_of[ad.product_id]),
            "attributes named in text": attr,
            "learned relevance (train)": relevance.decision_function(pair_features(pool, image_of[ad.product_id])),
        }
        for name, sc in scores.items():
            ch = sorted(int(i) for i in np.argsort(-sc, kind="stable")[:k])
            sel_hits[name].append(float(all(is_pos[i] for i in ch)))
            sel_prec[name].append(float(np.mean([is_pos[i] for i in ch])))
            sel_auc[name].append(float(np.mean([(a > b) + 0.5 * (a == b) for a in sc[is_pos] for b in sc[~is_pos]])))
    selection = {
        k: SelectionScores(float(np.mean(sel_hits[k])), float(np.mean(sel_prec[k])), float(np.mean(sel_auc[k])))
        for k in sel_hits
    }

    # Order: the ad's own clips shuffled; predicted order vs the reference.
    first = np.stack(
        [
            _window(frames[a.segments[0].photo_id], a.segments[0].start_s, a.segments[0].duration_s).mean(0)
            for a in train_ads
        ]
    )
    opening = _unit(first.mean(0))
    rank = {r: i for i, r in enumerate(ROLES)}
    ord_cra: dict[str, list[float]] = {
        "random": [],
        "similarity chain": [],
        "role centroid + role order": [],
        "brightness ascending": [],
        "brightness descending": [],
    }
    ord_pair: dict[str, list[float]] = {k: [] for k in ord_cra}
    cue_cache: dict[int, np.ndarray] = {}
    cue_pos: list[float] = []
    cue_vals: list[np.ndarray] = []
    reel_of = {s["photo_id"]: s["path"] for s in man["shots"]}
    for ad in ads:
        rng = random.Random(stable_seed("stats-order", seed, ad.edit_id))
        n = len(ad.segments)
        clips = np.stack([_window(frames[g.photo_id], g.start_s, g.duration_s).mean(0) for g in ad.segments])
        for g in ad.segments:
            if g.photo_id not in cue_cache:
                cue_cache[g.photo_id] = _pixel_cues(reel_of[g.photo_id])
        cues = np.stack([_window(cue_cache[g.photo_id], g.start_s, g.duration_s).mean(0) for g in ad.segments])
        for i in range(n):
            cue_pos.append(i / max(n - 1, 1))
            cue_vals.append(cues[i])
        shown = rng.sample(range(n), n)  # shown[j] = true index of the clip shown j-th
        true_order = list(range(n))
        x = clips[shown]
        preds = {
            "random": [shown[j] for j in rng.sample(range(n), n)],
            "similarity chain": [shown[j] for j in greedy_chain_order(x, opening)],
        }
        roles = role_model.predict(x)
        preds["role centroid + role order"] = [shown[j] for j in sorted(range(n), key=lambda j: rank[roles[j]])]
        lum = cues[shown, 0]
        preds["brightness ascending"] = [shown[j] for j in np.argsort(lum, kind="stable")]
        preds["brightness descending"] = [shown[j] for j in np.argsort(-lum, kind="stable")]
        for name, pr in preds.items():
            ord_cra[name].append(float(list(pr) == true_order))
            ord_pair[name].append(pairwise_order_accuracy(pr, true_order))
    order = {k: OrderScores(float(np.mean(ord_cra[k])), float(np.mean(ord_pair[k]))) for k in ord_cra}
    cv = np.stack(cue_vals)
    cues_rho = {
        "brightness": _spearman(cue_pos, cv[:, 0]),
        "saturation": _spearman(cue_pos, cv[:, 1]),
        "hue": _spearman(cue_pos, cv[:, 2]),
    }

    return WorldStats(
        split=split,
        n_products=len(eval_pids),
        n_ads=len(ads),
        n_frames_train=len(tr_all),
        n_frames_eval=len(ev_all),
        role_frame_accuracy=role_acc,
        role_clip_accuracy=clip_acc,
        role_majority_baseline=majority,
        role_accuracy_by_role=by_role,
        colour_frame_accuracy=id_acc["colour"],
        shape_frame_accuracy=id_acc["shape"],
        brand_mark_frame_accuracy=id_acc["brand_mark"],
        n_colours=len(id_model["colour"].labels),
        n_shapes=len(id_model["shape"].labels),
        n_marks=len(id_model["brand_mark"].labels),
        selection=selection,
        order=order,
        position_cue_spearman=cues_rho,
    )
