"""The self-check after a render (autocut.render.selfcheck), on real small renders and on bad files made from
them with ffmpeg: a black segment, a silent gap under the voice-over, a clipped and too loud mix, a frozen
picture, a truncated file. Each is detected; the good render is clean."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import autocut.render as R
from autocut.render.selfcheck import (
    CheckStatus,
    SelfCheckExpectation,
    SelfCheckFailed,
    SelfCheckLimits,
    build_selfcheck_command,
    run_selfcheck,
)
from autocut.types import BgmChoice, EditPlan, OutputSpec, PlanSegment, ProductInfo

W, H, FPS = 180, 320, 25.0
CHECKS = {"format", "segments", "av_duration", "black", "freeze", "narration_silence", "loudness", "true_peak"}


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("selfcheck-media")
    m: dict[str, Path] = {}
    for name, src in (
        ("moving", "testsrc2=size=320x240:rate=25"),
        ("moving2", "testsrc=size=320x240:rate=25"),
        ("black", "color=c=black:size=320x240:rate=25"),
    ):
        m[name] = d / f"{name}.mp4"
        _ffmpeg("-f", "lavfi", "-i", src, "-t", "6", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                str(m[name]))  # fmt: skip
    m["music"] = d / "music.wav"
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=500:duration=10", "-af", "volume=-12dB", str(m["music"]))
    return m


def _plan(media, middle: str = "moving2") -> EditPlan:
    segs = [
        PlanSegment(source_path=str(media["moving"]), start_s=0.2, duration_s=2.5, sentence="No time for breakfast?"),
        PlanSegment(
            source_path=str(media[middle]), start_s=1.0, duration_s=3.0, sentence="Juice in thirty seconds, anywhere."
        ),
        PlanSegment(source_path=str(media["moving"]), start_s=3.0, duration_s=2.5, sentence="FreshCo Juicer Cup."),
    ]
    return EditPlan(
        product=ProductInfo(name="Juicer Cup", brand="FreshCo"),
        segments=segs,
        bgm=BgmChoice(path=str(media["music"]), gain_db=-10.0),
        output=OutputSpec(width=W, height=H, fps=FPS),
    )


def _expectation(plan: EditPlan, res: R.RenderResult) -> SelfCheckExpectation:
    """What the good render promised, to hold the bad copies made from it to."""
    return SelfCheckExpectation(
        width=plan.output.width,
        height=plan.output.height,
        fps=res.fps,
        n_frames=res.n_frames,
        has_audio=True,
        segment_spans_s=tuple((a, b) for a, b, _, _ in res.segments),
        narrated_spans_s=tuple((v, v + d) for _, _, v, d in res.segments),
        loudness_lufs=plan.loudness_lufs,
        true_peak_db=plan.true_peak_db,
    )


@pytest.fixture(scope="module")
def good(media, tmp_path_factory):
    out = tmp_path_factory.mktemp("good") / "ad.mp4"
    plan = _plan(media)
    res = R.render(plan, out)
    return plan, res, out


def _bad_copy(good_path: Path, name: str, *args: str) -> Path:
    out = good_path.with_name(f"bad-{name}.mp4")
    _ffmpeg("-i", str(good_path), *args, str(out))
    return out


def _by_name(report) -> dict:
    return {c.name: c for c in report.checks}


def test_good_render_is_clean_and_reported(good):
    plan, res, _ = good
    rep = res.selfcheck
    assert rep is not None and rep.status is CheckStatus.OK, rep.to_dict()
    assert {c.name for c in rep.checks} == CHECKS
    checks = _by_name(rep)
    assert checks["segments"].value == res.n_frames
    assert abs(checks["loudness"].value - plan.loudness_lufs) <= 1.0
    assert checks["true_peak"].value <= plan.true_peak_db + 0.3
    d = json.loads(json.dumps(rep.to_dict()))  # JSON-able, as the job result carries it
    assert d["status"] == "ok" and d["failures"] == [] and d["warnings"] == []
    assert "selfcheck" in res.phase_wall_s


def test_black_segment_fails_the_render_and_publishes_nothing(media, tmp_path):
    out = tmp_path / "ad.mp4"
    with pytest.raises(SelfCheckFailed) as exc:
        R.render(_plan(media, middle="black"), out)
    black = _by_name(exc.value.report)["black"]
    assert black.status is CheckStatus.FAIL
    assert 2.8 <= black.value <= 3.2  # the whole 3 s middle segment
    assert "segment 2" in black.detail and "black" in str(exc.value)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_silent_gap_under_narration_is_detected(good):
    plan, res, path = good
    v0, d = res.segments[1][2:]
    a, b = v0 + 0.3, v0 + min(d, 1.8) - 0.1  # a dropout of the mix inside line 2's voice
    bad = _bad_copy(path, "silent", "-c:v", "copy", "-af", f"volume=enable='between(t,{a:.2f},{b:.2f})':volume=0")
    rep = run_selfcheck(bad, _expectation(plan, res))
    sil = _by_name(rep)["narration_silence"]
    assert sil.status is CheckStatus.FAIL, rep.to_dict()
    assert sil.value >= 1.0 and "line 2" in sil.detail
    assert rep.status is CheckStatus.FAIL and rep.reasons()[0].startswith("narration_silence")
    # The same gap outside every narrated span is not a narration problem.
    quiet = SelfCheckExpectation(**{**_expectation(plan, res).__dict__, "narrated_spans_s": ((0.0, 0.5),)})
    assert _by_name(run_selfcheck(bad, quiet))["narration_silence"].status is CheckStatus.OK


def test_clipped_too_loud_mix_is_detected(good):
    plan, res, path = good
    bad = _bad_copy(path, "loud", "-c:v", "copy", "-af", "volume=20dB,aformat=sample_fmts=s16")
    checks = _by_name(run_selfcheck(bad, _expectation(plan, res)))
    assert checks["loudness"].status is CheckStatus.FAIL and checks["loudness"].value > plan.loudness_lufs + 2
    assert checks["true_peak"].status is CheckStatus.FAIL and checks["true_peak"].value > 0.0


def test_frozen_picture_warns_only(good):
    plan, res, path = good
    n = res.n_frames
    bad = _bad_copy(path, "frozen", "-c:a", "copy", "-filter_complex",
                    f"[0:v]split[a][b];[a][b]freezeframes=first={n // 4}:last={n - 10}:replace={n // 4}",
                    "-c:v", "libx264", "-preset", "ultrafast")  # fmt: skip
    rep = run_selfcheck(bad, _expectation(plan, res))
    freeze = _by_name(rep)["freeze"]
    assert freeze.status is CheckStatus.WARN and freeze.value >= 2.0
    assert rep.status is CheckStatus.WARN and rep.to_dict()["warnings"]


def test_truncated_file_names_the_missing_segments(good):
    plan, res, path = good
    cut_s = res.segments[1][0] + 0.5  # half a second into segment 2
    bad = _bad_copy(path, "short", "-t", f"{cut_s:.2f}", "-c", "copy")
    seg = _by_name(run_selfcheck(bad, _expectation(plan, res)))["segments"]
    assert seg.status is CheckStatus.FAIL and seg.value < res.n_frames
    assert "segment(s) 2, 3" in seg.detail


def test_audio_shorter_than_video_is_detected(good):
    plan, res, path = good
    bad = _bad_copy(path, "av", "-c:v", "copy", "-af", f"atrim=duration={res.duration_s - 1.0:.2f}")
    av = _by_name(run_selfcheck(bad, _expectation(plan, res)))["av_duration"]
    assert av.status is CheckStatus.FAIL and 0.9 <= av.value <= 1.1


def test_missing_audio_fails_format(good):
    plan, res, path = good
    bad = _bad_copy(path, "mute", "-c:v", "copy", "-an")
    checks = _by_name(run_selfcheck(bad, _expectation(plan, res)))
    assert checks["format"].status is CheckStatus.FAIL and "audio no" in checks["format"].detail
    assert "loudness" not in checks


def test_command_is_one_decode_pass_as_data(tmp_path):
    exp = SelfCheckExpectation(width=W, height=H, fps=FPS, n_frames=50, has_audio=True, segment_spans_s=((0, 2),))
    args = build_selfcheck_command(tmp_path / "x.mp4", exp, SelfCheckLimits(), audio=True).args
    graph = args[args.index("-filter_complex") + 1]
    for f in ("blackdetect", "freezedetect", "ebur128=peak=true", "silencedetect"):
        assert f in graph
    assert args.count("-i") == 1 and args[-3:] == ["-f", "null", "-"]
    video_only = build_selfcheck_command(tmp_path / "x.mp4", exp, SelfCheckLimits(), audio=False).args
    assert "ebur128" not in " ".join(video_only) and "[0:a:0]" not in " ".join(video_only)
