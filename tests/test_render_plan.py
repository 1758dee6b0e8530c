"""Render planning without encoding: frame placement, plan checks before ffmpeg, command building."""

from __future__ import annotations

import itertools
import subprocess
import threading
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import autocut.render as R
from autocut.errors import PlanError, RenderError
from autocut.library.media import probe
from autocut.planning.voice_fit import MAX_SPEECH_RATE, VOICE_LEAD_S, VOICE_TAIL_S
from autocut.render import timeline
from autocut.speech import tts
from autocut.types import BgmChoice, EditPlan, OutputSpec, PlanSegment, ProductInfo, SubtitleStyle, VoiceSpec


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    paths = {}
    for name, size in (("wide", "320x180"), ("tall", "180x320")):
        p = d / f"{name}.mp4"
        _ffmpeg(
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size={size}:rate=25:duration=6",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            str(p),
        )
        paths[name] = p
    paths["music"] = d / "music.wav"
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=220:duration=4", str(paths["music"]))
    return paths


def _plan(
    media, sentences=("No time for breakfast?", "Juice in thirty seconds."), durations=(3.0, 3.0), **kw
) -> EditPlan:
    segs = [
        PlanSegment(source_path=str(media["wide"]), start_s=i * 3.0, duration_s=d, sentence=s)
        for i, (s, d) in enumerate(zip(sentences, durations))
    ]
    kw.setdefault("output", OutputSpec(width=360, height=640))
    return EditPlan(product=ProductInfo(name="Juicer Cup"), segments=segs, **kw)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(0.7, 9.0), min_size=1, max_size=8),
    st.sampled_from([24.0, 25.0, 29.97, 30.0, 60.0]),
    st.sampled_from(["cut", "fade"]),
    st.floats(0.1, 0.3),
)
def test_placement_is_frame_exact(durations, fps, transition, tdur):
    segs = [PlanSegment(source_path="x.mp4", start_s=0, duration_s=d, sentence="x") for d in durations]
    plan = EditPlan(
        product=ProductInfo(name="p"),
        segments=segs,
        output=OutputSpec(width=360, height=640, fps=fps, transition=transition, transition_duration_s=tdur),
    )
    pl = R.place_segments(plan)
    f = R.output_fps(plan)
    # The whole edit is the plan's duration to within half a frame; no rounding drift.
    assert abs(pl[-1].end_frame - plan.duration_s * f) <= 0.5 + 1e-6
    assert pl[0].start_frame == 0
    for a, b in itertools.pairwise(pl):
        assert a.end_frame - b.start_frame == a.overlap_out_frames == b.overlap_in_frames
        if transition == "cut":
            assert a.end_frame == b.start_frame
        else:
            assert abs(a.overlap_out_frames - tdur * float(f)) <= 1.0
    for p, d in zip(pl, durations):
        assert abs(p.n_frames - d * float(f)) <= 1.0
        a, b = R.voice_window_s(plan, p)
        assert a >= p.start_frame / f and b <= p.end_frame / f


def test_bad_plans_fail_before_ffmpeg_with_every_problem_named(media, tmp_path):
    plan = _plan(media)
    plan.segments[0].source_path = str(tmp_path / "missing.mp4")
    plan.segments[1].start_s = 4.0  # 4 + 3 > 6 s source
    plan.segments.append(PlanSegment(source_path=str(media["tall"]), start_s=0, duration_s=2.0, sentence="   "))
    with pytest.raises(PlanError) as exc:
        R.prepare(plan, work_dir=tmp_path)
    msg = str(exc.value)
    assert "segment 1 (missing.mp4" in msg and "does not exist" in msg
    assert "segment 2" in msg and "past the source's end (6.000 s)" in msg
    assert "segment 3" in msg and "empty sentence" in msg
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_unknown_voice_font_and_preset(media, tmp_path):
    with pytest.raises(PlanError, match="unknown espeak-ng voice 'xx-nope'"):
        R.prepare(_plan(media, voice=VoiceSpec(name="xx-nope")), work_dir=tmp_path)
    with pytest.raises(PlanError, match="no glyphs for"):
        R.prepare(
            _plan(
                media,
                sentences=("没时间吃早餐？", "鲜榨果汁。"),
                language="zh",
                voice=VoiceSpec(language="zh"),
                subtitles=SubtitleStyle(font="DejaVu Sans"),
            ),
            work_dir=tmp_path,
        )
    with pytest.raises(PlanError, match="voice language 'en' differs"):
        R.prepare(_plan(media, sentences=("没时间吃早餐？", "鲜榨果汁。"), language="zh"), work_dir=tmp_path)
    with pytest.raises(PlanError, match="unknown x264 preset"):
        R.prepare(_plan(media, output=OutputSpec(width=360, height=640, x264_preset="warp")), work_dir=tmp_path)


def test_clip_reuse_needs_permission(media, tmp_path):
    plan = _plan(media)
    plan.segments[1].start_s = 1.0  # overlaps segment 1's footage (0..3 s)
    with pytest.raises(PlanError, match="reuses footage of segment 1"):
        R.prepare(plan, work_dir=tmp_path)
    plan.allow_reuse = True
    assert len(R.prepare(plan, work_dir=tmp_path).segments) == 2


def test_sentence_that_cannot_fit_is_refused_naming_the_segment(media, tmp_path):
    long = "This portable juicer cup blends fresh fruit into a smooth drink in thirty seconds flat."
    with pytest.raises(PlanError) as exc:
        R.prepare(_plan(media, sentences=("Fresh.", long), durations=(2.0, 2.0)), work_dir=tmp_path)
    msg = str(exc.value)
    assert "segment 2 (wide.mp4 @ 3.00s+2.00s)" in msg and "even at 1.15x speed" in msg
    assert "segment 1" not in msg


def test_sentence_slightly_too_long_is_sped_up_within_15_percent(media, tmp_path):
    s = "Juice in thirty seconds, anywhere you go."
    voice = VoiceSpec()
    natural = tts.estimate_duration_s(s, voice, 1.0)
    fastest = tts.estimate_duration_s(s, voice, MAX_SPEECH_RATE)
    # A segment whose voice window is between the fastest and the natural duration.
    window = (natural + fastest) / 2
    seg_s = window + VOICE_LEAD_S + VOICE_TAIL_S
    p = R.prepare(_plan(media, sentences=("Fresh.", s), durations=(2.0, seg_s)), work_dir=tmp_path)
    rate = p.segments[1].speech_rate
    assert 1.0 < rate <= MAX_SPEECH_RATE
    assert p.plan.segments[1].speech_rate == rate  # the sidecar plan records the rate used
    a, b = R.voice_window_s(p.plan, p.segments[1].placement)
    assert p.segments[1].voice_start_s == pytest.approx(a)
    assert p.segments[1].voice_duration_s <= b - a + 1e-9
    assert p.segments[0].speech_rate == 1.0


def test_render_command_is_one_pass_crop_then_scale(media, tmp_path):
    plan = _plan(
        media,
        bgm=BgmChoice(path=str(media["music"])),
        output=OutputSpec(width=360, height=640, transition="dissolve", transition_duration_s=0.5),
    )
    p = R.prepare(plan, work_dir=tmp_path)
    assert p.bgm is not None and p.bgm.loop  # 4 s of music under a 5.5 s edit
    m = R.LoudnessMeasurement(-20.0, -8.0, 3.0, gain_db=6.0, bgm_gain_db=-6.0, limiter_db=-2.2)
    cmd = R.build_render_command(p, tmp_path / "o.mp4", m)
    args = cmd.args
    assert args[0] == "ffmpeg" and args.count("-filter_complex") == 1 and args.count("libx264") == 1
    graph = args[args.index("-filter_complex") + 1]
    # Crop to 9:16 on the 320x180 source before scaling up.
    assert "crop=100:180:110:0,scale=360:640" in graph
    # Only the 15 overlapping frames go through xfade; the pieces are concatenated.
    assert "[tail0][head1]xfade=transition=dissolve:duration=0.5:offset=0" in graph
    assert "[head1in]trim=end_frame=15" in graph and "[body1in]trim=start_frame=15:end_frame=90" in graph
    assert "[body0][x1][body1]concat=n=3" in graph
    assert "subtitles=filename=subtitles.ass" in graph and (cmd.cwd / "subtitles.ass").exists()
    assert "sidechaincompress" in graph and "afade=t=out" in graph and "volume=-6.00dB" in graph
    assert "volume=6.000dB,alimiter=limit=0.77625" in graph
    assert graph.index("alimiter") < graph.index("channel_layouts=stereo[aout]")
    assert args[args.index("-movflags") + 1] == "+faststart"
    assert args[args.index("-pix_fmt") + 1] == "yuv420p"
    assert "-stream_loop" in args
    assert args[-1].endswith("o.mp4") and "pipe:1" in args
    # The measuring pass is audio only and has the same mix.
    meas = R.build_measure_command(p, bgm_gain_db=-6.0).args
    mgraph = meas[meas.index("-filter_complex") + 1]
    assert ":v:0]" not in mgraph and "xfade" not in mgraph and "libx264" not in meas
    mix = (
        graph[graph.index("[2:a:0]") :]
        .split("volume=6.000dB")[0]
        .replace("[2:a:0]", "[0:a:0]")
        .replace("[3:a:0]", "[1:a:0]")
    )
    assert mgraph.split("ebur128")[0] == mix


def test_blur_pad_builds_a_padded_frame(media, tmp_path):
    plan = _plan(media, output=OutputSpec(width=360, height=640, fit="blur_pad"))
    p = R.prepare(plan, work_dir=tmp_path)
    graph = ";".join(R.build_video_filters(p, [0, 1]))
    assert "boxblur" in graph and "overlay" in graph and "scale=360:202" in graph


def test_run_ffmpeg_reports_failure_and_cancel(tmp_path):
    bad = R.FfmpegCommand(["ffmpeg", "-nostdin", "-i", str(tmp_path / "nope.mp4"), "-f", "null", "-"], tmp_path, 1.0)
    with pytest.raises(RenderError, match=r"nope\.mp4"):
        R.run_ffmpeg(bad)
    long = R.FfmpegCommand(
        [
            "ffmpeg",
            "-nostdin",
            "-re",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=duration=30",
            "-progress",
            "pipe:1",
            "-f",
            "null",
            "-",
        ],
        tmp_path,
        30.0,
    )
    cancel = threading.Event()
    seen: list[float] = []

    def progress(x: float) -> None:
        seen.append(x)
        cancel.set()

    with pytest.raises(R.RenderCancelled):
        R.run_ffmpeg(long, on_progress=progress, cancel=cancel)
    assert seen and seen[0] < 0.2


def test_timeline_round_trip(tmp_path, media):
    fps = 30.0
    items = [
        timeline.TimelineItem(
            name="a",
            source_path=media["wide"],
            source_duration_s=6.0,
            start_s=0.5,
            n_frames=90,
            transition_out_frames=9,
        ),
        timeline.TimelineItem(
            name="b", source_path=media["tall"], source_duration_s=6.0, start_s=1.0, n_frames=60, transition_in_frames=9
        ),
    ]
    tl = timeline.build_timeline("t", items, fps=fps, transition_name="fade")
    path = timeline.write_otio(tl, tmp_path / "t.otio")
    assert timeline.read_cuts(path) == [(str(media["wide"]), 0.5, 3.0), (str(media["tall"]), 1.0, 2.0)]
    back = timeline.otio.adapters.read_from_file(str(path))
    assert back.duration().to_frames() == 90 + 60 - 9
    assert Fraction(back.tracks[0][1].in_offset.to_frames() + back.tracks[0][1].out_offset.to_frames()) == 9


def test_cli_render(media, tmp_path, capsys):
    from autocut.cli import main

    bad = tmp_path / "bad.json"
    bad.write_text('{"segments": []}')
    assert main(["--library", str(tmp_path), "render", str(bad), "-o", str(tmp_path / "x.mp4")]) == 2
    assert "not a valid edit plan" in capsys.readouterr().err
    plan = EditPlan(
        product=ProductInfo(name="p"),
        voice=VoiceSpec(engine="none"),
        subtitles=SubtitleStyle(enabled=False),
        segments=[PlanSegment(source_path=media["tall"].name, start_s=0, duration_s=1.0, sentence="Hi.")],
        output=OutputSpec.for_aspect("1:1", short_side=128),
    )
    (tmp_path / "plan.json").write_text(plan.model_dump_json())
    lib = media["tall"].parent  # relative source paths resolve against --library
    out = tmp_path / "cli.mp4"
    assert main(["--library", str(lib), "render", str(tmp_path / "plan.json"), "-o", str(out)]) == 0
    assert out.exists() and out.with_suffix(".srt").exists() and out.with_suffix(".otio").exists()
    assert probe(out).width == 128 and abs(probe(out).duration_s - 1.0) < 0.04
