"""Product identity: how much a candidate clip shows the request's product (docs/method.md, "Product identity").

Selecting an ad's clips is two questions: which clips show *this* product, and which of them fit each line. The
second is what the compact planner's LM learns well (the roles it orders, the lines it matches); the first is
where it memorises: the training products' clips have codes it can learn by heart, which says nothing about a
product it has never seen. What does transfer is a comparison with the product photo, and the raw cosine of
the photo to a clip mean is a weak one (the ImageNet features weigh the background and the role graphics as
much as the product's pattern and shape).

`IdentityModel` is a learned linear metric on the library's frame space: score(photo, clip) = cos(W p, W c),
W (D x D) fitted on the training split's products so that the product's own ad shots rank above the
look-alike rival's shots and above other products of the same category (a pairwise logistic ranking loss,
W starting at the identity and held near it by weight decay towards it). It is fitted on train, chosen on val
(the step with the best val AUC), and recorded with both AUCs next to the raw cosine's, so nobody uses it
unseen. Planners read it as a prior over candidates (`scores`, z-scored within the pool).

Fitting data comes from the demo world's manifest (`autocut.planning.identity_data.load_identity_pools`).
Files: `<library>/models/identity/identity.npz` (W, the PCA version it was fitted on, the metrics as JSON).
A file for another PCA version or with the wrong shape is refused with the reason.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autocut.errors import ConfigError, PlanError

__all__ = [
    "IDENTITY_FILE",
    "IdentityModel",
    "IdentityPools",
    "IdentityPrior",
    "crossfit_identity",
    "fit_identity",
    "identity_path",
    "load_identity",
    "pool_auc",
    "zscore",
]

log = logging.getLogger(__name__)

IDENTITY_FILE = "identity.npz"
FORMAT = "autocut-identity"
VERSION = 1


def identity_path(library_dir: str | Path) -> Path:
    from autocut.library.layout import LibraryLayout

    return LibraryLayout.of(Path(library_dir)).models_dir / "identity" / IDENTITY_FILE


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def zscore(x: np.ndarray) -> np.ndarray:
    """Scores standardised within one pool (mean 0, std 1; all-equal scores become 0)."""
    x = np.asarray(x, np.float64)
    sd = float(x.std())
    return (x - x.mean()) / sd if sd > 1e-9 else np.zeros_like(x)


@dataclass(frozen=True)
class IdentityModel:
    """A linear metric on the frame space (see the module docstring)."""

    weight: np.ndarray  # (D, D)
    pca_version: str
    metrics: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.weight.shape[0])

    def scores(self, photo: np.ndarray, clips: np.ndarray) -> np.ndarray:
        """(n,) cosine of each clip vector to the photo after the learned map."""
        p = np.asarray(photo, np.float32).reshape(-1)
        c = np.asarray(clips, np.float32)
        if p.shape[0] != self.dim or c.ndim != 2 or c.shape[1] != self.dim:
            raise PlanError(
                f"identity model is {self.dim}-d but got a photo of {p.shape[0]} and clips of {c.shape[1:]} dims"
            )
        return (_unit(c @ self.weight.T) @ _unit(p @ self.weight.T)).astype(np.float64)

    def save(self, path: str | Path) -> Path:
        from autocut.files import atomic_path

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT, "version": VERSION, "pca_version": self.pca_version, "metrics": self.metrics}
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, weight=self.weight.astype(np.float32), meta=np.asarray(json.dumps(meta)))
        return path


def load_identity(path: str | Path, *, pca_version: str | None = None) -> IdentityModel:
    """Read an identity model; ConfigError naming the problem for a missing, broken or mismatched file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no identity model at {path}: fit one with `autocut train identity`")
    try:
        with np.load(path, allow_pickle=False) as z:
            weight = np.asarray(z["weight"], np.float32)
            meta = json.loads(str(z["meta"]))
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise ConfigError(f"identity model {path} cannot be read ({type(exc).__name__}: {exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ConfigError(f"{path} is not an identity model of format {FORMAT} v{VERSION}")
    if weight.ndim != 2 or weight.shape[0] != weight.shape[1] or not np.isfinite(weight).all():
        raise ConfigError(f"identity model {path} has a malformed weight of shape {weight.shape}")
    if pca_version is not None and meta.get("pca_version") != pca_version:
        raise ConfigError(
            f"identity model {path} was fitted on PCA {meta.get('pca_version')!r}, the library is on {pca_version!r}: "
            "fit it again with `autocut train identity`"
        )
    return IdentityModel(weight, str(meta.get("pca_version")), dict(meta.get("metrics") or {}))


# ------------------------------------------------------------------------------------------------ data


@dataclass
class IdentityPools:
    """Per product of one split: its photo vector, and its reel's clips labelled own-ad (1) or not (0), plus
    the reels of the other products of its category (all 0)."""

    split: str
    photos: dict[str, np.ndarray]  # product_id -> (D,)
    reels: dict[str, tuple[np.ndarray, np.ndarray]]  # product_id -> ((n, D) clip vectors, (n,) 1 = own ad shot)
    categories: dict[str, str]

    def pool(self, pid: str, others: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """The clips of `pid`'s reel plus the reels of `others` (labels: 1 = pid's own ad shot)."""
        vecs, labels = self.reels[pid]
        parts, labs = [vecs], [labels]
        for o in others:
            parts.append(self.reels[o][0])
            labs.append(np.zeros(len(self.reels[o][0]), np.int64))
        return np.concatenate(parts), np.concatenate(labs)

    def same_category(self, pid: str) -> list[str]:
        cat = self.categories.get(pid, "")
        return [p for p in sorted(self.reels) if p != pid and self.categories.get(p, "") == cat and p in self.photos]


def pool_auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """AUC of `scores` separating labels 1 from 0 (ties count half); None without both classes."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    if len(pos) == 0 or len(neg) == 0:
        return None
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def _mean_auc(pools: IdentityPools, score_fn) -> float:
    aucs = []
    for pid in sorted(pools.reels):
        others = pools.same_category(pid)[:1]
        vecs, labels = pools.pool(pid, others)
        a = pool_auc(score_fn(pools.photos[pid], vecs), labels)
        if a is not None:
            aucs.append(a)
    return float(np.mean(aucs)) if aucs else float("nan")


# ------------------------------------------------------------------------------------------------ fitting


def fit_identity(
    train: IdentityPools,
    val: IdentityPools,
    *,
    pca_version: str,
    steps: int = 400,
    lr: float = 3e-3,
    decay: float = 1e-2,
    scale: float = 10.0,
    seed: int = 0,
    progress: Any = None,
) -> IdentityModel:
    """Fit W on `train` (every product against its rival shots and up to 3 same-category reels), keep the step
    with the best mean val AUC (pools as the evaluation builds them: own reel + one same-category reel)."""
    import torch

    torch.manual_seed(seed)
    dim = next(iter(train.photos.values())).shape[0]
    photos, pools, labels = [], [], []
    for pid in sorted(train.reels):
        if pid not in train.photos:
            continue
        vecs, lab = train.pool(pid, train.same_category(pid)[:3])
        if lab.sum() == 0 or lab.sum() == len(lab):
            continue
        photos.append(train.photos[pid])
        pools.append(vecs)
        labels.append(lab)
    if not pools:
        raise ConfigError("no training product has both its own shots and others' shots")
    # One padded batch: (B, N, D) clips, (B, N, N) mask of the (own, other) pairs each product's loss averages.
    n_max = max(len(v) for v in pools)
    clips = np.zeros((len(pools), n_max, dim), np.float32)
    pair = np.zeros((len(pools), n_max, n_max), np.float32)
    for b, (vecs, lab) in enumerate(zip(pools, labels)):
        clips[b, : len(vecs)] = vecs
        own = np.zeros(n_max, bool)
        other = np.zeros(n_max, bool)
        own[: len(lab)] = lab == 1
        other[: len(lab)] = lab == 0
        pair[b] = np.outer(own, other) / float(own.sum() * other.sum())
    pt, ct, mt = torch.as_tensor(np.stack(photos)), torch.as_tensor(clips), torch.as_tensor(pair)
    eye = torch.eye(dim)
    w = torch.nn.Parameter(eye.clone())
    opt = torch.optim.Adam([w], lr=lr)
    raw_val = _mean_auc(val, lambda p, c: _unit(c) @ _unit(p))
    raw_train = _mean_auc(train, lambda p, c: _unit(c) @ _unit(p))
    best = (raw_val, eye.numpy().copy(), 0)
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        opt.zero_grad()
        wp = torch.nn.functional.normalize(pt @ w.T, dim=-1)  # (B, D)
        wc = torch.nn.functional.normalize(ct @ w.T, dim=-1)  # (B, N, D); padding rows stay 0
        sc = scale * torch.einsum("bnd,bd->bn", wc, wp)
        diff = sc[:, :, None] - sc[:, None, :]  # (B, N, N): own minus other where the mask says so
        loss = (torch.nn.functional.softplus(-diff) * mt).sum() / len(pools)
        loss = loss + decay * ((w - eye) ** 2).sum()
        loss.backward()
        opt.step()
        if step % 20 == 0 or step == steps:
            wn = w.detach().numpy().copy()
            auc = _mean_auc(val, lambda p, c, wn=wn: _unit(c @ wn.T) @ _unit(p @ wn.T))
            if auc > best[0]:
                best = (auc, wn, step)
            if progress is not None:
                progress(step, steps, float(loss.detach()), auc)
    weight = best[1]
    fit_train = _mean_auc(train, lambda p, c: _unit(c @ weight.T) @ _unit(p @ weight.T))
    metrics = {
        "train_split": train.split,
        "val_split": val.split,
        "products": {"train": len(pools), "val": len(val.reels)},
        "auc_val": {"raw_cosine": round(raw_val, 4), "learned": round(best[0], 4)},
        "auc_train": {"raw_cosine": round(raw_train, 4), "learned": round(fit_train, 4)},
        "best_step": best[2],
        "steps": steps,
        "config": {"lr": lr, "decay": decay, "scale": scale, "seed": seed},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    return IdentityModel(weight.astype(np.float32), pca_version, metrics)


# ------------------------------------------------------------------------------------------------ planners


class IdentityPrior:
    """What a planner holds to score candidates against the product photo: the library's learned metric when
    `mode` is "learned" (ConfigError without one), the raw cosine for "cosine", and for "auto" the learned
    one when the library has it, else the cosine. Cached per library and PCA version."""

    MODES = ("auto", "learned", "cosine")

    def __init__(self, mode: str = "auto") -> None:
        if mode not in self.MODES:
            raise ConfigError(f"identity must be one of {', '.join(self.MODES)}, got {mode!r}")
        self.mode = mode
        self._cache: tuple[str, IdentityModel | None] | None = None

    def model(self, library_dir: str | Path, pca_version: str) -> IdentityModel | None:
        key = f"{library_dir}|{pca_version}"
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        model = None
        if self.mode != "cosine":
            path = identity_path(library_dir)
            if path.is_file() or self.mode == "learned":
                model = load_identity(path, pca_version=pca_version)
        self._cache = (key, model)
        return model

    def scores(self, library_dir: str | Path, pca_version: str, photo: np.ndarray, clips: np.ndarray):
        """((n,) similarity of each clip to the photo, "learned" | "cosine")."""
        model = self.model(library_dir, pca_version)
        if model is None:
            return (_unit(clips) @ _unit(np.asarray(photo).reshape(-1))).astype(np.float64), "cosine"
        return model.scores(photo, clips), "learned"


def crossfit_identity(
    train: IdentityPools, val: IdentityPools, *, pca_version: str, folds: int = 4, seed: int = 0, **fit_kw: Any
) -> dict[str, np.ndarray]:
    """product_id -> the map fitted without that product (K folds over `train`'s products; val picks the step).

    Training examples that show the LM an identity signal must show it as the planner will see it on a product
    it has never met: a map fitted on the product itself would be too good on its own shots."""
    if folds < 2:
        raise ConfigError(f"folds must be >= 2, got {folds}")
    pids = sorted(p for p in train.reels if p in train.photos)
    if len(pids) < 3:
        raise ConfigError(
            f"cross-fitting the identity maps needs at least 3 training products with a photo, split "
            f"{train.split!r} has {len(pids)}: train with --match-metric cosine"
        )
    folds = min(folds, len(pids))
    rng = np.random.default_rng(seed)
    order = [pids[i] for i in rng.permutation(len(pids))]
    out: dict[str, np.ndarray] = {}
    for k in range(folds):
        held = set(order[k::folds])
        part = IdentityPools(
            train.split,
            {p: v for p, v in train.photos.items() if p not in held},
            {p: v for p, v in train.reels.items() if p not in held},
            {p: v for p, v in train.categories.items() if p not in held},
        )
        model = fit_identity(part, val, pca_version=pca_version, seed=seed + k, **fit_kw)
        for p in held:
            out[p] = model.weight
        log.info("identity fold %d/%d: val AUC %.4f", k + 1, folds, model.metrics["auc_val"]["learned"])
    return out
