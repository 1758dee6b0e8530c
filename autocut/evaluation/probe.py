"""Decodability probe (`autocut eval probe`): how well a shot's role, brand and selling point can be
read from each token representation of its frames, before any LM is trained.

A linear probe (multinomial logistic regression, lbfgs, `max_iter` bounded) is fitted on the train
split's products and scored on the held-out split's (test by default; the world assigns products to
train/val/test, `world.json` "products"), for each representation of the library's 128-d PCA frame
vectors:

- `pca`: the PCA vectors themselves (what the RQ-VAE is trained to reproduce);
- `rq-decoded`: `decode(encode(x))` of the library's video RQ-VAE (all 8 levels);
- `codes L=1,2,4,8`: the codes of the first L levels, as a one-hot bag of level-specific codes
  (L x 256 columns, exactly L ones per frame). One-hot is the default because it is what the LM is
  given: each (level, code) pair is its own token `<v_{level}_{code}>` whose embedding the LM learns
  from scratch, so a linear probe on the one-hot (a learned weight per token, summed) is the linear
  version of what the LM's input layer can do, and it sees nothing of the codebook geometry the LM
  never receives. `code_features="partial"` instead uses the RQ partial reconstruction, the sum of
  the first L chosen codebook vectors in the quantizer's latent space (128-d), which says how much
  of the target the first L levels carry *given* the codebooks; with L = 8 it is the decoder's input.

Each representation is probed per frame (a 1 fps frame is one sample) and per clip (a shot's frames
averaged: for codes the mean of the frames' one-hots, i.e. the shot's per-level code histogram, or of
their partial reconstructions); the clip probe is fitted on the train split's clip means. Dense inputs
are standardized with the train split's mean and standard deviation; one-hot codes are left as 0/1
(they are on one scale already; dividing by a column's standard deviation would blow rare codes up).

Labels (from `<library>/world/world.json`, as `autocut.demo_world.stats` reads them): a shot's `role`
(6 roles, every shot, distractor shots included); `brand`: the product's `brand_mark`, the brand's
badge mark and signature pattern drawn on the product (8 patterns; only `kind == "ad"` shots, since a
distractor shot shows a look-alike rival of another brand); `selling_point`: the shot's
`selling_point` key (feature shots only, the product's and the rival's; a key such as `light` names the
same icon in every category). Frames are a shot's 1 fps frames `i` with `offset_s <= i < offset_s +
duration_s` in its reel (docs/demo_world.md, "The manifest"). Chance is the majority class's share of
the held-out samples; labels of the held-out split that never occur in train count as errors.
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeAlias

import numpy as np
from scipy import sparse

from autocut.errors import CatalogError, ConfigError
from autocut.files import write_json_atomic, write_text_atomic
from autocut.library.ids import frame_id

__all__ = [
    "CODE_FEATURES",
    "LEVELS",
    "TARGETS",
    "CodeModel",
    "ProbeData",
    "ProbeResult",
    "ProbeScore",
    "build_representations",
    "chance_accuracy",
    "clip_means",
    "code_features",
    "fit_and_score",
    "load_probe_data",
    "probe_data_from_manifest",
    "probe_library",
    "run_probe",
    "shot_frame_rows",
    "shot_labels",
    "subsample_shots",
    "write_probe",
]

log = logging.getLogger(__name__)

TARGETS = ("role", "brand", "selling_point")
LEVELS = (1, 2, 4, 8)
CODE_FEATURES = ("onehot", "partial")
GRANULARITIES = ("frame", "clip")
PROBE_FORMAT_VERSION = 1

Features: TypeAlias = np.ndarray | sparse.csr_matrix
Progress = Callable[[int, int, str], None]


class CodeModel(Protocol):
    """What the probe needs of a tokenizer (`rqvae.Tokenizer` has it)."""

    @property
    def num_quantizers(self) -> int: ...

    @property
    def codebook_size(self) -> int: ...

    def encode(self, x: Any) -> np.ndarray: ...

    def decode(self, codes: Any) -> np.ndarray: ...

    def codebooks(self) -> np.ndarray: ...


# --------------------------------------------------------------------------- data
@dataclass(frozen=True)
class ProbeData:
    """Frames of the probed shots and each shot's split and labels."""

    vectors: np.ndarray  # (N, D) float32 PCA frame vectors
    frame_shot: np.ndarray  # (N,) int64: the shot (index into shot_ids) each frame belongs to
    shot_ids: list[str]
    shot_split: np.ndarray  # (S,) str
    labels: dict[str, np.ndarray]  # target -> (S,) object array: the label, or None where it does not apply

    def __post_init__(self) -> None:
        s = len(self.shot_ids)
        if self.vectors.ndim != 2 or len(self.vectors) != len(self.frame_shot):
            raise ConfigError(f"vectors {self.vectors.shape} and frame_shot {self.frame_shot.shape} disagree")
        if len(self.shot_split) != s or any(len(v) != s for v in self.labels.values()):
            raise ConfigError("shot_split and every label array need one entry per shot")
        if len(self.frame_shot) and (self.frame_shot.min() < 0 or self.frame_shot.max() >= s):
            raise ConfigError("frame_shot points outside the shots")

    @property
    def n_frames(self) -> int:
        return len(self.vectors)

    @property
    def n_shots(self) -> int:
        return len(self.shot_ids)


def shot_labels(shot: Mapping[str, Any], product: Mapping[str, Any]) -> dict[str, str | None]:
    """A manifest shot's probe labels (None where the target does not apply to the shot)."""
    return {
        "role": shot["role"],
        "brand": product["brand_mark"] if shot["kind"] == "ad" else None,
        "selling_point": shot.get("selling_point") or None,
    }


def shot_frame_rows(frame_ids: np.ndarray, shots: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Rows of `frame_ids` (1 fps frame ids) that belong to each shot, in shot order.

    A shot covers frames i of its reel (`photo_id`) with ceil(offset) <= i < ceil(offset + duration),
    at least one frame. Returns (row into frame_ids, shot index), both int64; frames of no shot are
    left out, and a shot whose frames are missing from `frame_ids` contributes none.
    """
    pos = {int(f): i for i, f in enumerate(np.asarray(frame_ids, np.int64).tolist())}
    rows: list[int] = []
    owner: list[int] = []
    for k, s in enumerate(shots):
        a = int(math.ceil(float(s["offset_s"]) - 1e-6))
        b = max(a + 1, int(math.ceil(float(s["offset_s"]) + float(s["duration_s"]) - 1e-6)))
        for i in range(a, b):
            r = pos.get(frame_id(int(s["photo_id"]), i))
            if r is not None:
                rows.append(r)
                owner.append(k)
    return np.asarray(rows, np.int64), np.asarray(owner, np.int64)


def subsample_shots(
    shot_split: np.ndarray, frames_per_shot: np.ndarray, max_frames: int, *, seed: int = 0
) -> np.ndarray:
    """Indices (sorted) of whole shots holding about `max_frames` frames, each split in proportion to
    its frame count (at least one shot per split that has frames); deterministic for a seed."""
    if max_frames < 1:
        raise ConfigError(f"--max-frames must be >= 1, got {max_frames}")
    total = int(frames_per_shot.sum())
    if total <= max_frames:
        return np.flatnonzero(frames_per_shot > 0)
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    for split in sorted(set(shot_split.tolist())):
        idx = np.flatnonzero((shot_split == split) & (frames_per_shot > 0))
        if not len(idx):
            continue
        budget = max_frames * int(frames_per_shot[idx].sum()) / total
        taken = 0
        for i in rng.permutation(idx):
            if taken and taken + frames_per_shot[i] > budget:
                continue
            keep.append(int(i))
            taken += int(frames_per_shot[i])
            if taken >= budget:
                break
    return np.asarray(sorted(keep), np.int64)


def probe_data_from_manifest(
    manifest: Mapping[str, Any],
    frame_ids: np.ndarray,
    vectors: np.ndarray,
    *,
    splits: Sequence[str],
    max_frames: int | None = None,
    seed: int = 0,
) -> ProbeData:
    """The probe's frames and labels from a world manifest and (frame id, vector) arrays."""
    products = {p["product_id"]: p for p in manifest["products"]}
    shots = [s for s in manifest["shots"] if s["split"] in splits]
    rows, owner = shot_frame_rows(frame_ids, shots)
    counts = np.bincount(owner, minlength=len(shots))
    split_of = np.asarray([s["split"] for s in shots], dtype=object)
    keep = np.flatnonzero(counts > 0)
    if max_frames is not None:
        keep = subsample_shots(split_of, counts, max_frames, seed=seed)
    new_index = np.full(len(shots), -1, np.int64)
    new_index[keep] = np.arange(len(keep))
    sel = new_index[owner] >= 0
    kept = [shots[i] for i in keep]
    labels = {t: np.empty(len(kept), dtype=object) for t in TARGETS}
    for j, s in enumerate(kept):
        for t, v in shot_labels(s, products[s["product_id"]]).items():
            labels[t][j] = v
    return ProbeData(
        vectors=np.ascontiguousarray(np.asarray(vectors, np.float32)[rows[sel]]),
        frame_shot=new_index[owner[sel]],
        shot_ids=[s["shot_id"] for s in kept],
        shot_split=split_of[keep].astype(str),
        labels=labels,
    )


def load_probe_data(
    library: str | os.PathLike[str], *, split: str = "test", max_frames: int | None = None, seed: int = 0
) -> ProbeData:
    """Train-split and `split` shots of the library's demo world, with their 1 fps PCA frame vectors."""
    from autocut.demo_world.manifest import load_manifest
    from autocut.library.catalog import Catalog

    man = load_manifest(library)
    photo_ids = sorted({int(s["photo_id"]) for s in man["shots"] if s["split"] in ("train", split)})
    with Catalog.open(library, create=False) as cat:
        fids, vecs = cat.frame_vectors(photo_ids)
    data = probe_data_from_manifest(man, fids, vecs, splits=("train", split), max_frames=max_frames, seed=seed)
    for s in ("train", split):
        if not (data.shot_split == s).any():
            raise CatalogError(f"the demo world in {library} has no ingested frames of split {s!r}")
    return data


# --------------------------------------------------------------------------- representations
def code_features(
    codes: np.ndarray,
    levels: int,
    *,
    codebook_size: int,
    mode: str = "onehot",
    codebooks: np.ndarray | None = None,
) -> Features:
    """Features of the first `levels` levels of (N, Q) codes.

    onehot: (N, levels * codebook_size) sparse CSR, column `level * codebook_size + code`;
    partial: (N, C) float32, the sum of the chosen codebook vectors of levels 0..levels-1
    (`codebooks`: (Q, K, C), as `Tokenizer.codebooks()`).
    """
    codes = np.asarray(codes)
    if codes.ndim != 2 or not 1 <= levels <= codes.shape[1]:
        raise ConfigError(f"levels must be in 1..{codes.shape[1] if codes.ndim == 2 else '?'}, got {levels}")
    n = len(codes)
    if mode == "onehot":
        cols = (codes[:, :levels] + np.arange(levels, dtype=np.int64) * codebook_size).ravel()
        indptr = np.arange(0, n * levels + 1, levels, dtype=np.int64)
        data = np.ones(n * levels, np.float32)
        return sparse.csr_matrix((data, cols, indptr), shape=(n, levels * codebook_size))
    if mode == "partial":
        if codebooks is None:
            raise ConfigError("partial reconstructions need the codebooks")
        out = np.zeros((n, codebooks.shape[2]), np.float32)
        for q in range(levels):
            out += codebooks[q][codes[:, q]]
        return out
    raise ConfigError(f"code features must be one of {', '.join(CODE_FEATURES)}, got {mode!r}")


def clip_means(x: Features, frame_shot: np.ndarray, n_shots: int) -> Features:
    """(S, F) mean of each shot's frame rows (sparse stays sparse); a shot without frames gets zeros."""
    counts = np.bincount(frame_shot, minlength=n_shots).astype(np.float64)
    w = 1.0 / np.maximum(counts[frame_shot], 1.0)
    avg = sparse.csr_matrix((w, (frame_shot, np.arange(len(frame_shot)))), shape=(n_shots, len(frame_shot)))
    out = avg @ x
    if sparse.issparse(out):
        return sparse.csr_matrix(out, dtype=np.float32)
    return np.asarray(out, np.float32)


def representation_name(kind: str, levels: int | None = None) -> str:
    return kind if levels is None else f"codes L={levels}"


def build_representations(
    vectors: np.ndarray,
    tokenizer: CodeModel,
    *,
    levels: Sequence[int] = LEVELS,
    mode: str = "onehot",
) -> dict[str, Features]:
    """Frame features of every probed representation: name -> (N, F), in table order."""
    codes = tokenizer.encode(vectors)
    reps: dict[str, Features] = {
        "pca": np.asarray(vectors, np.float32),
        "rq-decoded": np.asarray(tokenizer.decode(codes), np.float32),
    }
    books = tokenizer.codebooks() if mode == "partial" else None
    for lv in levels:
        if not 1 <= lv <= tokenizer.num_quantizers:
            raise ConfigError(f"levels must be in 1..{tokenizer.num_quantizers}, got {lv}")
        reps[representation_name("codes", lv)] = code_features(
            codes, lv, codebook_size=tokenizer.codebook_size, mode=mode, codebooks=books
        )
    return reps


# --------------------------------------------------------------------------- the probe
@dataclass(frozen=True)
class ProbeScore:
    """One probe: a representation, a target, frame or clip granularity."""

    accuracy: float
    chance: float  # majority class's share of the held-out samples
    n_train: int
    n_test: int
    n_classes: int  # classes seen in train
    unseen_test: int  # held-out samples whose label never occurs in train (always wrong)
    converged: bool  # lbfgs stopped before max_iter


def chance_accuracy(labels: Sequence[Any] | np.ndarray) -> float:
    """Share of the majority class (0 for no labels)."""
    if not len(labels):
        return 0.0
    _, counts = np.unique(np.asarray(labels, dtype=str), return_counts=True)
    return float(counts.max() / counts.sum())


def fit_and_score(
    train_x: Features,
    train_y: np.ndarray,
    test_x: Features,
    test_y: np.ndarray,
    *,
    max_iter: int = 300,
    c: float = 1.0,
) -> ProbeScore:
    """Fit a logistic-regression probe on train, score accuracy on test.

    Dense inputs are standardized with train's mean and std; sparse (one-hot) inputs are used as they
    are. With a single train class every test sample is predicted as it.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    train_y = np.asarray(train_y, dtype=str)
    test_y = np.asarray(test_y, dtype=str)
    if not len(train_y) or not len(test_y):
        raise ConfigError("a probe needs train and test samples")
    classes = np.unique(train_y)
    unseen = int((~np.isin(test_y, classes)).sum())
    converged = True
    if len(classes) == 1:
        pred = np.full(len(test_y), classes[0])
    else:
        if not sparse.issparse(train_x):
            scaler = StandardScaler().fit(train_x)
            train_x, test_x = scaler.transform(train_x), scaler.transform(test_x)
        model = LogisticRegression(solver="lbfgs", max_iter=max_iter, C=c, tol=1e-4)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(train_x, train_y)
        converged = bool(np.max(model.n_iter_) < max_iter)
        pred = model.predict(test_x)
    return ProbeScore(
        accuracy=float(np.mean(pred == test_y)),
        chance=chance_accuracy(test_y),
        n_train=len(train_y),
        n_test=len(test_y),
        n_classes=len(classes),
        unseen_test=unseen,
        converged=converged,
    )


@dataclass
class ProbeResult:
    """Scores of every (representation, target, granularity), and what was probed."""

    split: str
    code_features: str
    levels: list[int]
    scores: dict[str, dict[str, dict[str, ProbeScore]]]  # representation -> target -> frame|clip -> score
    n_frames: dict[str, int]  # split -> frames probed
    n_shots: dict[str, int]
    seconds: float
    notes: dict[str, Any] = field(default_factory=dict)

    def chance(self, target: str, granularity: str) -> float | None:
        for by_target in self.scores.values():
            s = by_target.get(target, {}).get(granularity)
            if s is not None:
                return s.chance
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "autocut-probe",
            "version": PROBE_FORMAT_VERSION,
            "split": self.split,
            "train_split": "train",
            "code_features": self.code_features,
            "levels": list(self.levels),
            "targets": list(TARGETS),
            "n_frames": dict(self.n_frames),
            "n_shots": dict(self.n_shots),
            "seconds": round(self.seconds, 2),
            "notes": self.notes,
            "chance": {
                t: {g: self.chance(t, g) for g in GRANULARITIES if self.chance(t, g) is not None} for t in TARGETS
            },
            "scores": {
                rep: {t: {g: asdict(s) for g, s in by_g.items()} for t, by_g in by_t.items()}
                for rep, by_t in self.scores.items()
            },
        }

    def to_text(self) -> str:
        """A Markdown table: rows = representations + chance, columns = target x frame/clip."""
        cols = [(t, g) for t in TARGETS for g in GRANULARITIES]
        short = {"role": "role", "brand": "brand", "selling_point": "selling pt"}
        head = ["representation"] + [f"{short[t]} {g}" for t, g in cols]

        def cell(v: float | None, ok: bool = True) -> str:
            return "n/a" if v is None else f"{v:.3f}" + ("" if ok else "*")

        rows = []
        for rep, by_t in self.scores.items():
            row = [rep]
            for t, g in cols:
                s = by_t.get(t, {}).get(g)
                row.append(cell(s.accuracy if s else None, s.converged if s else True))
            rows.append(row)
        rows.append(["chance (majority)"] + [cell(self.chance(t, g)) for t, g in cols])
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

        def line(r: list[str]) -> str:
            return (
                "| "
                + " | ".join(x.ljust(w) if i == 0 else x.rjust(w) for i, (x, w) in enumerate(zip(r, widths)))
                + " |"
            )

        sep = "|" + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|"
        any_scores = next(iter(self.scores.values()), {})
        counts = []
        for t in TARGETS:
            f, c = any_scores.get(t, {}).get("frame"), any_scores.get(t, {}).get("clip")
            if f and c:
                counts.append(
                    f"{t}: {f.n_classes} classes, {f.n_train}/{f.n_test} frames, {c.n_train}/{c.n_test} clips"
                    + (f", {f.unseen_test} test frames of unseen classes" if f.unseen_test else "")
                )
        codes = "one-hot of the first L levels" if self.code_features == "onehot" else "partial reconstruction"
        out = [
            f"probe: logistic regression fitted on train, accuracy on {self.split} (codes: {codes})",
            f"frames train/{self.split}: {self.n_frames.get('train', 0)}/{self.n_frames.get(self.split, 0)}, "
            f"shots {self.n_shots.get('train', 0)}/{self.n_shots.get(self.split, 0)}; " + "; ".join(counts),
            "",
            line(head),
            sep,
            *[line(r) for r in rows],
        ]
        if any(not s.converged for by_t in self.scores.values() for by_g in by_t.values() for s in by_g.values()):
            out.append("* lbfgs stopped at max_iter (not converged)")
        return "\n".join(out)


def run_probe(
    data: ProbeData,
    reps: Mapping[str, Features],
    *,
    split: str = "test",
    code_features_mode: str = "onehot",
    levels: Sequence[int] = LEVELS,
    max_iter: int = 300,
    progress: Progress | None = None,
) -> ProbeResult:
    """Probe every representation (frame features (N, F) aligned with `data.vectors`) for every target,
    per frame and per clip mean; fitted on the `train` shots, scored on the `split` shots."""
    t0 = time.perf_counter()
    frame_split = data.shot_split[data.frame_shot]
    total = len(reps) * len(TARGETS) * len(GRANULARITIES)
    done = 0
    scores: dict[str, dict[str, dict[str, ProbeScore]]] = {}
    for name, x in reps.items():
        if x.shape[0] != data.n_frames:
            raise ConfigError(f"representation {name!r} has {x.shape[0]} rows for {data.n_frames} frames")
        xc = clip_means(x, data.frame_shot, data.n_shots)
        scores[name] = {}
        for target in TARGETS:
            lab = data.labels[target]
            has = np.asarray([v is not None for v in lab])
            scores[name][target] = {}
            for gran in GRANULARITIES:
                if progress is not None:
                    progress(done, total, f"{name} {target} {gran}")
                if gran == "frame":
                    y, sp, feats = lab[data.frame_shot], frame_split, x
                    ok = has[data.frame_shot]
                else:
                    y, sp, feats = lab, data.shot_split, xc
                    ok = has
                tr, te = np.flatnonzero(ok & (sp == "train")), np.flatnonzero(ok & (sp == split))
                if len(tr) and len(te):
                    scores[name][target][gran] = fit_and_score(feats[tr], y[tr], feats[te], y[te], max_iter=max_iter)
                done += 1
    if progress is not None:
        progress(done, total, "done")
    frames = {s: int((frame_split == s).sum()) for s in ("train", split)}
    shots = {s: int((data.shot_split == s).sum()) for s in ("train", split)}
    return ProbeResult(
        split=split,
        code_features=code_features_mode,
        levels=list(levels),
        scores=scores,
        n_frames=frames,
        n_shots=shots,
        seconds=time.perf_counter() - t0,
    )


def probe_library(
    library: str | os.PathLike[str],
    *,
    split: str = "test",
    levels: Sequence[int] = LEVELS,
    code_features_mode: str = "onehot",
    max_frames: int | None = None,
    max_iter: int = 300,
    seed: int = 0,
    progress: Progress | None = None,
) -> ProbeResult:
    """The probe on the library's demo world with the library's video RQ-VAE (see the module docstring)."""
    from autocut.demo_world.manifest import load_manifest
    from autocut.library.codes import load_library_tokenizer, tokenizer_dir

    if split == "train":
        raise ConfigError("probe on val or test: the probes are fitted on train")
    if code_features_mode not in CODE_FEATURES:
        raise ConfigError(f"code features must be one of {', '.join(CODE_FEATURES)}, got {code_features_mode!r}")
    t0 = time.perf_counter()
    load_manifest(library)  # no world -> CatalogError naming `autocut demo-world build`
    tok = load_library_tokenizer(Path(library), "video")  # no tokenizer -> CheckpointError naming `rqvae train`
    data = load_probe_data(library, split=split, max_frames=max_frames, seed=seed)
    log.info("probing %d frames of %d shots", data.n_frames, data.n_shots)
    reps = build_representations(data.vectors, tok, levels=levels, mode=code_features_mode)
    result = run_probe(
        data,
        reps,
        split=split,
        code_features_mode=code_features_mode,
        levels=levels,
        max_iter=max_iter,
        progress=progress,
    )
    result.seconds = time.perf_counter() - t0
    result.notes = {
        "library": str(Path(library).resolve()),
        "tokenizer": str(tokenizer_dir(Path(library), "video")),
        "max_frames": max_frames,
        "max_iter": max_iter,
        "solver": "lbfgs multinomial logistic regression, C=1; dense inputs standardized on train",
        "labels": "world.json shots: role (all shots), brand = product brand_mark (ad shots), "
        "selling_point key (feature shots)",
    }
    return result


def write_probe(result: ProbeResult, out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write `<out>/probe.json` and the printed table `<out>/probe.md` (atomically); their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [
        write_json_atomic(out / "probe.json", result.to_dict()),
        write_text_atomic(out / "probe.md", result.to_text() + "\n"),
    ]
