"""Media that cannot exhaust a worker: header limits, limits enforced while decoding, the demuxer and
protocol allow-lists, and per-child resource limits, all against real ffmpeg on generated files
(a header patched to claim 16384x16384, an MKV whose Duration lies, a stream that changes size
mid-file, SDP and HLS text files named .mp4). The black-box test against the running service is
tests/test_server_media_limits.py."""

from __future__ import annotations

import signal
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from autocut.errors import MediaError, RenderError
from autocut.library.media import (
    MediaInfo,
    MediaLimits,
    _run_guarded,
    configure_limits,
    current_limits,
    load_audio_mono,
    probe,
    sample_frames,
    sample_video,
)
from autocut.render.ffmpeg import FfmpegCommand, guard_inputs, run_ffmpeg
from media_factory import ffmpeg, make_video

# --------------------------------------------------------------------------- generated hostile files


def make_lying_mkv(path: Path, *, real_s: float, claimed_s: float, audio: bool = False) -> Path:
    """An MKV that really runs `real_s` seconds but whose Segment Duration (and DURATION tags) claim
    `claimed_s`: what ffprobe reports as the file's duration is the lie."""
    src = ["-f", "lavfi", "-i", f"sine=frequency=440:duration={real_s}"] if audio else []
    if not audio:
        src = ["-f", "lavfi", "-i", f"testsrc=size=64x48:rate=5:duration={real_s}"]
    codec = ["-c:a", "flac"] if audio else ["-c:v", "libx264", "-preset", "ultrafast", "-g", "5"]
    ffmpeg(*src, *codec, str(path))
    data = bytearray(path.read_bytes())
    i = data.find(b"\x44\x89\x88")  # Duration element, 8-byte float, in ms (TimecodeScale 1e6)
    assert i > 0, "no 8-byte Duration element in the MKV"
    data[i + 3 : i + 11] = struct.pack(">d", claimed_s * 1000.0)
    # Per-track DURATION tags ("HH:MM:SS.nnnnnnnnn"), patched too so nothing in the file tells the truth.
    real_tag = _hms(real_s).encode()
    data = bytearray(bytes(data).replace(real_tag, _hms(claimed_s).encode()))
    path.write_bytes(bytes(data))
    return path


def _hms(s: float) -> str:
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{int(h):02d}:{int(m):02d}:{sec:012.9f}"


def make_claimed_size_mkv(path: Path, side: int) -> Path:
    """A small raw-video MKV whose track header claims `side` x `side` pixels (raw video takes its
    frame size from the container, so this is what a decoder would allocate)."""
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=256x256:rate=1:duration=2", "-c:v", "rawvideo", "-pix_fmt", "gray", str(path)
    )
    data = bytearray(path.read_bytes())
    for element in (b"\xb0\x82\x01\x00", b"\xba\x82\x01\x00"):  # PixelWidth, PixelHeight = 256 (2 bytes)
        i = data.find(element)
        assert i > 0
        data[i + 2 : i + 4] = side.to_bytes(2, "big")
    path.write_bytes(bytes(data))
    return path


def make_size_switch_ts(path: Path) -> Path:
    """MPEG-TS that starts at 160x90 and switches to 1280x720 after 3 s (header checks see the first)."""
    small, big = path.with_suffix(".a.ts"), path.with_suffix(".b.ts")
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x90:rate=5:duration=3", "-c:v", "libx264", "-g", "5", str(small))
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=1280x720:rate=5:duration=3", "-c:v", "libx264", "-preset", "ultrafast",
        "-g", "5", "-output_ts_offset", "3", str(big),
    )  # fmt: skip
    path.write_bytes(small.read_bytes() + big.read_bytes())
    return path


SDP_TEXT = (
    # First byte 'G' and another 'G' at offset 188: the MPEG-TS sync pattern the upload sniffer checks.
    "G" + "x" * 186 + "\nG\n"
    "v=0\no=- 0 0 IN IP4 127.0.0.1\ns=polyglot\nc=IN IP4 127.0.0.1\nt=0 0\n"
    "m=video 5004 RTP/AVP 96\na=rtpmap:96 H264/90000\n"
    "a=tool:" + "x" * 200 + "\n"  # the sniffer wants at least 376 bytes
)


def hls_text(segment: Path) -> str:
    return (
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:10\n#EXT-X-MEDIA-SEQUENCE:0\n"
        f"#EXTINF:2.0,\nfile://{segment}\n#EXTINF:2.0,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n"
    )


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """320x240, 25 fps, 2 s: an ordinary file, used against lowered limits."""
    return make_video(tmp_path_factory.mktemp("lim") / "clip.mp4", duration_s=2.0, size="320x240", rate=25)


@pytest.fixture
def restore_limits():
    old = current_limits()
    yield
    configure_limits(old)


# --------------------------------------------------------------------------- header limits


@pytest.mark.parametrize(
    ("limits", "needle"),
    [
        (MediaLimits(max_width=256), "video width 320 px exceeds the limit of 256 px"),
        (MediaLimits(max_height=200), "video height 240 px exceeds the limit of 200 px"),
        (MediaLimits(max_pixels=50_000), "a video frame of 320x240 (76,800 pixels) exceeds the limit of 50,000 pixels"),
        (MediaLimits(max_fps=24), "frame rate 25 fps exceeds the limit of 24 fps"),
        (MediaLimits(max_duration_s=1.5), "duration 2.0 s exceeds the limit of 1.5 s"),
    ],
)
def test_header_over_a_limit_is_refused_naming_limit_value_and_file(clip, limits, needle):
    with pytest.raises(MediaError) as ei:
        probe(clip, limits=limits)
    assert needle in str(ei.value)
    assert str(clip) in str(ei.value)


def test_within_limits_probes_and_decodes(clip):
    lim = MediaLimits(max_width=320, max_height=240, max_pixels=320 * 240, max_fps=25, max_duration_s=2.0)
    info = probe(clip, limits=lim)
    assert (info.width, info.height, round(info.fps)) == (320, 240, 25)
    frames = sum(len(b.frames) for b in sample_frames(clip, size_hw=(32, 32), limits=lim))
    assert frames == 2


def test_configured_limits_apply_to_every_call(clip, restore_limits):
    probe(clip)
    configure_limits(MediaLimits(max_width=300))
    with pytest.raises(MediaError, match="width 320 px exceeds the limit of 300 px"):
        probe(clip)
    with pytest.raises(MediaError, match="width 320 px exceeds the limit of 300 px"):
        sample_video(clip, size_hw=(32, 32))


@pytest.mark.parametrize(
    ("side", "needle"),
    [
        (16384, "16384x16384 (268,435,456 pixels) exceeds the pixel limit"),
        (8192, "8192x8192 (67,108,864 pixels) exceeds the limit of 33,177,600 pixels"),
    ],
)
def test_huge_frame_header_is_refused_with_default_limits(tmp_path, side, needle):
    path = make_claimed_size_mkv(tmp_path / f"claims{side}.mkv", side)
    assert path.stat().st_size < 200_000  # cheap to make and to send; costly only if decoded
    with pytest.raises(MediaError) as ei:
        probe(path)
    assert needle in str(ei.value)


# --------------------------------------------------------------------------- limits while decoding


def test_duration_lying_mkv_stops_decoding_at_the_limit(tmp_path):
    path = make_lying_mkv(tmp_path / "lie.mkv", real_s=120.0, claimed_s=2.0)
    lim = MediaLimits(max_duration_s=5.0)
    info = probe(path, limits=lim)  # the header passes: it claims 2 s
    assert info.duration_s == pytest.approx(2.0, abs=0.01)
    seen = 0
    t0 = time.monotonic()
    with pytest.raises(MediaError) as ei:
        for batch in sample_frames(path, size_hw=(16, 16), batch_size=1, limits=lim):
            seen += len(batch.frames)
    msg = str(ei.value)
    assert "runs longer than the duration limit of 5 s" in msg and str(path) in msg
    # Stopped at the limit (5 s + at most one frame), not after the 120 s the file really holds.
    assert seen <= 6
    stopped_at = int(msg.split("decoding stopped at ")[1].split(" s")[0])
    assert 5 < stopped_at <= 8
    assert time.monotonic() - t0 < 20
    # The same decode with room for the whole file sees all of it: the limit, not the file, stopped it.
    whole = sum(len(b.frames) for b in sample_frames(path, size_hw=(16, 16), limits=MediaLimits(max_duration_s=200)))
    assert whole >= 119


def test_duration_lying_mkv_thumbnail_decode_stops_too(tmp_path):
    path = make_lying_mkv(tmp_path / "lie.mkv", real_s=60.0, claimed_s=2.0)
    with pytest.raises(MediaError, match="runs longer than the duration limit of 4 s"):
        sample_video(path, size_hw=(16, 16), thumb_rate_hz=5.0, limits=MediaLimits(max_duration_s=4.0))


def test_duration_lying_audio_stops_at_the_limit(tmp_path):
    path = make_lying_mkv(tmp_path / "lie.mka", real_s=60.0, claimed_s=2.0, audio=True)
    lim = MediaLimits(max_duration_s=5.0)
    assert probe(path, limits=lim).duration_s == pytest.approx(2.0, abs=0.01)
    with pytest.raises(MediaError, match="audio runs longer than the duration limit of 5 s"):
        load_audio_mono(path, 16000, limits=lim)
    wave = load_audio_mono(path, 16000, limits=MediaLimits(max_duration_s=100))
    assert len(wave) == pytest.approx(60 * 16000, rel=0.01)
    part = load_audio_mono(path, 16000, start_s=1.0, duration_s=2.0, limits=lim)  # a window inside is fine
    assert len(part) == pytest.approx(32000, abs=16)


def test_frame_size_switch_mid_stream_is_stopped_by_the_decoder(tmp_path):
    path = make_size_switch_ts(tmp_path / "switch.ts")
    lim = MediaLimits(max_pixels=20_000)
    info = probe(path, limits=lim)  # the header shows the first 160x90 part only
    assert (info.width, info.height) == (160, 90)
    with pytest.raises(MediaError) as ei:
        for _ in sample_frames(path, size_hw=(16, 16), limits=lim):
            pass
    assert "a video frame of 1280x720 (921,600 pixels) exceeds the limit of 20,000 pixels" in str(ei.value)


def test_consumer_stopping_early_stops_ffmpeg(tmp_path):
    path = make_video(tmp_path / "long.mp4", duration_s=60.0, size="64x48", rate=5)
    t0 = time.monotonic()
    gen = sample_frames(path, size_hw=(16, 16), batch_size=1)
    next(gen)
    gen.close()  # must not block on ffmpeg writing into a pipe nobody reads
    assert time.monotonic() - t0 < 10


# --------------------------------------------------------------------------- demuxer / protocol allow-lists


def test_sdp_polyglot_is_refused_before_any_stream_is_opened(tmp_path):
    from server.storage import sniff_video

    path = tmp_path / "clip.mp4"
    path.write_text(SDP_TEXT)
    assert sniff_video(path.read_bytes()[:512]) == ".ts"  # passes the upload's magic-byte check
    for call in (
        lambda: probe(path),
        lambda: list(sample_frames(path, size_hw=(16, 16))),
        lambda: load_audio_mono(path, 16000),
    ):
        with pytest.raises(MediaError) as ei:
            call()
        assert "container format 'sdp' is not allowed" in str(ei.value) and str(path) in str(ei.value)


def test_hls_playlist_named_mp4_is_refused_and_reads_nothing(tmp_path):
    segment = make_video(tmp_path / "seg.ts", duration_s=2.0, size="64x48", rate=5)
    path = tmp_path / "clip.mp4"
    path.write_text(hls_text(segment))
    with pytest.raises(MediaError, match="container format 'hls' is not allowed"):
        probe(path)
    with pytest.raises(MediaError, match="container format 'hls' is not allowed"):
        list(sample_frames(path, size_hw=(16, 16)))
    # Without the guard ffmpeg would follow the playlist (shows the test file really is a playlist).
    out = _run_guarded(["ffprobe", "-v", "error", "-show_entries", "format=format_name", "-of", "csv=p=0", str(path)],
                       MediaLimits())  # fmt: skip
    assert b"hls" in out.stdout or b"hls" in out.stderr


def test_allowed_containers_still_open(tmp_path):
    for name, codec, extra in [
        ("a.mp4", "libx264", ()),
        ("a.mkv", "libx264", ()),
        ("a.webm", "libvpx", ("-deadline", "realtime")),
        ("a.avi", "mpeg4", ()),
        ("a.ts", "libx264", ()),
        ("a.flv", "flv", ()),
        ("a.mov", "libx264", ()),
    ]:
        path = make_video(tmp_path / name, duration_s=1.5, size="64x48", rate=10, codec=codec, extra=extra)
        info = probe(path)
        assert info.has_video and info.width == 64, name
    for name in ("a.wav", "a.mp3", "a.flac", "a.ogg", "a.m4a"):
        ffmpeg("-f", "lavfi", "-i", "sine=duration=1", str(tmp_path / name))
        assert len(load_audio_mono(tmp_path / name, 8000)) == pytest.approx(8000, rel=0.05), name


def test_render_inputs_are_guarded(tmp_path):
    args = ["ffmpeg", "-ss", "1", "-t", "2", "-i", "a.mp4", "-f", "lavfi", "-i", "color=red", "-i", "v.wav", "out.mp4"]
    guarded = guard_inputs(args)
    assert guarded[:7] == ["ffmpeg", "-ss", "1", "-t", "2", "-protocol_whitelist", "file"]
    assert guarded.count("-format_whitelist") == 2  # a.mp4 and v.wav, not the lavfi source
    assert guarded[guarded.index("color=red") - 3 : guarded.index("color=red")] == ["-f", "lavfi", "-i"]
    sdp = tmp_path / "seg.mp4"
    sdp.write_text(SDP_TEXT)
    cmd = FfmpegCommand(["ffmpeg", "-nostdin", "-i", str(sdp), "-f", "null", "-"], tmp_path, 1.0)
    with pytest.raises(RenderError, match="not on whitelist"):
        run_ffmpeg(cmd)


# --------------------------------------------------------------------------- per-child resource limits


def test_child_cpu_limit_stops_a_runaway_ffmpeg():
    t0 = time.monotonic()
    res = _run_guarded(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "mandelbrot=size=640x480:rate=25", "-f", "null", "-"],
        MediaLimits(child_cpu_s=1),
    )
    # ffmpeg catches SIGXCPU and exits with 255; the hard limit (5 s later) would SIGKILL it.
    assert res.returncode in (255, -signal.SIGXCPU, -signal.SIGKILL)
    assert time.monotonic() - t0 < 30


def test_decode_stopped_by_the_cpu_limit_is_an_error_not_a_short_video(tmp_path):
    # Cheap to make, costly to decode: 2 s of 4K encoded once, then stream-copied 20 times over.
    one = make_video(tmp_path / "one.mp4", duration_s=2.0, size="3840x2160", rate=25, src="color")
    path = tmp_path / "busy.mp4"
    ffmpeg("-stream_loop", "19", "-i", str(one), "-c", "copy", str(path))
    with pytest.raises(MediaError, match=r"stopped by a signal .* CPU-time limit per ffmpeg is 1 s"):
        list(sample_frames(path, size_hw=(16, 16), threads=1, limits=MediaLimits(child_cpu_s=1)))


def test_child_memory_limit_fails_the_decode_cleanly(clip):
    lim = MediaLimits(child_memory_bytes=8 * 1024 * 1024)
    with pytest.raises(MediaError) as ei:
        list(sample_frames(clip, size_hw=(32, 32), limits=lim))
    assert str(clip) in str(ei.value)
    assert sum(len(b.frames) for b in sample_frames(clip, size_hw=(32, 32))) == 2  # fine without it


def test_sampled_batches_are_bounded_not_the_whole_video(tmp_path):
    path = make_video(tmp_path / "v.mp4", duration_s=20.0, size="64x48", rate=5)
    sizes = [len(b.frames) for b in sample_frames(path, size_hw=(16, 16), batch_size=4)]
    assert max(sizes) <= 4 and sum(sizes) == 20
    assert np.array(sizes).size >= 5


def test_render_probes_skip_only_the_duration_limit(clip, restore_limits):
    """The renderer reads windows of library sources, so a long source still renders; size limits hold."""
    from autocut.render.preparation import _probe_or_error

    configure_limits(MediaLimits(max_duration_s=1.0))
    with pytest.raises(MediaError, match=r"duration 2\.0 s exceeds the limit of 1 s"):
        probe(clip)
    info = _probe_or_error(clip)
    assert isinstance(info, MediaInfo) and info.duration_s == pytest.approx(2.0, abs=0.05)
    configure_limits(MediaLimits(max_width=300))
    err = _probe_or_error(clip)
    assert isinstance(err, MediaError) and "width 320 px exceeds the limit of 300 px" in str(err)


def test_ingest_decode_thread_stops_ffmpeg_when_the_encoder_stops(tmp_path):
    """Ingest decodes in a thread while the encoder embeds; an encoder failure (or a cancel) must stop
    the decoder, not leave it blocked on a full queue with ffmpeg alive."""
    import psutil

    from autocut.library.ingest import _threaded

    path = make_video(tmp_path / "long.mp4", duration_s=120.0, size="64x48", rate=5)
    batches = _threaded(sample_frames(path, size_hw=(16, 16), batch_size=1), depth=2)
    next(batches)
    assert any(p.name() == "ffmpeg" for p in psutil.Process().children())
    t0 = time.monotonic()
    batches.close()  # what an exception in the consumer's loop does
    assert time.monotonic() - t0 < 10

    def ffmpeg_left() -> bool:
        return any(p.name() == "ffmpeg" and p.status() != psutil.STATUS_ZOMBIE for p in psutil.Process().children())

    deadline = time.monotonic() + 10
    while ffmpeg_left() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not ffmpeg_left()
