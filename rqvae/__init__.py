"""RQ-VAE tokenizers: continuous frame / audio embeddings <-> 8 discrete codes (AutoCut 3.3).

Arrays in, arrays out; depends only on torch, numpy, safetensors and vector-quantize-pytorch.
Inference needs only `Tokenizer`; training lives in `rqvae.train`.
"""

from rqvae.checkpoint import (
    CHECKPOINT_FILENAME,
    FORMAT_VERSION,
    CheckpointInfo,
    load_checkpoint,
    read_checkpoint_info,
    save_checkpoint,
)
from rqvae.config import MODALITIES, ModelConfig, RQVAEConfig, TrainConfig, audio_config, preset, video_config
from rqvae.errors import (
    RQVAECheckpointError,
    RQVAEConfigError,
    RQVAEError,
    RQVAEInputError,
    RQVAEMismatchError,
)
from rqvae.evaluate import EvalResult, LevelStats, code_stats, cosine_rows, evaluate
from rqvae.model import RQVAE
from rqvae.tokenizer import PathAgreement, Tokenizer
from rqvae.train import EpochLog, TrainResult, split_by_group, train

__all__ = [
    "CHECKPOINT_FILENAME",
    "FORMAT_VERSION",
    "MODALITIES",
    "RQVAE",
    "CheckpointInfo",
    "EpochLog",
    "EvalResult",
    "LevelStats",
    "ModelConfig",
    "PathAgreement",
    "RQVAECheckpointError",
    "RQVAEConfig",
    "RQVAEConfigError",
    "RQVAEError",
    "RQVAEInputError",
    "RQVAEMismatchError",
    "Tokenizer",
    "TrainConfig",
    "TrainResult",
    "audio_config",
    "code_stats",
    "cosine_rows",
    "evaluate",
    "load_checkpoint",
    "preset",
    "read_checkpoint_info",
    "save_checkpoint",
    "split_by_group",
    "train",
    "video_config",
]
