"""AutoCut ids and visual-clip segmentation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from autocut.errors import IdRangeError
from autocut.library.ids import clip_id, frame_id, split_clip_id, split_frame_id
from autocut.library.media import sample_video
from autocut.library.segmentation import ClipSpan, SegmentationConfig, clip_embeddings, segment_clips
from media_factory import make_shots


@given(st.integers(1, 10**9), st.integers(0, 9999))
def test_frame_id_round_trip(photo, idx):
    assert split_frame_id(frame_id(photo, idx)) == (photo, idx)


@given(st.integers(1, 10**9), st.integers(0, 9999), st.integers(1, 999))
def test_clip_id_round_trip(photo, start, dur):
    assert tuple(split_clip_id(clip_id(photo, start, dur))) == (photo, start, dur)


def test_id_limits_are_clear_errors():
    with pytest.raises(IdRangeError, match="9999"):
        frame_id(1, 10_000)
    with pytest.raises(IdRangeError, match="999 s"):
        clip_id(1, 0, 1000)
    with pytest.raises(IdRangeError):
        clip_id(0, 0, 1)


def test_id_arithmetic_example_values():
    # docs/method.md, "Ids": frame_id = photo_id * 10^4 + frame_index; clip_id = photo * 10^7 + start * 10^3 + dur.
    assert frame_id(12, 34) == 120_034
    assert clip_id(12, 34, 5) == 120_034_005


def test_segmentation_finds_hard_cuts(tmp_path):
    shots = [("testsrc2", 3.0), ("mandelbrot", 4.0), ("smptebars", 3.0), ("rgbtestsrc", 2.0)]
    path = make_shots(tmp_path / "shots.mp4", shots)
    sv = sample_video(path, size_hw=(32, 32))
    spans = segment_clips(sv.thumbs.thumbs, sv.thumbs.rate_hz, sv.info.duration_s)
    cuts = [s.start_s for s in spans[1:]]
    assert len(cuts) == 3, spans
    for got, want in zip(cuts, [3.0, 7.0, 10.0]):
        assert abs(got - want) <= 0.25
    assert abs(spans[-1].end_s - 12.0) < 0.1


def test_continuous_motion_is_not_cut(tmp_path):
    path = make_shots(tmp_path / "one.mp4", [("testsrc2", 8.0)])
    sv = sample_video(path, size_hw=(32, 32))
    assert len(segment_clips(sv.thumbs.thumbs, sv.thumbs.rate_hz, sv.info.duration_s)) == 1


def test_min_and_max_clip_length():
    rng = np.random.default_rng(0)
    # 5 fps thumbnails: a fresh random image every 0.4 s => a cut at every step.
    thumbs = np.repeat(rng.integers(0, 255, (50, 8, 8), dtype=np.uint8), 2, axis=0)
    cfg = SegmentationConfig(min_clip_s=2.0, max_clip_s=5.0)
    spans = segment_clips(thumbs, 5.0, 20.0, cfg)
    assert all(s.duration_s >= 2.0 - 1e-6 for s in spans)
    assert all(s.duration_s <= 5.0 + 1e-6 for s in spans)
    assert spans[0].start_s == 0 and abs(spans[-1].end_s - 20.0) < 1e-9
    assert all(abs(a.end_s - b.start_s) < 1e-9 for a, b in itertools.pairwise(spans))


def test_clip_embedding_is_mean_of_its_frames():
    vecs = np.eye(4, dtype=np.float32)[[0, 0, 1, 1, 2, 3]]
    emb = clip_embeddings([ClipSpan(0, 2), ClipSpan(2, 6)], vecs)
    np.testing.assert_allclose(emb[0], [1, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(emb[1], np.array([0, 2, 1, 1]) / np.sqrt(6), atol=1e-6)
