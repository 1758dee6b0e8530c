"""Training the compact planner (docs/method.md, "The compact planner"; `autocut train compact`).

One run: read the split's reels and ads (`autocut.lm.compact_data`), prune the Qwen3 tokenizer to the texts
they hold, build a small Qwen3-architecture model (`autocut.lm.small`) whose code rows start from the RQ-VAE
codebooks, and train it for a wall-clock budget on freshly drawn examples. The loss covers only what the
model decides: each clip reference (against the set of role-equivalent right candidates), the footage-driven
lines and row ends, the end of the ad and the BGM codes. Nothing the user gives (the prompt, the
script-driven lines) is a target. The learning rate follows the elapsed share of the budget (or of
`max_steps`, whichever ends the run first), so a run of any budget completes its schedule.

The model directory is an ordinary Hugging Face one plus `compact_card.json` (what was trained, how long,
the loss, and the held-out check written by `autocut.evaluation` when it is run).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autocut.errors import CheckpointError, ConfigError
from autocut.lm import tokens as T
from autocut.lm.compact import (
    MATCH_EDGES,
    MATCH_TOKENS,
    ROW_END,
    duration_token,
    match_buckets,
    user_message,
)
from autocut.lm.compact_data import Example, ExampleSampler, WorldData

__all__ = [
    "CARD_NAME",
    "CompactTrainConfig",
    "Encoded",
    "encode_example",
    "prompt_ids",
    "read_card",
    "train_compact",
    "train_library_planner",
    "write_card",
]

log = logging.getLogger(__name__)

CARD_NAME = "compact_card.json"
CARD_FORMAT = "autocut-compact-planner"
CARD_VERSION = 1


@dataclass(frozen=True)
class CompactTrainConfig:
    backbone: str = "qwen3-small4"  # a preset of autocut.lm.small.SMALL_PRESETS
    budget_s: float = 600.0  # wall-clock training time (the schedule follows it)
    max_steps: int | None = None  # stop earlier; the schedule then follows the steps (comparable runs)
    batch_size: int = 8
    lr: float = 3e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 30
    weight_decay: float = 0.01
    line_weight: float = 0.3  # loss weight of footage-driven line tokens (vs 1 for each decision)
    script_share: float = 0.7  # share of script-driven examples
    seed: int = 0
    threads: int | None = None  # torch threads (None: every core)
    log_every: int = 20
    levels: int = 4  # code levels per clip in prompts and answers (1..8)
    # Product-match buckets (rank edges by photo similarity, `autocut.lm.compact.match_buckets`); () = none.
    match_edges: tuple[int, ...] = MATCH_EDGES
    # What the match buckets rank by: "cosine" (photo vs clip mean) or "learned" (through the library's identity
    # map, `autocut.planning.identity`; training examples use maps cross-fitted without their product).
    match_metric: str = "learned"
    # Footage-driven rows: after the clip's codes, the model decides how long the segment runs (a duration
    # token, target: the reference segment's duration, at most the clip's) and then writes its line.
    segment_durations: bool = True
    # (Earlier format, kept for cards that have it: the whole clip's duration fed as a given.)
    duration_tokens: bool = False

    def __post_init__(self) -> None:
        if not self.budget_s > 0:
            raise ConfigError(f"budget_s must be > 0, got {self.budget_s}")
        if not 1 <= self.levels <= T.NUM_LEVELS:
            raise ConfigError(f"levels must be in 1..{T.NUM_LEVELS}, got {self.levels}")
        if self.match_edges:
            match_buckets(np.zeros(1), np.zeros((1, 1)), tuple(self.match_edges))  # validates the edges
        if self.match_metric not in ("cosine", "learned"):
            raise ConfigError(f"match_metric must be 'cosine' or 'learned', got {self.match_metric!r}")
        if self.batch_size < 1 or not self.lr > 0 or not 0 <= self.script_share <= 1:
            raise ConfigError("batch_size must be >= 1, lr > 0, script_share in [0, 1]")


# The compact planner's identity prior at decoding (`autocut.planning.planners.compact`; 0 = the pure LM),
# recorded in each trained model's card. Chosen on the val split (docs/evaluation.md, "Identity prior").
DEFAULT_IDENTITY_WEIGHT = 12.0


@dataclass
class Encoded:
    """One example as token ids with its loss targets: at position `pos`, predict one of `targets`."""

    ids: list[int]
    pos: list[int] = field(default_factory=list)
    targets: list[list[int]] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    # Per answer row: where its clip codes start in `ids`, and the candidates that are right there.
    rows: list[tuple[int, frozenset[int]]] = field(default_factory=list)
    clip_codes: np.ndarray | None = None  # (n, 8) the candidates' codes
    match: np.ndarray | None = None  # (n,) the candidates' product-match buckets, when the prompt shows them


class _Ids:
    """Token-id lookups shared by training and decoding (one tokenizer)."""

    def __init__(self, tok) -> None:
        self.tok = tok
        self.video = [
            tok.convert_tokens_to_ids([f"<v_{lv}_{c}>" for c in range(T.CODEBOOK_SIZE)]) for lv in range(T.NUM_LEVELS)
        ]
        self.video_t = torch.tensor(self.video)  # (8, 256)
        self.row_end = tok.encode(ROW_END, add_special_tokens=False)
        self.match = tok.convert_tokens_to_ids(list(MATCH_TOKENS))
        self.match_t = torch.tensor(self.match)
        self._duration: dict[str, int] = {}
        self.audio_start = tok.convert_tokens_to_ids(T.AUDIO_START)
        self.audio_end = tok.convert_tokens_to_ids(T.AUDIO_END)
        self.eos = tok.convert_tokens_to_ids("<|im_end|>")
        self.audio = [
            tok.convert_tokens_to_ids([f"<a_{lv}_{c}>" for c in range(T.CODEBOOK_SIZE)]) for lv in range(T.NUM_LEVELS)
        ]
        if len(self.row_end) != 1:
            raise ConfigError("the tokenizer must encode a line break as one token")
        if any(
            i in (None, tok.unk_token_id)
            for i in (self.video[7][255], self.audio[7][255], self.audio_start, self.match[-1])
        ):
            raise ConfigError("the tokenizer lacks the AutoCut code tokens (extend it with extend_for_compact)")

    def duration(self, seconds: float) -> int:
        """The duration token id of a clip of `seconds`."""
        name = duration_token(seconds)
        if name not in self._duration:
            i = self.tok.convert_tokens_to_ids(name)
            if i in (None, self.tok.unk_token_id):
                raise ConfigError("the tokenizer lacks the duration tokens (extend it with extend_for_compact)")
            self._duration[name] = i
        return self._duration[name]

    def clip(self, codes: np.ndarray, match: int | None = None) -> list[int]:
        head = [self.match[int(match)]] if match is not None else []
        return head + [self.video[lv][int(c)] for lv, c in enumerate(np.asarray(codes).reshape(-1))]

    def text(self, s: str) -> list[int]:
        return list(self.tok.encode(s, add_special_tokens=False))


def ids_of(tok) -> _Ids:
    """The token-id tables of `tok`, built once and kept on the tokenizer object itself."""
    ids = getattr(tok, "_autocut_compact_ids", None)
    if ids is None:
        ids = _Ids(tok)
        tok._autocut_compact_ids = ids
    return ids


def prompt_ids(tok, ex_or_user: Example | str) -> list[int]:
    """Token ids of the rendered prompt (chat template, generation prompt) for an example or a human turn."""
    from autocut.lm.chat import render_prompt

    user = ex_or_user if isinstance(ex_or_user, str) else _user(ex_or_user)
    return list(tok.encode(render_prompt(tok, user), add_special_tokens=False))


def _user(ex: Example) -> str:
    return user_message(ex.scenario, ex.language, ex.product, ex.clip_codes, ex.photo_codes, ex.match)


def encode_example(
    tok,
    ex: Example,
    *,
    line_weight: float = 0.3,
    deep_weight: float = 0.1,
    levels: int = T.NUM_LEVELS,
    durations: bool = False,
    segment_durations: bool = False,
) -> Encoded:
    """Prompt + answer ids with the decisions to learn (see the module docstring); clips shown and named by
    their first `levels` codes; with `durations`, each footage-driven row feeds its clip's duration token
    after the codes (given: no target); with `segment_durations`, each footage-driven row's duration token is a
    decision instead: the reference segment's duration (at most the clip's)."""
    ix = ids_of(tok)
    if levels < T.NUM_LEVELS:
        ex = replace(
            ex,
            clip_codes=[np.asarray(c)[:levels] for c in ex.clip_codes],
            photo_codes=None if ex.photo_codes is None else np.asarray(ex.photo_codes)[:levels],
        )
    enc = Encoded(prompt_ids(tok, ex))
    ids = enc.ids

    def target(choices: list[int], fed: int, weight: float = 1.0) -> None:
        enc.pos.append(len(ids) - 1)
        enc.targets.append(choices)
        enc.weights.append(weight)
        ids.append(fed)

    clip_codes = np.asarray(ex.clip_codes, np.int64).reshape(len(ex.clip_codes), -1)
    enc.clip_codes = clip_codes
    match = None if ex.match is None else np.asarray(ex.match, np.int64)
    enc.match = match

    def clip(row_candidate: int, ok: frozenset[int]) -> None:
        enc.rows.append((len(ids), ok))
        if match is not None:
            # The match token first (any right candidate's bucket), then the codes among the right candidates
            # of the bucket fed.
            b = int(match[row_candidate])
            target(sorted({ix.match[int(match[k])] for k in ok}), ix.match[b])
            ok = frozenset(k for k in ok if int(match[k]) == b)
        fed = ix.clip(clip_codes[row_candidate])
        first = sorted({ix.video[0][int(clip_codes[k][0])] for k in ok})
        target(first, fed[0])
        for lv, t in enumerate(fed[1:], start=1):
            target([t], t, 1.0 if lv < 2 else deep_weight)

    for row, ok in zip(ex.rows, ex.positives):
        if ex.scenario == "script":
            ids.extend(ix.text(row.line))
            clip(row.candidate, ok)
            ids.extend(ix.row_end)
        else:
            clip(row.candidate, ok)
            if segment_durations and ex.row_durations and ex.durations:
                seg = min(ex.row_durations[len(enc.rows) - 1], ex.durations[row.candidate])
                d = ix.duration(seg)
                target([d], d)
            elif durations and ex.durations:
                ids.append(ix.duration(ex.durations[row.candidate]))
            for t in ix.text(row.line):
                target([t], t, line_weight)
            target(ix.row_end, ix.row_end[0], line_weight)
    if ex.audio_codes is not None:
        target([ix.audio_start], ix.audio_start)
        for lv, c in enumerate(np.asarray(ex.audio_codes).reshape(-1)):
            a = ix.audio[lv][int(c)]
            target([a], a)
        ids.append(ix.audio_end)
    else:
        target([ix.eos], ix.eos)
    ids.append(ix.eos)
    return enc


def _batch_loss(model, batch: list[Encoded], pad_id: int) -> torch.Tensor:
    """Mean weighted set-NLL over the batch's targets."""
    T_ = max(len(e.ids) for e in batch)
    ids = torch.full((len(batch), T_), pad_id, dtype=torch.long)
    att = torch.zeros((len(batch), T_), dtype=torch.long)
    for b, e in enumerate(batch):
        ids[b, : len(e.ids)] = torch.tensor(e.ids)
        att[b, : len(e.ids)] = 1
    hidden = model.model(input_ids=ids, attention_mask=att).last_hidden_state  # (B, T, H)
    rows_b = torch.tensor([b for b, e in enumerate(batch) for _ in e.pos])
    rows_t = torch.tensor([p for e in batch for p in e.pos])
    h = hidden[rows_b, rows_t]  # (N, H)
    logits = model.lm_head(h).float()  # (N, V)
    logz = torch.logsumexp(logits, dim=-1)
    tgts = [t for e in batch for t in e.targets]
    width = max(len(t) for t in tgts)
    idx = torch.zeros((len(tgts), width), dtype=torch.long)
    mask = torch.zeros((len(tgts), width), dtype=torch.bool)
    for i, t in enumerate(tgts):
        idx[i, : len(t)] = torch.tensor(t)
        mask[i, : len(t)] = True
    picked = logits.gather(1, idx).masked_fill(~mask, -1e9)
    nll = logz - torch.logsumexp(picked, dim=-1)
    w = torch.tensor([x for e in batch for x in e.weights], dtype=torch.float32)
    return (nll * w).sum() / w.sum()


def path_logprobs(
    model,
    cache,
    last_logits: torch.Tensor,
    codes: np.ndarray,
    ix: _Ids,
    levels: int = 2,
    match: np.ndarray | None = None,
) -> np.ndarray:
    """log P(each candidate's path | the context in `cache`): its match token (when `match` is given,
    normalised over the match tokens), then its first `levels` codes, each level normalised over its own 256
    codes; `last_logits` are the logits after the context. `codes` is (n, L); the cache is left unchanged.
    Two levels name 97 % of a reel's clips uniquely (the first alone 93 %); deeper levels only add the
    model's copy noise to the ranking."""
    import copy

    codes_t = torch.as_tensor(np.asarray(codes, np.int64))
    n, shown = codes_t.shape
    levels = min(levels, shown)
    tok_ids = ix.video_t[:shown].gather(1, codes_t.T.contiguous()).T  # (n, shown) token ids
    first_logits = last_logits
    lp = torch.zeros(n)
    head = 0
    if match is not None:
        m = torch.as_tensor(np.asarray(match, np.int64))
        lp = torch.log_softmax(last_logits[ix.match_t].float(), dim=-1)[m]
        tok_ids = torch.cat([ix.match_t[m][:, None], tok_ids], dim=1)
        head = 1
    if head == 0:
        lp = lp + torch.log_softmax(first_logits[ix.video_t[0]].float(), dim=-1)[codes_t[:, 0]]
        if levels <= 1:
            return lp.numpy()
    c = copy.deepcopy(cache)
    c.batch_repeat_interleave(n)
    with torch.no_grad():
        out = model(input_ids=tok_ids[:, : head + levels - 1], cache=c, use_cache=True)
    logits = out.logits.float()  # (n, head + levels - 1, V)
    for lv in range(1 - head, levels):
        level = torch.log_softmax(logits[:, head + lv - 1][:, ix.video_t[lv]], dim=-1)  # (n, 256)
        lp = lp + level.gather(1, codes_t[:, lv : lv + 1])[:, 0]
    return lp.numpy()


@torch.no_grad()
def reference_accuracy(model, tok, examples: list[Encoded]) -> float:
    """Share of answer rows (teacher-forced context) whose most probable candidate path is a right one."""
    ix = ids_of(tok)
    model.eval()
    hit = total = 0
    for e in examples:
        if e.clip_codes is None or not e.rows:
            continue
        cache, last, done = None, None, 0
        for start, ok in e.rows:
            out = model(input_ids=torch.tensor([e.ids[done:start]]), cache=cache, use_cache=True)
            cache, last, done = out.cache, out.logits[0, -1], start
            scores = path_logprobs(model, cache, last, e.clip_codes, ix, match=e.match)
            hit += int(int(np.argmax(scores)) in ok)
            total += 1
    return hit / max(total, 1)


def _progress(step: int, elapsed: float, cfg: CompactTrainConfig) -> float:
    """Share of the run done: of the budget, or of `max_steps` when that ends the run first (a step-bounded run
    is then independent of how busy the machine is)."""
    frac = elapsed / cfg.budget_s
    if cfg.max_steps:
        frac = max(frac, step / cfg.max_steps)
    return frac


def _lr(step: int, frac: float, cfg: CompactTrainConfig) -> float:
    warm = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
    cos = cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))
    return cfg.lr * warm * cos


def train_compact(
    data: WorldData,
    out_dir: str | Path,
    *,
    codebooks: dict[str, np.ndarray],
    tokenizer_src: str | Path,
    config: CompactTrainConfig | None = None,
    extra_texts: list[str] | None = None,
    progress: bool = False,
    val_data: WorldData | None = None,
    val_examples: int = 96,
) -> dict[str, Any]:
    """Train a compact planner on `data` and write it to `out_dir` (replaced atomically); returns its card."""
    from autocut.lm.small import (
        SMALL_PRESETS,
        build_small_lm,
        check_pruned,
        extend_for_compact,
        init_code_rows,
        prune_tokenizer,
    )

    cfg = config or CompactTrainConfig()
    if cfg.backbone not in SMALL_PRESETS:
        raise ConfigError(f"unknown compact backbone {cfg.backbone!r}; choose from {', '.join(SMALL_PRESETS)}")
    # Every core unless told otherwise: an earlier stage in the same process (ingest's VAD) may have left
    # torch on one thread.
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    out = Path(out_dir)
    t_setup = time.perf_counter()
    sampler = ExampleSampler(
        data, seed=cfg.seed, script_share=cfg.script_share, match_edges=tuple(cfg.match_edges) or None
    )
    from autocut.lm.compact import CLIPS_KEY, INSTRUCTION, LANGUAGE_KEY, PHOTO_KEY
    from autocut.lm.prompts import ProductView, product_header

    texts = sampler.corpus_texts() + list(extra_texts or [])
    texts += list(INSTRUCTION.values()) + [CLIPS_KEY, PHOTO_KEY, LANGUAGE_KEY + " en", LANGUAGE_KEY + " zh", ROW_END]
    texts += [product_header(ProductView("x", "y", ["a", "b"]), lang) for lang in ("en", "zh")]
    texts += [str(d) for d in range(10)]
    tok = prune_tokenizer(tokenizer_src, texts)
    check_pruned(tokenizer_src, tok, texts[:2000])
    n_text = len(tok)
    extend_for_compact(tok)
    model = build_small_lm(tok, SMALL_PRESETS[cfg.backbone], seed=cfg.seed)
    init_info = init_code_rows(model, tok, codebooks, seed=cfg.seed)
    n_params = sum(p.numel() for p in model.parameters())
    log.info(
        "compact planner: %s, %.2fM parameters, vocabulary %d (%d text tokens), setup %.1f s",
        cfg.backbone,
        n_params / 1e6,
        len(tok),
        n_text,
        time.perf_counter() - t_setup,
    )
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.98),
    )
    model.train()
    pad = tok.pad_token_id
    val_set: list[Encoded] = []
    if val_data is not None and val_data.ads:
        vs = ExampleSampler(
            val_data,
            seed=12345,
            script_share=0.5,
            photo_dropout=0.0,
            augment=False,
            match_edges=tuple(cfg.match_edges) or None,
        )
        val_set = [
            encode_example(
                tok,
                vs.draw(),
                line_weight=cfg.line_weight,
                levels=cfg.levels,
                durations=cfg.duration_tokens,
                segment_durations=cfg.segment_durations,
            )
            for _ in range(val_examples)
        ]
    t0 = time.perf_counter()
    step, seen, tokens = 0, 0, 0
    history: list[dict[str, float]] = []
    ema: float | None = None
    while True:
        elapsed = time.perf_counter() - t0
        if elapsed >= cfg.budget_s or (cfg.max_steps is not None and step >= cfg.max_steps):
            break
        batch = [
            encode_example(
                tok,
                sampler.draw(),
                line_weight=cfg.line_weight,
                levels=cfg.levels,
                durations=cfg.duration_tokens,
                segment_durations=cfg.segment_durations,
            )
            for _ in range(cfg.batch_size)
        ]
        for g in opt.param_groups:
            g["lr"] = _lr(step, _progress(step, elapsed, cfg), cfg)
        loss = _batch_loss(model, batch, pad)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        seen += len(batch)
        tokens += sum(len(e.ids) for e in batch)
        lv = float(loss.detach())
        ema = lv if ema is None else 0.95 * ema + 0.05 * lv
        if step % cfg.log_every == 0:
            point = {"step": step, "s": round(elapsed, 1), "loss": round(ema, 4)}
            msg = (
                f"compact train: step {step}, {elapsed:.0f}/{cfg.budget_s:.0f} s, loss {ema:.3f}, "
                f"{seen / max(elapsed, 1e-6):.1f} ex/s"
            )
            if val_set and step % (cfg.log_every * 5) == 0:
                point["val_reference_accuracy"] = round(reference_accuracy(model, tok, val_set), 4)
                msg += f", held-out reference accuracy {point['val_reference_accuracy']:.3f}"
                model.train()
            history.append(point)
            if progress:
                print(msg, flush=True)
            else:
                log.info(msg)
    train_s = time.perf_counter() - t0
    model.eval()
    card = {
        "format": CARD_FORMAT,
        "version": CARD_VERSION,
        "backbone": cfg.backbone,
        "backbone_config": asdict(SMALL_PRESETS[cfg.backbone]),
        "parameters": n_params,
        "vocabulary": {"total": len(tok), "text_tokens": n_text},
        "code_row_init": init_info,
        "train": {
            "split": data.split,
            "config": asdict(cfg),
            "steps": step,
            "examples": seen,
            "tokens": tokens,
            "seconds": round(train_s, 1),
            "final_loss": None if ema is None else round(ema, 4),
            "history": history,
            "ads": len(data.ads),
            "reels": len(data.reels),
            "notes": data.notes,
        },
        "heldout": None,
    }
    _save(model, tok, out, card)
    return card


def _save(model, tok, out: Path, card: dict[str, Any]) -> None:
    tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(str(tmp), safe_serialization=True)
    tok.save_pretrained(str(tmp))
    (tmp / CARD_NAME).write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    old = out.with_name(out.name + f".old-{os.getpid()}")
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def read_card(model_dir: str | Path) -> dict[str, Any]:
    """The model's `compact_card.json`; CheckpointError when missing or not a compact planner card."""
    p = Path(model_dir) / CARD_NAME
    if not p.exists():
        raise CheckpointError(
            f"{model_dir}: no {CARD_NAME} (not a compact planner; train one with `autocut train compact`)"
        )
    try:
        card = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{p}: unreadable model card: {exc}") from None
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise CheckpointError(f"{p}: not a compact planner card")
    return card


def write_card(model_dir: str | Path, card: dict[str, Any]) -> None:
    from autocut.files import write_json_atomic

    write_json_atomic(Path(model_dir) / CARD_NAME, card)


def ensure_identity(
    library_dir: str | Path,
    *,
    train_split: str = "train",
    val_split: str = "val",
    say: Callable[[str], None] = print,
    pools: tuple[Any, Any] | None = None,
) -> Path:
    """The library's identity model (`autocut train identity`), fitted now when it has none for its PCA
    (`pools`: the (train, val) `IdentityPools` when the caller has loaded them already)."""
    from autocut.library.catalog import Catalog
    from autocut.planning.identity import fit_identity, identity_path, load_identity
    from autocut.planning.identity_data import load_identity_pools

    path = identity_path(library_dir)
    with Catalog.open(library_dir, create=False) as cat:
        pca_version = cat.pca_version
    try:
        load_identity(path, pca_version=pca_version)
        return path
    except ConfigError:
        pass
    train, val = pools or (load_identity_pools(library_dir, train_split), load_identity_pools(library_dir, val_split))
    model = fit_identity(train, val, pca_version=pca_version)
    model.save(path)
    m = model.metrics
    say(
        f"identity prior: fitted in {m['seconds']:.0f} s, val AUC {m['auc_val']['learned']:.3f} "
        f"(raw cosine {m['auc_val']['raw_cosine']:.3f}) -> {path}"
    )
    return path


def train_library_planner(
    library_dir: str | Path,
    out_dir: str | Path,
    config: CompactTrainConfig,
    *,
    split: str = "train",
    heldout_split: str | None = "val",
    heldout_ads: int = 20,
    check: bool = True,
    before_training: Callable[[WorldData], None] | None = None,
    say: Callable[[str], None] = print,
    identity_weight: float = DEFAULT_IDENTITY_WEIGHT,
) -> dict[str, Any]:
    """`autocut train compact` and `make demo`'s planner stage: the library's RQ-VAE tokenizers
    (`autocut.library.codes.load_library_tokenizer`, checked against the catalog), its `split` reference ads,
    `train_compact` (its progress lines score `heldout_split` examples; None: none), then, when `check`, the
    held-out check on `heldout_ads` of that split written into the card. `before_training(data)` runs once the
    data has loaded (the demo moves an old model aside). `identity_weight` is the decoding's identity prior
    (`autocut.planning.planners.compact`), recorded in the card (`decoding`) so the held-out check and every
    later plan decode the same way; when it is > 0 and the library has no identity model yet, one is fitted
    first (`autocut.planning.identity`, seconds)."""
    from autocut.library.codes import load_library_tokenizer
    from autocut.lm.backbone import default_qwen3_tokenizer_dir
    from autocut.lm.compact_data import load_world_data
    from autocut.lm.compact_heldout import heldout_check

    lib = Path(library_dir)
    video = load_library_tokenizer(lib, "video")
    audio = load_library_tokenizer(lib, "audio")
    data = load_world_data(lib, split, video=video, audio=audio)
    val = load_world_data(lib, heldout_split, video=video, audio=audio) if heldout_split else None
    from autocut.demo_world.manifest import load_manifest
    from autocut.errors import CatalogError

    try:
        has_world = bool(load_manifest(lib).get("shots"))
    except CatalogError:
        has_world = False
    if config.match_metric == "learned" and config.match_edges and not has_world:
        # The identity metric is fitted on the demo world's labels (which shot is whose); without them the
        # buckets rank by the raw cosine, and the card's config says so.
        say("identity: the library has no demo-world manifest to fit the metric on; match buckets by cosine")
        config = replace(config, match_metric="cosine")
    if config.match_metric == "learned" and config.match_edges:
        from autocut.library.catalog import Catalog
        from autocut.planning.identity import crossfit_identity, load_identity
        from autocut.planning.identity_data import load_identity_pools

        t0 = time.perf_counter()
        pools = (load_identity_pools(lib, split), load_identity_pools(lib, heldout_split or "val"))
        path = ensure_identity(lib, say=say, pools=pools)
        with Catalog.open(lib, create=False) as cat:
            pca_version = cat.pca_version
        full = load_identity(path, pca_version=pca_version).weight
        data.identity_maps = crossfit_identity(*pools, pca_version=pca_version, seed=config.seed)
        say(
            f"identity maps: {len(data.identity_maps)} training products cross-fitted "
            f"({time.perf_counter() - t0:.0f} s with loading)"
        )
        if val is not None:
            val.identity_maps = dict.fromkeys(val.reels, full)
    if before_training is not None:
        before_training(data)
    say(
        f"compact planner: training {config.backbone} on {len(data.ads)} reference ads of {split!r} "
        f"for {config.budget_s:.0f} s"
    )
    card = train_compact(
        data,
        out_dir,
        codebooks={"video": video.codebooks(), "audio": audio.codebooks()},
        tokenizer_src=default_qwen3_tokenizer_dir(),
        config=config,
        progress=True,
        val_data=val,
    )
    tr = card["train"]
    say(
        f"compact planner: {tr['steps']} steps, {tr['examples']} examples, {tr['seconds']:.0f} s, "
        f"loss {tr['final_loss']} -> {out_dir}"
    )
    card["decoding"] = {"identity_weight": float(identity_weight)}
    write_card(out_dir, card)
    if identity_weight > 0 and has_world:  # already there when the match tokens rank through it
        ensure_identity(lib, train_split=split, val_split=heldout_split or "val", say=say)
    if check and heldout_split and heldout_ads > 0:
        card["heldout"] = heldout_check(lib, out_dir, split=heldout_split, max_ads=heldout_ads)
        write_card(out_dir, card)
        say(card["heldout"]["reading"])
    return card
