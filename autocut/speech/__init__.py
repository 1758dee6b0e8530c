"""Speech: TTS engines (espeak-ng, piper) with word timings, and the word/speaking-rate rules
that script lengths are planned and scored in."""

from typing import TYPE_CHECKING

from autocut._lazy import lazy_exports

if TYPE_CHECKING:
    from autocut.speech.tts import Speech, WordTiming, check_voice, estimate_duration_s, speak, synthesize
    from autocut.speech.words import DEFAULT_WORDS_PER_S, count_words, detect_language, target_words

__all__ = [
    "DEFAULT_WORDS_PER_S",
    "Speech",
    "WordTiming",
    "check_voice",
    "count_words",
    "detect_language",
    "estimate_duration_s",
    "speak",
    "synthesize",
    "target_words",
]

_SOURCES = {
    "DEFAULT_WORDS_PER_S": "words",
    "Speech": "tts",
    "WordTiming": "tts",
    "check_voice": "tts",
    "count_words": "words",
    "detect_language": "words",
    "estimate_duration_s": "tts",
    "speak": "tts",
    "synthesize": "tts",
    "target_words": "words",
}
__getattr__ = lazy_exports(__name__, _SOURCES)
