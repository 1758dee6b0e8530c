"""Probing, validation and sampling on real generated media, including a bad-media corpus."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from autocut.errors import MediaError
from autocut.library.media import probe, sample_frames, sample_video, validate_footage
from media_factory import ffmpeg, make_audio, make_video


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    good = make_video(d / "good.mp4", duration_s=4, audio=True)
    files = {"good": good}
    (d / "empty.mp4").write_bytes(b"")
    files["empty"] = d / "empty.mp4"
    (d / "text.mp4").write_text("this is not a video\n" * 50)
    files["text"] = d / "text.mp4"
    data = good.read_bytes()
    # Keep the head only: for a non-faststart MP4 the moov atom (at the end) is gone.
    (d / "truncated.mp4").write_bytes(data[: len(data) // 3])
    files["truncated"] = d / "truncated.mp4"
    files["audio_only"] = make_audio(d / "audio_only.m4a", duration_s=3)
    files["one_frame"] = make_video(d / "one_frame.mp4", duration_s=0.04, rate=25)
    # A phone-style portrait video: landscape coded frames plus rotation metadata (set on a stream copy,
    # the way ffmpeg 5 writes a display matrix).
    landscape = make_video(d / "landscape.mp4", size="320x180", duration_s=3)
    ffmpeg("-i", str(landscape), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(d / "rotated.mp4"))
    files["rotated"] = d / "rotated.mp4"
    files["odd"] = make_video(d / "odd.mp4", size="321x241", duration_s=3, pix_fmt="yuv444p")
    files["tenbit"] = make_video(d / "tenbit.mkv", duration_s=2, pix_fmt="yuv420p10le")
    files["yuv444"] = make_video(d / "yuv444.mp4", duration_s=2, pix_fmt="yuv444p")
    # Variable frame rate: 30 fps for 2 s, then every third frame kept with its original timestamp.
    vfr = d / "vfr.mp4"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=160x120:rate=30:duration=4",
        "-vf",
        "select='lt(n\\,60)+not(mod(n\\,3))'",
        "-fps_mode",
        "vfr",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        str(vfr),
    )
    files["vfr"] = vfr
    return files


def test_probe_good(corpus):
    info = probe(corpus["good"])
    assert info.has_video and info.has_audio
    assert (info.width, info.height) == (320, 240)
    assert abs(info.duration_s - 4.0) < 0.1
    assert abs(info.fps - 25) < 0.01
    assert info.video_codec == "h264" and info.audio_codec == "aac"


@pytest.mark.parametrize(
    "name,needle",
    [
        ("empty", "empty"),
        ("text", "not a readable media file"),
        ("truncated", "truncated"),
    ],
)
def test_unreadable_files_are_named_with_reason(corpus, name, needle):
    with pytest.raises(MediaError) as ei:
        validate_footage(probe(corpus[name]))
    assert str(corpus[name]) in str(ei.value)
    assert needle in str(ei.value)


def test_missing_file():
    with pytest.raises(MediaError, match="does not exist"):
        probe("/nonexistent/file.mp4")


def test_audio_only_refused_as_footage(corpus):
    info = probe(corpus["audio_only"])
    assert info.has_audio and not info.has_video
    with pytest.raises(MediaError, match="audio-only"):
        validate_footage(info)


def test_one_frame_video_too_short(corpus):
    with pytest.raises(MediaError, match="too short"):
        validate_footage(probe(corpus["one_frame"]))


def test_rotation_swaps_display_size_and_frames_are_upright(corpus):
    info = probe(corpus["rotated"])
    assert info.rotation_deg in (90, 270)
    assert (info.width, info.height) == (180, 320)
    # Sampling at the display aspect (portrait) should need no crop of the long side beyond aspect.
    batches = list(sample_frames(corpus["rotated"], size_hw=(64, 36)))
    frames = np.concatenate([b.frames for b in batches])
    assert frames.shape[1:] == (64, 36, 3)


@pytest.mark.parametrize("name", ["odd", "tenbit", "yuv444", "vfr"])
def test_unusual_sources_sample_at_one_fps(corpus, name):
    info = validate_footage(probe(corpus[name]))
    sv = sample_video(corpus[name], info=info, size_hw=(224, 224))
    expected = round(info.duration_s)
    assert abs(len(sv.frames) - expected) <= 1, (name, len(sv.frames), info.duration_s)
    assert sv.frames.dtype == np.uint8 and sv.frames.shape[1:] == (224, 224, 3)
    assert sv.thumbs is not None and abs(len(sv.thumbs.thumbs) - 5 * info.duration_s) <= 2
    assert sv.frames.std() > 5  # real picture content, not a blank decode


def test_probe_marks_vfr(corpus):
    assert probe(corpus["vfr"]).is_vfr


def test_sample_frames_matches_timestamps(tmp_path):
    # Colour changes every second; the k-th 1 fps sample must show the colour of second k.
    colours = ["red", "green", "blue", "white"]
    parts = []
    for c in colours:
        parts += ["-f", "lavfi", "-i", f"color=c={c}:size=64x48:rate=25:duration=1"]
    graph = "".join(f"[{i}:v]" for i in range(4)) + "concat=n=4:v=1:a=0[o]"
    out = tmp_path / "c.mp4"
    ffmpeg(
        *parts,
        "-filter_complex",
        graph,
        "-map",
        "[o]",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv444p",
        "-qp",
        "0",
        str(out),
    )
    frames = np.concatenate([b.frames for b in sample_frames(out, size_hw=(16, 16))])
    assert len(frames) == 4
    dominant = [int(np.argmax(f.reshape(-1, 3).mean(0))) for f in frames[:3]]
    assert dominant == [0, 1, 2]
    assert frames[3].mean() > 200


def test_sample_media_from_packages_probe():
    from autocut.library.samples import sample_music, sample_videos

    vids, music = sample_videos(), sample_music()
    if not vids or not music or shutil.which("ffprobe") is None:
        pytest.fail("packaged sample media missing: `make setup` installs it")
    assert all(validate_footage(probe(v)).duration_s > 1 for v in vids)
    assert probe(music[0]).has_audio
