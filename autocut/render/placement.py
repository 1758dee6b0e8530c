"""Where each segment lands in the output, in whole output frames.

Segment boundaries are rounded to output frames once (`place_segments`); video, voice placement,
subtitles and the OTIO export all use those same frames, so they stay frame-exact with each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from autocut.planning.voice_fit import VOICE_LEAD_S, VOICE_TAIL_S
from autocut.types import EditPlan

__all__ = ["SegmentPlacement", "output_fps", "place_segments", "voice_window_s"]


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
