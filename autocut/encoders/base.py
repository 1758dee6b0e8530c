"""The two encoder interfaces (frames, audio) and the plumbing they share.

Encoders take numpy arrays, not files: the media layer decodes and resamples, the
encoder only turns pixels / samples into pooled feature vectors. Models load lazily
on first use and once per encoder object; the factories in `frames.py` / `audio.py`
cache encoder objects, so a process holds each model once.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from math import gcd

import numpy as np
import torch

from autocut.errors import ConfigError

__all__ = [
    "AudioEncoder",
    "FrameEncoder",
    "apply_num_threads",
    "l2_normalize",
    "resample_mono",
]

logger = logging.getLogger(__name__)


def apply_num_threads(num_threads: int | None) -> None:
    """Set torch's intra-op thread count when asked; None leaves the process setting alone.

    torch's thread pool is process-wide, so this affects every model in the process.
    """
    if num_threads is None:
        return
    if num_threads < 1:
        raise ConfigError(f"num_threads must be >= 1, got {num_threads}")
    if torch.get_num_threads() != num_threads:
        logger.info("torch intra-op threads: %d -> %d", torch.get_num_threads(), num_threads)
        torch.set_num_threads(num_threads)


def l2_normalize(x: np.ndarray, *, axis: int = -1, eps: float = 1e-12) -> np.ndarray:
    """Unit-length rows (float32); an all-zero row stays zero instead of becoming NaN."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return (x / np.maximum(norm, eps)).astype(np.float32, copy=False)


def resample_mono(waveform: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """Polyphase resampling of a mono float waveform (scipy), float32 out."""
    if from_hz <= 0 or to_hz <= 0:
        raise ConfigError(f"sample rates must be positive, got {from_hz} -> {to_hz}")
    waveform = np.asarray(waveform, dtype=np.float32)
    if from_hz == to_hz:
        return waveform
    from scipy.signal import resample_poly

    g = gcd(int(from_hz), int(to_hz))
    return resample_poly(waveform, int(to_hz) // g, int(from_hz) // g).astype(np.float32, copy=False)


class _LazyModel:
    """Loads a model on first use, once, also when several threads ask at the same time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._model: torch.nn.Module | None = None

    def get(self, load) -> torch.nn.Module:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    model = load()
                    model.eval()
                    self._model = model
        return self._model

    @property
    def loaded(self) -> bool:
        return self._model is not None


class FrameEncoder(ABC):
    """RGB frames -> pooled CNN features (before PCA).

    Subclasses set `name`, `input_size` (H, W) and `raw_dim`, the per-channel
    `_mean_rgb` / `_std_rgb` in 0..255 units, and implement `_load` and `_forward`.
    """

    name: str
    input_size: tuple[int, int]
    raw_dim: int
    _mean_rgb: tuple[float, float, float]
    _std_rgb: tuple[float, float, float]

    def __init__(self, *, batch_size: int = 32, num_threads: int | None = None) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.num_threads = num_threads
        self._lazy = _LazyModel()

    @abstractmethod
    def _load(self) -> torch.nn.Module:
        """Build the model with its weights (called once, lazily)."""

    @abstractmethod
    def _forward(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised float32 -> (B, raw_dim) pooled features."""

    @property
    def model(self) -> torch.nn.Module:
        """The underlying torch module, loaded on first access."""
        apply_num_threads(self.num_threads)
        return self._lazy.get(self._load)

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        """(B, H, W, 3) uint8 RGB -> (B, 3, H, W) float32, normalised for this model."""
        # Converting in numpy gives a fresh writable array (decoder buffers may be read-only), and the
        # NHWC -> NCHW permute of it is channels_last in memory, which oneDNN convolutions ran
        # faster than NCHW here (with BN folding: 2.2x the shipped lite0, benchmarks/encoders.py).
        x = torch.from_numpy(frames.astype(np.float32)).permute(0, 3, 1, 2)  # (B, 3, H, W), channels_last
        mean = torch.tensor(self._mean_rgb, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(self._std_rgb, dtype=torch.float32).view(1, 3, 1, 1)
        return (x - mean) / std

    def encode(self, frames: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) uint8 RGB at `input_size` -> (B, raw_dim) float32 pooled features."""
        frames = np.asarray(frames)
        h, w = self.input_size
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (h, w, 3):
            raise ConfigError(
                f"{self.name} expects uint8 RGB frames of shape (B, {h}, {w}, 3), "
                f"got {frames.dtype} {frames.shape}; sample frames at size_hw={self.input_size}"
            )
        out = np.empty((frames.shape[0], self.raw_dim), dtype=np.float32)
        if frames.shape[0] == 0:
            return out
        model = self.model
        with torch.inference_mode():
            for start in range(0, frames.shape[0], self.batch_size):
                batch = self.preprocess(frames[start : start + self.batch_size])
                feats = self._forward(model, batch)  # (b, raw_dim)
                out[start : start + feats.shape[0]] = feats.float().numpy()
        return out


class AudioEncoder(ABC):
    """Mono waveform -> one embedding per block, and a pooled track embedding.

    Track embedding = mean of the block embeddings, then L2-normalised: a BGM track is
    one point for retrieval and for its 8 RQ-VAE audio tokens (docs/method.md, "Encoders and the library PCA").
    """

    name: str
    sample_rate_hz: int
    dim: int

    def __init__(self, *, num_threads: int | None = None) -> None:
        self.num_threads = num_threads
        self._lazy = _LazyModel()

    @abstractmethod
    def _load(self) -> torch.nn.Module:
        """Build the model with its weights (called once, lazily)."""

    @abstractmethod
    def _encode_blocks(self, model: torch.nn.Module, waveform: np.ndarray) -> np.ndarray:
        """Mono float32 at `sample_rate_hz` (non-empty) -> (n_blocks, dim) float32."""

    @property
    def model(self) -> torch.nn.Module:
        """The underlying torch module, loaded on first access."""
        apply_num_threads(self.num_threads)
        return self._lazy.get(self._load)

    def _check_waveform(self, waveform: np.ndarray, sample_rate_hz: int | None) -> np.ndarray:
        waveform = np.asarray(waveform)
        if waveform.ndim != 1:
            raise ConfigError(f"{self.name} expects a mono 1-D waveform, got shape {waveform.shape}")
        if waveform.size == 0:
            raise ConfigError(f"{self.name}: empty waveform (0 samples)")
        if not np.issubdtype(waveform.dtype, np.floating):
            raise ConfigError(f"{self.name} expects float samples in [-1, 1], got {waveform.dtype}")
        waveform = waveform.astype(np.float32, copy=False)
        if not np.all(np.isfinite(waveform)):
            raise ConfigError(f"{self.name}: waveform contains NaN or inf samples")
        if sample_rate_hz is not None and sample_rate_hz != self.sample_rate_hz:
            waveform = resample_mono(waveform, sample_rate_hz, self.sample_rate_hz)
        return waveform

    def encode_blocks(self, waveform: np.ndarray, sample_rate_hz: int | None = None) -> np.ndarray:
        """Mono float waveform -> (n_blocks, dim) float32 (at least one block).

        `sample_rate_hz` defaults to the encoder's own rate; another rate is resampled.
        """
        waveform = self._check_waveform(waveform, sample_rate_hz)
        model = self.model
        with torch.inference_mode():
            return self._encode_blocks(model, waveform)

    def encode_track(self, waveform: np.ndarray, sample_rate_hz: int | None = None) -> np.ndarray:
        """Mono float waveform -> (dim,) float32: mean of the block embeddings, L2-normalised."""
        blocks = self.encode_blocks(waveform, sample_rate_hz)
        return l2_normalize(blocks.mean(axis=0))
