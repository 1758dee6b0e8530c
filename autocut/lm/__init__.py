"""The extended-vocabulary LM: backbones, vocabulary extension, training data, two-stage training, ASR.

Heavy modules (transformers, accelerate, faster-whisper) load only when a submodule that needs them
is imported: `autocut.lm.backbone`, `.vocab`, `.corpus`, `.dataset`, `.chat`, `.train`, `.evaluate`, `.asr`,
`.synthetic_ad`.
"""

__all__ = ["asr", "backbone", "chat", "corpus", "dataset", "evaluate", "synthetic_ad", "train", "vocab"]
