"""EditPlan -> finished MP4: one ffmpeg pass encodes the video (docs/method.md, "Rendering and voice fit").

Steps, all but the last before any video is decoded:
1. `prepare` (`autocut.render.preparation`): resolve and probe every source, check the plan and the voice
   fit, write the audio stem and the ASS file; every problem found is reported in one `PlanError`.
2. `measure_loudness`: audio-only ffmpeg passes measure (EBU R128, ffmpeg's ebur128) the voice and
   BGM stems, so the music bed sits `gain_db` under the voice, and then the ducked mix, so the main
   pass normalises with one linear gain (two-pass, like loudnorm's linear mode), followed by a
   lookahead limiter only when that gain would push the true peak over the target.
3. `build_render_command` (`autocut.render.filtergraph`): the filtergraph and argument list, as data.
4. `run_ffmpeg` (`autocut.render.ffmpeg`): the one function that runs ffmpeg, with progress and
   cancellation.
5. `run_selfcheck` (`autocut.render.selfcheck`): ffprobe and one decode pass of the output through
   ffmpeg's detectors (black, frozen, silent under the voice, loudness, durations, every segment present);
   a failed check fails the render (`SelfCheckFailed`), warnings go into the result.

`render` runs them in a temporary work directory and publishes the MP4 with its sidecars (SRT,
plan JSON, OTIO timeline) only when everything succeeded.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from autocut.errors import PlanError
from autocut.files import atomic_path
from autocut.render import subtitles as subs
from autocut.render import timeline as tline
from autocut.render.ffmpeg import run_ffmpeg
from autocut.render.filtergraph import build_measure_command, build_render_command, build_stems_command, has_audio_mix
from autocut.render.loudness import LIMITER_MARGIN_DB, TRUE_PEAK_MARGIN_DB, LoudnessMeasurement, parse_ebur128
from autocut.render.outputs import sidecar_paths
from autocut.render.preparation import PreparedRender, prepare
from autocut.render.selfcheck import (
    CheckStatus,
    SelfCheckExpectation,
    SelfCheckFailed,
    SelfCheckLimits,
    SelfCheckReport,
    run_selfcheck,
)
from autocut.types import EditPlan

__all__ = ["RenderResult", "measure_loudness", "render"]

log = logging.getLogger(__name__)

# Progress shares of the audio-only measuring passes and of the self-check (the rest is the main pass).
_MEASURE_PROGRESS = 0.04
_SELFCHECK_PROGRESS = 0.06


@dataclass(frozen=True)
class RenderResult:
    output_path: Path
    srt_path: Path | None
    plan_path: Path | None
    otio_path: Path | None
    duration_s: float
    n_frames: int
    fps: float
    speech_rates: tuple[float, ...]
    cues: tuple[subs.Cue, ...]
    loudness: LoudnessMeasurement | None
    wall_s: float
    segments: tuple[tuple[float, float, float, float], ...] = field(default=())
    """Per segment: (output start s, output end s, voice start s, voice duration s)."""
    phase_wall_s: dict[str, float] = field(default_factory=dict)
    """Wall time of each step: prepare (checks, TTS, stems), measure (audio passes), encode (main pass),
    selfcheck (the decode pass of the output)."""
    selfcheck: SelfCheckReport | None = None
    """The self-check of the output (`autocut.render.selfcheck`): no failed check; warnings, if any."""


def measure_loudness(
    p: PreparedRender, *, cancel: threading.Event | None = None, on_progress: Callable[[float], None] | None = None
) -> LoudnessMeasurement | None:
    """Audio-only passes: level the BGM against the voice, then measure the mix for its gain.

    When the gain to the loudness target would push the true peak over its ceiling (speech peaks sit
    far above its loudness), a lookahead limiter follows the gain and the limited mix is measured
    once more, so the final level still lands on the target.
    """
    if not has_audio_mix(p):
        return None
    plan = p.plan
    bgm_gain = plan.bgm.gain_db if plan.bgm is not None else 0.0
    if p.voice_wav is not None and p.bgm is not None:
        voice, music = parse_ebur128(run_ffmpeg(build_stems_command(p), cancel=cancel))[:2]
        # The music bed sits gain_db under the voice, whatever the track's mastering level.
        if music.i > -69.0 and voice.i > -69.0:
            bgm_gain = voice.i - music.i + plan.bgm.gain_db  # type: ignore[union-attr]
        log.info("voice %.1f LUFS, bgm %.1f LUFS -> bgm gain %.1f dB", voice.i, music.i, bgm_gain)
    if on_progress:
        on_progress(0.4)
    mix = parse_ebur128(run_ffmpeg(build_measure_command(p, bgm_gain_db=bgm_gain), cancel=cancel))[-1]
    if mix.i <= -69.0:
        log.warning("the mix is silent; loudness normalisation skipped")
        return LoudnessMeasurement(mix.i, mix.tp or -99.0, mix.lra, 0.0, bgm_gain)
    gain = plan.loudness_lufs - mix.i
    tp = mix.tp if mix.tp is not None else 0.0
    m = LoudnessMeasurement(mix.i, tp, mix.lra, gain, bgm_gain)
    # AAC encoding adds some overshoot, so keep measured true peak this far under the target.
    allowed_tp = plan.true_peak_db - TRUE_PEAK_MARGIN_DB
    if tp + gain > allowed_tp:
        ceiling = plan.true_peak_db - LIMITER_MARGIN_DB
        if on_progress:
            on_progress(0.7)
        lim = parse_ebur128(
            run_ffmpeg(build_measure_command(p, bgm_gain_db=bgm_gain, gain_db=gain, limiter_db=ceiling), cancel=cancel)
        )[-1]
        # Limiting took some loudness off: add it back before the limiter.
        m = LoudnessMeasurement(mix.i, tp, mix.lra, gain + (plan.loudness_lufs - lim.i), bgm_gain, ceiling)
        log.info("mix %.1f LUFS / %.1f dBTP: gain %.1f dB with a %.1f dBFS limiter", mix.i, tp, m.gain_db, ceiling)
    else:
        log.info("mix %.1f LUFS / %.1f dBTP: gain %.1f dB", mix.i, tp, gain)
    if on_progress:
        on_progress(1.0)
    return m


def _timeline(p: PreparedRender, name: str) -> tline.otio.schema.Timeline:
    items = []
    for k, s in enumerate(p.segments):
        start_out = float(s.placement.start_frame / p.fps)
        items.append(
            tline.TimelineItem(
                name=f"{k + 1:02d} {s.source.name}",
                source_path=s.source,
                source_duration_s=s.info.duration_s,
                start_s=s.segment.start_s,
                n_frames=s.placement.n_frames,
                transition_in_frames=s.placement.overlap_in_frames,
                transition_out_frames=s.placement.overlap_out_frames,
                sentence=s.segment.sentence,
                voice_offset_s=(s.voice_start_s - start_out) if p.voice_wav is not None else None,
                voice_duration_s=s.voice_duration_s,
                metadata={
                    "mode": s.segment.mode,
                    "speech_rate": s.speech_rate,
                    **{
                        k2: v
                        for k2, v in (
                            ("clip_id", s.segment.clip_id),
                            ("photo_id", s.segment.photo_id),
                            ("frame_id", s.segment.frame_id),
                        )
                        if v is not None
                    },
                },
            )
        )
    audio = []
    if p.bgm is not None:
        audio.append(tline.TimelineAudio("BGM", p.bgm.path, p.bgm.start_s, p.duration_s, p.bgm.info.duration_s))
    return tline.build_timeline(name, items, fps=float(p.fps), transition_name=p.plan.output.transition, audio=audio)


def render(
    plan: EditPlan,
    out_path: str | os.PathLike[str],
    *,
    library_root: Path | None = None,
    work_dir: Path | None = None,
    on_progress: Callable[[float], None] | None = None,
    cancel: threading.Event | None = None,
    sidecars: bool = True,
    threads: int | None = None,
    on_start: Callable[[subprocess.Popen[str]], None] | None = None,
    selfcheck: bool = True,
    selfcheck_limits: SelfCheckLimits | None = None,
) -> RenderResult:
    """Render `plan` to `out_path` (H.264/AAC MP4, faststart) plus .srt/.plan.json/.otio sidecars.

    Bad plans raise PlanError before ffmpeg starts; ffmpeg failures raise RenderError; a failed
    self-check of the output (`selfcheck`, on by default) raises SelfCheckFailed; setting `cancel` stops
    the render with RenderCancelled. Nothing is left at `out_path` unless it succeeded.
    """
    t0 = time.monotonic()
    out_path = Path(out_path).resolve()
    if not out_path.parent.is_dir():
        raise PlanError(f"output directory {out_path.parent} does not exist")
    side = sidecar_paths(out_path)

    def progress(x: float) -> None:
        if on_progress is not None:
            on_progress(min(1.0, max(0.0, x)))

    phases: dict[str, float] = {}
    encode_share = 1 - _MEASURE_PROGRESS - (_SELFCHECK_PROGRESS if selfcheck else 0.0)
    report: SelfCheckReport | None = None
    with contextlib.ExitStack() as publish:
        # Every file is written to a temporary name beside its target. On success the sidecars are
        # renamed into place first (the stack unwinds last in, first out) and the video last, so a
        # finished video always has its sidecars; on any error every temporary file is removed.
        tmp_out = publish.enter_context(atomic_path(out_path, suffix=".tmp.mp4"))
        tmp_side = {k: publish.enter_context(atomic_path(v)) for k, v in side.items()} if sidecars else {}
        with tempfile.TemporaryDirectory(prefix="autocut-render-", dir=work_dir) as wd:
            p = prepare(plan, work_dir=Path(wd), library_root=library_root, cancel=cancel)
            phases["prepare"] = time.monotonic() - t0
            loud = measure_loudness(p, cancel=cancel, on_progress=lambda x: progress(_MEASURE_PROGRESS * x))
            phases["measure"] = time.monotonic() - t0 - phases["prepare"]
            t_enc = time.monotonic()
            cmd = build_render_command(p, tmp_out, loud, threads=threads)
            if sidecars:
                # Sidecars first (cheap), published only together with the video.
                subs.write_srt(p.cues, tmp_side["srt"])
                tmp_side["plan"].write_text(p.plan.model_dump_json(indent=2), encoding="utf-8")
                tline.write_otio(_timeline(p, p.plan.plan_id or out_path.stem), tmp_side["otio"])
            run_ffmpeg(
                cmd,
                cancel=cancel,
                on_start=on_start,
                on_progress=lambda x: progress(_MEASURE_PROGRESS + encode_share * x),
            )
            phases["encode"] = time.monotonic() - t_enc
            if selfcheck:
                # Before anything is published: a failed check leaves nothing at out_path.
                t_chk = time.monotonic()
                report = run_selfcheck(
                    tmp_out,
                    SelfCheckExpectation.from_render(p, loud),
                    limits=selfcheck_limits,
                    threads=threads,
                    cancel=cancel,
                    on_progress=lambda x: progress(_MEASURE_PROGRESS + encode_share + _SELFCHECK_PROGRESS * x),
                )
                phases["selfcheck"] = time.monotonic() - t_chk
                if report.status is CheckStatus.FAIL:
                    raise SelfCheckFailed(report)
                for line in report.reasons(CheckStatus.WARN):
                    log.warning("self-check of %s: %s", out_path.name, line)
    progress(1.0)
    log.info(
        "rendered %s (%.2f s) in %.1f s: %s",
        out_path.name,
        p.duration_s,
        time.monotonic() - t0,
        ", ".join(f"{k} {v:.1f} s" for k, v in phases.items()),
    )
    seg_times = tuple(
        (
            float(s.placement.start_frame / p.fps),
            float(s.placement.end_frame / p.fps),
            s.voice_start_s,
            s.voice_duration_s,
        )
        for s in p.segments
    )
    return RenderResult(
        output_path=out_path,
        srt_path=side["srt"] if sidecars else None,
        plan_path=side["plan"] if sidecars else None,
        otio_path=side["otio"] if sidecars else None,
        duration_s=p.duration_s,
        n_frames=p.total_frames,
        fps=float(p.fps),
        speech_rates=tuple(s.speech_rate for s in p.segments),
        cues=tuple(p.cues),
        loudness=loud,
        wall_s=time.monotonic() - t0,
        segments=seg_times,
        phase_wall_s=phases,
        selfcheck=report,
    )
