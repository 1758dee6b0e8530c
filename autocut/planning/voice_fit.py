"""The voice-fit rule shared by the planner and the renderer.

A plan's sentence must fit its segment: spoken at a rate within `MIN_SPEECH_RATE`..`MAX_SPEECH_RATE`
of the voice's natural speed, inside the segment's slot less `VOICE_LEAD_S` of silence before it and
`VOICE_TAIL_S` after it (and half of each crossfade). The planner sizes segments with this rule; the
renderer checks it and refuses a plan that breaks it before ffmpeg starts (docs/method.md, "Rendering and voice fit").
"""

from __future__ import annotations

from autocut.speech import tts
from autocut.types import VoiceSpec

__all__ = ["MAX_SPEECH_RATE", "MIN_SPEECH_RATE", "VOICE_LEAD_S", "VOICE_TAIL_S", "fit_rate"]

# Speech-rate band a sentence may be spoken at (+-15 % of the voice's natural rate).
MIN_SPEECH_RATE = 0.85
MAX_SPEECH_RATE = 1.15
# Silence kept before each sentence starts and after it ends, inside its segment's slot.
VOICE_LEAD_S = 0.12
VOICE_TAIL_S = 0.12


def fit_rate(sentence: str, voice: VoiceSpec, rate: float, avail_s: float) -> tuple[float, float]:
    """Speech rate within the allowed band whose narration fits `avail_s`; (rate, duration_s).

    The duration is over `avail_s` when even the fastest allowed rate is too slow.
    """
    rate = min(MAX_SPEECH_RATE, max(MIN_SPEECH_RATE, rate))
    dur = tts.estimate_duration_s(sentence, voice, rate)
    for _ in range(4):
        if dur <= avail_s or rate >= MAX_SPEECH_RATE:
            break
        # Duration scales about as 1/rate; aim 1 % under the window.
        rate = min(MAX_SPEECH_RATE, round(rate * dur / (avail_s * 0.99), 4))
        dur = tts.estimate_duration_s(sentence, voice, rate)
    return rate, dur
