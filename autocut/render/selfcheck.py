"""Self-check of a finished render: ffprobe plus one ffmpeg decode pass of the output, against the plan.

What is checked (each check is ok, warn or fail, with the measured value and its threshold):

* `format`: size, frame rate and streams are the plan's (ffprobe);
* `segments`: every frame of the plan's timeline is in the file (decoded frames vs the plan's frame count;
  a short file names the segments it lost);
* `av_duration`: audio and video streams end together (ffprobe);
* `black`: black stretches (ffmpeg `blackdetect`), with the segments they fall in;
* `freeze`: frozen stretches (`freezedetect`); a warning only, since a product shot may legitimately be still;
* `narration_silence`: silence (`silencedetect`) inside the spans where the voice-over speaks;
* `loudness`, `true_peak`: integrated loudness and true peak (`ebur128`) against the plan's (or preset's) target.

`build_selfcheck_command` is the decode pass as data; `run_selfcheck` runs it and judges the result;
`autocut.render.pipeline.render` calls it after the main pass, before anything is published, and a failed
check fails the render (`SelfCheckFailed`) with the reasons.
"""

from __future__ import annotations

import enum
import json
import re
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autocut.errors import RenderError
from autocut.render.ffmpeg import FfmpegCommand, run_ffmpeg
from autocut.render.loudness import parse_ebur128

if TYPE_CHECKING:
    from autocut.render.loudness import LoudnessMeasurement
    from autocut.render.preparation import PreparedRender

__all__ = [
    "Check",
    "CheckStatus",
    "SelfCheckExpectation",
    "SelfCheckFailed",
    "SelfCheckLimits",
    "SelfCheckReport",
    "build_selfcheck_command",
    "run_selfcheck",
]


class CheckStatus(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


_SEVERITY = {CheckStatus.OK: 0, CheckStatus.WARN: 1, CheckStatus.FAIL: 2}


@dataclass(frozen=True)
class Check:
    """One check's verdict: what was measured, against which threshold."""

    name: str
    status: CheckStatus
    value: float | int | str | None
    threshold: str  # the rule, in words with units, e.g. "<= 0.5 s (warn), <= 1.0 s (fail)"
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status.value,
            "value": self.value,
            "threshold": self.threshold,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class SelfCheckReport:
    """All checks of one output file, and the wall time of the check."""

    checks: tuple[Check, ...]
    wall_s: float

    @property
    def status(self) -> CheckStatus:
        """The worst status of any check."""
        return max((c.status for c in self.checks), key=_SEVERITY.__getitem__, default=CheckStatus.OK)

    def with_status(self, status: CheckStatus) -> list[Check]:
        return [c for c in self.checks if c.status is status]

    def reasons(self, status: CheckStatus = CheckStatus.FAIL) -> list[str]:
        """One line per check with `status`: "name: detail"."""
        return [f"{c.name}: {c.detail}" for c in self.with_status(status)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: overall status, warnings and failures as lines, and every check."""
        return {
            "status": self.status.value,
            "wall_s": round(self.wall_s, 3),
            "failures": self.reasons(CheckStatus.FAIL),
            "warnings": self.reasons(CheckStatus.WARN),
            "checks": [c.to_dict() for c in self.checks],
        }


class SelfCheckFailed(RenderError):
    """The rendered file failed its self-check; nothing was published. Permanent: a retry renders the same."""

    def __init__(self, report: SelfCheckReport) -> None:
        self.report = report
        super().__init__("the rendered video failed its self-check: " + "; ".join(report.reasons()))


@dataclass(frozen=True)
class SelfCheckLimits:
    """Thresholds of the checks. Each `*_warn_*` / `*_fail_*` pair: at or over the first warns, over the second
    fails."""

    # Black: ffmpeg blackdetect's pixel threshold (fraction of the luma range) and the share of the picture
    # that must be that dark; a dark night shot still passes, a black frame does not.
    black_pixel_th: float = 0.10
    black_picture_th: float = 0.98
    black_warn_s: float = 0.5
    black_fail_s: float = 1.0
    # Freeze: frames that differ by less than this noise level (dB) for this long; a warning only.
    freeze_noise_db: float = -60.0
    freeze_warn_s: float = 2.0
    # Silence under narration: below this level, inside a voice span trimmed by `narration_trim_s` at each
    # end (the TTS pads a sentence with a little silence); speech pauses at a comma or full stop are shorter
    # than the warning threshold even at the slowest speaking rate.
    silence_db: float = -50.0
    narration_trim_s: float = 0.15
    silence_warn_s: float = 0.6
    silence_fail_s: float = 1.0
    # Loudness: integrated loudness within this many LU of the target.
    loudness_warn_lu: float = 1.0
    loudness_fail_lu: float = 2.0
    # True peak: over the target by more than this warns (AAC overshoot); over 0 dBTP (clipping on playback)
    # fails.
    true_peak_warn_over_db: float = 0.3
    true_peak_fail_dbtp: float = 0.0
    # Audio and video stream durations.
    av_warn_s: float = 0.1
    av_fail_s: float = 0.25


@dataclass(frozen=True)
class SelfCheckExpectation:
    """What the output should be, from the plan as rendered."""

    width: int
    height: int
    fps: float
    n_frames: int
    has_audio: bool
    segment_spans_s: tuple[tuple[float, float], ...]  # output (start, end) of each segment
    narrated_spans_s: tuple[tuple[float, float], ...] = ()  # output (start, end) of each spoken sentence
    loudness_lufs: float | None = None  # None: the mix was not normalised (no audio, or silent)
    true_peak_db: float = -1.0

    @property
    def duration_s(self) -> float:
        return self.n_frames / self.fps

    @classmethod
    def from_render(cls, p: PreparedRender, loudness: LoudnessMeasurement | None) -> SelfCheckExpectation:
        """The expectation of a prepared render whose mix was measured as `loudness`."""
        plan = p.plan
        fps = float(p.fps)
        spans = tuple((s.placement.start_frame / fps, s.placement.end_frame / fps) for s in p.segments)
        narrated: tuple[tuple[float, float], ...] = ()
        if p.voice_wav is not None:
            narrated = tuple((s.voice_start_s, s.voice_start_s + s.voice_duration_s) for s in p.segments)
        normalised = loudness is not None and loudness.input_i > -69.0
        return cls(
            width=plan.output.width,
            height=plan.output.height,
            fps=fps,
            n_frames=p.total_frames,
            has_audio=True,  # the renderer always writes an audio stream (silence when nothing is mixed)
            segment_spans_s=spans,
            narrated_spans_s=narrated,
            loudness_lufs=plan.loudness_lufs if normalised else None,
            true_peak_db=plan.true_peak_db,
        )


# --------------------------------------------------------------------------- the decode pass


def build_selfcheck_command(
    path: Path, expect: SelfCheckExpectation, limits: SelfCheckLimits, *, audio: bool, threads: int | None = None
) -> FfmpegCommand:
    """One decode pass of `path` through blackdetect + freezedetect (video) and, with `audio`, ebur128 +
    silencedetect (audio), into the null muxer; the detectors report on stderr."""
    lim = limits
    video = (
        f"[0:v:0]blackdetect=d={min(lim.black_warn_s, lim.black_fail_s)}:pix_th={lim.black_pixel_th}:"
        f"pic_th={lim.black_picture_th},freezedetect=n={lim.freeze_noise_db}dB:d={lim.freeze_warn_s}[v]"
    )
    graph = [video]
    maps = ["-map", "[v]"]
    if audio:
        silence_min_s = min(lim.silence_warn_s, lim.silence_fail_s)
        graph.append(
            "[0:a:0]asplit=2[a1][a2];[a1]ebur128=peak=true:framelog=verbose[loud];"
            f"[a2]silencedetect=n={lim.silence_db}dB:d={silence_min_s}[sil]"
        )
        maps += ["-map", "[loud]", "-map", "[sil]"]
    # Stats stay on: the last "frame=" line of stderr is the number of frames decoded.
    args = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "info", "-i", str(path)]
    args += ["-filter_complex", ";".join(graph), *maps]
    if threads:
        args += ["-threads", str(threads)]
    args += ["-progress", "pipe:1", "-f", "null", "-"]
    return FfmpegCommand(args, Path(path).parent, expect.duration_s)


@dataclass(frozen=True)
class _Probe:
    width: int
    height: int
    fps: float
    video_s: float | None
    audio_s: float | None


def _ffprobe(path: Path) -> _Probe:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if out.returncode != 0:
        raise RenderError(f"self-check: ffprobe cannot read {path.name}: {out.stderr.strip()[-300:]}")
    streams = json.loads(out.stdout).get("streams", [])
    v = next((s for s in streams if s.get("codec_type") == "video"), None)
    a = next((s for s in streams if s.get("codec_type") == "audio"), None)
    if v is None:
        raise RenderError(f"self-check: {path.name} has no video stream")
    num, _, den = str(v.get("avg_frame_rate", "0/1")).partition("/")
    fps = float(num) / float(den or 1) if float(den or 1) else 0.0

    def dur(s: dict[str, Any] | None) -> float | None:
        return float(s["duration"]) if s is not None and "duration" in s else None

    return _Probe(int(v["width"]), int(v["height"]), fps, dur(v), dur(a))


_NUM = r"(-?[\d.]+(?:e-?\d+)?)"


def _intervals(stderr: str, start_key: str, end_key: str, end_s: float) -> list[tuple[float, float]]:
    """(start, end) pairs of a detector's `start_key: t` / `end_key: t` lines; an open one ends at `end_s`."""
    out: list[tuple[float, float]] = []
    start: float | None = None
    for m in re.finditer(rf"\b({re.escape(start_key)}|{re.escape(end_key)}):\s*{_NUM}", stderr):
        t = float(m.group(2))
        if m.group(1) == start_key:
            start = t
        elif start is not None:
            out.append((start, t))
            start = None
    if start is not None:
        out.append((start, end_s))
    return out


def _black_intervals(stderr: str) -> list[tuple[float, float]]:
    return [(float(a), float(b)) for a, b in re.findall(rf"black_start:\s*{_NUM}\s+black_end:\s*{_NUM}", stderr)]


def _segments_in(spans: Sequence[tuple[float, float]], a: float, b: float) -> list[int]:
    """1-based indices of the segments that overlap [a, b)."""
    return [k + 1 for k, (s0, s1) in enumerate(spans) if s0 < b and a < s1]


def _grade(value: float, warn: float, fail: float) -> CheckStatus:
    if value > fail:
        return CheckStatus.FAIL
    if value >= warn:
        return CheckStatus.WARN
    return CheckStatus.OK


# --------------------------------------------------------------------------- the checks


def _judge(probe: _Probe, stderr: str, expect: SelfCheckExpectation, lim: SelfCheckLimits) -> list[Check]:
    audio = expect.has_audio and probe.audio_s is not None  # what the decode pass measured
    checks: list[Check] = []
    size_ok = (probe.width, probe.height) == (expect.width, expect.height)
    fps_ok = abs(probe.fps - expect.fps) < 0.01
    audio_ok = (probe.audio_s is not None) == expect.has_audio
    fmt = f"{probe.width}x{probe.height} @ {probe.fps:.3f} fps, audio {'yes' if probe.audio_s is not None else 'no'}"
    want = f"{expect.width}x{expect.height} @ {expect.fps:.3f} fps, audio {'yes' if expect.has_audio else 'no'}"
    checks.append(
        Check(
            "format",
            CheckStatus.OK if size_ok and fps_ok and audio_ok else CheckStatus.FAIL,
            fmt,
            want,
            "" if size_ok and fps_ok and audio_ok else f"the file is {fmt}, the plan asks for {want}",
        )
    )

    frames = [int(x) for x in re.findall(r"frame=\s*(\d+)", stderr)]
    n = frames[-1] if frames else 0
    missing = n < expect.n_frames
    lost = _segments_in(expect.segment_spans_s, n / expect.fps, expect.duration_s) if missing else []
    if n == expect.n_frames:
        seg_status, seg_detail = CheckStatus.OK, ""
    else:
        seg_status = CheckStatus.FAIL
        seg_detail = f"{n} frames decoded, the plan's timeline has {expect.n_frames}"
        if lost:
            seg_detail += f"; segment(s) {', '.join(map(str, lost))} missing or cut short"
    checks.append(Check("segments", seg_status, n, f"== {expect.n_frames} frames", seg_detail))

    if probe.audio_s is not None and probe.video_s is not None and expect.has_audio:
        diff = abs(probe.audio_s - probe.video_s)
        st = _grade(diff, lim.av_warn_s, lim.av_fail_s)
        checks.append(
            Check(
                "av_duration",
                st,
                round(diff, 3),
                f"< {lim.av_warn_s} s ok, <= {lim.av_fail_s} s warn",
                "" if st is CheckStatus.OK else f"audio {probe.audio_s:.3f} s, video {probe.video_s:.3f} s",
            )
        )

    black = _black_intervals(stderr)
    longest = max((b - a for a, b in black), default=0.0)
    st = _grade(longest, lim.black_warn_s, lim.black_fail_s)
    where = "; ".join(
        f"{a:.2f}-{b:.2f} s (segment {', '.join(map(str, _segments_in(expect.segment_spans_s, a, b)))})"
        for a, b in black
        if b - a >= lim.black_warn_s
    )
    checks.append(
        Check(
            "black",
            st,
            round(longest, 3),
            f"< {lim.black_warn_s} s ok, <= {lim.black_fail_s} s warn",
            f"black picture at {where}" if st is not CheckStatus.OK else "",
        )
    )

    frozen = _intervals(stderr, "lavfi.freezedetect.freeze_start", "lavfi.freezedetect.freeze_end", expect.duration_s)
    longest = max((b - a for a, b in frozen), default=0.0)
    st = CheckStatus.WARN if longest >= lim.freeze_warn_s else CheckStatus.OK
    checks.append(
        Check(
            "freeze",
            st,
            round(longest, 3),
            f"< {lim.freeze_warn_s} s ok, else warn",
            "frozen picture at " + "; ".join(f"{a:.2f}-{b:.2f} s" for a, b in frozen) if frozen else "",
        )
    )

    if audio and expect.narrated_spans_s:
        silences = _intervals(stderr, "silence_start", "silence_end", expect.duration_s)
        worst, found = 0.0, []
        for k, (v0, v1) in enumerate(expect.narrated_spans_s):
            a, b = v0 + lim.narration_trim_s, v1 - lim.narration_trim_s
            for s0, s1 in silences:
                gap = min(b, s1) - max(a, s0)
                if gap >= min(lim.silence_warn_s, lim.silence_fail_s):
                    worst = max(worst, gap)
                    found.append(f"{max(a, s0):.2f}-{min(b, s1):.2f} s (line {k + 1})")
        st = _grade(worst, lim.silence_warn_s, lim.silence_fail_s)
        checks.append(
            Check(
                "narration_silence",
                st,
                round(worst, 3),
                f"< {lim.silence_warn_s} s ok, <= {lim.silence_fail_s} s warn (below {lim.silence_db} dB)",
                "silence under the voice-over at " + "; ".join(found) if found else "",
            )
        )

    if audio:
        r128 = parse_ebur128(stderr)[-1]
        if expect.loudness_lufs is not None:
            off = abs(r128.i - expect.loudness_lufs)
            st = _grade(off, lim.loudness_warn_lu + 1e-9, lim.loudness_fail_lu)
            checks.append(
                Check(
                    "loudness",
                    st,
                    round(r128.i, 2),
                    f"{expect.loudness_lufs:g} LUFS +-{lim.loudness_warn_lu:g} LU ok, +-{lim.loudness_fail_lu:g} warn",
                    "" if st is CheckStatus.OK else f"{r128.i:.1f} LUFS, target {expect.loudness_lufs:g} LUFS",
                )
            )
        tp = r128.tp if r128.tp is not None else -99.0
        warn_at = expect.true_peak_db + lim.true_peak_warn_over_db
        if tp > lim.true_peak_fail_dbtp:
            st = CheckStatus.FAIL
        elif tp > warn_at:
            st = CheckStatus.WARN
        else:
            st = CheckStatus.OK
        checks.append(
            Check(
                "true_peak",
                st,
                round(tp, 2),
                f"<= {warn_at:g} dBTP ok, <= {lim.true_peak_fail_dbtp:g} dBTP warn",
                "" if st is CheckStatus.OK else f"true peak {tp:.1f} dBTP, target {expect.true_peak_db:g} dBTP",
            )
        )
    return checks


def run_selfcheck(
    path: str | Path,
    expect: SelfCheckExpectation,
    *,
    limits: SelfCheckLimits | None = None,
    threads: int | None = None,
    cancel: threading.Event | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> SelfCheckReport:
    """ffprobe `path`, decode it once through the detectors and judge every check against `expect`."""
    t0 = time.monotonic()
    path = Path(path)
    lim = limits or SelfCheckLimits()
    probe = _ffprobe(path)
    # A missing audio stream fails `format`; the audio detectors then have nothing to read.
    audio = expect.has_audio and probe.audio_s is not None
    cmd = build_selfcheck_command(path, expect, lim, audio=audio, threads=threads)
    stderr = run_ffmpeg(cmd, cancel=cancel, on_progress=on_progress)
    checks = _judge(probe, stderr, expect, lim)
    return SelfCheckReport(tuple(checks), time.monotonic() - t0)
