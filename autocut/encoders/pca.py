"""Raw frame features -> 128-d unit vectors: the library's versioned PCA
(docs/method.md, "Encoders and the library PCA").

The paper's frame encoder outputs 128-d directly; our ImageNet CNN features are reduced by
a PCA fitted on the library, then L2-normalised. Every code, RQ-VAE, LM token and index
built on the 128-d vectors records `FramePca.version` and is refused when it differs.

The version is content-addressed ("<encoder>-pca-<n>-<hash8>"): any refit that changes
the projection changes it; refitting on identical data yields the identical projection
(deterministic eigendecomposition and sign convention), hence the same version.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autocut.encoders.base import l2_normalize
from autocut.errors import CheckpointError, ConfigError, VersionMismatchError

__all__ = [
    "PCA_DIM",
    "PCA_FORMAT_VERSION",
    "FramePca",
    "default_pca_path",
    "fit_pca",
    "load_pca",
]

logger = logging.getLogger(__name__)

PCA_DIM = 128  # the paper's frame-embedding width (AutoCut Table 3 video input dim)
PCA_FORMAT_VERSION = 1
_DATA_DIR = Path(__file__).resolve().parent.parent / "data"
_FIT_CHUNK_ROWS = 8192  # rows per float64 covariance update: bounds memory for memmapped inputs


def default_pca_path(encoder_name: str) -> Path:
    """Where the packaged default PCA for `encoder_name` lives (`autocut/data/pca_<encoder>_default.npz`)."""
    return _DATA_DIR / f"pca_{encoder_name}_default.npz"


@dataclass(frozen=True, eq=False)
class FramePca:
    """A fitted projection raw_dim -> out_dim; `transform` also L2-normalises."""

    encoder_name: str
    raw_dim: int
    mean: np.ndarray  # (raw_dim,) float32
    components: np.ndarray  # (out_dim, raw_dim) float32, rows orthonormal, by decreasing variance
    explained_variance: np.ndarray  # (out_dim,) float64, variance along each component
    fitted_on_count: int  # rows the fit saw
    content_hash: str  # sha256 hex of encoder name, dims, mean and components
    version: str  # "<encoder>-pca-<fitted_on_count>-<content_hash[:8]>"

    @property
    def out_dim(self) -> int:
        return int(self.components.shape[0])

    def check_compatible(self, encoder_name: str, raw_dim: int) -> None:
        """Raise `VersionMismatchError` unless this PCA was fitted on `encoder_name` features of `raw_dim`."""
        if encoder_name != self.encoder_name or raw_dim != self.raw_dim:
            raise VersionMismatchError(
                f"PCA {self.version} was fitted on {self.encoder_name} features ({self.raw_dim}-d), "
                f"but the features come from {encoder_name} ({raw_dim}-d); refit the PCA for {encoder_name}"
            )

    def transform(self, raw: np.ndarray) -> np.ndarray:
        """(N, raw_dim) raw features -> (N, out_dim) float32, L2-normalised rows."""
        raw = np.asarray(raw)
        if raw.ndim != 2 or raw.shape[1] != self.raw_dim:
            raise VersionMismatchError(
                f"PCA {self.version} expects (N, {self.raw_dim}) {self.encoder_name} features, got shape {raw.shape}"
            )
        projected = (raw.astype(np.float32, copy=False) - self.mean) @ self.components.T  # (N, out_dim)
        return l2_normalize(projected)

    def save(self, path: Path) -> Path:
        """Write atomically as a versioned .npz (tmp file, fsync, os.replace)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez(
            buffer,
            format_version=np.int64(PCA_FORMAT_VERSION),
            encoder_name=np.str_(self.encoder_name),
            raw_dim=np.int64(self.raw_dim),
            out_dim=np.int64(self.out_dim),
            fitted_on_count=np.int64(self.fitted_on_count),
            content_hash=np.str_(self.content_hash),
            version=np.str_(self.version),
            mean=self.mean,
            components=self.components,
            explained_variance=self.explained_variance,
        )
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(buffer.getvalue())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        logger.info("saved PCA %s to %s", self.version, path)
        return path


@contextmanager
def _single_blas_thread() -> Iterator[None]:
    """LAPACK's eigh with 2 OpenBLAS threads on a busy 2-core machine took 21 s for 1280-d, with
    one thread 1.6 s (threads spin-waiting for cores): run it on one (threadpoolctl, if installed)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _content_hash(encoder_name: str, raw_dim: int, mean: np.ndarray, components: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(f"autocut-pca-v{PCA_FORMAT_VERSION}|{encoder_name}|{raw_dim}|{components.shape[0]}|".encode())
    h.update(np.ascontiguousarray(mean, dtype=np.float32).tobytes())
    h.update(np.ascontiguousarray(components, dtype=np.float32).tobytes())
    return h.hexdigest()


def _make(
    encoder_name: str,
    raw_dim: int,
    mean: np.ndarray,
    components: np.ndarray,
    explained_variance: np.ndarray,
    fitted_on_count: int,
) -> FramePca:
    content_hash = _content_hash(encoder_name, raw_dim, mean, components)
    return FramePca(
        encoder_name=encoder_name,
        raw_dim=raw_dim,
        mean=mean,
        components=components,
        explained_variance=explained_variance,
        fitted_on_count=fitted_on_count,
        content_hash=content_hash,
        version=f"{encoder_name}-pca-{fitted_on_count}-{content_hash[:8]}",
    )


def fit_pca(raw: np.ndarray, encoder_name: str, *, out_dim: int = PCA_DIM) -> FramePca:
    """Fit the projection on (N, raw_dim) raw features (a numpy array or memmap).

    Covariance accumulated in float64 in row chunks, then `numpy.linalg.eigh`: memory is
    O(raw_dim^2) whatever N is. Each component's sign is fixed so its largest-magnitude
    coordinate is positive, so a refit on the same data reproduces the same version.
    """
    if not isinstance(raw, np.ndarray):
        raw = np.asarray(raw)
    if raw.ndim != 2:
        raise ConfigError(f"fit_pca expects (N, raw_dim) features, got shape {raw.shape}")
    n, raw_dim = raw.shape
    if not 1 <= out_dim <= raw_dim:
        raise ConfigError(f"out_dim must be in [1, {raw_dim}], got {out_dim}")
    if n <= out_dim:
        raise ConfigError(f"fitting a {out_dim}-d PCA needs more than {out_dim} feature rows, got {n}")

    total = np.zeros(raw_dim, dtype=np.float64)
    for start in range(0, n, _FIT_CHUNK_ROWS):
        chunk = np.asarray(raw[start : start + _FIT_CHUNK_ROWS], dtype=np.float64)
        if not np.all(np.isfinite(chunk)):
            raise ConfigError(f"fit_pca: rows {start}..{start + len(chunk) - 1} contain NaN or inf")
        total += chunk.sum(axis=0)
    mean = total / n
    cov = np.zeros((raw_dim, raw_dim), dtype=np.float64)
    for start in range(0, n, _FIT_CHUNK_ROWS):
        centred = np.asarray(raw[start : start + _FIT_CHUNK_ROWS], dtype=np.float64) - mean
        cov += centred.T @ centred
    cov /= n - 1

    with _single_blas_thread():
        eigvals, eigvecs = np.linalg.eigh(cov)  # ascending
    order = np.argsort(eigvals)[::-1][:out_dim]
    components = eigvecs[:, order].T  # (out_dim, raw_dim)
    signs = np.sign(components[np.arange(out_dim), np.argmax(np.abs(components), axis=1)])
    components *= np.where(signs == 0, 1.0, signs)[:, None]
    pca = _make(
        encoder_name,
        raw_dim,
        mean.astype(np.float32),
        components.astype(np.float32),
        np.maximum(eigvals[order], 0.0),
        n,
    )
    kept = pca.explained_variance.sum() / max(float(np.trace(cov)), 1e-300)
    logger.info(
        "fitted PCA %s on %d rows: %d -> %d dims, %.1f%% variance kept", pca.version, n, raw_dim, out_dim, 100 * kept
    )
    return pca


def load_pca(path: Path, *, encoder_name: str | None = None, raw_dim: int | None = None) -> FramePca:
    """Read a PCA file; verify its format and content hash, and (if given) the encoder and raw_dim."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"PCA file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            fields = {k: z[k] for k in z.files}
    except Exception as exc:
        raise CheckpointError(f"{path}: not a PCA file ({exc})") from exc
    required = {
        "format_version",
        "encoder_name",
        "raw_dim",
        "out_dim",
        "fitted_on_count",
        "content_hash",
        "version",
        "mean",
        "components",
        "explained_variance",
    }
    if missing := required - fields.keys():
        raise CheckpointError(f"{path}: not a PCA file (missing {', '.join(sorted(missing))})")
    if int(fields["format_version"]) != PCA_FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: PCA format version {int(fields['format_version'])}, this AutoCut reads {PCA_FORMAT_VERSION}"
        )
    pca = FramePca(
        encoder_name=str(fields["encoder_name"]),
        raw_dim=int(fields["raw_dim"]),
        mean=fields["mean"].astype(np.float32),
        components=fields["components"].astype(np.float32),
        explained_variance=fields["explained_variance"].astype(np.float64),
        fitted_on_count=int(fields["fitted_on_count"]),
        content_hash=str(fields["content_hash"]),
        version=str(fields["version"]),
    )
    if pca.components.shape != (int(fields["out_dim"]), pca.raw_dim) or pca.mean.shape != (pca.raw_dim,):
        raise CheckpointError(f"{path}: PCA arrays do not match its recorded dims")
    if _content_hash(pca.encoder_name, pca.raw_dim, pca.mean, pca.components) != pca.content_hash:
        raise CheckpointError(f"{path}: PCA content hash mismatch (file corrupt or edited)")
    if encoder_name is not None or raw_dim is not None:
        pca.check_compatible(
            encoder_name if encoder_name is not None else pca.encoder_name,
            raw_dim if raw_dim is not None else pca.raw_dim,
        )
    return pca
