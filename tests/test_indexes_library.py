"""Library indexes over a real catalog: rebuild, CLI, PCA refit refusal, ingest adds, killed CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from autocut.cli import main as cli_main
from autocut.encoders.base import l2_normalize
from autocut.errors import CatalogError, VersionMismatchError
from autocut.library.catalog import Catalog, NewBgm
from autocut.library.indexing import (
    add_to_library_index,
    index_dir,
    index_status,
    library_index_holder,
    open_library_index,
    rebuild_indexes,
)
from catalog_factory import synthetic_source
from indexes import BuildConfig, current_generation

REPO = Path(__file__).resolve().parents[1]
FLAT = BuildConfig(force_structure="flat")


def _make_library(root: Path, n_sources: int = 3, n_frames: int = 40, n_clips: int = 4, n_bgm: int = 12) -> Path:
    rng = np.random.default_rng(0)
    with Catalog.open(root, writable=True, frame_encoder="enc-test", audio_encoder="aud-test") as cat:
        cat.set_meta("pca_version", "pca-test-1")
        for i in range(1, n_sources + 1):
            cat.add_source(synthetic_source(i, n_frames=n_frames, n_clips=n_clips, noise=0.5))
        tracks = l2_normalize(rng.standard_normal((n_bgm, 64)))
        if n_bgm:
            cat.add_bgm(
                [NewBgm(f"b{k}", f"/music/{k}.ogg", 0.0, 25.0, np.tile(t, (3, 1)), t) for k, t in enumerate(tracks)]
            )
    return root


@pytest.fixture
def library(tmp_path):
    return _make_library(tmp_path / "lib")


def test_rebuild_all_then_every_vector_finds_itself(library):
    seen = []
    summary = rebuild_indexes(library, ["frames", "clips", "bgm"], progress=lambda *a: seen.append(a))
    assert [(k.kind, k.count, k.dim, k.factory, k.generation) for k in summary.kinds] == [
        ("frames", 120, 128, "IDMap,Flat", 1),
        ("clips", 12, 128, "IDMap,Flat", 1),
        ("bgm", 12, 64, "IDMap,Flat", 1),
    ]
    assert ("frames", 120, 120) in seen and ("bgm", 0, 12) in seen
    assert "frames" in summary.to_text() and "generation 1" in summary.to_text()
    with Catalog.open(library, create=False) as cat:
        for kind, (ids, vecs) in {
            "frames": cat.frame_vectors(),
            "clips": cat.clip_vectors(),
            "bgm": cat.bgm_vectors(),
        }.items():
            index = open_library_index(library, kind, cat)
            assert index.meta.encoder == ("aud-test" if kind == "bgm" else "enc-test")
            assert index.meta.pca_version == (None if kind == "bgm" else "pca-test-1")
            res = index.search(vecs, 1)
            np.testing.assert_array_equal(res.ids[:, 0], ids)
    assert (index_dir(library, "frames") / "current.json").exists()


def test_cli_rebuild_and_status(library, capsys):
    assert cli_main(["--library", str(library), "index", "rebuild", "--kind", "clips"]) == 0
    out = capsys.readouterr()
    assert "clips" in out.out and "12 x 128" in out.out and "clips index" in out.err  # summary; tqdm bar
    assert cli_main(["--library", str(library), "index", "status"]) == 0
    out = capsys.readouterr().out
    assert "frames not built" in out and "IDMap,Flat" in out and "PCA pca-test-1" in out
    assert cli_main(["--library", str(library / "missing"), "index", "rebuild"]) == 2
    assert "no material library" in capsys.readouterr().err


def test_kind_without_vectors_is_skipped_not_fatal(tmp_path):
    library = _make_library(tmp_path / "lib", n_sources=1, n_bgm=0)
    summary = rebuild_indexes(library, ["frames", "bgm", "clips"])
    assert [k.kind for k in summary.kinds] == ["frames", "clips"]
    assert summary.skipped == (("bgm", "no vectors in the catalog yet"),)
    assert "bgm    skipped" in summary.to_text()
    assert current_generation(index_dir(library, "bgm")) is None


def test_index_from_an_older_pca_is_refused(library):
    rebuild_indexes(library, ["frames", "bgm"], config=FLAT)
    with Catalog.open(library, writable=True) as cat:
        cat.set_meta("pca_version", "pca-test-2")  # what a refit does (autocut.library.pca)
    with Catalog.open(library, create=False) as cat:
        with pytest.raises(VersionMismatchError, match=r"pca-test-1.*index rebuild --kind frames"):
            open_library_index(library, "frames", cat)
        with pytest.raises(VersionMismatchError):
            library_index_holder(library, "frames", cat)
        assert open_library_index(library, "bgm", cat).count == 12  # BGM vectors have no PCA
        with pytest.raises(CatalogError, match="no clips index"):
            open_library_index(library, "clips", cat)
    with Catalog.open(library, create=False) as cat:
        ids, vecs = cat.frame_vectors([1])
        # An ingest after the refit does not fail on the stale index; the rebuild picks its rows up.
        assert add_to_library_index(library, "frames", ids + 10**6, vecs, cat) is None
    rebuild_indexes(library, ["frames"])
    with Catalog.open(library, create=False) as cat:
        assert open_library_index(library, "frames", cat).meta.pca_version == "pca-test-2"


def test_ingest_adds_to_library_indexes(library):
    rebuild_indexes(library, ["frames"])
    with Catalog.open(library, writable=True) as cat:
        photo_id = cat.add_source(synthetic_source(9, n_frames=40, n_clips=4, noise=0.5))
        ids, vecs = cat.frame_vectors([photo_id])
        holder = library_index_holder(library, "frames", cat, check_interval_s=0.0)
        grown = add_to_library_index(library, "frames", ids, vecs, cat)
        assert grown.count == 160 and grown.generation == 2
        assert add_to_library_index(library, "frames", ids, vecs, cat).generation == 2  # retried ingest: no-op
        holder.refresh()
        np.testing.assert_array_equal(holder.search(vecs, 1).ids[:, 0], ids)
        holder.close()
        # No clips index yet: the first add builds it from the catalog, new rows included.
        cids, cvecs = cat.clip_vectors([photo_id])
        built = add_to_library_index(library, "clips", cids, cvecs, cat)
        assert built.count == 16 and built.meta.added_since_build == 0
    assert [s.generation for s in index_status(library)] == [2, 1, None]


def test_cli_rebuild_killed_midway_keeps_serving_previous_index(tmp_path):
    # 21k frames: above the exact-search threshold, so the CLI trains an IVF index (k-means) for a while.
    library = _make_library(tmp_path / "lib", n_sources=3, n_frames=7000, n_clips=10)
    rebuild_indexes(library, ["frames"], config=FLAT)
    proc = subprocess.Popen(
        [sys.executable, "-m", "autocut", "--library", str(library), "index", "rebuild", "--kind", "frames"],
        cwd=REPO,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        seen = b""
        deadline = time.monotonic() + 300  # `python -m autocut` imports every command family first
        while b"frames index" not in seen and time.monotonic() < deadline:
            chunk = os.read(proc.stderr.fileno(), 4096)  # the tqdm bar appears when adding starts
            if not chunk:
                break
            seen += chunk
        assert b"frames index" in seen, seen
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.stderr.close()
    directory = index_dir(library, "frames")
    assert current_generation(directory) == 1
    with Catalog.open(library, create=False) as cat:
        index = open_library_index(library, "frames", cat)
        ids, vecs = cat.frame_vectors([2])
    assert index.generation == 1 and index.meta.factory == "IDMap,Flat" and index.count == 21000
    np.testing.assert_array_equal(index.search(vecs[::100], 1).ids[:, 0], ids[::100])
