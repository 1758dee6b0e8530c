"""The learned product-identity metric: fitting it beats the raw cosine on held-out products of a synthetic
frame space, it round-trips through its file, broken or mismatched files are refused with the reason, and
the heuristic's `identity` option needs a fitted model when asked for one."""

from __future__ import annotations

import numpy as np
import pytest

from autocut.errors import ConfigError
from autocut.planning.identity import (
    IdentityModel,
    IdentityPools,
    IdentityPrior,
    fit_identity,
    load_identity,
    pool_auc,
    zscore,
)

D = 16


def _pools(split: str, products: int, seed: int) -> IdentityPools:
    """Each product: a small identity signature in dims 0-3; every shot also carries a large "role" or
    background component in dims 4-15 that the photo does not share, so the raw cosine is a weak signal."""
    rng = np.random.default_rng(seed)
    pools = IdentityPools(split, {}, {}, {})
    for p in range(products):
        pid = f"{split}{p}"
        sig = np.zeros(D, np.float32)
        sig[:4] = rng.standard_normal(4)
        rival = sig.copy()
        rival[:4] = rng.standard_normal(4)  # the look-alike: another signature, same kind of shots
        photo = sig + 0.3 * rng.standard_normal(D).astype(np.float32)
        shots, labels = [], []
        for own in [1] * 8 + [0] * 4:
            nuisance = np.zeros(D, np.float32)
            nuisance[4:] = 1.5 * rng.standard_normal(D - 4)
            shots.append((sig if own else rival) + nuisance)
            labels.append(own)
        pools.reels[pid] = (np.stack(shots), np.asarray(labels, np.int64))
        pools.photos[pid] = photo
        pools.categories[pid] = f"cat{p % 3}"
    return pools


def test_pool_auc_and_zscore() -> None:
    assert pool_auc(np.array([3.0, 2.0, 1.0]), np.array([1, 0, 0])) == 1.0
    assert pool_auc(np.array([1.0, 1.0]), np.array([1, 0])) == 0.5
    assert pool_auc(np.array([1.0]), np.array([1])) is None
    z = zscore(np.array([1.0, 2.0, 3.0]))
    assert abs(z.mean()) < 1e-9 and abs(z.std() - 1) < 1e-9
    assert (zscore(np.ones(4)) == 0).all()


def test_fit_beats_the_raw_cosine_on_held_out_products(tmp_path) -> None:
    train, val = _pools("train", 24, 0), _pools("val", 12, 1)
    model = fit_identity(train, val, pca_version="v1", steps=120, lr=1e-2, decay=1e-3)
    m = model.metrics
    assert m["auc_val"]["learned"] > m["auc_val"]["raw_cosine"] + 0.05, m
    assert m["best_step"] > 0 and m["products"]["train"] == 24
    # The file round-trips and scores the same.
    path = model.save(tmp_path / "identity.npz")
    again = load_identity(path, pca_version="v1")
    photo, (clips, _) = val.photos["val0"], val.reels["val0"]
    np.testing.assert_allclose(again.scores(photo, clips), model.scores(photo, clips), rtol=1e-6)
    assert again.metrics["auc_val"] == m["auc_val"]


def test_broken_or_mismatched_files_are_refused(tmp_path) -> None:
    with pytest.raises(ConfigError, match="autocut train identity"):
        load_identity(tmp_path / "none.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_identity(junk)
    good = IdentityModel(np.eye(D, dtype=np.float32), "v1").save(tmp_path / "good.npz")
    with pytest.raises(ConfigError, match="fitted on PCA 'v1'"):
        load_identity(good, pca_version="v2")
    bad = tmp_path / "bad.npz"
    meta = '{"format": "autocut-identity", "version": 1, "pca_version": "v1"}'
    np.savez(bad, weight=np.ones((3, 4), np.float32), meta=np.asarray(meta))
    with pytest.raises(ConfigError, match="malformed weight"):
        load_identity(bad)
    with pytest.raises(ConfigError, match="identity must be one of"):
        IdentityPrior("photo")


def test_prior_modes(tmp_path) -> None:
    lib = tmp_path / "lib"
    photo = np.zeros(D, np.float32)
    photo[0] = 1
    clips = np.eye(D, dtype=np.float32)[:3]
    s, how = IdentityPrior("auto").scores(lib, "v1", photo, clips)
    assert how == "cosine" and s.argmax() == 0  # no fitted model: the raw cosine
    with pytest.raises(ConfigError, match="autocut train identity"):
        IdentityPrior("learned").scores(lib, "v1", photo, clips)
    from autocut.planning.identity import identity_path

    w = np.eye(D, dtype=np.float32)
    w[[0, 1]] = w[[1, 0]]  # a map that swaps two dims: the learned prior then differs from the cosine
    IdentityModel(w, "v1").save(identity_path(lib))
    s2, how2 = IdentityPrior("auto").scores(lib, "v1", photo, clips)
    assert how2 == "learned" and s2.argmax() == 0
    assert IdentityPrior("cosine").scores(lib, "v1", photo, clips)[1] == "cosine"
    with pytest.raises(ConfigError, match="fitted on PCA"):
        IdentityPrior("auto").scores(lib, "v2", photo, clips)


def test_planners_take_the_identity_option() -> None:
    from autocut.planning.planners import get_planner

    assert get_planner("heuristic").identity.mode == "cosine"  # the baseline stays the raw cosine
    assert get_planner("heuristic", identity="learned").identity.mode == "learned"
    with pytest.raises(ConfigError, match="identity must be one of"):
        get_planner("heuristic", identity="bogus")
    with pytest.raises(ConfigError, match="identity_weight"):
        get_planner("compact", identity_weight=101)


def test_crossfit_holds_each_product_out_and_needs_enough_products() -> None:
    from autocut.planning.identity import crossfit_identity

    train, val = _pools("train", 3, 0), _pools("val", 4, 1)
    maps = crossfit_identity(train, val, pca_version="v1", folds=4, steps=20)
    assert sorted(maps) == sorted(train.reels) and all(m.shape == (D, D) for m in maps.values())
    with pytest.raises(ConfigError, match="--match-metric cosine"):
        crossfit_identity(_pools("train", 2, 0), val, pca_version="v1")
