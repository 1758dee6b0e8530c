"""`indexes`: results vs brute-force numpy, ids, pool/subset search, store, kills, hot swap."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from indexes import (
    BuildConfig,
    ExpectedIndex,
    IndexBusyError,
    IndexCorruptError,
    IndexHolder,
    IndexInputError,
    IndexMismatchError,
    IndexNotFoundError,
    IndexWriter,
    PoolIndex,
    add_to_stored_index,
    build_index,
    choose_structure,
    current_generation,
    load_index,
    read_meta,
    rebuild_advised,
    save_index,
    search_pool,
)

REPO = Path(__file__).resolve().parents[1]
EXPECTED = ExpectedIndex(kind="frames", encoder="enc-a", pca_version="pca-1", dim=32)


def clustered(
    rng: np.random.Generator,
    n: int,
    dim: int = 32,
    clusters: int = 20,
    std: float = 0.05,
    centres: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(centres, L2-normalised vectors) from a mixture of Gaussians, like real embeddings."""
    if centres is None:
        centres = rng.standard_normal((clusters, dim)).astype(np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[rng.integers(0, len(centres), n)] + rng.normal(0, std, (n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return centres, x.astype(np.float32)


def brute_force(ids: np.ndarray, vecs: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (ids, scores) by cosine in numpy."""
    v = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    sims = q @ v.T  # (Q, N)
    top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return ids[top], np.take_along_axis(sims, top, axis=1)


def build(ids, vecs, structure=None, **meta):
    args = {"kind": "frames", "encoder": "enc-a", "pca_version": "pca-1", **meta}
    return build_index(ids, vecs, config=BuildConfig(force_structure=structure), **args)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    centres, vecs = clustered(rng, 3000)
    _, queries = clustered(rng, 100, centres=centres)
    # Sparse, large ids, like clip_id = photo_id * 10**7 + ...
    ids = np.sort(rng.choice(10**12, size=len(vecs), replace=False)).astype(np.int64) + 10**7
    rng.shuffle(ids)
    return ids, vecs, queries


# ------------------------------------------------------------------------- search vs brute force


def test_exact_index_matches_brute_force(data):
    ids, vecs, queries = data
    index = build(ids, vecs * 3.0)  # unnormalised input: the index normalises
    assert index.meta.factory == "IDMap,Flat" and index.meta.params.structure == "flat"
    res = index.search(queries, 10)
    want_ids, want_scores = brute_force(ids, vecs, queries, 10)
    np.testing.assert_array_equal(res.ids, want_ids)
    np.testing.assert_allclose(res.scores, want_scores, atol=1e-5)
    assert res.ids.dtype == np.int64 and res.scores.dtype == np.float32


@pytest.mark.parametrize("structure", ["hnsw", "ivf"])
def test_approximate_index_recall_and_recorded_params(data, structure):
    ids, vecs, queries = data
    index = build(ids, vecs, structure)
    p = index.meta.params
    assert p.structure == structure and p.calibration_queries == 256
    assert p.calibrated_recall_at_10 >= p.target_recall_at_10 == 0.97
    if structure == "hnsw":
        assert index.meta.factory == "IDMap,HNSW32,Flat" and p.ef_search >= 16 and p.hnsw_m == 32
    else:
        assert index.meta.factory == f"IDMap,IVF{p.nlist},Flat" and 1 <= p.nprobe <= p.nlist
    res = index.search(queries, 10)
    want, _ = brute_force(ids, vecs, queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(res.ids, want)])
    assert recall >= 0.9, recall  # unseen queries; calibrated for 0.97 on indexed ones


def test_structure_chosen_by_size():
    cfg = BuildConfig(exact_max_values=1000 * 32)
    assert choose_structure(1000, 32, cfg) == "flat"
    assert choose_structure(1001, 32, cfg) == "ivf"
    assert choose_structure(10**6, 32, BuildConfig(exact_max_values=1000, approximate="hnsw")) == "hnsw"
    rng = np.random.default_rng(0)
    _, vecs = clustered(rng, 600)
    index = build_index(
        np.arange(600), vecs, kind="clips", encoder="e", pca_version="p", config=BuildConfig(exact_max_values=500 * 32)
    )
    assert index.meta.params.structure == "ivf" and index.meta.params.nlist == 600 // 39
    assert rebuild_advised(index.meta, BuildConfig(exact_max_values=500 * 32)) is None
    assert "flat" in rebuild_advised(index.meta, BuildConfig(exact_max_values=10**6))


def test_ids_round_trip_through_store(tmp_path, data):
    ids, vecs, _ = data
    big = ids.copy()
    big[0] = 2**62 + 12345  # near the top of int64
    index = build(big, vecs)
    save_index(tmp_path, index)
    loaded = load_index(tmp_path, expected=EXPECTED)
    np.testing.assert_array_equal(loaded.ids(), big)
    # Every vector finds itself first, under its own id.
    res = loaded.search(vecs, 1)
    np.testing.assert_array_equal(res.ids[:, 0], big)
    np.testing.assert_allclose(res.scores[:, 0], 1.0, atol=1e-5)


def test_k_larger_than_index_pads_and_single_query(data):
    ids, vecs, _ = data
    index = build(ids[:5], vecs[:5])
    res = index.search(vecs[0], 8)  # a 1-D query is one query
    assert res.ids.shape == (1, 8)
    assert sorted(res.ids[0, :5].tolist()) == sorted(ids[:5].tolist())
    assert (res.ids[0, 5:] == -1).all() and np.isneginf(res.scores[0, 5:]).all()
    assert [i for i, _ in res.hits(0)] == res.ids[0, :5].tolist()


@pytest.mark.parametrize("structure", ["hnsw", "ivf"])
def test_k_above_search_beam_still_returns_k_best(data, structure):
    ids, vecs, queries = data
    index = build(ids, vecs, structure)
    res = index.search(queries[:20], 100)  # k above the calibrated efSearch / one list's share
    want, _ = brute_force(ids, vecs, queries[:20], 100)
    assert (res.ids >= 0).all()
    assert np.mean([len(set(a) & set(b)) / 100 for a, b in zip(res.ids, want)]) >= 0.9


def test_bad_inputs_raise_clear_errors(data):
    ids, vecs, _ = data
    with pytest.raises(IndexInputError, match="duplicates"):
        build(np.array([1, 2, 2]), vecs[:3])
    with pytest.raises(IndexInputError, match="non-negative"):
        build(np.array([1, -1, 2]), vecs[:3])
    bad = vecs[:3].copy()
    bad[1] = 0
    with pytest.raises(IndexInputError, match=r"row 1 \(id 11\) has zero norm"):
        build(np.array([10, 11, 12]), bad)
    bad[1] = np.nan
    with pytest.raises(IndexInputError, match="non-finite"):
        build(np.array([10, 11, 12]), bad)
    with pytest.raises(IndexInputError, match="3 ids for 2 vectors"):
        build(np.array([1, 2, 3]), vecs[:2])
    with pytest.raises(IndexInputError, match="unknown index kind"):
        build(ids, vecs, kind="photos")
    index = build(ids[:10], vecs[:10])
    with pytest.raises(IndexInputError, match="dimension 16, expected 32"):
        index.search(np.ones((1, 16)), 3)
    with pytest.raises(IndexInputError, match="positive integer"):
        index.search(vecs[:1], 0)


# ------------------------------------------------------------------------- pool search


def test_pool_search_matches_brute_force_with_subset(data):
    ids, vecs, queries = data
    pool_ids, pool_vecs = ids[:200], vecs[:200]
    res = search_pool(pool_ids, pool_vecs, queries, 5)
    want, want_scores = brute_force(pool_ids, pool_vecs, queries, 5)
    np.testing.assert_array_equal(res.ids, want)
    np.testing.assert_allclose(res.scores, want_scores, atol=1e-5)

    pool = PoolIndex(pool_ids, pool_vecs)
    subset = pool_ids[[3, 50, 51, 120, 199, 7, 8]]
    res = pool.search(queries, 5, subset_ids=subset)
    mask = np.isin(pool_ids, subset)
    want, _ = brute_force(pool_ids[mask], pool_vecs[mask], queries, 5)
    np.testing.assert_array_equal(res.ids, want)
    # Fewer candidates than k: padded, and only subset ids ever come back.
    res = pool.search(queries[:3], 10, subset_ids=subset[:2])
    assert set(res.ids[:, :2].ravel()) <= set(subset[:2]) and (res.ids[:, 2:] == -1).all()
    with pytest.raises(IndexInputError, match="not in the pool"):
        pool.search(queries, 5, subset_ids=np.array([pool_ids[0], 424242]))
    with pytest.raises(IndexInputError, match="duplicates"):
        PoolIndex(np.array([5, 5]), pool_vecs[:2])
    empty = PoolIndex(np.zeros(0, np.int64), np.zeros((0, 32), np.float32))
    assert (empty.search(queries[:2], 3).ids == -1).all()
    with pytest.raises(IndexInputError, match="not in the pool"):
        empty.search(queries[:2], 3, subset_ids=[1])


# ------------------------------------------------------------------------- store


def test_metadata_is_versioned_and_complete(tmp_path, data):
    ids, vecs, _ = data
    gen = save_index(tmp_path, build(ids, vecs, "hnsw"))
    doc = json.loads((tmp_path / f"gen-{gen:06d}" / "meta.json").read_text())
    assert doc["format"] == "autocut-faiss-index" and doc["format_version"] == 1
    assert {k: doc[k] for k in ("kind", "dim", "metric", "factory", "count", "encoder", "pca_version")} == {
        "kind": "frames",
        "dim": 32,
        "metric": "inner_product",
        "factory": "IDMap,HNSW32,Flat",
        "count": 3000,
        "encoder": "enc-a",
        "pca_version": "pca-1",
    }
    assert doc["created_at"].endswith("+00:00") and doc["params"]["ef_search"] >= 16
    assert len(doc["file"]["sha256"]) == 64
    gen2, meta = read_meta(tmp_path)
    assert gen2 == gen and meta.params.ef_search == doc["params"]["ef_search"]
    # Search parameters come back from the metadata.
    loaded = load_index(tmp_path)
    assert load_index(tmp_path).faiss_index.index is not None
    assert loaded.meta == meta


def test_mismatched_index_refused(tmp_path, data):
    ids, vecs, _ = data
    save_index(tmp_path, build(ids[:50], vecs[:50]))
    load_index(tmp_path, expected=EXPECTED)
    cases = [
        (ExpectedIndex("frames", "enc-b", "pca-1"), "encoder 'enc-a' \\(expected 'enc-b'\\)"),
        (ExpectedIndex("frames", "enc-a", "pca-2"), "PCA version 'pca-1' \\(expected 'pca-2'\\)"),
        (ExpectedIndex("frames", "enc-a", "pca-1", dim=128), "dimension 32 \\(expected 128\\)"),
        (ExpectedIndex("clips", "enc-a", "pca-1"), "kind 'frames'"),
    ]
    for expected, message in cases:
        with pytest.raises(IndexMismatchError, match=message):
            load_index(tmp_path, expected=expected)


def test_missing_corrupt_and_future_indexes_refused(tmp_path, data):
    ids, vecs, _ = data
    with pytest.raises(IndexNotFoundError):
        load_index(tmp_path / "nothing")
    gen = save_index(tmp_path, build(ids[:50], vecs[:50]))
    gdir = tmp_path / f"gen-{gen:06d}"
    blob = bytearray((gdir / "index.faiss").read_bytes())
    blob[-7] ^= 0xFF
    (gdir / "index.faiss").write_bytes(bytes(blob))
    with pytest.raises(IndexCorruptError, match="checksum"):
        load_index(tmp_path)
    (gdir / "index.faiss").write_bytes(bytes(blob[:-100]))
    with pytest.raises(IndexCorruptError, match="bytes"):
        load_index(tmp_path)
    gen = save_index(tmp_path, build(ids[:50], vecs[:50]))
    meta_path = tmp_path / f"gen-{gen:06d}" / "meta.json"
    doc = json.loads(meta_path.read_text())
    doc["format_version"] = 2
    meta_path.write_text(json.dumps(doc))
    with pytest.raises(IndexCorruptError, match="format version 2"):
        load_index(tmp_path)


def test_old_generations_pruned_and_writer_lock(tmp_path, data):
    ids, vecs, _ = data
    index = build(ids[:50], vecs[:50])
    gens = [save_index(tmp_path, index) for _ in range(4)]
    assert gens == [1, 2, 3, 4] and current_generation(tmp_path) == 4
    assert sorted(p.name for p in tmp_path.glob("gen-*")) == ["gen-000003", "gen-000004"]
    with IndexWriter(tmp_path), pytest.raises(IndexBusyError, match="another process"):
        save_index(tmp_path, index, timeout_s=0.2)
    assert save_index(tmp_path, index, timeout_s=0.2) == 5


# ------------------------------------------------------------------------- incremental add


def test_incremental_add_through_store(tmp_path, data):
    ids, vecs, queries = data
    save_index(tmp_path, build(ids[:2000], vecs[:2000], "hnsw"))
    grown = add_to_stored_index(tmp_path, ids[2000:], vecs[2000:], expected=EXPECTED)
    assert grown.generation == 2 and grown.meta.count == 3000 and grown.meta.added_since_build == 1000
    loaded = load_index(tmp_path, expected=EXPECTED)
    assert loaded.meta == grown.meta
    res = loaded.search(vecs[2000:], 1)
    assert np.mean(res.ids[:, 0] == ids[2000:]) >= 0.98  # the added vectors find themselves (HNSW: almost all)
    want, _ = brute_force(ids, vecs, queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(loaded.search(queries, 10).ids, want)])
    assert recall >= 0.9
    with pytest.raises(IndexInputError, match="already in the frames index"):
        add_to_stored_index(tmp_path, ids[2990:], vecs[2990:], expected=EXPECTED)
    again = add_to_stored_index(tmp_path, ids[2990:], vecs[2990:], expected=EXPECTED, skip_existing=True)
    assert again.meta.count == 3000 and current_generation(tmp_path) == 2  # nothing new, nothing published
    with pytest.raises(IndexMismatchError):
        add_to_stored_index(tmp_path, [1], vecs[:1], expected=ExpectedIndex("frames", "enc-a", "pca-2"))


# ------------------------------------------------------------------------- killed writers

_CHILD = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    import faiss
    import indexes.store as store
    from indexes import BuildConfig, build_index, save_index

    directory, phase = sys.argv[1], sys.argv[2]

    def pause(where):
        print("PAUSED", where, flush=True)
        time.sleep(60)

    if phase == "index-written":
        real = faiss.write_index
        def write_then_pause(index, path):
            real(index, path)
            pause("after writing " + path)
        faiss.write_index = write_then_pause
    elif phase == "index-half-written":
        real = faiss.write_index
        def write_half(index, path):
            real(index, path + ".full")
            with open(path + ".full", "rb") as fh:
                blob = fh.read()
            os.remove(path + ".full")
            with open(path, "wb") as fh:
                fh.write(blob[: len(blob) // 2])
                fh.flush()
            pause("half way through " + path)
        faiss.write_index = write_half
    elif phase == "before-pointer-switch":
        real_json = store._write_json_atomic
        def json_then_pause(path, doc):
            if path.name == store.POINTER_NAME:
                pause("before switching " + str(path))
            real_json(path, doc)
        store._write_json_atomic = json_then_pause
    rng = np.random.default_rng(1)
    vecs = rng.standard_normal((3000, 32)).astype(np.float32)
    index = build_index(np.arange(3000) + 10**6, vecs, kind="frames", encoder="enc-a", pca_version="pca-1",
                        config=BuildConfig(force_structure="flat"))
    save_index(directory, index)
    print("DONE", flush=True)
""")


@pytest.mark.parametrize("phase", ["index-half-written", "index-written", "before-pointer-switch"])
def test_rebuild_killed_midway_leaves_previous_index(tmp_path, data, phase):
    ids, vecs, queries = data
    save_index(tmp_path, build(ids, vecs, "hnsw"))
    before = load_index(tmp_path, expected=EXPECTED).search(queries, 10)
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path), phase],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("PAUSED"), line
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.stdout.close()
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert any(n.startswith((".tmp-gen", "gen-000002")) for n in leftovers), leftovers  # it really was mid-write
    assert current_generation(tmp_path) == 1
    after = load_index(tmp_path, expected=EXPECTED)
    assert after.generation == 1 and after.count == len(ids)
    res = after.search(queries, 10)
    np.testing.assert_array_equal(res.ids, before.ids)
    # The next writer sweeps the debris and publishes normally.
    assert save_index(tmp_path, build(ids[:10], vecs[:10])) == 2
    assert not list(tmp_path.glob(".tmp-*")) and load_index(tmp_path).count == 10


# ------------------------------------------------------------------------- hot swap


def test_holder_swaps_generations_without_failed_queries(tmp_path):
    """Queries from several threads while a writer publishes new generations."""
    rng = np.random.default_rng(3)
    _, vecs = clustered(rng, 1500)
    n_gens = 6
    offset = 10**6  # generation g holds vector i under id g * offset + i

    def generation_index(g):
        return build(g * offset + np.arange(len(vecs)), vecs, "flat")  # exact, so top-1 is the query's row

    save_index(tmp_path, generation_index(1))
    holder = IndexHolder(tmp_path, expected=EXPECTED, check_interval_s=0.0)
    errors: list[BaseException] = []
    seen: set[int] = set()
    stop = threading.Event()

    def query_loop(seed):
        r = np.random.default_rng(seed)
        while not stop.is_set():
            rows = r.integers(0, len(vecs), 4)
            try:
                res = holder.search(vecs[rows], 5)
                g, i = np.divmod(res.ids, offset)
                assert (i[:, 0] == rows).all(), (res.ids[:, 0], rows)  # the right vector...
                assert (g == g[:, :1]).all(), res.ids  # ...and every hit from one whole generation
                seen.update(g[:, 0].tolist())
            except BaseException as exc:  # noqa: BLE001 - any failure is what this test looks for
                errors.append(exc)
                return

    threads = [threading.Thread(target=query_loop, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    try:
        for g in range(2, n_gens + 1):
            save_index(tmp_path, generation_index(g))
            deadline = time.monotonic() + 20
            while holder.generation != g and time.monotonic() < deadline and not errors:
                time.sleep(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join()
        holder.close()
    assert not errors, errors[0]
    assert holder.generation == n_gens
    assert seen >= {1, n_gens} and len(seen) >= 3, seen


def test_holder_keeps_serving_when_new_generation_is_refused(tmp_path, data, caplog):
    ids, vecs, queries = data
    save_index(tmp_path, build(ids[:100], vecs[:100]))
    holder = IndexHolder(tmp_path, expected=EXPECTED, check_interval_s=0.0)
    save_index(tmp_path, build(ids[:100], vecs[:100], pca_version="pca-2"))  # e.g. rebuilt after a PCA refit
    with caplog.at_level(logging.ERROR, logger="indexes.search"):
        assert holder.refresh() is False
        assert holder.refresh() is False  # not retried until something new is published
    assert holder.generation == 1 and holder.search(queries[:2], 3).ids.shape == (2, 3)
    assert sum("cannot be served" in r.message for r in caplog.records) == 1
    save_index(tmp_path, build(ids[:100], vecs[:100]))
    assert holder.refresh() is True and holder.generation == 3
    holder.close()


def test_indexes_imports_no_autocut():
    code = (
        "import sys, indexes; bad = [m for m in sys.modules if m.split('.')[0] in ('autocut', 'rqvae', 'server')];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
