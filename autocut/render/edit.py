"""EditPlan -> finished MP4: one ffmpeg pass encodes the video (DESIGN method 7, issue 5).

Steps, all but the last before any video is decoded:
1. `prepare`: resolve and probe every source, check the plan (missing source, segment past its
   source's end, empty sentence, unknown voice, font lacking glyphs, clip reuse, transitions longer
   than segments) and the voice fit (each sentence's TTS must fit its segment at a speech rate within
   +-15 %), then write the audio stem (all sentences placed on the output timeline) and the ASS file.
   Every problem found is reported in one `PlanError`.
2. `measure_loudness`: audio-only ffmpeg passes measure (EBU R128, ffmpeg's ebur128) the voice and
   BGM stems, so the music bed sits `gain_db` under the voice, and then the ducked mix, so the main
   pass normalises with one linear gain (two-pass, like loudnorm's linear mode), followed by a
   lookahead limiter only when that gain would push the true peak over the target.
3. `build_render_command`: the filtergraph and argument list, as data (unit-testable).
4. `run_ffmpeg`: the one function that runs ffmpeg, with progress and cancellation.

Frame-exact timing: segment boundaries are rounded to output frames once (`place_segments`), and
video, voice placement, subtitles and the OTIO export all use those same frames.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import subprocess
import tempfile
import threading
import time
import wave
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from autocut.render import subtitles as subs
from autocut.render import timeline as tline
from autocut.speech import tts
from autocut.errors import ConfigError, MediaError, PlanError, RenderError
from autocut.library.media import MediaInfo, probe
from autocut.planning.voice_fit import MAX_SPEECH_RATE, MIN_SPEECH_RATE, VOICE_LEAD_S, VOICE_TAIL_S, fit_rate
from autocut.types import EditPlan, PlanSegment
from autocut.files import write_text_atomic
from autocut.render.outputs import sidecar_paths

__all__ = [
    "MAX_SPEECH_RATE",
    "MIN_SPEECH_RATE",
    "VOICE_LEAD_S",
    "VOICE_TAIL_S",
    "FfmpegCommand",
    "LoudnessMeasurement",
    "PreparedRender",
    "PreparedSegment",
    "RenderCancelled",
    "RenderResult",
    "SegmentPlacement",
    "build_audio_filters",
    "build_measure_command",
    "build_render_command",
    "build_stems_command",
    "build_video_filters",
    "crop_to_aspect",
    "measure_loudness",
    "output_fps",
    "place_segments",
    "prepare",
    "render",
    "run_ffmpeg",
    "voice_window_s",
]

log = logging.getLogger(__name__)

AUDIO_RATE_HZ = 48_000
AUDIO_BITRATE = "192k"
# Headroom under the true-peak target for AAC overshoot: the mix's measured true peak stays this far
# under the target; when it would not, a sample-peak limiter sits this far under it.
TRUE_PEAK_MARGIN_DB = 0.5
LIMITER_MARGIN_DB = 1.2
# Ducking: the voice keys a compressor on the music (not a fixed volume cut).
DUCK_THRESHOLD = 0.02  # linear, ~-34 dBFS of voice opens the ducker
DUCK_RATIO = 8.0
DUCK_ATTACK_MS = 20.0
DUCK_RELEASE_MS = 400.0
BGM_FADE_IN_S = 0.3
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
# Progress share of the audio-only measuring passes (the rest is the main pass).
_MEASURE_PROGRESS = 0.04


class RenderCancelled(RenderError):
    """The caller asked to stop (its `threading.Event` was set); no output was left behind."""


# --------------------------------------------------------------------------- placement

@dataclass(frozen=True)
class SegmentPlacement:
    """Where a segment lands in the output, in output frames."""

    index: int
    start_frame: int  # first output frame (inclusive)
    end_frame: int  # exclusive
    overlap_in_frames: int  # crossfade shared with the previous segment
    overlap_out_frames: int  # crossfade shared with the next segment

    @property
    def n_frames(self) -> int:
        return self.end_frame - self.start_frame


def output_fps(plan: EditPlan) -> Fraction:
    """The output frame rate as an exact fraction (29.97 -> 2997/100)."""
    return Fraction(plan.output.fps).limit_denominator(1001)


def place_segments(plan: EditPlan) -> list[SegmentPlacement]:
    """Round every segment's output interval to frames so the total equals the plan's duration.

    Boundaries come from rounding cumulative times (not each duration), so rounding errors do not
    add up: the output has round(plan.duration_s * fps) frames.
    """
    fps = output_fps(plan)
    t = plan.output.transition_duration_s if plan.output.transition != "cut" else 0.0
    if t * fps < 0.5:
        t = 0.0
    out: list[SegmentPlacement] = []
    start_s = 0.0
    frames: list[tuple[int, int]] = []
    for seg in plan.segments:
        a = int(round(start_s * fps))
        b = int(round((start_s + seg.duration_s) * fps))
        frames.append((a, b))
        start_s += seg.duration_s - t
    for k, (a, b) in enumerate(frames):
        ov_in = frames[k - 1][1] - a if k > 0 and t > 0 else 0
        ov_out = b - frames[k + 1][0] if k + 1 < len(frames) and t > 0 else 0
        out.append(SegmentPlacement(k, a, b, max(0, ov_in), max(0, ov_out)))
    return out


def voice_window_s(plan: EditPlan, placement: SegmentPlacement) -> tuple[float, float]:
    """Output interval a segment's narration may occupy: its slot (crossfades split in the middle),
    less `VOICE_LEAD_S` at the start and `VOICE_TAIL_S` at the end. The planner sizes segments so the
    sentence's TTS duration (at a rate within +-15 %) fits this window."""
    fps = output_fps(plan)
    a = (placement.start_frame + placement.overlap_in_frames / 2) / fps
    b = (placement.end_frame - placement.overlap_out_frames / 2) / fps
    return float(a) + VOICE_LEAD_S, float(b) - VOICE_TAIL_S


# --------------------------------------------------------------------------- preparation

@dataclass
class PreparedSegment:
    segment: PlanSegment
    source: Path
    info: MediaInfo
    placement: SegmentPlacement
    speech_rate: float
    voice_start_s: float  # output time the narration starts
    voice_duration_s: float
    subtitle_segments: list[subs.SubtitleSegment]
    cues: list[subs.Cue]


@dataclass(frozen=True)
class PreparedBgm:
    path: Path
    info: MediaInfo
    start_s: float
    loop: bool  # the track (from start_s) is shorter than the edit


@dataclass
class PreparedRender:
    """A checked plan with its stems written: everything the command builders need."""

    plan: EditPlan  # speech rates as used
    fps: Fraction
    total_frames: int
    segments: list[PreparedSegment]
    work_dir: Path
    voice_wav: Path | None
    ass_path: Path | None
    bgm: PreparedBgm | None
    cues: list[subs.Cue]

    @property
    def duration_s(self) -> float:
        return float(self.total_frames / self.fps)


def _resolve(path: str, library_root: Path | None) -> Path:
    p = Path(path).expanduser()
    if not p.is_absolute() and library_root is not None:
        p = Path(library_root) / p
    return p.resolve()


def _seg_label(k: int, seg: PlanSegment) -> str:
    return f"segment {k + 1} ({Path(seg.source_path).name} @ {seg.start_s:.2f}s+{seg.duration_s:.2f}s)"


def _probe_or_error(path: Path) -> MediaInfo | MediaError:
    try:
        return probe(path)
    except MediaError as exc:
        return exc


def prepare(plan: EditPlan, *, work_dir: Path, library_root: Path | None = None,
            cancel: threading.Event | None = None) -> PreparedRender:
    """Check `plan` and write its stems into `work_dir`; raise PlanError listing every problem."""
    work_dir = Path(work_dir)
    problems: list[str] = []
    fps = output_fps(plan)
    placements = place_segments(plan)
    total_frames = placements[-1].end_frame

    if plan.output.x264_preset not in X264_PRESETS:
        problems.append(f"output: unknown x264 preset {plan.output.x264_preset!r} (one of {', '.join(X264_PRESETS)})")

    # Voice.
    voice_ok = True
    if plan.voice.engine != "none":
        if plan.voice.language != plan.language:
            problems.append(f"voice language {plan.voice.language!r} differs from the plan language {plan.language!r}")
            voice_ok = False
        else:
            try:
                tts.check_voice(plan.voice)
            except ConfigError as exc:
                problems.append(f"voice: {exc}")
                voice_ok = False

    # Sources, ranges, transitions, reuse. Each distinct file is probed once, a few at a time.
    sources = [_resolve(seg.source_path, library_root) for seg in plan.segments]
    unique = list(dict.fromkeys(sources))
    with ThreadPoolExecutor(max_workers=4) as pool:
        probed = dict(zip(unique, pool.map(_probe_or_error, unique)))
    infos: list[MediaInfo | None] = []
    for k, seg in enumerate(plan.segments):
        label = _seg_label(k, seg)
        src = sources[k]
        if not seg.sentence:
            problems.append(f"{label}: empty sentence (every clip needs one line of script)")
        info = probed[src]
        if isinstance(info, MediaError):
            problems.append(f"{label}: source {info.reason} ({src})")
            infos.append(None)
            continue
        infos.append(info)
        if not info.has_video or info.width <= 0:
            problems.append(f"{label}: source has no video stream ({src})")
        # Half a frame of slack: container durations are rounded.
        if seg.start_s + seg.duration_s > info.duration_s + 0.5 / float(fps):
            problems.append(f"{label}: ends at {seg.start_s + seg.duration_s:.3f} s, past the source's end "
                            f"({info.duration_s:.3f} s)")
        pl = placements[k]
        if pl.n_frames <= pl.overlap_in_frames + pl.overlap_out_frames:
            problems.append(f"{label}: {seg.duration_s:.2f} s is too short for {plan.output.transition} "
                            f"transitions of {plan.output.transition_duration_s:.2f} s on both sides")
    if not plan.allow_reuse:
        for i in range(len(plan.segments)):
            for j in range(i + 1, len(plan.segments)):
                a, b = plan.segments[i], plan.segments[j]
                same_clip = a.clip_id is not None and a.clip_id == b.clip_id
                overlap = min(a.start_s + a.duration_s, b.start_s + b.duration_s) - max(a.start_s, b.start_s)
                if same_clip or (sources[i] == sources[j] and overlap > 1.0 / float(fps)):
                    problems.append(f"{_seg_label(j, b)} reuses footage of {_seg_label(i, a)} "
                                    "(set allow_reuse to permit it)")

    # BGM.
    bgm: PreparedBgm | None = None
    if plan.bgm is not None:
        bpath = _resolve(plan.bgm.path, library_root)
        try:
            binfo = probe(bpath)
            if not binfo.has_audio:
                problems.append(f"bgm: {bpath} has no audio stream")
            elif plan.bgm.start_s >= binfo.duration_s:
                problems.append(f"bgm: start {plan.bgm.start_s:.2f} s is past the track's end "
                                f"({binfo.duration_s:.2f} s)")
            else:
                bgm = PreparedBgm(bpath, binfo, plan.bgm.start_s,
                                  loop=binfo.duration_s - plan.bgm.start_s < float(total_frames / fps) + 0.05)
        except MediaError as exc:
            problems.append(f"bgm: {exc.reason} ({bpath})")

    # Subtitle segmentation and font coverage.
    seg_subs = [subs.segment_sentence(s.sentence) if s.sentence else [] for s in plan.segments]
    if plan.subtitles.enabled:
        try:
            subs.check_font_coverage(plan.subtitles.font,
                                     [subs.display_text(x) for segs in seg_subs for x in segs])
        except PlanError as exc:
            problems.append(str(exc))

    # Voice fit (DESIGN method 7): only meaningful once the voice and sentences are valid.
    rates: list[float] = [s.speech_rate for s in plan.segments]
    durs: list[float] = [0.0] * len(plan.segments)
    if plan.voice.engine != "none" and voice_ok:
        for k, seg in enumerate(plan.segments):
            if cancel is not None and cancel.is_set():
                raise RenderCancelled("render cancelled while synthesising the voice-over")
            if not seg.sentence:
                continue
            w0, w1 = voice_window_s(plan, placements[k])
            avail = w1 - w0
            rate, dur = fit_rate(seg.sentence, plan.voice, seg.speech_rate, avail)
            if dur > avail + 1e-6:
                need = seg.duration_s + (dur - avail)
                problems.append(
                    f"{_seg_label(k, seg)}: the sentence {seg.sentence!r} takes {dur:.2f} s to say even at "
                    f"{MAX_SPEECH_RATE:.2f}x speed, but the segment leaves {max(avail, 0):.2f} s for the voice; "
                    f"lengthen the segment to at least {need:.2f} s or shorten the sentence")
            elif abs(rate - seg.speech_rate) > 1e-9:
                log.info("%s: speech rate %.3f -> %.3f to fit %.2f s", _seg_label(k, seg), seg.speech_rate,
                         rate, avail)
            rates[k], durs[k] = rate, dur

    if problems:
        raise PlanError("the edit plan cannot be rendered:\n  - " + "\n  - ".join(problems))

    plan_used = plan.model_copy(deep=True)
    for k, r in enumerate(rates):
        plan_used.segments[k].speech_rate = r

    # Place narration and subtitles on the output timeline.
    prepared: list[PreparedSegment] = []
    all_cues: list[subs.Cue] = []
    for k, seg in enumerate(plan_used.segments):
        w0, w1 = voice_window_s(plan, placements[k])
        words: Sequence[tts.WordTiming] = ()
        dur = durs[k]
        if plan.voice.engine != "none":
            _, _, words = tts.speak(seg.sentence, plan.voice, rates[k])
        else:
            dur = w1 - w0  # no narration: subtitles spread over the window
        slot_end = float((placements[k].end_frame - placements[k].overlap_out_frames / 2) / fps)
        cues = subs.time_cues(seg_subs[k], words, speech_start_s=w0, speech_duration_s=dur, slot_end_s=slot_end)
        all_cues.extend(cues)
        info = infos[k]
        assert info is not None
        prepared.append(PreparedSegment(seg, sources[k], info, placements[k], rates[k], w0,
                                        durs[k] if plan.voice.engine != "none" else 0.0, seg_subs[k], cues))

    duration_s = float(total_frames / fps)
    voice_wav = None
    if plan.voice.engine != "none":
        voice_wav = _write_voice_stem(work_dir / "voice.wav", plan_used, prepared, duration_s)
    ass_path = None
    if plan.subtitles.enabled and all_cues:
        ass_path = subs.write_ass(all_cues, work_dir / "subtitles.ass", style=plan.subtitles,
                                  width=plan.output.width, height=plan.output.height)
    return PreparedRender(plan_used, fps, total_frames, prepared, work_dir, voice_wav, ass_path, bgm, all_cues)


def _write_voice_stem(path: Path, plan: EditPlan, segs: Sequence[PreparedSegment], duration_s: float) -> Path:
    """All sentences on one mono track at their output times (the TTS engine's sample rate)."""
    pieces = [(s.voice_start_s, *tts.speak(s.segment.sentence, plan.voice, s.speech_rate)[:2]) for s in segs]
    sr = pieces[0][2]
    stem = np.zeros(int(math.ceil(duration_s * sr)), np.float32)
    for start_s, samples, rate_hz in pieces:
        assert rate_hz == sr, "one voice speaks at one sample rate"
        a = int(round(start_s * sr))
        b = min(len(stem), a + len(samples))
        stem[a:b] += samples[: b - a]
    pcm = (np.clip(stem, -1.0, 1.0) * 32767.0).astype("<i2")
    tmp = path.with_name(path.name + ".tmp")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- command building

@dataclass(frozen=True)
class FfmpegCommand:
    """An ffmpeg invocation as data. `cwd` is where relative filter paths (the ASS file) resolve."""

    args: list[str]
    cwd: Path
    duration_s: float  # output duration, for progress


@dataclass(frozen=True)
class LoudnessMeasurement:
    """What the audio-only passes measured (EBU R128) and the gains the main pass applies."""

    input_i: float  # integrated loudness of the mix, LUFS
    input_tp: float  # its true peak, dBTP
    input_lra: float  # its loudness range, LU
    gain_db: float  # linear gain that brings the mix to the target
    bgm_gain_db: float = 0.0  # volume of the music bed before ducking
    limiter_db: float | None = None  # peak ceiling (dBFS) after the gain, when the gain alone would clip


def _fmt(x: float) -> str:
    return f"{x:.6f}".rstrip("0").rstrip(".")


def crop_to_aspect(w: int, h: int, tw: int, th: int) -> tuple[int, int]:
    """Largest centred crop of a w x h frame with the target's aspect (even sizes)."""
    if w * th > h * tw:
        cw, ch = h * tw / th, h
    else:
        cw, ch = w, w * th / tw
    return max(2, int(cw) // 2 * 2), max(2, int(ch) // 2 * 2)


def _segment_video_chain(p: PreparedRender, k: int, input_index: int) -> list[str]:
    """Filters turning input `input_index` into exactly n_frames output frames, labelled [v{k}]."""
    seg = p.segments[k]
    W, H = p.plan.output.width, p.plan.output.height
    w, h = seg.info.width, seg.info.height
    n = seg.placement.n_frames
    fps = f"{p.fps.numerator}/{p.fps.denominator}"
    head = f"[{input_index}:v:0]setpts=PTS-STARTPTS,fps={fps}"
    # Clone the last frame if the source runs a frame short, then cut to the exact frame count.
    tail = f"setsar=1,format=yuv420p,tpad=stop=-1:stop_mode=clone,trim=end_frame={n},setpts=PTS-STARTPTS"
    cw, ch = crop_to_aspect(w, h, W, H)
    same_aspect = abs(cw - w) <= 2 and abs(ch - h) <= 2
    if p.plan.output.fit == "crop" or same_aspect:
        # Crop first, then scale: scaling the whole frame first costs far more (DESIGN perf facts).
        crop = f"crop={cw}:{ch}:{(w - cw) // 2}:{(h - ch) // 2}," if not same_aspect else ""
        scale = f"scale={W}:{H}:flags=bicubic," if (cw, ch) != (W, H) else ""
        return [f"{head},{crop}{scale}{tail}[v{k}]"]
    # Blurred pad: the frame fitted inside, over a blurred, cropped-to-fill copy of itself.
    fw, fh = (W, max(2, int(W * h / w) // 2 * 2)) if w * H > h * W else (max(2, int(H * w / h) // 2 * 2), H)
    sw, sh = max(2, W // 8 // 2 * 2), max(2, H // 8 // 2 * 2)
    return [
        f"{head},split=2[bgsrc{k}][fgsrc{k}]",
        f"[bgsrc{k}]crop={cw}:{ch}:{(w - cw) // 2}:{(h - ch) // 2},scale={sw}:{sh}:flags=bilinear,"
        f"boxblur=luma_radius=6:luma_power=2,scale={W}:{H}:flags=bilinear,setsar=1[bg{k}]",
        f"[fgsrc{k}]scale={fw}:{fh}:flags=bicubic,setsar=1[fg{k}]",
        f"[bg{k}][fg{k}]overlay=x=(W-w)/2:y=(H-h)/2:shortest=1,{tail}[v{k}]",
    ]


def _transition_chains(p: PreparedRender) -> tuple[list[str], list[str]]:
    """Crossfades as separate short pieces: (chains, labels to concatenate in order).

    xfade works in yuv444p, so ffmpeg converts every frame that passes through it; feeding it only
    the overlapping frames (not whole segments) keeps that cost to the transitions themselves.
    """
    chains: list[str] = []
    order: list[str] = []
    n = len(p.segments)
    for k, seg in enumerate(p.segments):
        a, b, total = seg.placement.overlap_in_frames, seg.placement.overlap_out_frames, seg.placement.n_frames
        parts = [(f"head{k}", f"trim=end_frame={a}") if a else None,
                 (f"body{k}", f"trim=start_frame={a}:end_frame={total - b}"),
                 (f"tail{k}", f"trim=start_frame={total - b}") if b else None]
        used = [x for x in parts if x is not None]
        if len(used) == 1:
            chains.append(f"[v{k}]null[body{k}]")
        else:
            chains.append(f"[v{k}]split={len(used)}" + "".join(f"[{lbl}in]" for lbl, _ in used))
            chains += [f"[{lbl}in]{trim},setpts=PTS-STARTPTS[{lbl}]" for lbl, trim in used]
        if k > 0:
            dur = _fmt(float(a / p.fps))
            chains.append(f"[tail{k - 1}][head{k}]xfade=transition={p.plan.output.transition}:duration={dur}:"
                          f"offset=0,format=yuv420p[x{k}]")
            order.append(f"x{k}")
        order.append(f"body{k}")
    assert len(order) == 2 * n - 1
    return chains, order


def build_video_filters(p: PreparedRender, input_of_segment: Sequence[int]) -> list[str]:
    """Video filter chains ending in [vout]: per-segment cut/crop/scale, transitions, subtitles."""
    chains: list[str] = []
    for k in range(len(p.segments)):
        chains.extend(_segment_video_chain(p, k, input_of_segment[k]))
    n = len(p.segments)
    if n > 1 and any(s.placement.overlap_in_frames for s in p.segments):
        pieces, order = _transition_chains(p)
        chains += pieces
    else:
        order = [f"v{k}" for k in range(n)]
    if len(order) > 1:
        chains.append("".join(f"[{x}]" for x in order) + f"concat=n={len(order)}:v=1:a=0[vcat]")
        last = "vcat"
    else:
        last = order[0]
    if p.ass_path is not None:
        # Relative name: ffmpeg runs in the work dir, so no filtergraph path escaping is needed.
        chains.append(f"[{last}]subtitles=filename={p.ass_path.name},format=yuv420p[vout]")
    else:
        chains.append(f"[{last}]null[vout]")
    return chains


_AFMT = (f"aresample={AUDIO_RATE_HZ},"
         f"aformat=sample_fmts=fltp:sample_rates={AUDIO_RATE_HZ}:channel_layouts=stereo")
# Gentle voice-over compression: a steadier level under the music and a lower peak-to-loudness ratio.
_VOICE_COMPRESSOR = "acompressor=threshold=0.1:ratio=3:attack=5:release=120:makeup=1.5"


def _voice_chain(p: PreparedRender, voice_input: int) -> str:
    d = _fmt(p.duration_s)
    return f"[{voice_input}:a:0]{_AFMT},{_VOICE_COMPRESSOR},apad=whole_dur={d},atrim=duration={d}"


def _bgm_chain(p: PreparedRender, bgm_input: int, gain_db: float | None) -> str:
    """The music bed for the edit: trimmed or looped, levelled, faded in and out (before ducking)."""
    assert p.bgm is not None and p.plan.bgm is not None
    d = _fmt(p.duration_s)
    # A looped input starts at 0, a non-looped one was seeked to start_s on input.
    trim = f"atrim=start={_fmt(p.bgm.start_s)}:duration={d}" if p.bgm.loop else f"atrim=duration={d}"
    chain = f"[{bgm_input}:a:0]{trim},asetpts=PTS-STARTPTS,{_AFMT}"
    if gain_db is None:
        return chain
    fade = p.plan.bgm.fade_out_s
    chain += f",volume={gain_db:.2f}dB,apad=whole_dur={d},atrim=duration={d},afade=t=in:d={BGM_FADE_IN_S}"
    if fade > 0:
        chain += f",afade=t=out:st={_fmt(max(0.0, p.duration_s - fade))}:d={_fmt(min(fade, p.duration_s))}"
    return chain


def build_audio_filters(p: PreparedRender, *, voice_input: int | None, bgm_input: int | None,
                        source_inputs: dict[int, int], bgm_gain_db: float, finish: str) -> list[str]:
    """Audio chains ending in [aout]: compressed voice, BGM ducked by the voice, kept source audio.

    `finish` is appended to the mix (a measurement, or the loudness gain and limiter); the mix before
    it is identical in the measuring and the main pass, so what was measured is what is normalised.
    """
    d = _fmt(p.duration_s)
    chains: list[str] = []
    mix_inputs: list[str] = []
    if voice_input is not None:
        if bgm_input is not None:
            chains.append(f"{_voice_chain(p, voice_input)},asplit=2[voice][vkey]")
        else:
            chains.append(f"{_voice_chain(p, voice_input)}[voice]")
        mix_inputs.append("[voice]")
    if bgm_input is not None:
        if voice_input is not None:
            # Ducking: a compressor on the music keyed by the voice (not a fixed volume cut).
            chains.append(f"{_bgm_chain(p, bgm_input, bgm_gain_db)}[bgmraw]")
            chains.append(f"[bgmraw][vkey]sidechaincompress=threshold={DUCK_THRESHOLD}:ratio={DUCK_RATIO}:"
                          f"attack={DUCK_ATTACK_MS}:release={DUCK_RELEASE_MS}[bgm]")
        else:
            chains.append(f"{_bgm_chain(p, bgm_input, bgm_gain_db)}[bgm]")
        mix_inputs.append("[bgm]")
    for k, idx in sorted(source_inputs.items()):
        seg = p.segments[k]
        n_s = float(seg.placement.n_frames / p.fps)
        delay_ms = int(round(float(seg.placement.start_frame / p.fps) * 1000))
        chains.append(f"[{idx}:a:0]atrim=duration={_fmt(n_s)},asetpts=PTS-STARTPTS,{_AFMT},"
                      f"volume={seg.segment.source_audio_gain:.3f},afade=t=in:d=0.05,"
                      f"afade=t=out:st={_fmt(max(0.0, n_s - 0.05))}:d=0.05,adelay={delay_ms}:all=1[src{k}]")
        mix_inputs.append(f"[src{k}]")
    if not mix_inputs:
        chains.append(f"anullsrc=r={AUDIO_RATE_HZ}:cl=stereo,atrim=duration={d}[aout]")
        return chains
    if len(mix_inputs) == 1:
        mix = f"{mix_inputs[0]}anull"
    else:
        mix = "".join(mix_inputs) + f"amix=inputs={len(mix_inputs)}:duration=longest:normalize=0"
    chains.append(f"{mix},apad=whole_dur={d},atrim=duration={d}{',' + finish if finish else ''}[aout]")
    return chains


def _audio_inputs(p: PreparedRender, first_index: int) -> tuple[list[str], int | None, int | None]:
    """Input args for the voice stem and the BGM, numbered from `first_index`."""
    args: list[str] = []
    idx = first_index
    voice_input = bgm_input = None
    if p.voice_wav is not None:
        args += ["-i", str(p.voice_wav)]
        voice_input = idx
        idx += 1
    if p.bgm is not None:
        if p.bgm.loop:
            args += ["-stream_loop", "-1", "-i", str(p.bgm.path)]
        else:
            args += ["-ss", _fmt(p.bgm.start_s), "-t", _fmt(p.duration_s + 0.5), "-i", str(p.bgm.path)]
        bgm_input = idx
    return args, voice_input, bgm_input


def _segment_input_args(p: PreparedRender, k: int) -> list[str]:
    seg = p.segments[k]
    # Input seeking (fast, and frame-accurate: ffmpeg decodes from the keyframe and drops frames
    # before the in-point); two spare frames so `trim` always has enough.
    dur = float((seg.placement.n_frames + 2) / p.fps)
    return ["-ss", _fmt(seg.segment.start_s), "-t", _fmt(dur), "-i", str(seg.source)]


def _source_audio_segments(p: PreparedRender) -> list[int]:
    keep = []
    for k, seg in enumerate(p.segments):
        if seg.segment.source_audio_gain > 0:
            if seg.info.has_audio:
                keep.append(k)
            else:
                log.warning("segment %d: source_audio_gain set but %s has no audio", k + 1, seg.source)
    return keep


def _has_audio_mix(p: PreparedRender) -> bool:
    return p.voice_wav is not None or p.bgm is not None or bool(_source_audio_segments(p))


def _loudness_finish(m: LoudnessMeasurement) -> str:
    """Normalisation applied in the main pass: the measured linear gain, then (if needed) a limiter."""
    # This is what loudnorm's linear mode does (one constant gain from a first-pass measurement); as
    # `volume` it skips loudnorm's forced 192 kHz round trip, measured at ~2.7 s CPU per 30 s of audio.
    out = f"volume={m.gain_db:.3f}dB"
    if m.limiter_db is not None:
        out += f",alimiter=limit={10 ** (m.limiter_db / 20):.5f}:attack=5:release=60:level=0:latency=1"
    return out


def build_measure_command(p: PreparedRender, *, bgm_gain_db: float, gain_db: float = 0.0,
                          limiter_db: float | None = None) -> FfmpegCommand:
    """Audio-only pass: the main pass's exact mix (optionally gained and limited), EBU R128 measured."""
    keep = _source_audio_segments(p)
    args = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "info", "-nostats"]
    source_inputs: dict[int, int] = {}
    for i, k in enumerate(keep):
        args += _segment_input_args(p, k)
        source_inputs[k] = i
    a_args, vi, bi = _audio_inputs(p, len(keep))
    args += a_args
    finish = "ebur128=peak=true:framelog=verbose"
    if gain_db or limiter_db is not None:
        finish = _loudness_finish(LoudnessMeasurement(0, 0, 0, gain_db, bgm_gain_db, limiter_db)) + "," + finish
    chains = build_audio_filters(p, voice_input=vi, bgm_input=bi, source_inputs=source_inputs,
                                 bgm_gain_db=bgm_gain_db, finish=finish)
    args += ["-filter_complex", ";".join(chains), "-map", "[aout]", "-f", "null", "-"]
    return FfmpegCommand(args, p.work_dir, p.duration_s)


def build_stems_command(p: PreparedRender) -> FfmpegCommand:
    """Audio-only pass measuring the voice (as compressed in the mix) and the BGM excerpt (EBU R128)."""
    assert p.voice_wav is not None and p.bgm is not None
    a_args, vi, bi = _audio_inputs(p, 0)
    assert vi is not None and bi is not None
    graph = (f"{_voice_chain(p, vi)},ebur128=framelog=verbose[vm];"
             f"{_bgm_chain(p, bi, None)},ebur128=framelog=verbose[bm]")
    args = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "info", "-nostats", *a_args,
            "-filter_complex", graph, "-map", "[vm]", "-f", "null", "-", "-map", "[bm]", "-f", "null", "-"]
    return FfmpegCommand(args, p.work_dir, p.duration_s)


def build_render_command(p: PreparedRender, out_path: Path, loudness: LoudnessMeasurement | None, *,
                         threads: int | None = None) -> FfmpegCommand:
    """The one ffmpeg invocation that encodes the finished MP4."""
    o = p.plan.output
    args = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-nostats", "-y"]
    for k in range(len(p.segments)):
        args += _segment_input_args(p, k)
    n = len(p.segments)
    source_inputs = {k: k for k in _source_audio_segments(p)}
    a_args, vi, bi = _audio_inputs(p, n)
    args += a_args
    chains = build_video_filters(p, list(range(n)))
    finish = f"{_loudness_finish(loudness)},{_AFMT}" if loudness is not None else ""
    chains += build_audio_filters(p, voice_input=vi, bgm_input=bi, source_inputs=source_inputs,
                                  bgm_gain_db=loudness.bgm_gain_db if loudness else 0.0, finish=finish)
    args += ["-filter_complex", ";".join(chains), "-map", "[vout]", "-map", "[aout]",
             "-map_metadata", "-1", "-map_chapters", "-1",
             "-c:v", "libx264", "-preset", o.x264_preset, "-crf", str(o.video_crf), "-pix_fmt", "yuv420p",
             # The fast AAC coder halves audio encoding time (~0.9 s CPU per 30 s); at 192 kb/s the
             # difference to the default two-loop search is not audible in a voice-over mix.
             "-c:a", "aac", "-aac_coder", "fast", "-b:a", AUDIO_BITRATE, "-ar", str(AUDIO_RATE_HZ),
             "-movflags", "+faststart"]
    if threads:
        args += ["-threads", str(threads)]
    args += ["-progress", "pipe:1", "-f", "mp4", str(out_path)]
    return FfmpegCommand(args, p.work_dir, p.duration_s)


# --------------------------------------------------------------------------- running

def run_ffmpeg(cmd: FfmpegCommand, *, on_progress: Callable[[float], None] | None = None,
               cancel: threading.Event | None = None,
               on_start: Callable[[subprocess.Popen[str]], None] | None = None) -> str:
    """Run one ffmpeg command; report progress 0..1; stop it when `cancel` is set. Returns stderr."""
    log.debug("ffmpeg: %s", subprocess.list2cmdline(cmd.args))
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as err:
        proc = subprocess.Popen(cmd.args, cwd=cmd.cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=err, text=True, bufsize=1)
        if on_start is not None:
            on_start(proc)
        stopper: threading.Thread | None = None
        if cancel is not None:
            def _watch() -> None:
                while proc.poll() is None:
                    if cancel.wait(0.1):
                        proc.terminate()
                        try:
                            proc.wait(timeout=5)
                        except subprocess.TimeoutExpired:
                            proc.kill()
                        return
            stopper = threading.Thread(target=_watch, name="ffmpeg-cancel", daemon=True)
            stopper.start()
        assert proc.stdout is not None
        total_us = max(cmd.duration_s, 1e-3) * 1e6
        for line in proc.stdout:
            key, _, value = line.strip().partition("=")
            if on_progress is None:
                continue
            if key == "out_time_us" and value.lstrip("-").isdigit():
                on_progress(min(1.0, max(0.0, int(value) / total_us)))
            elif key == "progress" and value == "end":
                on_progress(1.0)
        rc = proc.wait()
        if stopper is not None:
            stopper.join(timeout=10)
        err.seek(0)
        stderr = err.read()
    if cancel is not None and cancel.is_set():
        raise RenderCancelled("render cancelled; ffmpeg stopped")
    if rc != 0:
        tail = "\n".join(stderr.strip().splitlines()[-8:])
        raise RenderError(f"ffmpeg failed (exit code {rc}): {tail or 'no message'}")
    return stderr


_EBUR128_SUMMARY = re.compile(r"\[Parsed_ebur128_(\d+)[^\]]*\]\s*Summary:(.*?)(?=\[Parsed_|\Z)", re.S)


@dataclass(frozen=True)
class _R128:
    i: float
    lra: float
    tp: float | None


def _parse_ebur128(stderr: str) -> list[_R128]:
    """Each ebur128 instance's summary, in filtergraph order (-inf -> -70 LUFS / -99 dBTP)."""
    def num(pattern: str, text: str) -> float | None:
        m = re.search(pattern, text, re.S)
        if not m:
            return None
        return -99.0 if m.group(1) == "-inf" else float(m.group(1))

    # ffmpeg may configure a graph twice and each copy reports; the last report per instance counts.
    found: dict[int, _R128] = {}
    for idx, body in _EBUR128_SUMMARY.findall(stderr):
        i = num(r"I:\s*(-inf|-?[\d.]+)\s*LUFS", body)
        if i is None:
            continue
        found[int(idx)] = _R128(max(i, -70.0), num(r"LRA:\s*(-?[\d.]+)\s*LU", body) or 0.0,
                                num(r"True peak:\s*Peak:\s*(-inf|-?[\d.]+)", body))
    if not found:
        raise RenderError("loudness measurement failed: no EBU R128 summary from ffmpeg")
    return [found[i] for i in sorted(found)]


def measure_loudness(p: PreparedRender, *, cancel: threading.Event | None = None,
                     on_progress: Callable[[float], None] | None = None) -> LoudnessMeasurement | None:
    """Audio-only passes: level the BGM against the voice, then measure the mix for its gain.

    When the gain to the loudness target would push the true peak over its ceiling (speech peaks sit
    far above its loudness), a lookahead limiter follows the gain and the limited mix is measured
    once more, so the final level still lands on the target.
    """
    if not _has_audio_mix(p):
        return None
    plan = p.plan
    bgm_gain = plan.bgm.gain_db if plan.bgm is not None else 0.0
    if p.voice_wav is not None and p.bgm is not None:
        voice, music = _parse_ebur128(run_ffmpeg(build_stems_command(p), cancel=cancel))[:2]
        # The music bed sits gain_db under the voice, whatever the track's mastering level.
        if music.i > -69.0 and voice.i > -69.0:
            bgm_gain = voice.i - music.i + plan.bgm.gain_db  # type: ignore[union-attr]
        log.info("voice %.1f LUFS, bgm %.1f LUFS -> bgm gain %.1f dB", voice.i, music.i, bgm_gain)
    if on_progress:
        on_progress(0.4)
    mix = _parse_ebur128(run_ffmpeg(build_measure_command(p, bgm_gain_db=bgm_gain), cancel=cancel))[-1]
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
        lim = _parse_ebur128(run_ffmpeg(build_measure_command(p, bgm_gain_db=bgm_gain, gain_db=gain,
                                                              limiter_db=ceiling), cancel=cancel))[-1]
        # Limiting took some loudness off: add it back before the limiter.
        m = LoudnessMeasurement(mix.i, tp, mix.lra, gain + (plan.loudness_lufs - lim.i), bgm_gain, ceiling)
        log.info("mix %.1f LUFS / %.1f dBTP: gain %.1f dB with a %.1f dBFS limiter", mix.i, tp, m.gain_db, ceiling)
    else:
        log.info("mix %.1f LUFS / %.1f dBTP: gain %.1f dB", mix.i, tp, gain)
    if on_progress:
        on_progress(1.0)
    return m


# --------------------------------------------------------------------------- the whole render

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
    """Wall time of each step: prepare (checks, TTS, stems), measure (audio passes), encode (main pass)."""


def _timeline(p: PreparedRender, name: str) -> tline.otio.schema.Timeline:
    items = []
    for k, s in enumerate(p.segments):
        start_out = float(s.placement.start_frame / p.fps)
        items.append(tline.TimelineItem(
            name=f"{k + 1:02d} {s.source.name}", source_path=s.source, source_duration_s=s.info.duration_s,
            start_s=s.segment.start_s, n_frames=s.placement.n_frames,
            transition_in_frames=s.placement.overlap_in_frames, transition_out_frames=s.placement.overlap_out_frames,
            sentence=s.segment.sentence,
            voice_offset_s=(s.voice_start_s - start_out) if p.voice_wav is not None else None,
            voice_duration_s=s.voice_duration_s,
            metadata={"mode": s.segment.mode, "speech_rate": s.speech_rate,
                      **{k2: v for k2, v in (("clip_id", s.segment.clip_id), ("photo_id", s.segment.photo_id),
                                             ("frame_id", s.segment.frame_id)) if v is not None}}))
    audio = []
    if p.bgm is not None:
        audio.append(tline.TimelineAudio("BGM", p.bgm.path, p.bgm.start_s, p.duration_s, p.bgm.info.duration_s))
    return tline.build_timeline(name, items, fps=float(p.fps), transition_name=p.plan.output.transition,
                                audio=audio)


def render(plan: EditPlan, out_path: str | os.PathLike[str], *, library_root: Path | None = None,
           work_dir: Path | None = None, on_progress: Callable[[float], None] | None = None,
           cancel: threading.Event | None = None, sidecars: bool = True, threads: int | None = None,
           on_start: Callable[[subprocess.Popen[str]], None] | None = None) -> RenderResult:
    """Render `plan` to `out_path` (H.264/AAC MP4, faststart) plus .srt/.plan.json/.otio sidecars.

    Bad plans raise PlanError before ffmpeg starts; ffmpeg failures raise RenderError; setting
    `cancel` stops the render with RenderCancelled. Nothing is left at `out_path` unless it succeeded.
    """
    t0 = time.monotonic()
    out_path = Path(out_path).resolve()
    if not out_path.parent.is_dir():
        raise PlanError(f"output directory {out_path.parent} does not exist")
    tmp_out = out_path.with_name(out_path.stem + ".tmp.mp4")
    side = sidecar_paths(out_path)
    tmp_side = {k: v.with_name(v.name + ".tmp") for k, v in side.items()}

    def progress(x: float) -> None:
        if on_progress is not None:
            on_progress(min(1.0, max(0.0, x)))

    phases: dict[str, float] = {}
    try:
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
                write_text_atomic(tmp_side["plan"], p.plan.model_dump_json(indent=2))
                tline.write_otio(_timeline(p, p.plan.plan_id or out_path.stem), tmp_side["otio"])
            run_ffmpeg(cmd, cancel=cancel, on_start=on_start,
                       on_progress=lambda x: progress(_MEASURE_PROGRESS + (1 - _MEASURE_PROGRESS) * x))
            phases["encode"] = time.monotonic() - t_enc
        if sidecars:
            for k in ("srt", "plan", "otio"):
                os.replace(tmp_side[k], side[k])
        os.replace(tmp_out, out_path)
    except BaseException:
        for f in (tmp_out, *tmp_side.values()):
            with contextlib.suppress(FileNotFoundError):
                f.unlink()
        raise
    progress(1.0)
    log.info("rendered %s (%.2f s) in %.1f s: %s", out_path.name, p.duration_s, time.monotonic() - t0,
             ", ".join(f"{k} {v:.1f} s" for k, v in phases.items()))
    seg_times = tuple((float(s.placement.start_frame / p.fps), float(s.placement.end_frame / p.fps),
                       s.voice_start_s, s.voice_duration_s) for s in p.segments)
    return RenderResult(
        output_path=out_path, srt_path=side["srt"] if sidecars else None,
        plan_path=side["plan"] if sidecars else None, otio_path=side["otio"] if sidecars else None,
        duration_s=p.duration_s, n_frames=p.total_frames, fps=float(p.fps),
        speech_rates=tuple(s.speech_rate for s in p.segments), cues=tuple(p.cues), loudness=loud,
        wall_s=time.monotonic() - t0, segments=seg_times, phase_wall_s=phases)
