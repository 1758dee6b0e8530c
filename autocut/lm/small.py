"""The small CPU backbone of the compact planner (docs/method.md, "The compact planner"): a Qwen3-architecture
causal LM trained from scratch, over a pruned Qwen3 vocabulary, with the AutoCut code rows initialised from
the RQ-VAE codebooks.

- `prune_tokenizer`: the real Qwen3 tokenizer (`scripts/fetch_qwen3_tokenizer.sh`) cut down to the tokens a
  text corpus uses, plus the 256 byte-level tokens (so any text still encodes) and the Qwen3 special tokens.
  The BPE merges kept are the closure of the kept tokens, so every corpus text encodes to exactly the tokens
  the full tokenizer gives (`check_pruned` verifies it); text outside the corpus falls back to shorter pieces.
- `build_small_lm`: a `Qwen3ForCausalLM` of `SmallConfig` size with tied embeddings over that vocabulary plus
  the AutoCut tokens (`autocut.lm.tokens.added_tokens`).
- `init_code_rows`: row ``<v_l_c>`` (``<a_l_c>``) = a fixed projection of codebook vector ``c`` of level ``l``
  of the video (audio) RQ-VAE, so codes that lie close in the codebook start close in the LM (the probe
  in `autocut eval probe` shows the role signal survives in the codebook geometry, not in one-hot codes).

A model written here is an ordinary Hugging Face directory: `autocut.lm.backbone.load_causal_lm` loads it,
and the same compact format trains any other causal LM (Qwen3-8B on a GPU) after `extend_for_compact`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autocut.errors import CheckpointError, ConfigError
from autocut.lm import tokens as T

__all__ = [
    "SMALL_PRESETS",
    "SmallConfig",
    "build_small_lm",
    "check_pruned",
    "extend_for_compact",
    "init_code_rows",
    "prune_tokenizer",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SmallConfig:
    """Size of the from-scratch Qwen3-architecture backbone."""

    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 64
    intermediate_size: int = 768
    max_position_embeddings: int = 2048

    def __post_init__(self) -> None:
        for k, v in asdict(self).items():
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"small backbone: {k} must be a positive integer, got {v!r}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError("small backbone: num_attention_heads must be a multiple of num_key_value_heads")


# Named sizes for `autocut train compact --backbone` (each a Qwen3 class model trained from scratch).
SMALL_PRESETS: dict[str, SmallConfig] = {
    "qwen3-tiny": SmallConfig(hidden_size=192, num_hidden_layers=3, num_attention_heads=3, num_key_value_heads=1),
    "qwen3-small4": SmallConfig(),
    "qwen3-small8": SmallConfig(hidden_size=384, num_hidden_layers=8, num_attention_heads=6, intermediate_size=1024),
}


def prune_tokenizer(src_dir: str | Path, texts: Iterable[str], out_dir: str | Path | None = None):
    """A `PreTrainedTokenizerFast` holding only the tokens `texts` use (+ bytes + specials); saved to `out_dir`
    when given. `src_dir` holds a Qwen3 `tokenizer.json` and `tokenizer_config.json`."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    src = Path(src_dir)
    tj, cj = src / "tokenizer.json", src / "tokenizer_config.json"
    if not tj.exists() or not cj.exists():
        raise ConfigError(f"{src}: no tokenizer.json / tokenizer_config.json (run scripts/fetch_qwen3_tokenizer.sh)")
    spec = json.loads(tj.read_text(encoding="utf-8"))
    cfg = json.loads(cj.read_text(encoding="utf-8"))
    model = spec["model"]
    if model.get("type") != "BPE":
        raise ConfigError(f"{tj}: a {model.get('type')} tokenizer; only byte-level BPE can be pruned")
    full = Tokenizer.from_str(json.dumps(spec))
    vocab: dict[str, int] = model["vocab"]
    inv = {i: s for s, i in vocab.items()}
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in model["merges"]]
    produced: dict[str, list[tuple[str, str]]] = {}
    for a, b in merges:
        produced.setdefault(a + b, []).append((a, b))
    used: set[int] = set()
    n_texts = 0
    for enc in full.encode_batch(list(texts), add_special_tokens=False):
        used.update(enc.ids)
        n_texts += 1
    from autocut.lm.decoding import _bytes_to_unicode

    keep: set[str] = set(_bytes_to_unicode().values())  # the 256 single-byte tokens
    stack = [inv[i] for i in used if i in inv]
    while stack:
        s = stack.pop()
        if s in keep:
            continue
        keep.add(s)
        for a, b in produced.get(s, []):
            stack += [a, b]
    kept = sorted(keep, key=lambda s: vocab[s])
    new_vocab = {s: i for i, s in enumerate(kept)}
    new_merges = [[a, b] for a, b in merges if a in keep and b in keep and (a + b) in keep]
    spec["model"]["vocab"] = new_vocab
    spec["model"]["merges"] = new_merges
    added = sorted(spec["added_tokens"], key=lambda t: t["id"])
    for k, t in enumerate(added):
        t["id"] = len(new_vocab) + k
    spec["added_tokens"] = added
    pruned = Tokenizer.from_str(json.dumps(spec))
    tok = PreTrainedTokenizerFast(
        tokenizer_object=pruned,
        eos_token=cfg.get("eos_token", "<|im_end|>"),
        pad_token=cfg.get("pad_token", "<|endoftext|>"),
        additional_special_tokens=list(cfg.get("additional_special_tokens", [])),
        clean_up_tokenization_spaces=False,
    )
    tok.chat_template = cfg.get("chat_template")
    log.info("pruned tokenizer: %d of %d text tokens kept for %d texts", len(new_vocab), len(vocab), n_texts)
    if out_dir is not None:
        tok.save_pretrained(str(out_dir))
    return tok


def check_pruned(src_dir: str | Path, tok, texts: Iterable[str]) -> None:
    """Raise unless every text decodes identically and splits into the same pieces under both tokenizers."""
    from tokenizers import Tokenizer

    full = Tokenizer.from_file(str(Path(src_dir) / "tokenizer.json"))
    for text in texts:
        a = full.encode(text, add_special_tokens=False).tokens
        b = tok.backend_tokenizer.encode(text, add_special_tokens=False).tokens
        if a != b:
            raise ConfigError(f"pruned tokenizer splits {text[:60]!r} differently: {b[:12]} vs {a[:12]}")


def extend_for_compact(tok) -> int:
    """Add the AutoCut tokens and the compact format's product-match and duration tokens to `tok` (idempotent);
    returns how many were added."""
    from tokenizers import AddedToken

    from autocut.lm.compact import DURATION_TOKENS, MATCH_TOKENS

    want = [
        t
        for t in [*T.added_tokens(), *MATCH_TOKENS, *DURATION_TOKENS]
        if tok.convert_tokens_to_ids(t) in (None, tok.unk_token_id)
    ]
    if not want:
        return 0
    return int(
        tok.add_tokens(
            [
                AddedToken(t, normalized=False, special=False, single_word=False, lstrip=False, rstrip=False)
                for t in want
            ]
        )
    )


def build_small_lm(tok, config: SmallConfig, *, seed: int = 0):
    """A randomly initialised `Qwen3ForCausalLM` sized by `config` for the (extended) tokenizer `tok`."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    rows = -(-len(tok) // 64) * 64
    cfg = Qwen3Config(
        vocab_size=rows,
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads,
        head_dim=config.head_dim,
        intermediate_size=config.intermediate_size,
        max_position_embeddings=config.max_position_embeddings,
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tok.pad_token_id,
        bos_token_id=None,
    )
    return Qwen3ForCausalLM(cfg)


def _projection(dim_in: int, dim_out: int, seed: int) -> np.ndarray:
    """(dim_out, dim_in) fixed map with orthonormal columns (rows when dim_out < dim_in), seeded."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((max(dim_in, dim_out), min(dim_in, dim_out)))
    q, _ = np.linalg.qr(a)
    return (q if dim_out >= dim_in else q.T).astype(np.float32)


def init_code_rows(model, tok, codebooks: dict[str, np.ndarray], *, seed: int = 0) -> dict[str, Any]:
    """Set each ``<v_l_c>`` / ``<a_l_c>`` input row (tied: also the output row) to a fixed projection of its
    codebook vector, scaled to the norm of the model's other rows. `codebooks[modality]` is (Q, K, C)."""
    emb = model.get_input_embeddings().weight
    hidden = emb.shape[1]
    with torch.no_grad():
        typical = float(emb.norm(dim=1).median())
        out: dict[str, Any] = {}
        for modality, cb in codebooks.items():
            cb = np.asarray(cb, np.float32)
            if cb.ndim != 3 or cb.shape[0] < T.NUM_LEVELS or cb.shape[1] < T.CODEBOOK_SIZE:
                raise CheckpointError(f"{modality} codebooks of shape {cb.shape}: expected (>=8, >=256, C)")
            proj = _projection(cb.shape[2], hidden, seed + (0 if modality == "video" else 1))
            prefix = "v" if modality == "video" else "a"
            for level in range(T.NUM_LEVELS):
                ids = tok.convert_tokens_to_ids([f"<{prefix}_{level}_{c}>" for c in range(T.CODEBOOK_SIZE)])
                vec = cb[level, : T.CODEBOOK_SIZE] @ proj.T  # (256, hidden)
                norms = np.linalg.norm(vec, axis=1, keepdims=True)
                vec = vec / np.maximum(norms, 1e-8) * typical
                emb[torch.as_tensor(ids)] = torch.from_numpy(vec.astype(np.float32))
            out[modality] = {"codebook_shape": list(cb.shape), "projection_seed": seed, "row_norm": typical}
    return out
