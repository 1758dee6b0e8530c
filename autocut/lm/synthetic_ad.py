"""A finished-looking ad with a known script, for checking reference-edit recovery (ASR) end to end.

espeak-ng speaks each sentence (Mandarin through pinyin and the ``cmn-latn-pinyin`` voice, as
`autocut.speech.tts` does); the sentences are laid with fixed pauses over a quiet chord bed standing in for
BGM, and ffmpeg muxes the mix under a lavfi test video. The true speech span of every sentence is
known to the sample, so word error rate and boundary error can be measured.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autocut.errors import ConfigError

__all__ = ["SyntheticAd", "make_synthetic_ad"]

SAMPLE_RATE_HZ = 16_000


@dataclass(frozen=True)
class SyntheticAd:
    path: Path  # the MP4
    sentences: list[str]
    speech_s: list[tuple[float, float]]  # true (start_s, end_s) of each spoken sentence
    duration_s: float
    language: str


def _speak(text: str, language: str, wav: Path) -> np.ndarray:
    import soundfile as sf

    from autocut.encoders.base import resample_mono

    if language == "zh":
        from autocut.speech.tts import to_pinyin

        text, _ = to_pinyin(text)
        voice = "cmn-latn-pinyin"
    elif language == "en":
        voice = "en-us"
    else:
        raise ConfigError(f"synthetic ads speak 'en' or 'zh', not {language!r}")
    subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(wav), text], check=True)
    wave, sr = sf.read(wav, dtype="float32")
    wave = resample_mono(wave if wave.ndim == 1 else wave.mean(axis=1), sr, SAMPLE_RATE_HZ)
    voiced = np.flatnonzero(np.abs(wave) > 0.01)
    if voiced.size == 0:
        raise ConfigError(f"espeak-ng produced silence for {text[:40]!r}")
    return wave[voiced[0] : voiced[-1] + 1]  # trimmed: the sample's start/end are the true speech span


def make_synthetic_ad(
    out_path: str | Path,
    sentences: list[str],
    *,
    language: str = "en",
    lead_s: float = 2.5,
    gap_s: float = 0.7,
    tail_s: float = 2.5,
    music_gain: float = 0.05,
) -> SyntheticAd:
    """Write an MP4 whose audio speaks `sentences` over a chord bed; returns the ground truth."""
    import soundfile as sf

    out = Path(out_path)
    parts = [np.zeros(int(lead_s * SAMPLE_RATE_HZ), np.float32)]
    times = []
    t = lead_s
    with tempfile.TemporaryDirectory() as tmp:
        for i, s in enumerate(sentences):
            a = _speak(s, language, Path(tmp) / f"s{i}.wav")
            times.append((t, t + len(a) / SAMPLE_RATE_HZ))
            parts += [a, np.zeros(int(gap_s * SAMPLE_RATE_HZ), np.float32)]
            t += len(a) / SAMPLE_RATE_HZ + gap_s
        parts.append(np.zeros(int(tail_s * SAMPLE_RATE_HZ), np.float32))
        voice = np.concatenate(parts)
        tt = np.arange(len(voice)) / SAMPLE_RATE_HZ
        chord = sum(np.sin(2 * np.pi * f * tt) for f in (220.0, 277.2, 329.6))
        music = music_gain * chord * (0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * tt))  # slow swell, never silent
        wav = Path(tmp) / "mix.wav"
        sf.write(wav, (0.8 * voice + music).astype(np.float32), SAMPLE_RATE_HZ)
        dur = len(voice) / SAMPLE_RATE_HZ
        subprocess.run(
            [
                "ffmpeg",
                "-nostdin",
                "-loglevel",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                f"testsrc2=size=160x120:rate=10:duration={dur}",
                "-i",
                str(wav),
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-pix_fmt",
                "yuv420p",
                "-c:a",
                "aac",
                "-shortest",
                str(out),
            ],
            check=True,
        )
    return SyntheticAd(out, list(sentences), times, dur, language)
