"""The library's RQ-VAE tokenizers: glue between the catalog and `rqvae` (docs/method.md, "RQ-VAE tokenizers").

Checkpoints live in `<library>/models/rqvae_<modality>/rqvae.safetensors`. Video trains on the
library's 1 fps PCA frame vectors, held out by source video (photo_id); audio trains on BGM block
embeddings (aisfx ~2.3 s blocks, or PANNs), held out by track, and a track's tokens come from its
pooled embedding (one BGM track = 8 audio tokens), which `evaluate_library_tokenizer` scores separately.
CLI, worker and tests go through these functions; `rqvae` errors come back as `autocut.errors`
naming the command that fixes them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autocut.errors import CatalogError, CheckpointError, ConfigError, VersionMismatchError
from autocut.library.catalog import Catalog
from autocut.library.ids import MAX_FRAME_INDEX
from autocut.library.layout import LibraryLayout
from rqvae import (
    MODALITIES,
    EvalResult,
    PathAgreement,
    RQVAECheckpointError,
    RQVAEConfigError,
    RQVAEInputError,
    RQVAEMismatchError,
    Tokenizer,
    evaluate,
    preset,
    read_checkpoint_info,
    train,
)

__all__ = [
    "MODALITIES",
    "LibraryEvalReport",
    "LibraryTrainReport",
    "evaluate_library_tokenizer",
    "load_library_tokenizer",
    "tokenizer_dir",
    "train_library_tokenizer",
    "training_arrays",
]

log = logging.getLogger(__name__)

# Rows scored by `compare_paths` in an eval (it classifies each fast/library disagreement one by one).
_PATH_CHECK_ROWS = 20_000


def tokenizer_dir(library_dir: str | Path, modality: str) -> Path:
    """Directory holding the library's tokenizer for `modality`."""
    _check_modality(modality)
    return LibraryLayout.of(library_dir).rqvae_dir(modality)


def _check_modality(modality: str) -> None:
    if modality not in MODALITIES:
        raise ConfigError(f"unknown modality {modality!r}; choose from {', '.join(MODALITIES)}")


@contextlib.contextmanager
def _translated(library_dir: Path, modality: str) -> Iterator[None]:
    """Re-raise `rqvae` errors as AutoCut errors that say which command fixes them."""
    fix = f"run `autocut --library {library_dir} rqvae train --modality {modality}`"
    try:
        yield
    except RQVAEMismatchError as exc:
        raise VersionMismatchError(f"{exc}; {fix}") from exc
    except RQVAECheckpointError as exc:
        raise CheckpointError(f"{exc}; {fix}") from exc
    except RQVAEConfigError as exc:
        raise ConfigError(str(exc)) from exc
    except RQVAEInputError as exc:
        raise CatalogError(f"{modality} vectors of library {library_dir}: {exc}") from exc


def _encoder_name(catalog: Catalog, modality: str) -> str | None:
    return (catalog.frame_encoder if modality == "video" else catalog.audio_encoder) or None


def _pca_version(catalog: Catalog, modality: str) -> str | None:
    # Only frame vectors go through the library PCA; audio has no PCA version.
    return (catalog.pca_version or None) if modality == "video" else None


def training_arrays(catalog: Catalog, modality: str) -> tuple[np.ndarray, np.ndarray]:
    """(vectors (N, D) float32, group id per row int64) the tokenizer of `modality` trains on.

    Video: PCA frame vectors grouped by source video (photo_id = frame_id // 10^4).
    Audio: BGM block embeddings grouped by track (audio_id).
    """
    _check_modality(modality)
    if modality == "video":
        ids, vecs = catalog.frame_vectors()
        groups = ids // (MAX_FRAME_INDEX + 1)
        what = "frames (run `autocut ingest` on some footage first)"
    else:
        groups, vecs = catalog.bgm_block_vectors()
        what = "BGM blocks (ingest some music first)"
    if len(vecs) == 0:
        raise CatalogError(f"library {catalog.root} has no {what}")
    return vecs, groups


def load_library_tokenizer(library_dir: str | Path, modality: str, catalog: Catalog | None = None) -> Tokenizer:
    """The library's tokenizer, checked against the catalog's encoder, dimension and PCA version."""
    library_dir = Path(library_dir)
    path = tokenizer_dir(library_dir, modality)
    with contextlib.ExitStack() as stack:
        cat = catalog or stack.enter_context(Catalog.open(library_dir, create=False))
        _, dim = cat.array("frames" if modality == "video" else "bgm_tracks").shape
        with _translated(library_dir, modality):
            return Tokenizer.load(
                path,
                expect_modality=modality,
                expect_dim=dim or None,
                expect_pca_version=_pca_version(cat, modality),
                expect_encoder=_encoder_name(cat, modality),
            )


@dataclass(frozen=True)
class LibraryTrainReport:
    """What `rqvae train` did to a library."""

    modality: str
    checkpoint: Path
    train_rows: int
    val_rows: int
    val_groups: int
    epochs_run: int
    epochs_planned: int
    batch_size: int  # rows per step actually used
    stop_reason: str
    duration_s: float
    final_train: EvalResult
    final_val: EvalResult | None

    def to_text(self) -> str:
        lines = [
            f"{self.modality} tokenizer -> {self.checkpoint}",
            f"  rows         train {self.train_rows}, held out {self.val_rows} ({self.val_groups} groups)",
            f"  epochs       {self.epochs_run}/{self.epochs_planned} ({self.stop_reason}), batch {self.batch_size}, "
            f"{self.duration_s:.1f} s",
            f"  train        {self.final_train.summary()}",
        ]
        if self.final_val is not None:
            lines.append(f"  held out     {self.final_val.summary()}")
        return "\n".join(lines)


def train_library_tokenizer(
    library_dir: str | Path,
    modality: str,
    *,
    epochs: int | None = None,
    time_budget_s: float | None = None,
    batch_size: int | None = None,
    val_fraction: float | None = None,
    seed: int | None = None,
    progress: bool = False,
) -> LibraryTrainReport:
    """Train the `modality` tokenizer on the library (paper preset; None keeps the preset's value)."""
    library_dir = Path(library_dir)
    _check_modality(modality)
    with Catalog.open(library_dir, create=False) as cat:
        vectors, groups = training_arrays(cat, modality)
        encoder = _encoder_name(cat, modality)
        pca_version = _pca_version(cat, modality)
    changes = {
        k: v
        for k, v in {
            "epochs": epochs,
            "time_budget_s": time_budget_s,
            "batch_size": batch_size,
            "val_fraction": val_fraction,
            "seed": seed,
        }.items()
        if v is not None
    }
    with _translated(library_dir, modality):
        config = preset(modality, input_dim=vectors.shape[1]).replace_train(**changes)
        log.info("training the %s tokenizer on %d vectors of %s", modality, len(vectors), library_dir)
        result = train(vectors, groups, config, progress=progress)
        path = result.tokenizer.save(
            tokenizer_dir(library_dir, modality),
            pca_version=pca_version,
            encoder=encoder,
            train_config=config,
            extra=result.summary(),
        )
    return LibraryTrainReport(
        modality=modality,
        checkpoint=path,
        train_rows=result.train_rows,
        val_rows=result.val_rows,
        val_groups=len(result.val_groups),
        epochs_run=result.epochs_run,
        epochs_planned=config.train.epochs,
        batch_size=result.batch_size,
        stop_reason=result.stop_reason,
        duration_s=result.duration_s,
        final_train=result.final_train,
        final_val=result.final_val,
    )


@dataclass(frozen=True)
class LibraryEvalReport:
    """Reconstruction and codebook use of the library's tokenizer on the library as it is now."""

    modality: str
    checkpoint: Path
    held_out: EvalResult | None  # rows of the groups held out at training time (None if none remain)
    all_rows: EvalResult  # every training-unit vector (frames / BGM blocks) in the library
    pooled_tracks: EvalResult | None  # audio only: the pooled track vectors tokens are made from
    pooled_held_out: EvalResult | None  # audio only: pooled vectors of held-out tracks
    paths: PathAgreement  # fast path vs library forward on up to 20,000 rows

    def to_text(self) -> str:
        lines = [f"{self.modality} tokenizer {self.checkpoint}"]
        for name, ev in (
            ("held out", self.held_out),
            ("all rows", self.all_rows),
            ("tracks", self.pooled_tracks),
            ("held-out tracks", self.pooled_held_out),
        ):
            if ev is not None:
                lines.append(f"  {name:<16}{ev.summary()}")
        p = self.paths
        lines.append(
            f"  fast path       {p.mismatched_rows}/{p.rows} rows differ from the library forward "
            f"({p.mismatch_rate:.2e}), {p.near_tie_rows} of them near-ties; max decode diff {p.max_abs_decode_diff:.1e}"
        )
        return "\n".join(lines)


def evaluate_library_tokenizer(library_dir: str | Path, modality: str) -> LibraryEvalReport:
    """Score the stored tokenizer on the library's vectors, separating the groups held out in training."""
    library_dir = Path(library_dir)
    _check_modality(modality)
    with Catalog.open(library_dir, create=False) as cat:
        tok = load_library_tokenizer(library_dir, modality, cat)
        vectors, groups = training_arrays(cat, modality)
        pooled_ids, pooled = cat.bgm_vectors() if modality == "audio" else (None, None)
    with _translated(library_dir, modality):
        info = read_checkpoint_info(tokenizer_dir(library_dir, modality))
        held_groups = np.asarray(info.extra.get("val_groups", []), dtype=np.int64)
        held = np.isin(groups, held_groups)
        held_out = evaluate(tok, vectors[held]) if held.any() else None
        all_rows = evaluate(tok, vectors)
        pooled_all = pooled_held = None
        if pooled is not None and pooled_ids is not None and len(pooled):
            pooled_all = evaluate(tok, pooled)
            held_tracks = np.isin(pooled_ids, held_groups)
            pooled_held = evaluate(tok, pooled[held_tracks]) if held_tracks.any() else None
        sample = vectors
        if len(vectors) > _PATH_CHECK_ROWS:
            sample = vectors[np.random.default_rng(0).choice(len(vectors), _PATH_CHECK_ROWS, replace=False)]
        paths = tok.compare_paths(sample)
    return LibraryEvalReport(
        modality=modality,
        checkpoint=info.path,
        held_out=held_out,
        all_rows=all_rows,
        pooled_tracks=pooled_all,
        pooled_held_out=pooled_held,
        paths=paths,
    )
