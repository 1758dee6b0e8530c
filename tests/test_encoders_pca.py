"""The versioned frame PCA: fit, transform, save/load, version and compatibility checks."""

from __future__ import annotations

import re

import numpy as np
import pytest

from autocut.encoders import FramePca, default_pca_path, fit_pca, load_pca
from autocut.encoders import pca as pca_module
from autocut.errors import CheckpointError, ConfigError, VersionMismatchError


def _features(n: int, raw_dim: int = 96, rank: int = 12, seed: int = 0) -> np.ndarray:
    """Non-negative-ish CNN-like features: a low-rank signal with decaying scales plus noise."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((rank, raw_dim))
    scales = np.linspace(5.0, 1.0, rank)
    x = (rng.standard_normal((n, rank)) * scales) @ basis + 0.05 * rng.standard_normal((n, raw_dim)) + 3.0
    return x.astype(np.float32)


def test_fit_matches_svd_and_transform_is_unit_length():
    raw = _features(500)
    pca = fit_pca(raw, "efficientnet-lite0", out_dim=8)
    assert pca.components.shape == (8, 96) and pca.out_dim == 8 and pca.fitted_on_count == 500
    np.testing.assert_allclose(pca.components @ pca.components.T, np.eye(8), atol=1e-5)

    centred = raw.astype(np.float64) - raw.mean(axis=0, dtype=np.float64)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    # Same subspace and order as the SVD (up to sign), same variances.
    np.testing.assert_allclose(np.abs(np.sum(pca.components * vt[:8], axis=1)), 1.0, atol=1e-4)
    np.testing.assert_allclose(pca.explained_variance, singular[:8] ** 2 / 499, rtol=1e-4)

    out = pca.transform(raw)
    assert out.shape == (500, 8) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    projected = (raw - pca.mean) @ pca.components.T
    np.testing.assert_allclose(out, projected / np.linalg.norm(projected, axis=1, keepdims=True), atol=1e-5)


def test_agrees_with_sklearn_when_installed():
    decomposition = pytest.importorskip("sklearn.decomposition")
    raw = _features(400, seed=4)
    ours = fit_pca(raw, "resnet50", out_dim=6)
    theirs = decomposition.PCA(n_components=6, svd_solver="full").fit(raw.astype(np.float64))
    signs = np.sign(np.sum(ours.components * theirs.components_, axis=1))
    np.testing.assert_allclose(ours.components, theirs.components_ * signs[:, None], atol=1e-4)


def test_version_is_deterministic_and_changes_on_a_different_fit():
    raw = _features(300, seed=1)
    a = fit_pca(raw, "efficientnet-lite0", out_dim=8)
    b = fit_pca(raw.copy(), "efficientnet-lite0", out_dim=8)
    assert re.fullmatch(r"efficientnet-lite0-pca-300-[0-9a-f]{8}", a.version)
    assert a.version == b.version and a.content_hash == b.content_hash
    grown = fit_pca(np.concatenate([raw, _features(50, seed=2)]), "efficientnet-lite0", out_dim=8)
    assert grown.version != a.version and grown.version.startswith("efficientnet-lite0-pca-350-")
    same_count = fit_pca(_features(300, seed=3), "efficientnet-lite0", out_dim=8)
    assert same_count.version != a.version  # same n, other data: the hash tells them apart


def test_chunked_and_memmapped_fit_equals_in_memory(tmp_path, monkeypatch):
    raw = _features(1000, seed=5)
    reference = fit_pca(raw, "efficientnet-lite0", out_dim=8)
    mm = np.lib.format.open_memmap(tmp_path / "raw.npy", mode="w+", dtype=np.float32, shape=raw.shape)
    mm[:] = raw
    mm.flush()
    monkeypatch.setattr(pca_module, "_FIT_CHUNK_ROWS", 64)
    chunked = fit_pca(np.load(tmp_path / "raw.npy", mmap_mode="r"), "efficientnet-lite0", out_dim=8)
    np.testing.assert_allclose(chunked.components, reference.components, atol=1e-5)
    np.testing.assert_allclose(chunked.mean, reference.mean, atol=1e-5)


def test_save_load_roundtrip_atomic(tmp_path):
    pca = fit_pca(_features(200), "efficientnet-lite0", out_dim=8)
    path = pca.save(tmp_path / "lib" / "pca.npz")
    assert [p.name for p in path.parent.iterdir()] == ["pca.npz"]  # no tmp file left behind
    loaded = load_pca(path, encoder_name="efficientnet-lite0", raw_dim=96)
    assert isinstance(loaded, FramePca)
    assert (loaded.version, loaded.content_hash, loaded.fitted_on_count) == (pca.version, pca.content_hash, 200)
    x = _features(5, seed=9)
    np.testing.assert_array_equal(loaded.transform(x), pca.transform(x))


def test_mismatches_and_corruption_are_refused(tmp_path):
    pca = fit_pca(_features(200), "efficientnet-lite0", out_dim=8)
    path = pca.save(tmp_path / "pca.npz")
    with pytest.raises(VersionMismatchError, match="resnet50"):
        load_pca(path, encoder_name="resnet50", raw_dim=96)
    with pytest.raises(VersionMismatchError, match="2048"):
        pca.check_compatible("efficientnet-lite0", 2048)
    with pytest.raises(VersionMismatchError, match=r"\(N, 96\)"):
        pca.transform(np.zeros((3, 1280), dtype=np.float32))

    with np.load(path) as z:
        fields = dict(z)
    fields["components"] = fields["components"] * 1.01  # edited values, stale hash
    np.savez(tmp_path / "edited.npz", **fields)
    with pytest.raises(CheckpointError, match="hash mismatch"):
        load_pca(tmp_path / "edited.npz")
    fields["format_version"] = np.int64(99)
    np.savez(tmp_path / "future.npz", **fields)
    with pytest.raises(CheckpointError, match="format version 99"):
        load_pca(tmp_path / "future.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match=r"junk\.npz"):
        load_pca(tmp_path / "junk.npz")
    with pytest.raises(CheckpointError, match="not found"):
        load_pca(tmp_path / "missing.npz")


def test_fit_input_checks():
    with pytest.raises(ConfigError, match="more than 8"):
        fit_pca(_features(8), "efficientnet-lite0", out_dim=8)
    with pytest.raises(ConfigError, match="NaN"):
        bad = _features(50)
        bad[3, 3] = np.nan
        fit_pca(bad, "efficientnet-lite0", out_dim=8)
    with pytest.raises(ConfigError, match="out_dim"):
        fit_pca(_features(50), "efficientnet-lite0", out_dim=200)


def test_default_pca_path():
    path = default_pca_path("efficientnet-lite0")
    assert path.name == "pca_efficientnet-lite0_default.npz"
    assert path.parent.name == "data" and path.parent.parent.name == "autocut"
