"""End-to-end renders of small real outputs, checked with ffprobe, decoded frames and decoded audio."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import threading
from pathlib import Path

import numpy as np
import pysubs2
import pytest

import autocut.render as R
from autocut.planning.voice_fit import VOICE_LEAD_S, VOICE_TAIL_S
from autocut.render import timeline
from autocut.types import BgmChoice, EditPlan, OutputSpec, PlanSegment, ProductInfo, SubtitleStyle, VoiceSpec

W, H, FPS = 360, 640, 30.0
AUDIO_HZ = 48_000
# Distinct colours of the 1.5 s shots in each generated source (a frame's colour tells where it came from).
PALETTE = {
    "A": ["red", "green", "blue"],
    "B": ["yellow", "cyan", "magenta"],
    "C": ["white", "orange", "purple"],
}
RGB = {
    "red": (255, 0, 0),
    "green": (0, 128, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "cyan": (0, 255, 255),
    "magenta": (255, 0, 255),
    "white": (255, 255, 255),
    "orange": (255, 165, 0),
    "purple": (128, 0, 128),
}
SHOT_S = 1.5


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def _shots(path: Path, colours: list[str], size: str, tone_hz: int | None = None) -> Path:
    """A 25 fps H.264 clip of solid-colour shots, SHOT_S each (optionally with a sine soundtrack)."""
    inputs: list[str] = []
    for c in colours:
        inputs += ["-f", "lavfi", "-i", f"color=c={c}:size={size}:rate=25:duration={SHOT_S}"]
    n = len(colours)
    graph = "".join(f"[{i}:v]" for i in range(n)) + f"concat=n={n}:v=1:a=0,format=yuv420p[v]"
    extra = ["-map", "[v]"]
    if tone_hz:
        inputs += ["-f", "lavfi", "-i", f"sine=frequency={tone_hz}:duration={n * SHOT_S}"]
        extra += ["-map", f"{n}:a", "-c:a", "aac"]
    _ffmpeg(*inputs, "-filter_complex", graph, *extra, "-c:v", "libx264", "-preset", "ultrafast", "-g", "12", str(path))
    return path


def _music_file() -> Path | None:
    for p in (
        Path("/usr/share/games/wesnoth/1.16/data/core/music/elvish-theme.ogg"),
        Path("/usr/share/games/asc/music/frontiers.mp3"),
    ):
        if p.exists():
            return p
    return None


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("render-media")
    m = {k: _shots(d / f"{k}.mp4", v, "320x240") for k, v in PALETTE.items()}
    m.update({f"{k}_wide": _shots(d / f"{k}_wide.mp4", v, "320x180") for k, v in PALETTE.items()})
    m["A_tone"] = _shots(d / "A_tone.mp4", PALETTE["A"], "320x240", tone_hz=6000)
    # "Music" that is a pure 7.5 kHz tone (its level can be read under the voice), shorter than the
    # English edit so it has to loop.
    m["tone_bgm"] = d / "tone.wav"
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=7500:duration=6", "-af", "volume=-12dB", str(m["tone_bgm"]))
    return m


# --------------------------------------------------------------------------- probes of the output


def _probe(path: Path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-count_frames", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)


def _top_level_boxes(path: Path) -> list[str]:
    boxes, data = [], path.read_bytes()
    pos = 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8 : pos + 16])[0]
        boxes.append(kind.decode("latin-1"))
        if size < 8:
            break
        pos += size
    return boxes


def _frames(path: Path, w: int = 18, h: int = 32) -> np.ndarray:
    """All frames, tiny, RGB float: (N, h, w, 3)."""
    raw = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-loglevel",
            "error",
            "-i",
            str(path),
            "-vf",
            f"scale={w}:{h}",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3).astype(np.float32)


def _frame_at(path: Path, t: float) -> np.ndarray:
    raw = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-loglevel",
            "error",
            "-ss",
            f"{t:.3f}",
            "-i",
            str(path),
            "-frames:v",
            "1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(H, W, 3).astype(np.float32)


def _colour(frame: np.ndarray) -> str:
    """Nearest palette colour of the frame's upper half (subtitles live at the bottom)."""
    mean = frame[: frame.shape[0] // 2].reshape(-1, 3).mean(0)
    return min(RGB, key=lambda c: float(np.sum((np.array(RGB[c]) - mean) ** 2)))


def _source_colour(src: str, t: float) -> str:
    return PALETTE[src][min(int(t // SHOT_S), 2)]


def _audio(path: Path) -> np.ndarray:
    raw = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-loglevel",
            "error",
            "-i",
            str(path),
            "-ac",
            "1",
            "-ar",
            str(AUDIO_HZ),
            "-f",
            "f32le",
            "-",
        ],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, np.float32)


def _band_db(x: np.ndarray, t0: float, t1: float, lo_hz: float, hi_hz: float) -> float:
    seg = x[int(t0 * AUDIO_HZ) : int(t1 * AUDIO_HZ)]
    spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg)))) ** 2
    freqs = np.fft.rfftfreq(len(seg), 1 / AUDIO_HZ)
    band = spec[(freqs >= lo_hz) & (freqs <= hi_hz)].sum() / len(seg)
    return float(10 * np.log10(band + 1e-12))


def _loudness(path: Path) -> tuple[float, float]:
    err = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-hide_banner",
            "-i",
            str(path),
            "-af",
            "ebur128=peak=true:framelog=verbose",
            "-f",
            "null",
            "-",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    summary = err[err.rindex("Summary:") :]
    i = float(re.search(r"I:\s*(-?[\d.]+) LUFS", summary).group(1))
    tp = float(re.search(r"True peak:\s*Peak:\s*(-?[\d.]+|-inf) dBFS", summary).group(1))
    return i, tp


def _check_container(path: Path, plan: EditPlan) -> dict:
    info = _probe(path)
    v = next(s for s in info["streams"] if s["codec_type"] == "video")
    a = next(s for s in info["streams"] if s["codec_type"] == "audio")
    frame_s = 1 / plan.output.fps
    assert (v["codec_name"], v["pix_fmt"], v["width"], v["height"]) == (
        "h264",
        "yuv420p",
        plan.output.width,
        plan.output.height,
    )
    assert (a["codec_name"], int(a["sample_rate"]), a["channels"]) == ("aac", AUDIO_HZ, 2)
    assert len(info["streams"]) == 2
    assert int(v["nb_read_frames"]) == round(plan.duration_s * plan.output.fps)
    for dur in (info["format"]["duration"], v["duration"], a["duration"]):
        assert abs(float(dur) - plan.duration_s) <= frame_s + 1e-6
    boxes = _top_level_boxes(path)
    assert boxes.index("moov") < boxes.index("mdat")  # faststart
    return info


# --------------------------------------------------------------------------- English: cuts, voice, ducking


def _english_plan(media, **kw) -> EditPlan:
    segs = [
        PlanSegment(source_path=str(media["A"]), start_s=0.3, duration_s=4.0, sentence="No time for breakfast?"),
        PlanSegment(source_path=str(media["B"]), start_s=1.2, duration_s=3.0, sentence="Juice in thirty seconds."),
        PlanSegment(source_path=str(media["C"]), start_s=0.0, duration_s=2.5, sentence="FreshCo Juicer Cup."),
    ]
    return EditPlan(
        product=ProductInfo(name="Juicer Cup", brand="FreshCo"),
        segments=segs,
        bgm=BgmChoice(path=str(media["tone_bgm"]), gain_db=-6.0),
        output=OutputSpec(width=W, height=H, fps=FPS),
        **kw,
    )


@pytest.fixture(scope="module")
def english(media, tmp_path_factory):
    out = tmp_path_factory.mktemp("en") / "ad.mp4"
    seen: list[float] = []
    plan = _english_plan(media)
    result = R.render(plan, out, on_progress=seen.append)
    return plan, result, seen


def test_english_container_streams_duration_faststart(english):
    plan, result, seen = english
    assert result.output_path.exists() and not [f for f in result.output_path.parent.iterdir() if ".tmp" in f.name]
    _check_container(result.output_path, plan)
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) > 2


def test_english_cuts_are_frame_exact(english):
    plan, result, _ = english
    frames = _frames(result.output_path)
    pl = R.place_segments(plan)
    for src, seg, p in zip("ABC", plan.segments, pl):
        n = p.n_frames
        for i in (0, 1, n // 2, n - 2, n - 1):
            t_src = seg.start_s + i / FPS
            if abs(t_src % SHOT_S) < 1.5 / FPS or abs(t_src % SHOT_S - SHOT_S) < 1.5 / FPS:
                continue  # a frame on a shot change inside the source itself
            assert _colour(frames[p.start_frame + i]) == _source_colour(src, t_src), (src, i)
    # Segment B starts 0.3 s before its source's first shot change: 9 yellow frames, then cyan.
    b = pl[1].start_frame
    assert _colour(frames[b + 8]) == "yellow" and _colour(frames[b + 10]) == "cyan"


def test_english_voice_where_each_sentence_is(english):
    _plan, result, _ = english
    x = _audio(result.output_path)
    for seg_start, seg_end, v0, vdur in result.segments:
        assert seg_start + VOICE_LEAD_S - 1e-6 <= v0 and v0 + vdur <= seg_end - VOICE_TAIL_S + 1e-6
        speech = _band_db(x, v0 + 0.05, v0 + vdur - 0.05, 150, 3500)
        before = _band_db(x, seg_start + 0.01, v0 - 0.04, 150, 3500)
        assert speech > before + 20, (seg_start, speech, before)


def test_english_bgm_ducked_under_voice(english):
    _plan, result, _ = english
    x = _audio(result.output_path)
    _seg_start, seg_end, v0, vdur = result.segments[0]
    under_voice = _band_db(x, v0 + 0.3, v0 + vdur - 0.1, 7400, 7600)
    alone = _band_db(x, v0 + vdur + 0.9, seg_end - 0.1, 7400, 7600)
    assert alone - under_voice >= 6.0, (alone, under_voice)
    # The 6 s track loops under the 9.5 s edit, then fades out at the end.
    assert _band_db(x, 6.2, 8.0, 7400, 7600) > _band_db(x, 6.2, 8.0, 6500, 6700) + 20
    assert _band_db(x, result.duration_s - 0.25, result.duration_s, 7400, 7600) < alone - 10


def test_english_loudness_normalised(english):
    plan, result, _ = english
    integrated, true_peak = _loudness(result.output_path)
    assert abs(integrated - plan.loudness_lufs) <= 1.0
    assert true_peak <= plan.true_peak_db


def test_english_sidecars(english, media):
    plan, result, _ = english
    srt = pysubs2.load(str(result.srt_path))
    assert [e.text for e in srt] == ["No time for breakfast?", "Juice in thirty seconds.", "FreshCo Juicer Cup."]
    for e, c in zip(srt, result.cues):
        assert abs(e.start / 1000 - c.start_s) < 0.002 and abs(e.end / 1000 - c.end_s) < 0.002
    back = EditPlan.model_validate_json(result.plan_path.read_text())
    assert [(s.source_path, s.start_s, s.duration_s, s.sentence) for s in back.segments] == [
        (s.source_path, s.start_s, s.duration_s, s.sentence) for s in plan.segments
    ]
    cuts = timeline.read_cuts(result.otio_path)
    assert [c[0] for c in cuts] == [str(Path(s.source_path).resolve()) for s in plan.segments]
    for (_src, start, dur), seg in zip(cuts, plan.segments):
        assert abs(start - seg.start_s) < 1e-6 and abs(dur - seg.duration_s) <= 1 / FPS
    tl = timeline.otio.adapters.read_from_file(str(result.otio_path))
    assert tl.duration().to_seconds() == pytest.approx(plan.duration_s, abs=1 / FPS)
    assert [m.name for c in tl.video_tracks()[0] for m in c.markers] == [s.sentence for s in plan.segments]
    assert tl.audio_tracks()[0].name == "BGM"


def test_subtitles_visible_only_when_enabled(english, media, tmp_path):
    _plan, result, _ = english
    off = _english_plan(media, subtitles=SubtitleStyle(enabled=False))
    res_off = R.render(off, tmp_path / "nosubs.mp4", sidecars=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nosubs.mp4"]
    cue = result.cues[1]
    t = (cue.start_s + cue.end_s) / 2
    with_subs, without = _frame_at(result.output_path, t), _frame_at(res_off.output_path, t)
    diff = np.abs(with_subs - without).mean(axis=2)
    band = slice(int(H * 0.70), int(H * 0.92))  # the bottom margin where subtitles sit
    assert (diff[band] > 60).mean() > 0.01  # text strokes
    assert diff[: H // 2].mean() < 3  # picture elsewhere unchanged


# --------------------------------------------------------------------------- Chinese, crossfades, blur pad


@pytest.fixture(scope="module")
def chinese(media, tmp_path_factory):
    music = _music_file()
    if music is None:
        pytest.skip("no packaged music (wesnoth-1.16-music / asc-music) installed")
    segs = [
        PlanSegment(source_path=str(media["A_wide"]), start_s=0.0, duration_s=2.6, sentence="没时间吃早餐？"),
        PlanSegment(
            source_path=str(media["B_wide"]), start_s=0.2, duration_s=4.0, sentence="30秒就能喝到鲜榨果汁，随时随地。"
        ),
        PlanSegment(source_path=str(media["C_wide"]), start_s=0.0, duration_s=2.5, sentence="鲜榨果汁杯。"),
    ]
    # Set explicitly: ~4.7 characters a second (the zh default, 248 wpm, is espeak-measured ~5.0).
    voice = VoiceSpec(language="zh", words_per_minute=230)
    plan = EditPlan(
        product=ProductInfo(name="榨汁杯"),
        language="zh",
        voice=voice,
        segments=segs,
        bgm=BgmChoice(path=str(music), start_s=40.0),
        output=OutputSpec(width=W, height=H, fps=FPS, fit="blur_pad", transition="dissolve", transition_duration_s=0.3),
    )
    out = tmp_path_factory.mktemp("zh") / "zh.mp4"
    return plan, R.render(plan, out)


def test_chinese_render(chinese):
    plan, result = chinese
    _check_container(result.output_path, plan)
    assert plan.duration_s == pytest.approx(2.6 + 4.0 + 2.5 - 2 * 0.3)
    srt = pysubs2.load(str(result.srt_path))
    assert [e.text for e in srt] == ["没时间吃早餐？", "30秒就能喝到鲜榨果汁", "随时随地", "鲜榨果汁杯"]
    x = _audio(result.output_path)
    for _seg_start, seg_end, v0, vdur in result.segments:
        assert v0 + vdur <= seg_end - VOICE_TAIL_S + 1e-6
    integrated, true_peak = _loudness(result.output_path)
    assert abs(integrated - plan.loudness_lufs) <= 1.0 and true_peak <= plan.true_peak_db
    assert x.size > 0
    # Subtitle pixels: same (solid-colour, blur-padded) picture before the first cue and during it.
    first = result.cues[0]
    before, during = _frame_at(result.output_path, 0.04), _frame_at(result.output_path, first.start_s + 0.5)
    diff = np.abs(during - before).mean(axis=2)
    assert (diff[int(H * 0.70) : int(H * 0.92)] > 60).mean() > 0.01
    assert diff[: H // 2].mean() < 3
    # Blur pad: the 16:9 frame sits in the middle; crossfade frames mix two segments' colours.
    frames = _frames(result.output_path)
    pl = R.place_segments(plan)
    mid = pl[1].start_frame + pl[1].overlap_in_frames // 2
    assert _colour(frames[mid - 6]) == "green" and _colour(frames[mid + 8]) == "yellow"
    blend = frames[mid][:16].reshape(-1, 3).mean(0)
    assert 60 < blend[0] < 200 and blend[1] > 150  # green (0,128,0) half-way to yellow (255,255,0)
    # OTIO: crossfades are transitions; the handles add back up to the plan's segments.
    cuts = timeline.read_cuts(result.otio_path)
    for (_src, start, dur), seg in zip(cuts, plan.segments):
        assert abs(start - seg.start_s) <= 1 / FPS and abs(dur - seg.duration_s) <= 1 / FPS
    tl = timeline.otio.adapters.read_from_file(str(result.otio_path))
    assert sum(isinstance(i, timeline.otio.schema.Transition) for i in tl.video_tracks()[0]) == 2
    assert tl.duration().to_seconds() == pytest.approx(plan.duration_s, abs=1 / FPS)


# --------------------------------------------------------------------------- piper, source audio, cancel


def test_piper_voice_with_source_audio(media, tmp_path):
    pytest.importorskip("piper")
    plan = EditPlan(
        product=ProductInfo(name="Juicer Cup"),
        voice=VoiceSpec(engine="piper"),
        subtitles=SubtitleStyle(enabled=False),
        segments=[
            PlanSegment(
                source_path=str(media["A_tone"]),
                start_s=0.5,
                duration_s=3.0,
                sentence="Fresh juice, anywhere.",
                source_audio_gain=0.5,
            )
        ],
        output=OutputSpec(width=W, height=H, fps=FPS),
    )
    result = R.render(plan, tmp_path / "piper.mp4")
    _check_container(result.output_path, plan)
    x = _audio(result.output_path)
    _, _, v0, vdur = result.segments[0]
    assert _band_db(x, v0 + 0.05, v0 + vdur - 0.05, 150, 3500) > _band_db(x, 0.01, v0 - 0.04, 150, 3500) + 20
    # The source's own 6 kHz tone is kept under the voice.
    assert _band_db(x, 0.1, 2.9, 5950, 6050) > _band_db(x, 0.1, 2.9, 5000, 5100) + 20


def test_cancel_leaves_nothing(media, tmp_path):
    segs = [
        PlanSegment(source_path=str(media[k]), start_s=0.0, duration_s=4.4, sentence=s)
        for k, s in (("A", "Fresh juice."), ("B", "Anywhere."))
    ]
    plan = EditPlan(
        product=ProductInfo(name="Juicer Cup"),
        segments=segs,
        output=OutputSpec(width=720, height=1280, x264_preset="medium"),
    )
    cancel = threading.Event()
    procs = []

    def progress(x: float) -> None:
        if x > 0.05:  # inside the main (video) pass
            cancel.set()

    out = tmp_path / "cancelled.mp4"
    with pytest.raises(R.RenderCancelled):
        R.render(plan, out, on_progress=progress, cancel=cancel, on_start=procs.append)
    assert procs and procs[0].returncode is not None
    assert list(tmp_path.iterdir()) == []
