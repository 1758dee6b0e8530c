"""Token sequences for the two training stages, and their batching.

- Alignment (AutoCut 3.4): each ad's text + EOS, loss on every token; with packing (Table 4) the
  sequences are concatenated and cut into blocks of `cutoff_len`, as LLaMA-Factory's pre-training stage does.
- SFT (AutoCut 3.5): prompt and response tokenised separately (exactly what decoding sees: the prompt
  alone, then generated tokens), labels -100 on the prompt so the loss covers the response only.
  An exchange longer than `cutoff_len` is dropped and counted, never truncated: a cut prompt would
  lose candidates the answer refers to, a cut answer would teach wrong output.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from autocut.errors import ConfigError
from autocut.lm.chat import render_exchange

__all__ = ["IGNORE_INDEX", "Example", "align_examples", "collate", "read_align_texts", "sft_examples"]

log = logging.getLogger(__name__)

IGNORE_INDEX = -100  # label value torch's cross-entropy (and HF causal-LM losses) skip


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]  # same length; IGNORE_INDEX where no loss is taken

    def __post_init__(self) -> None:
        assert len(self.input_ids) == len(self.labels), "input_ids and labels differ in length"

    @property
    def loss_tokens(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)


def read_align_texts(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """The ``text`` of every line of alignment-corpus JSONL files."""
    texts = []
    for p in paths:
        with open(p, encoding="utf-8") as f:
            for ln, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    texts.append(json.loads(line)["text"])
                except (ValueError, KeyError, TypeError) as exc:
                    raise ConfigError(f"{p}:{ln}: not an alignment record with a 'text' field ({exc})") from None
    return texts


def _eos_id(tokenizer) -> int:
    if tokenizer.eos_token_id is None:
        raise ConfigError("the backbone's tokenizer has no EOS token")
    return int(tokenizer.eos_token_id)


def align_examples(texts: Iterable[str], tokenizer, *, cutoff_len: int, packing: bool) -> list[Example]:
    """Next-token examples over whole ads (loss on everything)."""
    if cutoff_len < 2:
        raise ConfigError(f"cutoff_len must be >= 2, got {cutoff_len}")
    eos = _eos_id(tokenizer)
    seqs = [tokenizer(t, add_special_tokens=False)["input_ids"] + [eos] for t in texts]
    if not packing:
        out = [s[:cutoff_len] for s in seqs]
        n_cut = sum(len(s) > cutoff_len for s in seqs)
        if n_cut:
            log.warning("%d of %d alignment sequences truncated to %d tokens", n_cut, len(seqs), cutoff_len)
        return [Example(s, list(s)) for s in out if len(s) >= 2]
    flat = [i for s in seqs for i in s]
    blocks = [flat[a : a + cutoff_len] for a in range(0, len(flat), cutoff_len)]
    return [Example(b, list(b)) for b in blocks if len(b) >= 2]


def sft_examples(records: Iterable[dict], tokenizer, *, cutoff_len: int) -> tuple[list[Example], int]:
    """Response-only-loss examples from ShareGPT records; returns (examples, number dropped as too long)."""
    out: list[Example] = []
    dropped = 0
    for rec in records:
        conv = rec["conversations"]
        turns = render_exchange(tokenizer, conv[0]["value"], conv[1]["value"], system=rec.get("system") or "")
        p = tokenizer(turns.prompt, add_special_tokens=False)["input_ids"]
        r = tokenizer(turns.response, add_special_tokens=False)["input_ids"]
        if len(p) + len(r) > cutoff_len:
            dropped += 1
            continue
        out.append(Example(p + r, [IGNORE_INDEX] * len(p) + r))
    if dropped:
        log.warning(
            "%d SFT exchanges longer than cutoff_len %d dropped (lower K or raise the cutoff)", dropped, cutoff_len
        )
    return out, dropped


def collate(batch: Sequence[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch: input_ids / attention_mask / labels, each (B, T_max)."""
    t_max = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), t_max), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), t_max), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(batch), t_max), dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def load_jsonl(path: str | os.PathLike[str]) -> list[dict]:
    with open(Path(path), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
