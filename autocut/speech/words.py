"""Words and speaking rates: the unit script lengths are planned and scored in.

A word is a whitespace-separated token in Latin scripts and one character in CJK scripts;
punctuation is not a word. The words a clip should carry = round(rate x clip duration), default
rate 2.5 English words/s or 5 CJK characters/s (VideoNarrator), configurable. The planners size
their lines with it, constrained decoding bounds lines with it, and WCD scores with it
(docs/method.md, "Metrics").
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from autocut.errors import ConfigError

__all__ = [
    "CJK_CHAR",
    "DEFAULT_WORDS_PER_S",
    "count_words",
    "detect_language",
    "is_word_char",
    "speaking_rate",
    "target_words",
]

# Speaking rates behind the WCD target: VideoNarrator uses 5 CJK characters/s; 2.5 words/s is a
# typical English voice-over pace (150 words/min).
DEFAULT_WORDS_PER_S: dict[str, float] = {"en": 2.5, "zh": 5.0}

# Ideographs, kana and Hangul syllables count one word per character; CJK punctuation
# (U+3000-303F, full-width forms) does not.
CJK_CHAR = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002fa1f]")


LATIN_WORD = re.compile(r"[^\W_]")  # a letter or digit (any script)


def is_word_char(ch: str) -> bool:
    """A letter or digit of any script (what makes a Latin token a word)."""
    return bool(LATIN_WORD.match(ch))


def count_words(text: str) -> int:
    """Words in `text`: Latin whitespace tokens (with a letter or digit) + one per CJK character."""
    n_cjk = len(CJK_CHAR.findall(text))
    # A CJK character also ends any Latin run it touches ("USB充电" is USB + 2 characters).
    latin = CJK_CHAR.sub(" ", text).split() if n_cjk else text.split()
    return n_cjk + sum(1 for tok in latin if LATIN_WORD.search(tok))


def detect_language(text: str) -> str:
    """ "zh" when the text holds any CJK character, else "en" (picks the WCD rate for "auto")."""
    return "zh" if CJK_CHAR.search(text) else "en"


def speaking_rate(language: str, text: str, words_per_s: float | Mapping[str, float] | None) -> float:
    """Words per second for `language` ("auto": detected from `text`), from `words_per_s` or the defaults."""
    lang = detect_language(text) if language == "auto" else language
    if isinstance(words_per_s, (int, float)):
        rate = float(words_per_s)
    else:
        table = {**DEFAULT_WORDS_PER_S, **(words_per_s or {})}
        if lang not in table:
            raise ConfigError(f"no speaking rate for language {lang!r}; known: {', '.join(sorted(table))}")
        rate = table[lang]
    if not rate > 0:
        raise ConfigError(f"speaking rate must be positive, got {rate}")
    return rate


def target_words(
    duration_s: float, language: str = "en", *, words_per_s: float | Mapping[str, float] | None = None
) -> int:
    """The word count a clip of `duration_s` should carry: round(rate x duration)."""
    if duration_s < 0:
        raise ConfigError(f"clip duration must be >= 0, got {duration_s}")
    # round-half-up, not Python's banker's rounding: 2.5 words is 3 words, as a reader expects.
    return int(math.floor(speaking_rate(language, "", words_per_s) * duration_s + 0.5))
