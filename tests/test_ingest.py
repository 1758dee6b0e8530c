"""Ingest through the real encoders: bad-media batches, idempotency, resume after a kill, CLI, refit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from autocut.cli import main as cli_main
from autocut.errors import VersionMismatchError
from autocut.library.catalog import Catalog
from autocut.library.ingest import IngestConfig, ingest_paths
from media_factory import ffmpeg, make_audio, make_shots, make_video


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    d = tmp_path_factory.mktemp("batch")
    files = {
        "shots": make_shots(d / "shots.mp4", [("testsrc2", 3.0), ("mandelbrot", 3.0), ("smptebars", 3.0)]),
        "plain": make_video(d / "plain.mp4", duration_s=4, src="testsrc", audio=True),
    }
    (d / "zero.mp4").write_bytes(b"")
    (d / "text.mp4").write_text("hello\n" * 100)
    data = files["plain"].read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    files["audio_only"] = make_audio(d / "audio_only.mp3", duration_s=3)
    files["one_frame"] = make_video(d / "one_frame.mp4", duration_s=0.04)
    landscape = make_video(d / "landscape.mp4", size="320x180", duration_s=3, src="rgbtestsrc")
    ffmpeg("-i", str(landscape), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(d / "rotated.mp4"))
    landscape.unlink()
    files["odd"] = make_video(d / "odd.mp4", size="321x241", duration_s=3, pix_fmt="yuv444p", src="yuvtestsrc")
    return d


def test_bad_files_reported_and_rest_ingested(batch, tmp_path):
    lib = tmp_path / "lib"
    seen = []
    # Files named explicitly are all tried (a directory walk would only pick video suffixes).
    files = sorted(batch.iterdir())
    rep = ingest_paths(lib, files, kind="footage", progress=lambda i, n, r: seen.append((i, n, r.status)))
    by_name = {os.path.basename(r.path): r for r in rep.results}
    assert {n for n, r in by_name.items() if r.status == "added"} == {
        "shots.mp4",
        "plain.mp4",
        "rotated.mp4",
        "odd.mp4",
    }
    reasons = {n: r.reason for n, r in by_name.items() if r.status == "failed"}
    assert "empty" in reasons["zero.mp4"]
    assert "not a readable media file" in reasons["text.mp4"]
    assert "truncated" in reasons["truncated.mp4"] or "corrupt" in reasons["truncated.mp4"]
    assert "audio-only" in reasons["audio_only.mp3"]
    assert "too short" in reasons["one_frame.mp4"]
    assert seen[-1][:2] == (len(rep.results), len(rep.results))
    with Catalog.open(lib, create=False) as cat:
        st = cat.stats()
        assert st.sources == 4 and st.failures == 5
        _ids, vecs = cat.frame_vectors()
        assert vecs.shape[1] == 128
        np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
        shots = cat.video_by_path(batch / "shots.mp4")
        clips = cat.clips(shots.photo_id)
        assert [round(c.start_s) for c in clips] == [0, 3, 6]
        # Frames of the same shot are closer to each other than to other shots.
        _, fv = cat.frame_vectors([shots.photo_id])
        sim = fv @ fv.T
        assert sim[0, 1] > sim[0, 4] and sim[4, 5] > sim[1, 7]
        rot = cat.video_by_path(batch / "rotated.mp4")
        assert (rot.width, rot.height) == (180, 320)

    # Idempotent: the same batch again adds nothing and fails the same files.
    rep2 = ingest_paths(lib, files, kind="footage")
    assert not rep2.added and len(rep2.skipped) == 4 and len(rep2.failed) == 5


def test_duplicate_content_under_another_name_is_skipped(batch, tmp_path):
    lib = tmp_path / "lib"
    copy = tmp_path / "copy.mp4"
    copy.write_bytes((batch / "plain.mp4").read_bytes())
    rep = ingest_paths(lib, [batch / "plain.mp4", copy])
    assert [r.status for r in rep.results] == ["added", "skipped"]
    # Stored once, but usable by either path (a request naming the copy finds the same source).
    with Catalog.open(lib, create=False) as cat:
        assert cat.stats().sources == 1
        a, b = cat.video_by_path(batch / "plain.mp4"), cat.video_by_path(copy)
        assert a is not None and b is not None and a.photo_id == b.photo_id
        from autocut.planning.candidates import build_candidates
        from autocut.types import PoolItem

        pool = build_candidates(cat, [PoolItem(path=str(copy))])
        assert {c.photo_id for c in pool.candidates} == {a.photo_id}


def test_bgm_excerpts(tmp_path):
    music = make_audio(tmp_path / "tone.ogg", duration_s=50)
    lib = tmp_path / "lib"
    rep = ingest_paths(lib, [music], kind="bgm", config=IngestConfig(bgm_excerpt_s=20, bgm_min_excerpt_s=8))
    assert rep.added and len(rep.added[0].ids) == 3  # 0-20, 20-40, 40-50
    with Catalog.open(lib) as cat:
        tracks = cat.bgm_tracks()
        assert [(t.start_s, round(t.duration_s)) for t in tracks] == [(0.0, 20), (20.0, 20), (40.0, 10)]
        _ids, vecs = cat.bgm_vectors()
        assert vecs.shape == (3, 512)
        _, blocks = cat.bgm_block_vectors()
        assert len(blocks) == sum(t.n_blocks for t in tracks) >= 3
    again = ingest_paths(lib, [music], kind="bgm", config=IngestConfig(bgm_excerpt_s=20, bgm_min_excerpt_s=8))
    assert again.skipped and not again.added


def test_kill_mid_ingest_then_resume(tmp_path):
    """SIGKILL the CLI while it ingests a batch; the library stays readable and a rerun completes it."""
    src = tmp_path / "src"
    src.mkdir()
    kinds = ["testsrc2", "mandelbrot", "smptebars", "rgbtestsrc", "testsrc", "yuvtestsrc"]
    for i, kind in enumerate(kinds):  # distinct content: identical files would be deduplicated
        make_video(src / f"v{i}.mp4", duration_s=6, src=kind, size="320x240")
    lib = tmp_path / "lib"
    proc = subprocess.Popen(
        [sys.executable, "-m", "autocut", "--library", str(lib), "ingest", str(src)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    # Wait until at least one source is committed, then kill mid-batch.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if (lib / "catalog.sqlite").exists():
            try:
                with Catalog.open(lib, create=False) as cat:
                    if cat.stats().sources >= 1:
                        break
            except Exception:  # noqa: BLE001 - the writer may be mid-initialisation
                pass
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with Catalog.open(lib, create=False) as cat:
        partial = cat.stats().sources
        ids, vecs = cat.frame_vectors()
        assert len(ids) == len(vecs)
    assert 1 <= partial <= 6
    rc = cli_main(["--library", str(lib), "ingest", str(src)])
    assert rc == 0
    with Catalog.open(lib, create=False) as cat:
        st = cat.stats()
        assert st.sources == 6
        ids, vecs = cat.frame_vectors()
        assert len(ids) == st.frames == len(set(ids.tolist()))
        assert np.isfinite(vecs).all()


def test_cli_stats_and_errors(tmp_path, capsys):
    lib = tmp_path / "lib"
    assert cli_main(["--library", str(lib), "library", "stats"]) == 2
    assert "no material library" in capsys.readouterr().err
    make_video(tmp_path / "a.mp4", duration_s=3)
    assert cli_main(["--library", str(lib), "ingest", str(tmp_path / "a.mp4")]) == 0
    assert cli_main(["--library", str(lib), "library", "stats"]) == 0
    out = capsys.readouterr().out
    assert "sources        1 videos" in out and "efficientnet-lite0" in out


def test_refit_pca_bumps_version_and_recomputes(tmp_path):
    lib = tmp_path / "lib"
    make_shots(tmp_path / "s.mp4", [("testsrc2", 4.0), ("mandelbrot", 4.0), ("smptebars", 4.0)])
    ingest_paths(lib, [tmp_path / "s.mp4"])
    from autocut.library.pca import current_pca, refit_library_pca

    with Catalog.open(lib, writable=True) as cat:
        old = cat.pca_version
        _, _before = cat.frame_vectors()
        new = refit_library_pca(cat, min_frames=5, n_components=8)
        assert new != old and cat.pca_version == new
        ids, after = cat.frame_vectors()
        assert after.shape == (len(ids), 8)
        np.testing.assert_allclose(np.linalg.norm(after, axis=1), 1.0, atol=1e-4)
        _, clips = cat.clip_vectors()
        assert clips.shape[1] == 8
        assert current_pca(cat, "efficientnet-lite0").version == new
        # A library whose PCA file went missing says so instead of mixing spaces.
        (lib / "pca" / f"{new}.npz").unlink()
        with pytest.raises(VersionMismatchError, match="refit-pca"):
            current_pca(cat, "efficientnet-lite0")


def test_cli_exits_nonzero_when_any_file_failed_and_keeps_the_good_ones(tmp_path, capsys):
    lib = tmp_path / "lib"
    make_video(tmp_path / "good.mp4", duration_s=3)
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all" * 100)
    rc = cli_main(["--library", str(lib), "ingest", str(tmp_path / "good.mp4"), str(tmp_path / "bad.mp4")])
    assert rc == 1
    assert "bad.mp4" in capsys.readouterr().err
    with Catalog.open(lib, create=False) as cat:
        assert cat.stats().sources == 1  # the good file was stored all the same
    # Run again: the good file is already present, the bad one still fails, so the status stays 1.
    assert cli_main(["--library", str(lib), "ingest", str(tmp_path / "good.mp4"), str(tmp_path / "bad.mp4")]) == 1
    assert cli_main(["--library", str(lib), "ingest", str(tmp_path / "good.mp4")]) == 0
