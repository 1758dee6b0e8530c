"""Speech regions (silero-vad, packaged model, offline) and the music-only parts of an ad's audio.

No speech/music separation model ships offline, so the BGM of a finished ad is embedded
from its non-speech regions, falling back to the full mix (flagged) when speech covers
nearly everything (docs/method.md, "Encoders and the library PCA").
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from autocut.encoders.base import resample_mono
from autocut.errors import ConfigError

__all__ = [
    "VAD_SAMPLE_RATE_HZ",
    "NonSpeechAudio",
    "non_speech_audio",
    "speech_regions",
]

logger = logging.getLogger(__name__)

VAD_SAMPLE_RATE_HZ = 16000  # silero-vad runs at 8 or 16 kHz; everything is resampled to 16 kHz

_model_lock = threading.Lock()  # the model is stateful (reset per call): one call at a time
_silero: tuple[object, Callable[..., list[dict]], str] | None = None


def _silero_vad(*, prefer_onnx: bool = True) -> tuple[object, Callable[..., list[dict]], str]:
    """(model, get_speech_timestamps, backend name), loaded once from silero-vad's packaged files.

    Call under `_model_lock`. The ONNX model is preferred: silero's wrapper gives it its own
    single-threaded onnxruntime session, and it ran 2x faster than the TorchScript one here.
    The TorchScript model is the fallback when onnxruntime is not installed; it is run with
    torch at one thread (see `_torch_single_thread`).
    """
    global _silero
    if _silero is None:
        # Importing silero_vad runs torch.set_num_threads(1) (silero_vad/model.py), which would
        # silently single-thread every other model in the process: restore the setting.
        threads = torch.get_num_threads()
        try:
            from silero_vad import get_speech_timestamps, load_silero_vad

            backend = "onnx" if prefer_onnx and importlib.util.find_spec("onnxruntime") else "torchscript"
            model = load_silero_vad(onnx=backend == "onnx")
        finally:
            torch.set_num_threads(threads)
        logger.info("silero-vad backend: %s", backend)
        _silero = (model, get_speech_timestamps, backend)
    return _silero


@contextmanager
def _torch_single_thread(enabled: bool) -> Iterator[None]:
    """The TorchScript VAD runs one 32 ms chunk per call: with 2+ intra-op threads on a busy
    machine it ran 50x slower than with one (0.2x vs 10x real time), so it gets one thread
    for the duration of the call (process-wide: torch has one intra-op pool)."""
    threads = torch.get_num_threads()
    if enabled and threads != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def _check(waveform: np.ndarray, sample_rate_hz: int) -> np.ndarray:
    waveform = np.asarray(waveform)
    if waveform.ndim != 1:
        raise ConfigError(f"VAD expects a mono 1-D waveform, got shape {waveform.shape}")
    if not np.issubdtype(waveform.dtype, np.floating):
        raise ConfigError(f"VAD expects float samples in [-1, 1], got {waveform.dtype}")
    if sample_rate_hz <= 0:
        raise ConfigError(f"sample_rate_hz must be positive, got {sample_rate_hz}")
    return waveform.astype(np.float32, copy=False)


def speech_regions(
    waveform: np.ndarray,
    sample_rate_hz: int,
    *,
    threshold: float = 0.5,
    min_speech_s: float = 0.25,
    min_silence_s: float = 0.1,
    speech_pad_s: float = 0.03,
) -> list[tuple[float, float]]:
    """Speech as sorted, non-overlapping (start_s, end_s) in the input's time base.

    Parameters are silero-vad's `get_speech_timestamps` options in seconds (its defaults).
    """
    waveform = _check(waveform, sample_rate_hz)
    if waveform.size == 0:
        return []
    audio = resample_mono(waveform, sample_rate_hz, VAD_SAMPLE_RATE_HZ)
    with _model_lock:
        model, get_speech_timestamps, backend = _silero_vad()
        with torch.inference_mode(), _torch_single_thread(backend == "torchscript"):
            stamps = get_speech_timestamps(
                torch.from_numpy(audio),
                model,
                threshold=threshold,
                sampling_rate=VAD_SAMPLE_RATE_HZ,
                min_speech_duration_ms=int(min_speech_s * 1000),
                min_silence_duration_ms=int(min_silence_s * 1000),
                speech_pad_ms=int(speech_pad_s * 1000),
                return_seconds=False,
            )
    duration_s = len(waveform) / sample_rate_hz
    regions = [
        (max(0.0, s["start"] / VAD_SAMPLE_RATE_HZ), min(duration_s, s["end"] / VAD_SAMPLE_RATE_HZ)) for s in stamps
    ]
    return [(start, end) for start, end in regions if end > start]


@dataclass(frozen=True)
class NonSpeechAudio:
    """The audio to embed as an ad's BGM and where it came from."""

    waveform: np.ndarray  # (samples,) float32 mono at sample_rate_hz: the kept regions, concatenated
    sample_rate_hz: int
    regions: list[tuple[float, float]]  # kept (start_s, end_s) of the input; [(0, duration)] on fallback
    speech_regions: list[tuple[float, float]]
    speech_fraction: float  # share of the input's duration covered by speech (after guard margins)
    fallback_full_mix: bool  # True: too little speech-free audio, `waveform` is the full mix (voice included)


def non_speech_audio(
    waveform: np.ndarray,
    sample_rate_hz: int,
    *,
    max_speech_fraction: float = 0.85,
    min_non_speech_s: float = 3.0,
    guard_s: float = 0.15,
    min_region_s: float = 0.5,
    vad_threshold: float = 0.5,
) -> NonSpeechAudio:
    """The non-speech parts of a finished ad's audio, for BGM embedding.

    Speech regions are widened by `guard_s` each side (voice onsets/tails the VAD trims);
    gaps shorter than `min_region_s` (pauses between words) are not kept. Falls back to
    the full mix, flagged, when speech covers more than `max_speech_fraction` of the audio
    or less than `min_non_speech_s` of speech-free audio remains (one aisfx block is ~2.3 s).
    """
    waveform = _check(waveform, sample_rate_hz)
    if not 0.0 <= max_speech_fraction <= 1.0:
        raise ConfigError(f"max_speech_fraction must be in [0, 1], got {max_speech_fraction}")
    duration_s = len(waveform) / sample_rate_hz
    if duration_s == 0:
        raise ConfigError("non_speech_audio: empty waveform (0 samples)")
    speech = speech_regions(waveform, sample_rate_hz, threshold=vad_threshold)

    guarded: list[tuple[float, float]] = []
    for start, end in speech:  # widen, then merge overlaps
        start, end = max(0.0, start - guard_s), min(duration_s, end + guard_s)
        if guarded and start <= guarded[-1][1]:
            guarded[-1] = (guarded[-1][0], max(guarded[-1][1], end))
        else:
            guarded.append((start, end))
    speech_fraction = sum(e - s for s, e in guarded) / duration_s

    kept: list[tuple[float, float]] = []
    cursor = 0.0
    for start, end in [*guarded, (duration_s, duration_s)]:
        if start - cursor >= min_region_s:
            kept.append((cursor, start))
        cursor = max(cursor, end)
    kept_s = sum(e - s for s, e in kept)

    if speech_fraction > max_speech_fraction or kept_s < min_non_speech_s:
        logger.info(
            "speech covers %.0f%% (%.1f s speech-free): BGM embedded from the full mix", 100 * speech_fraction, kept_s
        )
        return NonSpeechAudio(
            waveform=waveform,
            sample_rate_hz=sample_rate_hz,
            regions=[(0.0, duration_s)],
            speech_regions=speech,
            speech_fraction=speech_fraction,
            fallback_full_mix=True,
        )
    parts = [waveform[int(round(s * sample_rate_hz)) : int(round(e * sample_rate_hz))] for s, e in kept]
    return NonSpeechAudio(
        waveform=np.concatenate(parts),
        sample_rate_hz=sample_rate_hz,
        regions=kept,
        speech_regions=speech,
        speech_fraction=speech_fraction,
        fallback_full_mix=False,
    )
