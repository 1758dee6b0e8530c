"""The extended-vocabulary LM: token format, vocabulary extension, training data, two-stage training, decoding.

Heavy modules (transformers, accelerate) load only when a submodule that needs them is imported:
`autocut.lm.tokens` (the token format and answer parsers), `.vocab`, `.corpus`, `.tag_corpus`, `.dataset`,
`.chat`, `.prompts`, `.backbone`, `.train`, `.decoding`, `.vllm_backend`, `.synthetic_ad`.
"""

__all__ = [
    "backbone",
    "chat",
    "corpus",
    "dataset",
    "decoding",
    "prompts",
    "synthetic_ad",
    "tag_corpus",
    "tokens",
    "train",
    "vllm_backend",
    "vocab",
]
