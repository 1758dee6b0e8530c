"""Which 128-d PCA a library uses, and the explicit, versioned refit (docs/method.md, "Encoders and the library PCA").

A new library starts on the packaged default PCA of its frame encoder. Once it holds enough frames of
its own, `refit_library_pca` fits a PCA on its stored raw features, recomputes every 128-d frame and
clip vector, and bumps the library's `pca_version`. Every artifact built on 128-d vectors (indexes,
RQ-VAE checkpoints, LM tokens) records the version it was built on and is refused after a refit.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from autocut.encoders.pca import FramePca, default_pca_path, fit_pca, load_pca
from autocut.errors import CatalogError, ConfigError, VersionMismatchError
from autocut.library.catalog import Catalog
from autocut.library.layout import LibraryLayout

__all__ = ["current_pca", "fit_pca_on_media", "refit_library_pca"]

log = logging.getLogger(__name__)


def _lib_pca_path(cat: Catalog, version: str) -> Path:
    return LibraryLayout(cat.root).pca_path(version)


def current_pca(cat: Catalog, frame_encoder: str) -> FramePca:
    """The PCA this library's 128-d vectors were made with (the packaged default for a new library)."""
    version = cat.pca_version
    if version:
        own = _lib_pca_path(cat, version)
        if own.exists():
            return load_pca(own, encoder_name=frame_encoder)
        default = default_pca_path(frame_encoder)
        if default.exists():
            pca = load_pca(default, encoder_name=frame_encoder)
            if pca.version == version:
                return pca
        raise VersionMismatchError(
            f"library {cat.root} uses PCA {version!r}, which is neither in {own.parent} nor the packaged "
            f"default for {frame_encoder}; the library's PCA file was lost — run `autocut library refit-pca`"
        )
    default = default_pca_path(frame_encoder)
    if not default.exists():
        raise ConfigError(
            f"no packaged default PCA for frame encoder {frame_encoder!r} ({default}); fit one on sample footage "
            "with `python scripts/fit_default_pca.py --encoder ...` or ingest with the default encoder"
        )
    pca = load_pca(default, encoder_name=frame_encoder)
    cat.set_meta("pca_version", pca.version)
    log.info("library %s: using the packaged default PCA %s", cat.root, pca.version)
    return pca


def refit_library_pca(cat: Catalog, *, min_frames: int = 2000, n_components: int = 128) -> str:
    """Fit the PCA on the library's own raw frame features; recompute 128-d frames and clips; bump the version."""
    raw = np.asarray(cat.array("frames_raw"))  # row order
    if len(raw) < min_frames:
        raise CatalogError(
            f"library {cat.root} has {len(raw)} frames; a PCA refit needs at least {min_frames} "
            "(until then the packaged default PCA is the better estimate)"
        )
    pca = fit_pca(raw, cat.frame_encoder, out_dim=n_components)
    frames = pca.transform(raw)
    # Clip vectors = mean of their 1 fps frames (in the new space), in clip row order.
    rows = cat._conn.execute(
        "SELECT c.row, f.row FROM clips c JOIN frames f ON f.photo_id = c.photo_id "
        "AND f.frame_index >= c.start_frame AND f.frame_index < c.start_frame + c.duration_frames"
    ).fetchall()
    n_clips = len(cat.array("clips"))
    clips = np.zeros((n_clips, frames.shape[1]), np.float32)
    counts = np.zeros(n_clips, np.int64)
    if rows:
        r = np.array(rows, np.int64)
        np.add.at(clips, r[:, 0], frames[r[:, 1]])
        np.add.at(counts, r[:, 0], 1)
    clips /= np.maximum(np.linalg.norm(clips, axis=1, keepdims=True), 1e-12)
    LibraryLayout(cat.root).pca_dir.mkdir(exist_ok=True)
    pca.save(_lib_pca_path(cat, pca.version))
    cat.replace_frame_vectors(frames, clips, pca.version)
    log.info("library %s: PCA refitted on %d frames -> %s", cat.root, len(raw), pca.version)
    return pca.version


def fit_pca_on_media(
    paths: list[Path], photos: list[Path], encoder, *, n_components: int = 128, frames_per_video: int = 400
) -> FramePca:
    """Fit a PCA on 1 fps frames of sample videos plus photos (centre-cropped), for a packaged default."""
    from PIL import Image

    from autocut.library.media import sample_frames

    h, w = encoder.input_size
    feats = []
    for p in paths:
        n = 0
        for b in sample_frames(p, size_hw=(h, w)):
            feats.append(encoder.encode(b.frames))
            n += len(b.frames)
            if n >= frames_per_video:
                break
    imgs = []
    for p in photos:
        im = Image.open(p).convert("RGB")
        s = min(im.size)
        # A few crops per photo (centre, left/top, right/bottom) — the demo world pans over photos.
        for fx in (0.0, 0.5, 1.0):
            x0 = int((im.size[0] - s) * fx)
            y0 = int((im.size[1] - s) * fx)
            imgs.append(np.asarray(im.crop((x0, y0, x0 + s, y0 + s)).resize((w, h), Image.Resampling.BILINEAR)))
        if len(imgs) >= 64:
            feats.append(encoder.encode(np.stack(imgs)))
            imgs = []
    if imgs:
        feats.append(encoder.encode(np.stack(imgs)))
    raw = np.concatenate(feats)
    return fit_pca(raw, encoder.name, out_dim=n_components)
