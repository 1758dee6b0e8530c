"""The on-disk material catalog: round trips, ids, crash consistency, bad libraries."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from autocut.errors import CatalogError, VersionMismatchError
from autocut.library.catalog import Catalog, NewBgm, NewSource, ProductRecord, RefEditRecord, RefSegment


def _source(i: int, n_frames: int = 5, raw_dim: int = 16) -> NewSource:
    rng = np.random.default_rng(i)
    vecs = rng.normal(size=(n_frames, 128)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return NewSource(
        content_hash=f"hash{i}",
        path=f"/media/v{i}.mp4",
        kind="footage",
        duration_s=float(n_frames),
        probe={"width": 320, "height": 240, "fps": 25.0, "has_audio": False},
        frame_times_s=[float(k) for k in range(n_frames)],
        frames_raw=rng.normal(size=(n_frames, raw_dim)).astype(np.float32),
        frames=vecs,
        clip_spans=[(0.0, 2.0), (2.0, float(n_frames))],
        clips=vecs[:2].copy(),
    )


def test_round_trip_and_ids(tmp_path):
    with Catalog.open(tmp_path, writable=True, frame_encoder="enc-a") as cat:
        p1 = cat.add_source(_source(1))
        p2 = cat.add_source(_source(2, n_frames=7))
        assert (p1, p2) == (1, 2)
        assert cat.has_source("hash2") == 2
    with Catalog.open(tmp_path, create=False) as cat:
        ids, vecs = cat.frame_vectors()
        assert len(ids) == 12 and vecs.shape == (12, 128)
        assert ids[0] == 1 * 10**4 + 0 and ids[-1] == 2 * 10**4 + 6
        np.testing.assert_array_equal(vecs[5:], _source(2, n_frames=7).frames)
        _ids2, raw2 = cat.frame_raw_vectors(photo_ids=[2])
        np.testing.assert_array_equal(raw2, _source(2, n_frames=7).frames_raw)
        cids, _cvecs = cat.clip_vectors([1])
        assert list(cids) == [1 * 10**7 + 0 * 10**3 + 2, 1 * 10**7 + 2 * 10**3 + 3]
        clips = cat.clips(2)
        assert clips[1].start_frame == 2 and clips[1].duration_frames == 5
        st = cat.stats()
        assert (st.sources, st.frames, st.clips) == (2, 12, 4)
        assert "sources" in st.to_text()


def test_encoder_mismatch_refused(tmp_path):
    with Catalog.open(tmp_path, writable=True, frame_encoder="enc-a") as cat:
        cat.add_source(_source(1))
    with pytest.raises(VersionMismatchError, match="enc-a"):
        Catalog.open(tmp_path, writable=True, frame_encoder="enc-b")


def test_wrong_dim_refused_and_nothing_stored(tmp_path):
    with Catalog.open(tmp_path, writable=True) as cat:
        cat.add_source(_source(1, raw_dim=16))
        with pytest.raises(CatalogError, match="16-d"):
            cat.add_source(_source(2, raw_dim=32))
        assert cat.stats().sources == 1
        # The failed append was rolled back on disk too: the next good source lands at the right rows.
        cat.add_source(_source(3, raw_dim=16))
        _, raw = cat.frame_raw_vectors([2])
        np.testing.assert_array_equal(raw, _source(3).frames_raw)


def test_missing_library_is_clear(tmp_path):
    with pytest.raises(CatalogError, match="no material library"):
        Catalog.open(tmp_path / "nope", create=False)


def test_corrupt_database_is_clear(tmp_path):
    (tmp_path / "catalog.sqlite").write_bytes(b"garbage" * 100)
    with pytest.raises(CatalogError, match="corrupt"):
        Catalog.open(tmp_path, create=False)


def test_read_only_handle_refuses_writes(tmp_path):
    Catalog.open(tmp_path, writable=True).close()
    with Catalog.open(tmp_path) as cat, pytest.raises(CatalogError, match="read-only"):
        cat.add_source(_source(1))


def test_single_writer_lock(tmp_path):
    with Catalog.open(tmp_path, writable=True), pytest.raises(CatalogError, match="locked"):
        Catalog.open(tmp_path, writable=True, lock_timeout_s=0.2)


def test_crash_between_array_write_and_commit_leaves_library_consistent(tmp_path):
    with Catalog.open(tmp_path, writable=True) as cat:
        cat.add_source(_source(1))
    # A writer that appends vectors and is SIGKILLed before its SQLite commit.
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_catalog import _source
        from autocut.library.catalog import Catalog
        cat = Catalog.open({str(tmp_path)!r}, writable=True)
        with cat._write_txn():
            cat._append("frames_raw", _source(2).frames_raw)
            cat._append("frames", _source(2).frames)
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    assert (tmp_path / "arrays" / "frames.f32").stat().st_size == 10 * 128 * 4  # garbage tail on disk
    with Catalog.open(tmp_path, writable=True) as cat:
        assert (tmp_path / "arrays" / "frames.f32").stat().st_size == 5 * 128 * 4  # repaired
        assert cat.stats().sources == 1
        cat.add_source(_source(2))
        _, vecs = cat.frame_vectors([2])
        np.testing.assert_array_equal(vecs, _source(2).frames)


def test_bgm_products_and_reference_edits(tmp_path):
    with Catalog.open(tmp_path, writable=True) as cat:
        pid = cat.add_source(_source(1))
        blocks = np.ones((3, 8), np.float32)
        ids = cat.add_bgm(
            [
                NewBgm("b1", "/m/a.ogg", 0.0, 25.0, blocks, blocks[0] / np.sqrt(8)),
                NewBgm("b2", "/m/a.ogg", 25.0, 25.0, blocks * 2, blocks[0] / np.sqrt(8)),
            ]
        )
        assert ids == [1, 2]
        bid, bvec = cat.bgm_vectors()
        assert list(bid) == [1, 2] and bvec.shape == (2, 8)
        blk_ids, blk = cat.bgm_block_vectors()
        assert list(blk_ids) == [1, 1, 1, 2, 2, 2] and blk[3, 0] == 2
        cat.upsert_product(ProductRecord("p1", "Juicer Cup", "FreshCo", "kitchen", ["30 s juice"], split="test"))
        rec = RefEditRecord(
            "e1", "p1", "en", [RefSegment(pid, 0.0, 2.0, "No time?", "hook")], audio_id=1, split="test", source="unit"
        )
        cat.add_reference_edit(rec)
        cat.add_reference_edit(rec)  # idempotent
        assert cat.reference_edits("test") == [rec]
        assert cat.products("test")[0].name == "Juicer Cup"
        with pytest.raises(CatalogError, match="outside photo"):
            cat.add_reference_edit(RefEditRecord("e2", "p1", "en", [RefSegment(pid, 4.0, 3.0, "x")]))


def test_a_library_on_a_network_filesystem_is_refused(tmp_path, monkeypatch):
    from autocut.library import catalog as C
    from autocut.library.catalog import network_filesystem

    mounts = (
        "/dev/sda1 / ext4 rw,relatime 0 0\n"
        "server:/export /mnt/nfs nfs4 rw,relatime 0 0\n"
        "user@host:/x /mnt/my\\040share fuse.sshfs rw 0 0\n"
        "tmpfs /mnt/nfs/local tmpfs rw 0 0\n"
    )
    assert network_filesystem("/mnt/nfs/library", mounts) == "nfs4"
    assert network_filesystem("/mnt/my share/lib", mounts) == "fuse.sshfs"
    assert network_filesystem("/mnt/nfs/local/lib", mounts) is None  # the deepest mount point decides
    assert network_filesystem("/home/me/library", mounts) is None
    assert network_filesystem("/mnt/nfsx", mounts) is None  # a prefix of the name is not the mount
    # This machine's test directory is local; a library the mount table puts on NFS is refused by name.
    assert network_filesystem(tmp_path) is None
    nfs_mounts = f"/dev/sda1 / ext4 rw 0 0\nserver:/export {tmp_path} nfs4 rw 0 0\n"
    monkeypatch.setattr(C, "network_filesystem", lambda p: network_filesystem(p, nfs_mounts))
    with pytest.raises(C.CatalogError, match="network filesystem \\(nfs4\\)"):
        C.Catalog.open(tmp_path / "lib")
    assert not (tmp_path / "lib").exists()  # refused before anything is created
