"""Speech regions with the packaged silero-vad on real synthesized speech (espeak-ng) over music."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from autocut.encoders.base import resample_mono
from autocut.errors import ConfigError
from autocut.library.vad import non_speech_audio, speech_regions

MUSIC = Path("/usr/share/games/wesnoth/1.16/data/core/music/battle.ogg")
SR = 22050
SPEECH_AT_S = 4.0
DURATION_S = 14.0


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> np.ndarray:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    wav = tmp_path_factory.mktemp("tts") / "speech.wav"
    text = "Meet the new juicer cup. Fresh juice in thirty seconds, anywhere you go. Washable blade, one button."
    subprocess.run(["espeak-ng", "-w", str(wav), text], check=True, capture_output=True)
    y, sr = sf.read(wav, dtype="float32")
    return resample_mono(y, sr, SR)


def _music() -> np.ndarray:
    n = int(DURATION_S * SR)
    if MUSIC.is_file():
        info = sf.info(MUSIC)
        y, _ = sf.read(
            MUSIC,
            dtype="float32",
            start=30 * info.samplerate,
            stop=int((30 + DURATION_S) * info.samplerate),
            always_2d=True,
        )
        y = resample_mono(y.mean(axis=1), info.samplerate, SR)[:n]
        return 0.35 * y / np.max(np.abs(y))
    t = np.arange(n) / SR  # fallback: a chord of tones
    return (0.1 * (np.sin(2 * np.pi * 220 * t) + np.sin(2 * np.pi * 277 * t) + np.sin(2 * np.pi * 330 * t))).astype(
        np.float32
    )


def _spoken_span_s(speech: np.ndarray) -> tuple[float, float]:
    voiced = np.flatnonzero(np.abs(speech) > 0.02)
    return SPEECH_AT_S + voiced[0] / SR, SPEECH_AT_S + voiced[-1] / SR


def _overlap_s(regions, start, end) -> float:
    return sum(max(0.0, min(e, end) - max(s, start)) for s, e in regions)


@pytest.mark.parametrize("background", ["music", "tone"])
def test_speech_regions_cover_the_spoken_part(speech, background):
    bed = (
        _music()
        if background == "music"
        else (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(DURATION_S * SR)) / SR)).astype(np.float32)
    )
    mix = bed.copy()
    mix[int(SPEECH_AT_S * SR) : int(SPEECH_AT_S * SR) + len(speech)] += speech
    start, end = _spoken_span_s(speech)

    regions = speech_regions(mix, SR)
    assert regions == sorted(regions) and all(s < e for s, e in regions)
    assert _overlap_s(regions, start, end) >= 0.85 * (end - start), regions
    # Nothing detected well outside the voice (the VAD pads regions by a few tens of ms).
    assert _overlap_s(regions, 0, start - 0.5) + _overlap_s(regions, end + 0.5, DURATION_S) < 0.3, regions
    assert _overlap_s(speech_regions(bed, SR), 0, DURATION_S) < 0.3  # the bed alone is not speech


def test_non_speech_audio_keeps_the_music_parts(speech):
    mix = _music()
    mix[int(SPEECH_AT_S * SR) : int(SPEECH_AT_S * SR) + len(speech)] += speech
    start, end = _spoken_span_s(speech)

    # At 44.1 kHz: the input's own rate and time base are kept.
    mix44 = resample_mono(mix, SR, 44100)
    result = non_speech_audio(mix44, 44100)
    assert not result.fallback_full_mix and result.sample_rate_hz == 44100
    assert _overlap_s(result.regions, start, end) < 0.2, result.regions
    kept_s = sum(e - s for s, e in result.regions)
    assert kept_s >= DURATION_S - (end - start) - 1.5  # most of the music-only time is kept
    assert abs(len(result.waveform) / 44100 - kept_s) < 0.01
    assert 0.3 < result.speech_fraction < 0.6


def test_speech_everywhere_falls_back_to_the_full_mix(speech):
    talk = np.concatenate([speech, speech, speech])  # espeak pauses are short: speech nearly throughout
    result = non_speech_audio(talk, SR)
    assert result.fallback_full_mix
    assert result.regions == [(0.0, len(talk) / SR)]
    np.testing.assert_array_equal(result.waveform, talk)
    # Threshold is configurable: allowing speech everywhere and no minimum keeps the gaps.
    relaxed = non_speech_audio(talk, SR, max_speech_fraction=1.0, min_non_speech_s=0.0, min_region_s=0.05)
    assert not relaxed.fallback_full_mix


def test_torchscript_fallback_agrees_with_the_onnx_backend(speech, monkeypatch):
    import torch

    from autocut.library import vad

    mix = _music()
    mix[int(SPEECH_AT_S * SR) : int(SPEECH_AT_S * SR) + len(speech)] += speech
    first = speech_regions(mix, SR)
    monkeypatch.setattr(vad, "_silero", None)  # restored after the test
    assert vad._silero_vad(prefer_onnx=False)[2] == "torchscript"
    threads = torch.get_num_threads()
    fallback = speech_regions(mix, SR)
    assert torch.get_num_threads() == threads
    assert len(fallback) == len(first)
    assert all(abs(a - b) < 0.1 for r1, r2 in zip(first, fallback) for a, b in zip(r1, r2))


def test_input_checks_and_silence():
    assert speech_regions(np.zeros(0, dtype=np.float32), SR) == []
    assert speech_regions(np.zeros(SR * 2, dtype=np.float32), SR) == []
    with pytest.raises(ConfigError, match="mono"):
        speech_regions(np.zeros((2, SR), dtype=np.float32), SR)
    with pytest.raises(ConfigError, match="float"):
        speech_regions(np.zeros(SR, dtype=np.int16), SR)
    with pytest.raises(ConfigError, match="empty"):
        non_speech_audio(np.zeros(0, dtype=np.float32), SR)


def test_loading_silero_keeps_the_torch_thread_setting(monkeypatch):
    """Importing silero_vad sets torch threads to 1; the VAD must undo that for the process."""
    import torch

    from autocut.library import vad

    for name in [m for m in sys.modules if m.split(".")[0] == "silero_vad"]:
        monkeypatch.delitem(sys.modules, name)  # so the import (and its side effect) runs again
    monkeypatch.setattr(vad, "_silero", None)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        speech_regions(np.zeros(16000, dtype=np.float32), 16000)
        assert "silero_vad.model" in sys.modules  # the import really ran in this test
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
