"""Preparation: check an `EditPlan` and write its stems, all before any video is decoded.

`prepare` resolves and probes every source, checks the plan (missing source, segment past its
source's end, empty sentence, unknown voice, font lacking glyphs, clip reuse, transitions longer
than segments) and the voice fit (each sentence's TTS must fit its segment at a speech rate within
+-15 %, `autocut.planning.voice_fit`), the branding (logo and product images exist and are images, the
title fits the edit; `autocut.render.branding`), then writes the audio stem (all sentences placed on the output
timeline), the ASS file (karaoke-timed when the caption style asks, `autocut.render.captions`) and the card
text. Every problem found is reported in one `PlanError`.
"""

from __future__ import annotations

import logging
import math
import threading
import wave
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from autocut.errors import ConfigError, MediaError, PlanError
from autocut.files import atomic_path
from autocut.library.media import MediaInfo, MediaLimits, current_limits, probe
from autocut.planning.voice_fit import MAX_SPEECH_RATE, fit_rate
from autocut.render import captions
from autocut.render import subtitles as subs
from autocut.render.branding import PreparedBranding, end_card_frames, prepare_branding
from autocut.render.ffmpeg import RenderCancelled
from autocut.render.placement import SegmentPlacement, output_fps, place_segments, voice_window_s
from autocut.speech import tts
from autocut.types import EditPlan, PlanSegment

__all__ = ["X264_PRESETS", "PreparedBgm", "PreparedRender", "PreparedSegment", "prepare"]

log = logging.getLogger(__name__)

X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


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
    # Watermark, title and end card (`autocut.render.branding`); None: the plan has none.
    branding: PreparedBranding | None = None

    @property
    def duration_s(self) -> float:
        return float(self.total_frames / self.fps)


@dataclass(frozen=True)
class _Source:
    """A segment's source file, resolved, and what probing it found."""

    path: Path
    info: MediaInfo | MediaError


@dataclass(frozen=True)
class _VoiceFit:
    """The speech rate a segment's sentence is spoken at, and how long it then takes (0: no voice)."""

    rate: float
    duration_s: float


def prepare(
    plan: EditPlan, *, work_dir: Path, library_root: Path | None = None, cancel: threading.Event | None = None
) -> PreparedRender:
    """Check `plan` and write its stems into `work_dir`; raise PlanError listing every problem."""
    work_dir = Path(work_dir)
    fps = output_fps(plan)
    placements = place_segments(plan)
    segments_end_frame = placements[-1].end_frame
    # The end card (if any) follows the last segment: the video, the music and the mix run on under it.
    total_frames = segments_end_frame + end_card_frames(plan, fps)
    duration_s = float(total_frames / fps)
    has_voice = plan.voice.engine != "none"

    # Checks, in the order their problems are listed.
    voice_problems = _check_voice(plan)
    sources = _probe_sources(plan, library_root)
    problems = [
        *_check_output(plan),
        *voice_problems,
        *_check_segments(plan, sources, placements),
        *_check_reuse(plan, sources),
    ]
    bgm = _prepare_bgm(plan, library_root, duration_s, problems)
    seg_subs = [subs.segment_sentence(s.sentence) if s.sentence else [] for s in plan.segments]
    problems += _check_subtitles(plan, seg_subs)
    branding = prepare_branding(
        plan,
        work_dir=work_dir,
        library_root=library_root,
        fps=fps,
        segments_end_frame=segments_end_frame,
        problems=problems,
    )
    # The voice fit is only meaningful once the voice and sentences are valid.
    if has_voice and not voice_problems:
        fits = _fit_voices(plan, placements, problems, cancel)
    else:
        fits = [_VoiceFit(s.speech_rate, 0.0) for s in plan.segments]
    if problems:
        raise PlanError("the edit plan cannot be rendered:\n  - " + "\n  - ".join(problems))

    plan_used = plan.model_copy(deep=True)
    for seg, fit in zip(plan_used.segments, fits):
        seg.speech_rate = fit.rate
    segments = [
        _place_narration(plan_used, placements[k], sources[k], fits[k], seg_subs[k])
        for k in range(len(plan_used.segments))
    ]
    cues = [c for s in segments for c in s.cues]

    voice_wav = _write_voice_stem(work_dir / "voice.wav", plan_used, segments, duration_s) if has_voice else None
    ass_path = None
    if plan.subtitles.enabled and cues:
        ass_path = subs.write_ass(
            cues,
            work_dir / "subtitles.ass",
            style=plan.subtitles,
            width=plan.output.width,
            height=plan.output.height,
            safe=plan.output.safe_area,
            event_text=captions.karaoke_text_fn(plan.subtitles),
        )
    return PreparedRender(
        plan=plan_used,
        fps=fps,
        total_frames=total_frames,
        segments=segments,
        work_dir=work_dir,
        voice_wav=voice_wav,
        ass_path=ass_path,
        bgm=bgm,
        cues=cues,
        branding=branding,
    )


# --------------------------------------------------------------------------- sources


def _resolve(path: str, library_root: Path | None) -> Path:
    p = Path(path).expanduser()
    if not p.is_absolute() and library_root is not None:
        p = Path(library_root) / p
    return p.resolve()


def _render_limits() -> MediaLimits:
    """The media limits for render inputs: the renderer reads a window of each source (`-ss`/`-t`), never
    a whole file, so the duration limit (a bound on ingest's decode) does not apply; format, frame size
    and rate limits do."""
    return replace(current_limits(), max_duration_s=math.inf)


def _probe_or_error(path: Path) -> MediaInfo | MediaError:
    try:
        return probe(path, limits=_render_limits())
    except MediaError as exc:
        return exc


def _probe_sources(plan: EditPlan, library_root: Path | None) -> list[_Source]:
    """Every segment's source, resolved; each distinct file is probed once, a few at a time."""
    paths = [_resolve(seg.source_path, library_root) for seg in plan.segments]
    unique = list(dict.fromkeys(paths))
    with ThreadPoolExecutor(max_workers=4) as pool:
        probed = dict(zip(unique, pool.map(_probe_or_error, unique)))
    return [_Source(p, probed[p]) for p in paths]


# --------------------------------------------------------------------------- checks


def _seg_label(k: int, seg: PlanSegment) -> str:
    return f"segment {k + 1} ({Path(seg.source_path).name} @ {seg.start_s:.2f}s+{seg.duration_s:.2f}s)"


def _check_output(plan: EditPlan) -> list[str]:
    if plan.output.x264_preset not in X264_PRESETS:
        return [f"output: unknown x264 preset {plan.output.x264_preset!r} (one of {', '.join(X264_PRESETS)})"]
    return []


def _check_voice(plan: EditPlan) -> list[str]:
    """The voice speaks the plan's language and exists (no problems when there is no narration)."""
    if plan.voice.engine == "none":
        return []
    if plan.voice.language != plan.language:
        return [f"voice language {plan.voice.language!r} differs from the plan language {plan.language!r}"]
    try:
        tts.check_voice(plan.voice)
    except ConfigError as exc:
        return [f"voice: {exc}"]
    return []


def _check_segments(plan: EditPlan, sources: Sequence[_Source], placements: Sequence[SegmentPlacement]) -> list[str]:
    """Each segment has a sentence, a readable video source covering its range, room for transitions."""
    fps = output_fps(plan)
    problems: list[str] = []
    for k, seg in enumerate(plan.segments):
        label = _seg_label(k, seg)
        src, info = sources[k].path, sources[k].info
        if not seg.sentence:
            problems.append(f"{label}: empty sentence (every clip needs one line of script)")
        if isinstance(info, MediaError):
            problems.append(f"{label}: source {info.reason} ({src})")
            continue
        if not info.has_video or info.width <= 0:
            problems.append(f"{label}: source has no video stream ({src})")
        # Half a frame of slack: container durations are rounded.
        if seg.start_s + seg.duration_s > info.duration_s + 0.5 / float(fps):
            problems.append(
                f"{label}: ends at {seg.start_s + seg.duration_s:.3f} s, past the source's end "
                f"({info.duration_s:.3f} s)"
            )
        pl = placements[k]
        if pl.n_frames <= pl.overlap_in_frames + pl.overlap_out_frames:
            problems.append(
                f"{label}: {seg.duration_s:.2f} s is too short for {plan.output.transition} "
                f"transitions of {plan.output.transition_duration_s:.2f} s on both sides"
            )
    return problems


def _check_reuse(plan: EditPlan, sources: Sequence[_Source]) -> list[str]:
    """Unless the plan allows reuse, no two segments share a clip or more than a frame of footage."""
    if plan.allow_reuse:
        return []
    frame_s = 1.0 / float(output_fps(plan))
    problems: list[str] = []
    for i in range(len(plan.segments)):
        for j in range(i + 1, len(plan.segments)):
            a, b = plan.segments[i], plan.segments[j]
            same_clip = a.clip_id is not None and a.clip_id == b.clip_id
            overlap = min(a.start_s + a.duration_s, b.start_s + b.duration_s) - max(a.start_s, b.start_s)
            if same_clip or (sources[i].path == sources[j].path and overlap > frame_s):
                problems.append(
                    f"{_seg_label(j, b)} reuses footage of {_seg_label(i, a)} (set allow_reuse to permit it)"
                )
    return problems


def _prepare_bgm(
    plan: EditPlan, library_root: Path | None, duration_s: float, problems: list[str]
) -> PreparedBgm | None:
    """The probed music track, or None (no BGM, or a problem appended to `problems`)."""
    if plan.bgm is None:
        return None
    bpath = _resolve(plan.bgm.path, library_root)
    try:
        binfo = probe(bpath, limits=_render_limits())
    except MediaError as exc:
        problems.append(f"bgm: {exc.reason} ({bpath})")
        return None
    if not binfo.has_audio:
        problems.append(f"bgm: {bpath} has no audio stream")
    elif plan.bgm.start_s >= binfo.duration_s:
        problems.append(f"bgm: start {plan.bgm.start_s:.2f} s is past the track's end ({binfo.duration_s:.2f} s)")
    else:
        return PreparedBgm(bpath, binfo, plan.bgm.start_s, loop=binfo.duration_s - plan.bgm.start_s < duration_s + 0.05)
    return None


def _check_subtitles(plan: EditPlan, seg_subs: Sequence[Sequence[subs.SubtitleSegment]]) -> list[str]:
    """The subtitle font has glyphs for every subtitle (when subtitles are on)."""
    if not plan.subtitles.enabled:
        return []
    try:
        subs.check_font_coverage(plan.subtitles.font, [subs.display_text(x) for segs in seg_subs for x in segs])
    except PlanError as exc:
        return [str(exc)]
    return []


def _fit_voices(
    plan: EditPlan, placements: Sequence[SegmentPlacement], problems: list[str], cancel: threading.Event | None
) -> list[_VoiceFit]:
    """Each sentence's speech rate within the allowed band so its TTS fits the segment's voice window
    (`autocut.planning.voice_fit.fit_rate`); a sentence that fits at no allowed rate is a problem."""
    fits: list[_VoiceFit] = []
    for k, seg in enumerate(plan.segments):
        if cancel is not None and cancel.is_set():
            raise RenderCancelled("render cancelled while synthesising the voice-over")
        if not seg.sentence:
            fits.append(_VoiceFit(seg.speech_rate, 0.0))
            continue
        w0, w1 = voice_window_s(plan, placements[k])
        avail = w1 - w0
        rate, dur = fit_rate(seg.sentence, plan.voice, seg.speech_rate, avail)
        if dur > avail + 1e-6:
            need = seg.duration_s + (dur - avail)
            problems.append(
                f"{_seg_label(k, seg)}: the sentence {seg.sentence!r} takes {dur:.2f} s to say even at "
                f"{MAX_SPEECH_RATE:.2f}x speed, but the segment leaves {max(avail, 0):.2f} s for the voice; "
                f"lengthen the segment to at least {need:.2f} s or shorten the sentence"
            )
        elif abs(rate - seg.speech_rate) > 1e-9:
            log.info("%s: speech rate %.3f -> %.3f to fit %.2f s", _seg_label(k, seg), seg.speech_rate, rate, avail)
        fits.append(_VoiceFit(rate, dur))
    return fits


# --------------------------------------------------------------------------- stems


def _place_narration(
    plan: EditPlan,
    placement: SegmentPlacement,
    source: _Source,
    fit: _VoiceFit,
    subtitle_segments: list[subs.SubtitleSegment],
) -> PreparedSegment:
    """One checked segment with its narration and subtitle cues placed on the output timeline."""
    seg = plan.segments[placement.index]
    assert isinstance(source.info, MediaInfo)
    w0, w1 = voice_window_s(plan, placement)
    words: Sequence[tts.WordTiming] = ()
    speech_s = fit.duration_s
    if plan.voice.engine != "none":
        words = tts.speak(seg.sentence, plan.voice, fit.rate).words
    else:
        speech_s = w1 - w0  # no narration: subtitles spread over the window
    slot_end = float((placement.end_frame - placement.overlap_out_frames / 2) / output_fps(plan))
    cues = subs.time_cues(subtitle_segments, words, speech_start_s=w0, speech_duration_s=speech_s, slot_end_s=slot_end)
    if plan.subtitles.karaoke != "off":
        cues = captions.attach_karaoke(cues, subtitle_segments, words, speech_start_s=w0, mode=plan.subtitles.karaoke)
    return PreparedSegment(
        segment=seg,
        source=source.path,
        info=source.info,
        placement=placement,
        speech_rate=fit.rate,
        voice_start_s=w0,
        voice_duration_s=fit.duration_s,
        subtitle_segments=subtitle_segments,
        cues=cues,
    )


def _write_voice_stem(path: Path, plan: EditPlan, segs: Sequence[PreparedSegment], duration_s: float) -> Path:
    """All sentences on one mono track at their output times (the TTS engine's sample rate)."""
    pieces = [(s.voice_start_s, tts.speak(s.segment.sentence, plan.voice, s.speech_rate)) for s in segs]
    sr = pieces[0][1].sample_rate_hz
    stem = np.zeros(int(math.ceil(duration_s * sr)), np.float32)
    for start_s, utterance in pieces:
        samples = utterance.samples
        assert utterance.sample_rate_hz == sr, "one voice speaks at one sample rate"
        a = int(round(start_s * sr))
        b = min(len(stem), a + len(samples))
        stem[a:b] += samples[: b - a]
    pcm = (np.clip(stem, -1.0, 1.0) * 32767.0).astype("<i2")
    with atomic_path(path) as tmp, wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())
    return path
