"""Extending a causal LM's vocabulary with the AutoCut tokens, and keeping the old rows frozen.

`extend_vocabulary` adds the 10 structural and 4,096 code tokens (`autocut.lm.tokens.added_tokens`) to the
tokenizer, resizes the input and output embeddings to a multiple of 64 rows (Qwen checkpoints already
carry padding rows past their 151,669 tokens; new tokens reuse them first), and initialises every new
input and output row to the mean of the old rows plus small Gaussian noise (docs/method.md, "Token vocabulary"; the
noise breaks the symmetry between 4,096 otherwise identical rows).

Stage 1 (AutoCut 3.4) trains only the new rows. `NewRowsOnly` swaps the embedding and LM-head modules
for ones that keep the old rows as a frozen buffer and the new rows as the only trainable parameter, so
no optimiser state or weight decay ever touches an old row; `fingerprint` / `check_unchanged` prove it
afterwards (bit-identical, by SHA-256 of the raw bytes).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autocut.errors import AutoCutError, ConfigError
from autocut.lm.tokens import added_tokens

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = [
    "FrozenRowsError",
    "NewRowsOnly",
    "VocabExtension",
    "check_unchanged",
    "extend_vocabulary",
    "fingerprint",
    "vocab_extension_of",
]

log = logging.getLogger(__name__)

DEFAULT_PAD_MULTIPLE = 64
# Noise std relative to the per-entry std of the old rows: small next to the spread of real embeddings,
# large enough that 4,096 new rows start distinct.
DEFAULT_NOISE_SCALE = 0.1


class FrozenRowsError(AutoCutError):
    """A parameter that stage 1 must leave untouched changed (a training bug, never expected)."""


@dataclass(frozen=True)
class VocabExtension:
    """Where the AutoCut tokens sit in a model's vocabulary."""

    base_vocab_size: int  # tokens before extension; ids below this are the backbone's own (kept frozen)
    num_added: int  # AutoCut tokens, at ids base_vocab_size .. base_vocab_size + num_added - 1
    embedding_rows: int  # rows of the (padded) embedding matrices
    tied: bool  # input and output embeddings share one matrix

    @property
    def first_new_id(self) -> int:
        return self.base_vocab_size


def _weight(module: nn.Module) -> Tensor:
    # torch types a module attribute as `Tensor | Module`; an embedding's or LM head's `weight` is a Tensor.
    return cast(Tensor, module.weight)


def _token_range(tokenizer) -> int | None:
    """First id of the AutoCut tokens in `tokenizer` (None if absent); they must be one contiguous block."""
    wanted = added_tokens()
    vocab = tokenizer.get_vocab()
    present = [t for t in wanted if t in vocab]
    if not present:
        return None
    if len(present) != len(wanted):
        raise ConfigError(
            f"tokenizer holds {len(present)} of the {len(wanted)} AutoCut tokens; "
            "start again from the unextended backbone"
        )
    ids = [vocab[t] for t in wanted]
    first = ids[0]
    if ids != list(range(first, first + len(wanted))):
        raise ConfigError("the AutoCut tokens do not occupy one contiguous id range in this tokenizer")
    return first


def vocab_extension_of(model: PreTrainedModel, tokenizer) -> VocabExtension | None:
    """The extension already present in (model, tokenizer), or None if the AutoCut tokens are absent.

    Raises `ConfigError` when only some tokens are present or they are not one contiguous id range.
    """
    first = _token_range(tokenizer)
    if first is None:
        return None
    wanted = added_tokens()
    rows = _weight(model.get_input_embeddings()).shape[0]
    if rows < first + len(wanted):
        raise ConfigError(f"embedding has {rows} rows but the AutoCut tokens need {first + len(wanted)}")
    return VocabExtension(first, len(wanted), rows, _is_tied(model))


def _is_tied(model: PreTrainedModel) -> bool:
    out = model.get_output_embeddings()
    return out is not None and out.weight is model.get_input_embeddings().weight


@torch.no_grad()
def _init_new_rows(weight: Tensor, base: int, new_end: int, noise_scale: float, gen: torch.Generator) -> None:
    old = weight[:base].double()
    mean = old.mean(dim=0)
    std = float(old.std())
    n_new = new_end - base
    noise = torch.randn((n_new, weight.shape[1]), generator=gen, dtype=torch.float64) * (noise_scale * std)
    weight[base:new_end] = (mean + noise).to(weight.dtype)
    # Padding rows past the last token: the plain mean (no token maps to them).
    weight[new_end:] = mean.to(weight.dtype)


def extend_vocabulary(
    model: PreTrainedModel,
    tokenizer,
    *,
    pad_to_multiple_of: int = DEFAULT_PAD_MULTIPLE,
    noise_scale: float = DEFAULT_NOISE_SCALE,
    seed: int = 0,
) -> VocabExtension:
    """Add the AutoCut tokens to `tokenizer` and `model` in place (idempotent: an extended pair is left as is)."""
    from tokenizers import AddedToken

    existing = vocab_extension_of(model, tokenizer)
    if existing is not None:
        log.info(
            "vocabulary already extended (AutoCut tokens at %d..%d)",
            existing.first_new_id,
            existing.first_new_id + existing.num_added - 1,
        )
        return existing
    if pad_to_multiple_of < 1:
        raise ConfigError(f"pad_to_multiple_of must be >= 1, got {pad_to_multiple_of}")
    base = len(tokenizer)
    rows_before = _weight(model.get_input_embeddings()).shape[0]
    if rows_before < base:
        raise ConfigError(f"model has {rows_before} embedding rows for {base} tokenizer tokens")
    tokens = added_tokens()
    # normalized=False, special=False: matched atomically before pre-tokenisation, and kept by
    # decode(skip_special_tokens=True), since generated code tokens are the answer, not control text.
    n = tokenizer.add_tokens(
        [AddedToken(t, normalized=False, special=False, single_word=False, lstrip=False, rstrip=False) for t in tokens]
    )
    if n != len(tokens):
        raise ConfigError(f"tokenizer accepted {n} of {len(tokens)} new tokens (some already existed as text?)")
    if _token_range(tokenizer) != base:
        raise ConfigError(f"new tokens did not land at ids {base}.. (tokenizer has gaps in its id range?)")
    new_end = base + len(tokens)
    tied = _is_tied(model)
    model.resize_token_embeddings(new_end, pad_to_multiple_of=pad_to_multiple_of, mean_resizing=False)
    gen = torch.Generator().manual_seed(seed)
    emb = _weight(model.get_input_embeddings())
    _init_new_rows(emb.data, base, new_end, noise_scale, gen)
    if not tied:
        head = model.get_output_embeddings()
        if head is not None:
            _init_new_rows(head.weight.data, base, new_end, noise_scale, gen)
            if getattr(head, "bias", None) is not None:
                head.bias.data[base:] = head.bias.data[:base].mean()
    rows = emb.shape[0]
    log.info(
        "extended vocabulary %d -> %d tokens (%d embedding rows, was %d; tied=%s)",
        base,
        new_end,
        rows,
        rows_before,
        tied,
    )
    return VocabExtension(base, len(tokens), rows, tied)


# ---------------------------------------------------------------------------------------------- stage 1


class _NewRowsEmbedding(nn.Module):
    """Embedding lookup over [frozen old rows ; trainable new rows]."""

    old_rows: Tensor  # a buffer

    def __init__(self, weight: Tensor, first_new: int) -> None:
        super().__init__()
        self.first_new = first_new
        self.register_buffer("old_rows", weight.detach()[:first_new], persistent=False)
        self.new_rows = nn.Parameter(weight.detach()[first_new:].clone())

    def forward(self, ids: Tensor) -> Tensor:  # (B, T) -> (B, T, D)
        is_new = (ids >= self.first_new).unsqueeze(-1)
        old = F.embedding(ids.clamp(max=self.first_new - 1), self.old_rows)
        new = F.embedding((ids - self.first_new).clamp(min=0), self.new_rows)
        return torch.where(is_new, new, old)

    @property
    def weight(self) -> Tensor:  # for code that inspects `.weight` (e.g. dtype/device queries)
        return torch.cat([self.old_rows, self.new_rows])


class _NewRowsHead(nn.Module):
    """LM head over [frozen old rows ; trainable new rows] (no bias: Qwen3 and Llama heads have none)."""

    old_rows: Tensor  # a buffer

    def __init__(self, old_rows: Tensor, new_rows: nn.Parameter) -> None:
        super().__init__()
        self.register_buffer("old_rows", old_rows, persistent=False)
        self.new_rows = new_rows

    def forward(self, h: Tensor) -> Tensor:  # (B, T, D) -> (B, T, V)
        return torch.cat([F.linear(h, self.old_rows), F.linear(h, self.new_rows)], dim=-1)

    @property
    def weight(self) -> Tensor:
        return torch.cat([self.old_rows, self.new_rows])


class NewRowsOnly:
    """Context for stage 1: only the new embedding/head rows are trainable; `restore()` puts the
    model's own modules back with the trained rows copied in.

    Every other parameter gets requires_grad=False. Works for tied and untied embeddings.
    """

    def __init__(self, model: PreTrainedModel, ext: VocabExtension) -> None:
        self.model = model
        self.ext = ext
        self._emb = model.get_input_embeddings()
        self._head = model.get_output_embeddings()
        if self._head is not None and getattr(self._head, "bias", None) is not None:
            raise ConfigError("LM heads with a bias are not supported for new-rows-only training")
        for p in model.parameters():
            p.requires_grad_(False)
        self.embedding = _NewRowsEmbedding(_weight(self._emb), ext.first_new_id)
        model.set_input_embeddings(self.embedding)
        self.head: _NewRowsHead | None = None
        if self._head is not None:
            if ext.tied:
                self.head = _NewRowsHead(self.embedding.old_rows, self.embedding.new_rows)
            else:
                w = self._head.weight.detach()
                self.head = _NewRowsHead(w[: ext.first_new_id], nn.Parameter(w[ext.first_new_id :].clone()))
            model.set_output_embeddings(self.head)

    def trainable_parameters(self) -> list[nn.Parameter]:
        params = [self.embedding.new_rows]
        if self.head is not None and not self.ext.tied:
            params.append(self.head.new_rows)
        return params

    @torch.no_grad()
    def restore(self) -> PreTrainedModel:
        """Rebuild the full matrices from the rows the training actually used (the buffers moved with the
        model, e.g. to a GPU) and reinstall the model's own modules; returns the model."""
        emb = self.embedding
        emb_weight = _weight(self._emb)
        emb_weight.data = torch.cat([emb.old_rows, emb.new_rows.detach()]).to(emb_weight.dtype)
        self.model.set_input_embeddings(self._emb)
        if self._head is not None:
            if not self.ext.tied:
                assert self.head is not None
                self._head.weight.data = torch.cat([self.head.old_rows, self.head.new_rows.detach()]).to(
                    self._head.weight.dtype
                )
            self.model.set_output_embeddings(self._head)
            if self.ext.tied:
                self.model.tie_weights()
        for p in self.model.parameters():
            p.requires_grad_(True)
        return self.model


def _digest(t: Tensor) -> str:
    t = t.detach().contiguous().cpu()
    return hashlib.sha256(t.view(torch.uint8).numpy().tobytes()).hexdigest()


@torch.no_grad()
def fingerprint(model: PreTrainedModel, ext: VocabExtension) -> dict[str, str]:
    """SHA-256 of everything stage 1 must not change: old embedding/head rows and every other parameter."""
    emb = _weight(model.get_input_embeddings())
    head = model.get_output_embeddings()
    out = {"embed_tokens[:base]": _digest(emb[: ext.first_new_id])}
    if head is not None and not ext.tied:
        out["lm_head[:base]"] = _digest(head.weight[: ext.first_new_id])
    skip = {id(emb)} | ({id(head.weight)} if head is not None else set())
    for name, p in model.named_parameters():
        if id(p) not in skip:
            out[name] = _digest(p)
    return out


def check_unchanged(before: dict[str, str], after: dict[str, str]) -> None:
    """Raise `FrozenRowsError` naming every frozen tensor whose bytes changed."""
    changed = sorted(k for k in before if after.get(k) != before[k])
    missing = sorted(set(before) ^ set(after))
    if changed or missing:
        raise FrozenRowsError(
            f"frozen parameters changed during new-rows-only training: {changed[:5]}"
            f"{' ...' if len(changed) > 5 else ''}{' (missing: ' + str(missing[:5]) + ')' if missing else ''}"
        )
