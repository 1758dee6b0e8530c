"""Typed configuration of an RQ-VAE tokenizer and its training run, with the paper presets.

AutoCut Table 3 (appendix 7.1; docs/method.md, "RQ-VAE tokenizers"):

| | video | audio (PANNs) |
|---|---|---|
| input dim | 128 | 2048 |
| encoder MLP | [512, 512] | [1024, 512] |
| decoder MLP | [512, 512] | [512, 1024] (mirror of the encoder) |
| quantizers x codebook | 8 x 256 | 8 x 256 |
| codebook dim | 128 | 256 |
| loss | 1 - cos, commitment 0 | same |
| optimiser | AdamW 1e-3 -> 2e-5 cosine, wd 1e-4, batch 8192 | same |
| epochs | 20 | 50 |

The offline audio encoder here (aisfx) gives 512-d vectors instead of PANNs' 2048; `audio_config`
scales every width of the audio preset (encoder, decoder and codebook dim) by input_dim / 2048, so
the network keeps the paper's funnel shape (hidden = in/2, in/4; latent = in/8) instead of inflating
a 512-d input through 1024-wide layers. The quantizer shape (8 x 256) never scales: it fixes the
token vocabulary the language model learns. Measured on 2,238 aisfx blocks of 44 game-music files cut
into 113 excerpts (25 s "tracks"), a tenth of the tracks held out, 50 epochs, one seed each: the scaled preset
([256, 128], latent 64; batch 1024, 100 steps) gave held-out block cosine 0.966 and pooled-track 0.986;
with batch 512 (200 steps), [512, 256] / latent 128 gave 0.964 / 0.981 at twice the time and the
unscaled [1024, 512] / latent 256 gave 0.82 / 0.84.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from rqvae.errors import RQVAEConfigError

__all__ = [
    "MODALITIES",
    "ModelConfig",
    "RQVAEConfig",
    "TrainConfig",
    "audio_config",
    "preset",
    "video_config",
]

Modality = Literal["video", "audio"]
MODALITIES: tuple[str, ...] = ("video", "audio")

# Width of the PANNs embedding the paper's audio preset was designed for (Table 3).
_PAPER_AUDIO_INPUT_DIM = 2048
# The offline default audio encoder (aisfx: its weights ship in its PyPI package).
AISFX_DIM = 512


def _positive_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise RQVAEConfigError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of one tokenizer. Everything inference needs to rebuild the network."""

    modality: Modality
    input_dim: int  # width of the embeddings this tokenizer accepts (128 video PCA, 512 aisfx, 2048 PANNs)
    encoder_hidden: tuple[int, ...]  # hidden widths of the encoder MLP, input side first
    decoder_hidden: tuple[int, ...]  # hidden widths of the decoder MLP, latent side first
    codebook_dim: int  # latent width = codebook vector width (the encoder's output)
    num_quantizers: int = 8  # residual levels = tokens per vector
    codebook_size: int = 256  # codes per level
    kmeans_iters: int = 10  # k-means iterations that initialise each codebook on the first batch
    # A code whose EMA cluster size falls below this is replaced by a random residual from the batch
    # (vector-quantize-pytorch dead-code replacement; the reference code uses 2).
    threshold_ema_dead_code: float = 2.0
    ema_decay: float = 0.8  # codebook EMA decay (vector-quantize-pytorch default, kept by the reference code)
    # L2-normalise inputs before the encoder. The loss is a cosine, so scale carries nothing the codes
    # must keep; and audio trains on raw block embeddings but tokenizes unit-norm pooled track vectors
    # (one BGM track = 8 audio tokens), a scale shift the MLP + BatchNorm would otherwise see as a
    # different input.
    normalize_input: bool = True

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise RQVAEConfigError(f"modality must be one of {MODALITIES}, got {self.modality!r}")
        for name in ("input_dim", "codebook_dim", "num_quantizers", "codebook_size", "kmeans_iters"):
            _positive_int(name, getattr(self, name))
        # JSON round trips give lists; normalise so equality and hashing work.
        object.__setattr__(self, "encoder_hidden", tuple(self.encoder_hidden))
        object.__setattr__(self, "decoder_hidden", tuple(self.decoder_hidden))
        for name in ("encoder_hidden", "decoder_hidden"):
            widths = getattr(self, name)
            if not widths:
                raise RQVAEConfigError(f"{name} needs at least one hidden layer")
            for w in widths:
                _positive_int(name, w)
        if self.codebook_size > 2**31 - 1:
            raise RQVAEConfigError("codebook_size too large")
        if not 0.0 < self.ema_decay < 1.0:
            raise RQVAEConfigError(f"ema_decay must be in (0, 1), got {self.ema_decay}")
        if self.threshold_ema_dead_code < 0:
            raise RQVAEConfigError("threshold_ema_dead_code must be >= 0")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (Table 3) plus the run's own choices (split, seed, budget)."""

    epochs: int
    batch_size: int = 8192  # Table 3; the most rows per step (see min_batches_per_epoch)
    # Table 3's batch of 8192 assumes an ad corpus of millions of rows (thousands of steps); a small
    # library would get one or two steps per epoch. So the batch shrinks until an epoch has at least
    # this many steps, but never below min_batch_size (k-means init runs on the first batch and
    # wants several rows per code). Measured on 2,238 aisfx blocks (audio preset, 50 epochs):
    # batch 8192 -> 50 steps, train cosine 0.84-0.85 (2 seeds); batch 1024 -> 100 steps, 0.90;
    # batch 512 -> 200 steps, 0.89-0.90 (2 seeds). From 65,536 rows up the batch is Table 3's.
    min_batches_per_epoch: int = 8
    min_batch_size: int = 1024
    learning_rate: float = 1e-3  # peak, reached at the end of warm-up
    min_learning_rate: float = 2e-5  # end of the cosine schedule
    weight_decay: float = 1e-4
    adam_betas: tuple[float, float] = (0.9, 0.98)  # as in the reference training script
    warmup_fraction: float = 0.0  # share of steps with linear warm-up (reference config: 0)
    commitment_weight: float = 0.0  # Table 3: commitment 0, reconstruction weight 1
    val_fraction: float = 0.1  # share of rows held out, chosen by whole groups (source videos / tracks)
    # Rows (a seeded sample of the training set) over which BatchNorm statistics are recomputed after
    # each epoch; see rqvae.train.recalibrate_batchnorm for why.
    bn_recalibration_rows: int = 65_536
    # Start the decoder's output at the mean (normalised) training vector: last Linear weights 0, bias =
    # that mean. With a cosine loss a reconstruction that starts opposite its target sits where the
    # gradient vanishes; from random init, whole clusters got stuck there. Measured on 2,238 aisfx blocks
    # of 44 music files, 4 files held out, 2 seeds: random init -> train cosine 0.84 / 0.90, 3 / 1 files
    # reconstructed at cosine < 0 (even in training); mean init -> 0.979 / 0.979, worst file 0.95 / 0.86,
    # held-out 0.962 / 0.958 (was 0.49 / 0.94). On centred synthetic 128-d clusters (video-like, mean ~0)
    # it made no difference (held-out 0.877 vs 0.872).
    init_output_at_mean: bool = True
    seed: int = 0  # seeds the split, init, k-means, shuffling and dead-code sampling
    time_budget_s: float | None = None  # stop (and shorten the schedule) to finish within this wall time

    def effective_batch_size(self, rows: int) -> int:
        """Rows per step for a training set of `rows` (see min_batches_per_epoch)."""
        wanted = max(self.min_batch_size, math.ceil(rows / self.min_batches_per_epoch))
        return max(1, min(self.batch_size, wanted, rows))

    def __post_init__(self) -> None:
        _positive_int("epochs", self.epochs)
        _positive_int("batch_size", self.batch_size)
        _positive_int("bn_recalibration_rows", self.bn_recalibration_rows)
        _positive_int("min_batches_per_epoch", self.min_batches_per_epoch)
        _positive_int("min_batch_size", self.min_batch_size)
        object.__setattr__(self, "adam_betas", tuple(self.adam_betas))
        if not (self.learning_rate > 0 and 0 <= self.min_learning_rate <= self.learning_rate):
            raise RQVAEConfigError("need learning_rate > 0 and 0 <= min_learning_rate <= learning_rate")
        if self.weight_decay < 0 or self.commitment_weight < 0:
            raise RQVAEConfigError("weight_decay and commitment_weight must be >= 0")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise RQVAEConfigError("warmup_fraction must be in [0, 1)")
        if not 0.0 <= self.val_fraction < 1.0:
            raise RQVAEConfigError("val_fraction must be in [0, 1)")
        if self.time_budget_s is not None and not (math.isfinite(self.time_budget_s) and self.time_budget_s > 0):
            raise RQVAEConfigError(f"time_budget_s must be a positive number, got {self.time_budget_s!r}")


@dataclass(frozen=True)
class RQVAEConfig:
    """A model plus how to train it; `model` alone is enough for inference."""

    model: ModelConfig
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=20))

    def to_dict(self) -> dict[str, Any]:
        return {"model": asdict(self.model), "train": asdict(self.train)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RQVAEConfig:
        try:
            return cls(model=ModelConfig(**data["model"]), train=TrainConfig(**data["train"]))
        except (KeyError, TypeError) as exc:
            raise RQVAEConfigError(f"malformed RQ-VAE config: {exc}") from exc

    def replace_train(self, **changes: Any) -> RQVAEConfig:
        """A copy with some training fields changed (e.g. epochs from the CLI)."""
        train = {**asdict(self.train), **changes}
        return RQVAEConfig(model=self.model, train=TrainConfig(**train))


def video_config(input_dim: int = 128) -> RQVAEConfig:
    """Table 3 video preset: 128 -> [512, 512] -> 128-d latent, 8 x 256 codes, 20 epochs."""
    return RQVAEConfig(
        model=ModelConfig(
            modality="video",
            input_dim=input_dim,
            encoder_hidden=(512, 512),
            decoder_hidden=(512, 512),
            codebook_dim=128,
        ),
        train=TrainConfig(epochs=20),
    )


def _scaled_width(width: int, scale: float) -> int:
    # Multiples of 8 keep matmuls on friendly shapes; 16 is a floor against degenerate layers.
    return max(16, int(round(width * scale / 8)) * 8)


def audio_config(input_dim: int = AISFX_DIM) -> RQVAEConfig:
    """Table 3 audio preset, widths scaled by input_dim / 2048 (2048 gives the paper's numbers).

    512 (aisfx) -> encoder [256, 128], latent 64, decoder [128, 256]; 8 x 256 codes, 50 epochs.
    """
    _positive_int("input_dim", input_dim)
    scale = input_dim / _PAPER_AUDIO_INPUT_DIM
    encoder = tuple(_scaled_width(w, scale) for w in (1024, 512))
    return RQVAEConfig(
        model=ModelConfig(
            modality="audio",
            input_dim=input_dim,
            encoder_hidden=encoder,
            # The mirror of the encoder (256 -> 512 -> 1024 -> 2048 at 2048-d input), not the reference code's
            # 256 -> 1024 -> 512 -> 2048.
            decoder_hidden=tuple(reversed(encoder)),
            codebook_dim=_scaled_width(256, scale),
        ),
        train=TrainConfig(epochs=50),
    )


def preset(modality: str, input_dim: int | None = None) -> RQVAEConfig:
    """The paper preset for a modality; input_dim defaults to 128 (video) / 512 (audio, aisfx)."""
    if modality == "video":
        return video_config(128 if input_dim is None else input_dim)
    if modality == "audio":
        return audio_config(AISFX_DIM if input_dim is None else input_dim)
    raise RQVAEConfigError(f"modality must be one of {MODALITIES}, got {modality!r}")
