"""Audio (BGM) encoders: mono waveform -> block embeddings -> pooled track embedding.

- `aisfx`: the embedded default; its weights ship inside the `aisfx` package. 512-d per
  ~2.3 s block (100 mel frames x 1024-sample hop at 44.1 kHz), blocks every ~1.16 s.
- `panns`: the paper's encoder (AutoCut 3.2), panns-inference's `Cnn14` from a local
  checkpoint, 32 kHz, 2048-d `embedding` output, one embedding per `block_s` window.

Track embedding (both): mean of the block embeddings, L2-normalised (`AudioEncoder.encode_track`).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
import threading
import types
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from autocut.encoders.base import AudioEncoder
from autocut.errors import CheckpointError, ConfigError

__all__ = [
    "AUDIO_ENCODER_NAMES",
    "DEFAULT_AUDIO_ENCODER",
    "AisfxEncoder",
    "PannsEncoder",
    "load_audio_encoder",
]

logger = logging.getLogger(__name__)

DEFAULT_AUDIO_ENCODER = "aisfx"
AUDIO_ENCODER_NAMES = ("aisfx", "panns")


class AisfxEncoder(AudioEncoder):
    """aiSFX's cross-dataset embedding net (`EmbeddingNet` of its X-Sequential-CE model).

    Preprocessing follows the package's librosa path (`aisfx.spectrogram.spectrogram_librosa`
    + `spectrogram_normalize('original')` + `blocking`) with one fix: the package hands
    librosa's (mels, frames) matrix to `blocking`, which expects (frames, mels) as the
    Essentia path returns, so it is transposed here.
    """

    name = "aisfx"
    sample_rate_hz = 44100
    dim = 512
    _SPEC_WINDOW = 2048  # samples per STFT window
    _SPEC_HOP = 1024  # samples per mel frame (~23 ms)
    _MEL_BINS = 96
    _BLOCK_FRAMES = 100  # mel frames per embedding block (~2.32 s)
    _SPEC_MAX = 9.457798957824707  # 'original' min-max normalisation bound of the ISMIR paper

    def __init__(
        self,
        *,
        weights_path: Path | None = None,
        block_hop_fraction: float = 0.5,
        batch_blocks: int = 32,
        num_threads: int | None = None,
    ) -> None:
        """`block_hop_fraction`: hop between blocks as a fraction of a block (0.5 = the paper's 1.16 s)."""
        super().__init__(num_threads=num_threads)
        if not 0.0 < block_hop_fraction <= 1.0:
            raise ConfigError(f"block_hop_fraction must be in (0, 1], got {block_hop_fraction}")
        if batch_blocks < 1:
            raise ConfigError(f"batch_blocks must be >= 1, got {batch_blocks}")
        self.weights_path = weights_path
        self.block_hop_frames = max(1, int(round(self._BLOCK_FRAMES * block_hop_fraction)))
        self.batch_blocks = batch_blocks

    @property
    def block_duration_s(self) -> float:
        return self._BLOCK_FRAMES * self._SPEC_HOP / self.sample_rate_hz

    @property
    def block_hop_s(self) -> float:
        return self.block_hop_frames * self._SPEC_HOP / self.sample_rate_hz

    def _load(self) -> torch.nn.Module:
        from aisfx.inference import get_path_modelWeights
        from aisfx.models.cnn2d import EmbeddingNet

        path = Path(self.weights_path or get_path_modelWeights())
        if not path.is_file():
            raise CheckpointError(f"aisfx weights not found at {path}")
        try:
            # The checkpoint is a pickled (state_dict, dataset_dict) tuple, so weights_only=True
            # refuses it; the default file comes from the installed package.
            weights, _datasets = torch.load(path, map_location="cpu", weights_only=False)
            prefix = "embedding_net."
            state = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
            # Only the embedding trunk is needed; its per-dataset classifier heads are dropped.
            model = EmbeddingNet("max", 3, 1, 64)
            model.load_state_dict(state)
        except Exception as exc:
            raise CheckpointError(f"{path}: not an aisfx checkpoint ({exc})") from exc
        logger.info("loaded aisfx weights from %s", path)
        return model

    def log_mel(self, waveform: np.ndarray) -> np.ndarray:
        """Mono 44.1 kHz float32 -> (frames, 96) normalised log-mel, as aisfx's librosa path."""
        import librosa

        peak = float(np.max(np.abs(waveform)))
        y = waveform / peak if peak > 0 else waveform  # the package peak-normalises each file
        spec = librosa.feature.melspectrogram(
            y=y,
            sr=self.sample_rate_hz,
            n_mels=self._MEL_BINS,
            norm=1.0,
            fmin=0.0,
            fmax=self.sample_rate_hz / 2,
            htk=True,
            power=2.0,
            hop_length=self._SPEC_HOP,
            win_length=self._SPEC_WINDOW,
        )  # (96, frames)
        spec = np.log10(spec * 10000.0 + 1) / self._SPEC_MAX
        return spec.T.astype(np.float32)  # (frames, 96)

    def _encode_blocks(self, model: torch.nn.Module, waveform: np.ndarray) -> np.ndarray:
        from aisfx.preprocessing import blocking

        spec = self.log_mel(waveform)
        # drop_partial_block=True as the package's default; audio shorter than one block is
        # zero-padded to a single block.
        blocks = blocking(
            spec, block_size=self._BLOCK_FRAMES, hop_size=self.block_hop_frames, drop_partial_block=True
        ).astype(np.float32)  # (n_blocks, 100, 96)
        out = []
        for start in range(0, len(blocks), self.batch_blocks):
            out.append(model(torch.from_numpy(blocks[start : start + self.batch_blocks])).numpy())
        return np.concatenate(out).astype(np.float32, copy=False)  # (n_blocks, 512)


_PANNS_PRIVATE_PACKAGE = "_autocut_panns_inference"
_PANNS_IMPORT_LOCK = threading.Lock()


def _panns_models_module() -> types.ModuleType:
    """panns_inference's `models` module, imported WITHOUT running the package's `__init__`.

    Importing `panns_inference` (or any submodule through it) runs `config.py`, which shells
    out to `wget` for AudioSet's labels csv into ~/panns_data; offline that leaves an empty
    file and later imports build 0-class models. The model classes
    need no labels, so `models.py` and its sibling `pytorch_utils.py` are loaded under a
    private package name pointing at the installed directory: no network, no file in $HOME,
    and a labels file the user keeps in ~/panns_data stays untouched.
    """
    with _PANNS_IMPORT_LOCK:
        if _PANNS_PRIVATE_PACKAGE + ".models" in sys.modules:
            return sys.modules[_PANNS_PRIVATE_PACKAGE + ".models"]
        spec = importlib.util.find_spec("panns_inference")  # locates, does not execute
        if spec is None or not spec.submodule_search_locations:
            raise CheckpointError("the panns encoder needs the panns-inference package (pip install panns-inference)")
        package = types.ModuleType(_PANNS_PRIVATE_PACKAGE)
        package.__path__ = list(spec.submodule_search_locations)
        package.__package__ = _PANNS_PRIVATE_PACKAGE
        sys.modules[_PANNS_PRIVATE_PACKAGE] = package
        return importlib.import_module(_PANNS_PRIVATE_PACKAGE + ".models")


class PannsEncoder(AudioEncoder):
    """PANNs `Cnn14` (AudioSet, 32 kHz) from a local checkpoint; 2048-d `embedding` per block.

    The checkpoint is the PANNs release format (`{"model": state_dict, ...}`, e.g.
    `Cnn14_mAP=0.431.pth`) or a bare state dict. panns-inference 0.1.1 ships only `Cnn14`
    (and its decision-level variant), so `Wavegram_Logmel_Cnn14` checkpoints are refused
    with a clear message rather than loaded into a model that is not theirs.
    """

    name = "panns"
    sample_rate_hz = 32000
    dim = 2048
    # Cnn14's front end as released (panns_inference.inference.AudioTagging).
    _FRONTEND: ClassVar[dict[str, int]] = {
        "sample_rate": 32000,
        "window_size": 1024,
        "hop_size": 320,
        "mel_bins": 64,
        "fmin": 50,
        "fmax": 14000,
    }
    # Five 2x time poolings need >= 32 STFT frames (hop 320): shorter audio is zero-padded to
    # this, and only then, since padding changes the embedding (Cnn14 mean-pools over time).
    _MIN_SAMPLES = 32 * 320

    def __init__(
        self,
        weights_path: Path,
        *,
        block_s: float = 10.0,
        min_last_block_s: float = 1.0,
        batch_blocks: int = 4,
        num_threads: int | None = None,
    ) -> None:
        """`block_s`: window per embedding (AudioSet clips are 10 s); a trailing part shorter
        than `min_last_block_s` is dropped unless it is the whole input."""
        super().__init__(num_threads=num_threads)
        self.weights_path = Path(weights_path)
        if not self.weights_path.is_file():
            raise CheckpointError(f"PANNs checkpoint not found: {self.weights_path}")
        if block_s <= 0 or min_last_block_s < 0:
            raise ConfigError(f"block_s must be > 0 and min_last_block_s >= 0, got {block_s}, {min_last_block_s}")
        self.block_samples = int(round(block_s * self.sample_rate_hz))
        self.min_last_block_samples = int(round(min_last_block_s * self.sample_rate_hz))
        self.batch_blocks = max(1, batch_blocks)

    def _read_state_dict(self) -> dict[str, torch.Tensor]:
        path = self.weights_path
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any refusal falls back to the full pickle below
            # Released PANNs checkpoints may pickle more than tensors (sampler/statistics state).
            logger.warning("%s: not loadable with weights_only=True (%s); loading as a full pickle", path, exc)
            try:
                checkpoint = torch.load(path, map_location="cpu", weights_only=False)
            except Exception as exc2:
                raise CheckpointError(f"{path}: not a torch checkpoint ({exc2})") from exc2
        state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CheckpointError(f"{path}: expected a PANNs checkpoint {{'model': state_dict}} or a state dict")
        if any(k.startswith(("pre_conv0", "pre_block")) for k in state):
            raise CheckpointError(
                f"{path}: a Wavegram_Logmel_Cnn14 checkpoint; the installed panns-inference provides "
                "only Cnn14, so use a Cnn14 checkpoint (e.g. Cnn14_mAP=0.431.pth)"
            )
        if (
            "fc1.weight" not in state
            or tuple(state["fc1.weight"].shape) != (2048, 2048)
            or "fc_audioset.weight" not in state
        ):
            raise CheckpointError(f"{path}: not a Cnn14 checkpoint (no 2048x2048 fc1 / fc_audioset layer)")
        return state

    def _load(self) -> torch.nn.Module:
        state = self._read_state_dict()
        cnn14 = _panns_models_module().Cnn14
        # classes_num from the checkpoint (527 for AudioSet releases), never from the labels csv.
        model = cnn14(**self._FRONTEND, classes_num=int(state["fc_audioset.weight"].shape[0]))
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise CheckpointError(f"{self.weights_path}: does not fit Cnn14 ({exc})") from exc
        logger.info("loaded PANNs Cnn14 weights from %s", self.weights_path)
        return model

    def _embed(self, model: torch.nn.Module, batch: np.ndarray) -> np.ndarray:
        return model(torch.from_numpy(batch))["embedding"].numpy()  # (b, 2048)

    def _encode_blocks(self, model: torch.nn.Module, waveform: np.ndarray) -> np.ndarray:
        n_full = len(waveform) // self.block_samples
        rest = waveform[n_full * self.block_samples :]
        out = []
        full = waveform[: n_full * self.block_samples].reshape(n_full, self.block_samples)  # (n_full, samples)
        for start in range(0, n_full, self.batch_blocks):
            out.append(self._embed(model, np.ascontiguousarray(full[start : start + self.batch_blocks])))
        if len(rest) and (n_full == 0 or len(rest) >= self.min_last_block_samples):
            if len(rest) < self._MIN_SAMPLES:
                rest = np.pad(rest, (0, self._MIN_SAMPLES - len(rest)))
            out.append(self._embed(model, rest[None, :]))
        return np.concatenate(out).astype(np.float32, copy=False)  # (n_blocks, 2048)


_CACHE: dict[tuple[str, str | None], AudioEncoder] = {}
_CACHE_LOCK = threading.Lock()


def load_audio_encoder(
    name: str = DEFAULT_AUDIO_ENCODER, weights_path: Path | None = None, num_threads: int | None = None
) -> AudioEncoder:
    """The audio encoder `name` (cached per name + weights file; the model loads on first use).

    `weights_path`: the PANNs Cnn14 checkpoint (required for `panns`); for `aisfx` an optional
    replacement for the packaged checkpoint. `num_threads`: torch intra-op threads (process-wide).
    """
    if name not in AUDIO_ENCODER_NAMES:
        raise ConfigError(f"unknown audio encoder {name!r}; choose one of {', '.join(AUDIO_ENCODER_NAMES)}")
    if name == "panns" and weights_path is None:
        raise ConfigError("panns has no packaged weights: pass weights_path, a local Cnn14 checkpoint (.pth)")
    key = (name, str(Path(weights_path).resolve()) if weights_path is not None else None)
    with _CACHE_LOCK:
        encoder = _CACHE.get(key)
        if encoder is None:
            if name == "aisfx":
                encoder = AisfxEncoder(weights_path=weights_path, num_threads=num_threads)
            else:
                assert weights_path is not None  # refused above for panns
                encoder = PannsEncoder(Path(weights_path), num_threads=num_threads)
            _CACHE[key] = encoder
    if num_threads is not None:
        encoder.num_threads = num_threads
    return encoder
