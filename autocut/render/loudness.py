"""EBU R128 loudness: what the audio-only measuring passes report, and the gains the main pass applies.

The measuring passes (`autocut.render.pipeline.measure_loudness`) run ffmpeg's `ebur128` filter on
the voice and BGM stems and on the ducked mix; this module reads its summaries and holds the result.
The main pass then normalises with one linear gain (two-pass, like loudnorm's linear mode), followed
by a lookahead limiter only when that gain would push the true peak over the target
(docs/method.md, "Rendering and voice fit").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from autocut.errors import RenderError

__all__ = ["LIMITER_MARGIN_DB", "TRUE_PEAK_MARGIN_DB", "LoudnessMeasurement", "R128Summary", "parse_ebur128"]

# Headroom under the true-peak target for AAC overshoot: the mix's measured true peak stays this far
# under the target; when it would not, a sample-peak limiter sits this far under it.
TRUE_PEAK_MARGIN_DB = 0.5
LIMITER_MARGIN_DB = 1.2


@dataclass(frozen=True)
class LoudnessMeasurement:
    """What the audio-only passes measured (EBU R128) and the gains the main pass applies."""

    input_i: float  # integrated loudness of the mix, LUFS
    input_tp: float  # its true peak, dBTP
    input_lra: float  # its loudness range, LU
    gain_db: float  # linear gain that brings the mix to the target
    bgm_gain_db: float = 0.0  # volume of the music bed before ducking
    limiter_db: float | None = None  # peak ceiling (dBFS) after the gain, when the gain alone would clip


@dataclass(frozen=True)
class R128Summary:
    """One ebur128 instance's summary."""

    i: float  # integrated loudness, LUFS (-70 for silence)
    lra: float  # loudness range, LU
    tp: float | None  # true peak, dBTP (None when not measured)


_EBUR128_SUMMARY = re.compile(r"\[Parsed_ebur128_(\d+)[^\]]*\]\s*Summary:(.*?)(?=\[Parsed_|\Z)", re.S)


def parse_ebur128(stderr: str) -> list[R128Summary]:
    """Each ebur128 instance's summary, in filtergraph order (-inf -> -70 LUFS / -99 dBTP)."""

    def num(pattern: str, text: str) -> float | None:
        m = re.search(pattern, text, re.S)
        if not m:
            return None
        return -99.0 if m.group(1) == "-inf" else float(m.group(1))

    # ffmpeg may configure a graph twice and each copy reports; the last report per instance counts.
    found: dict[int, R128Summary] = {}
    for idx, body in _EBUR128_SUMMARY.findall(stderr):
        i = num(r"I:\s*(-inf|-?[\d.]+)\s*LUFS", body)
        if i is None:
            continue
        found[int(idx)] = R128Summary(
            max(i, -70.0),
            num(r"LRA:\s*(-?[\d.]+)\s*LU", body) or 0.0,
            num(r"True peak:\s*Peak:\s*(-inf|-?[\d.]+)", body),
        )
    if not found:
        raise RenderError("loudness measurement failed: no EBU R128 summary from ffmpeg")
    return [found[i] for i in sorted(found)]
