"""The voice's base rate follows its language, so script lines written to the WCD targets fit their clips.

The WCD target (docs/method.md, "Metrics") writes 2.5 English words or 5 Chinese characters per
second of clip; the espeak-ng voices must speak about that fast at rate 1.0, or the planner can only
fit Mandarin lines by speeding up past the renderer's +-15 %. Measured with the real espeak-ng voices
on the script writer's own lines.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from autocut.planning.pipeline import _voice_for
from autocut.planning.script import write_script
from autocut.planning.voice_fit import MAX_SPEECH_RATE, VOICE_LEAD_S, VOICE_TAIL_S
from autocut.speech import tts
from autocut.speech.words import DEFAULT_WORDS_PER_S, count_words
from autocut.types import PlanRequest, PoolItem, ProductInfo, VoiceSpec

PRODUCTS = {
    "en": ProductInfo(
        name="FreshCo Blender Bottle X2",
        brand="FreshCo",
        category="Kitchen",
        selling_points=["thirty-second results", "a leak-proof lid", "USB charging"],
    ),
    "zh": ProductInfo(
        name="鲜享榨汁杯X2", brand="鲜享", category="厨房好物", selling_points=["三十秒快速完成", "防漏密封盖"]
    ),
}
DURATIONS_S = [2.0, 3.0, 4.5, 6.0, 8.0, 3.5]
# Segment time the voice cannot use at 30 fps with cuts (see autocut.planning.pipeline._extra_s).
EXTRA_S = VOICE_LEAD_S + VOICE_TAIL_S + 1 / 30 + 0.05


def test_explicit_rate_wins_and_none_means_the_language_default() -> None:
    assert VoiceSpec().words_per_minute is None
    en, zh = tts.base_words_per_minute(VoiceSpec()), tts.base_words_per_minute(VoiceSpec(language="zh"))
    assert zh > en  # Mandarin syllables are short: espeak-ng needs a higher "wpm" for the same pace
    assert tts.base_words_per_minute(VoiceSpec(language="zh", words_per_minute=165)) == 165
    assert tts.base_words_per_minute(VoiceSpec(engine="piper", words_per_minute=200)) == 200
    line = "没时间吃早餐？三十秒就能喝到鲜榨果汁。"
    slow = tts.estimate_duration_s(line, VoiceSpec(language="zh", words_per_minute=165))
    assert tts.estimate_duration_s(line, VoiceSpec(language="zh")) < slow / 1.3
    with pytest.raises(ValidationError):
        VoiceSpec(words_per_minute=79)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_default_voice_speaks_script_lines_at_the_wcd_rate(lang: str) -> None:
    voice = VoiceSpec(language=lang)  # type: ignore[arg-type]
    units, speech_s, needed = 0, 0.0, []
    for seed in range(3):
        for line, dur in zip(write_script(PRODUCTS[lang], DURATIONS_S, lang, seed=seed), DURATIONS_S):  # type: ignore[arg-type]
            s = tts.estimate_duration_s(line.text, voice, 1.0)
            units += count_words(line.text)
            speech_s += s
            needed.append(s / (dur - EXTRA_S))  # speed-up the clip needs for this line
    rate = units / speech_s
    print(
        f"{lang}: {rate:.2f} units/s of speech at {tts.base_words_per_minute(voice)} wpm; needed speed-ups "
        f"median {sorted(needed)[len(needed) // 2]:.2f}, max {max(needed):.2f}"
    )
    # No more than 15 % slower than the WCD target (slower lines overflow their clips; faster only leaves
    # pauses), and a typical line fits its clip within the renderer's speed-up.
    assert DEFAULT_WORDS_PER_S[lang] * 0.85 <= rate <= DEFAULT_WORDS_PER_S[lang] * 1.3
    assert sorted(needed)[len(needed) // 2] <= MAX_SPEECH_RATE


def test_plan_records_the_rate_its_fits_used() -> None:
    def req(language: str, voice: VoiceSpec) -> PlanRequest:
        return PlanRequest(
            product=PRODUCTS[language],
            pool=[PoolItem(photo_id=1)],
            language=language,  # type: ignore[arg-type]
            voice=voice,
        )

    zh = _voice_for(req("zh", VoiceSpec()))  # the default voice follows the request's language
    assert (zh.language, zh.words_per_minute) == ("zh", tts.base_words_per_minute(VoiceSpec(language="zh")))
    assert _voice_for(req("en", VoiceSpec())).words_per_minute == tts.base_words_per_minute(VoiceSpec())
    assert _voice_for(req("zh", VoiceSpec(language="zh", words_per_minute=200))).words_per_minute == 200
