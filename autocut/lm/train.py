"""Two-stage LM training (AutoCut 3.4-3.5, Table 4) with accelerate: align, then SFT.

One module (~730 lines): both stages share the loop, the time-budget plan, checkpoints and resume.

- ``align``: extend the vocabulary (`autocut.lm.vocab`), then next-token training on the alignment
  corpus with only the new embedding/head rows trainable. Afterwards every old row and every other
  parameter is checked bit-identical (SHA-256) before the model is saved.
- ``sft``: full fine-tuning (or LoRA through peft, merged before saving) on the four task files, loss
  on the response only. Starting from an unextended backbone (the SFT-only ablation of AutoCut
  Table 2) extends the vocabulary first, with the same initialisation as ``align``.

One loop serves CPU and GPU: bf16 autocast on a CUDA GPU with bf16 (``mixed_precision="auto"``), plain
fp32 on CPU; multi-GPU runs go through ``accelerate launch`` with a DeepSpeed ZeRO-2 config
(``configs/accelerate_zero2.yaml``; GPU-only, not run here).

A run directory holds ``run.json`` (configuration, inputs, status), ``loss.jsonl`` (one line per
logging step), ``checkpoints/step-NNNNNN/`` (accelerate state + progress, written to a ``.tmp`` sibling
and renamed) and, at the end, ``model/`` (a normal Hugging Face directory + ``autocut_lm.json``).
``resume=True`` continues from the newest checkpoint with the same data order. A time budget shortens
the cosine schedule once the measured step time shows the planned steps will not fit, so the learning
rate still decays to zero before the budget ends.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from autocut.errors import CheckpointError, ConfigError
from autocut.files import write_json_atomic
from autocut.lm.backbone import load_causal_lm, read_backbone_info
from autocut.lm.dataset import (
    IGNORE_INDEX,
    Example,
    align_examples,
    collate,
    load_jsonl,
    read_align_texts,
    sft_examples,
)
from autocut.lm.vocab import (
    DEFAULT_NOISE_SCALE,
    DEFAULT_PAD_MULTIPLE,
    NewRowsOnly,
    VocabExtension,
    check_unchanged,
    extend_vocabulary,
    fingerprint,
)

__all__ = [
    "LM_FORMAT_VERSION",
    "LMTrainConfig",
    "LoraSettings",
    "TrainResult",
    "extension_of",
    "lr_at",
    "preset",
    "read_lm_info",
    "train_lm",
]

log = logging.getLogger(__name__)

LM_FORMAT_VERSION = 1
LM_INFO_FILENAME = "autocut_lm.json"
Stage = Literal["align", "sft"]
StopReason = Literal["completed", "time_budget"]


@dataclass(frozen=True)
class LoraSettings:
    """LoRA adapters for SFT (peft); merged into the weights before saving."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"


@dataclass(frozen=True)
class LMTrainConfig:
    """One stage's optimisation settings (AutoCut Table 4 names in comments)."""

    stage: Stage
    learning_rate: float  # peak, after warm-up (Table 4: 5e-5 align, 1e-5 SFT)
    epochs: float = 1.0  # Table 4: 5 align, 3 SFT
    max_steps: int | None = None  # optimizer steps; caps `epochs` (smoke runs, tests)
    cutoff_len: int = 1024  # tokens per sequence (Table 4: 8096 align, 4000 SFT)
    packing: bool = False  # concatenate + cut alignment sequences into cutoff_len blocks (Table 4: align only)
    per_device_batch_size: int = 1  # Table 4: 2 align, 1 SFT
    grad_accum_steps: int = 1
    warmup_ratio: float = 0.1  # linear warm-up share of the steps, then cosine to 0
    weight_decay: float = 0.0  # AdamW (LLaMA-Factory default 0)
    adam_betas: tuple[float, float] = (0.9, 0.999)
    max_grad_norm: float = 1.0
    seed: int = 0  # data order, vocabulary init noise, LoRA init
    time_budget_s: float | None = None  # wall-clock budget of this invocation (CPU runs)
    save_every_steps: int | None = None  # checkpoint cadence (None: only at the end / on the budget)
    keep_checkpoints: int = 2
    log_every_steps: int = 10
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"  # auto: bf16 on a bf16 CUDA GPU, else fp32
    gradient_checkpointing: bool = False  # GPU memory saver for long cutoffs
    lora: LoraSettings | None = None  # SFT only
    vocab_pad_multiple: int = DEFAULT_PAD_MULTIPLE
    vocab_noise_scale: float = DEFAULT_NOISE_SCALE

    def __post_init__(self) -> None:
        if self.stage not in ("align", "sft"):
            raise ConfigError(f"stage must be 'align' or 'sft', got {self.stage!r}")
        if not self.learning_rate > 0:
            raise ConfigError("learning_rate must be > 0")
        if not self.epochs > 0:
            raise ConfigError("epochs must be > 0")
        for name in ("cutoff_len", "per_device_batch_size", "grad_accum_steps", "log_every_steps", "keep_checkpoints"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError("max_steps must be >= 1")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError("warmup_ratio must be in [0, 1)")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise ConfigError("time_budget_s must be > 0")
        if self.lora is not None and self.stage != "sft":
            raise ConfigError("LoRA applies to the sft stage only (align trains the new embedding rows)")
        if isinstance(self.lora, dict):
            object.__setattr__(self, "lora", LoraSettings(**self.lora))
        object.__setattr__(self, "adam_betas", tuple(self.adam_betas))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LMTrainConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known - {"_comment"})
        if unknown:
            raise ConfigError(f"unknown training option(s): {', '.join(unknown)}")
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise ConfigError(f"malformed training config: {exc}") from None

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> LMTrainConfig:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: cannot read training config ({exc})") from None


def preset(stage: Stage, profile: Literal["table4", "cpu"] = "cpu") -> LMTrainConfig:
    """Training presets. ``table4`` is the paper's Qwen3-8B recipe (GPU); ``cpu`` is the small-backbone
    default here: shorter cutoffs (the corpus caps K frames per candidate to fit) and higher learning
    rates, since a CPU budget affords hundreds of steps rather than the paper's epochs over 700K ads."""
    if profile == "table4":
        if stage == "align":
            return LMTrainConfig(
                stage="align",
                learning_rate=5e-5,
                epochs=5,
                cutoff_len=8096,
                packing=True,
                per_device_batch_size=2,
                save_every_steps=3000,
                log_every_steps=10,
                gradient_checkpointing=True,
            )
        return LMTrainConfig(
            stage="sft",
            learning_rate=1e-5,
            epochs=3,
            cutoff_len=4000,
            packing=False,
            per_device_batch_size=1,
            save_every_steps=1000,
            log_every_steps=10,
            gradient_checkpointing=True,
        )
    if profile == "cpu":
        if stage == "align":
            return LMTrainConfig(
                stage="align",
                learning_rate=2e-3,
                epochs=1,
                cutoff_len=1024,
                packing=True,
                per_device_batch_size=1,
                save_every_steps=100,
                log_every_steps=5,
            )
        return LMTrainConfig(
            stage="sft",
            learning_rate=1e-4,
            epochs=2,
            cutoff_len=1536,
            packing=False,
            per_device_batch_size=1,
            grad_accum_steps=2,
            save_every_steps=100,
            log_every_steps=5,
        )
    raise ConfigError(f"unknown preset profile {profile!r} (table4 or cpu)")


def lr_at(step: int, total_steps: int, warmup_steps: int) -> float:
    """Learning-rate multiplier: linear warm-up, then cosine decay to 0 at `total_steps`."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class TrainResult:
    run_dir: Path
    model_dir: Path
    stage: str
    steps: int  # optimizer steps taken in total (across resumes)
    planned_steps: int  # schedule length actually used (shortened under a time budget)
    stop_reason: StopReason
    final_loss: float | None  # mean loss of the last logging window
    examples: int
    dropped_examples: int
    seconds: float
    frozen_check: str | None = None  # "passed" after align
    loss_history: list[dict[str, float]] = field(default_factory=list)


def read_lm_info(model_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """`autocut_lm.json` of a trained model directory (None for a plain backbone)."""
    p = Path(model_dir) / LM_INFO_FILENAME
    if not p.exists():
        return None
    data = json.loads(p.read_text())
    if data.get("format_version") != LM_FORMAT_VERSION:
        raise CheckpointError(f"{p}: LM format {data.get('format_version')}, this AutoCut reads {LM_FORMAT_VERSION}")
    return data


# ---------------------------------------------------------------------------------------------- helpers


def _resolve_precision(mp: str) -> str:
    if mp != "auto":
        if mp in ("bf16", "fp16") and not torch.cuda.is_available():
            raise ConfigError(f"mixed_precision={mp} needs a CUDA GPU; use 'no' or 'auto' on CPU")
        return mp
    # GPU-only path (not run here): bf16 as in Table 4.
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


def _checkpoints(run_dir: Path) -> list[Path]:
    d = run_dir / "checkpoints"
    if not d.exists():
        return []
    return sorted(
        (
            p
            for p in d.iterdir()
            if p.is_dir()
            and p.name.startswith("step-")
            and not p.name.endswith(".tmp")
            and (p / "progress.json").exists()
        ),
        key=lambda p: int(p.name.split("-")[1]),
    )


@dataclass
class _Progress:
    step: int = 0  # optimizer steps done
    epoch: int = 0
    micro_in_epoch: int = 0  # micro-batches of this process consumed in `epoch`
    planned_steps: int = 0
    loss_sum: float = 0.0  # since the last logging step
    loss_count: int = 0
    last_loss: float | None = None


def _prepare_model(stage: Stage, init_dir: Path, config: LMTrainConfig, *, bf16_weights: bool = False):
    # GPU-only path (not run here): under DeepSpeed bf16 the engine keeps fp32 master weights itself, so
    # loading in bf16 halves host and device memory (an fp32 Qwen3-8B is ~33 GB per process).
    model, tok = load_causal_lm(init_dir, dtype=torch.bfloat16 if bf16_weights else torch.float32)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    ext = extend_vocabulary(
        model, tok, pad_to_multiple_of=config.vocab_pad_multiple, noise_scale=config.vocab_noise_scale, seed=config.seed
    )
    model.config.use_cache = False
    return model, tok, ext


def _build_examples(stage: Stage, data_files: list[Path], tok, config: LMTrainConfig) -> tuple[list[Example], int]:
    if stage == "align":
        texts = read_align_texts(data_files)
        return align_examples(texts, tok, cutoff_len=config.cutoff_len, packing=config.packing), 0
    records = [r for p in data_files for r in load_jsonl(p)]
    return sft_examples(records, tok, cutoff_len=config.cutoff_len)


def causal_lm_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean next-token cross-entropy over the labelled positions, computing the LM head only where needed.

    SFT labels only the response, which sits at the end of each right-padded row; the head (vocabulary x
    hidden, ~20 % of a 135M model's FLOPs per token) runs over the last M positions that cover every
    labelled target (``logits_to_keep``), instead of every prompt token. Equal to the model's own loss.
    """
    labels = batch["labels"]
    labelled = (labels[:, 1:] != IGNORE_INDEX).any(dim=0).nonzero()
    if labelled.numel() == 0:
        raise ConfigError("a training batch has no labelled tokens")
    first = int(labelled[0])  # earliest logit position (t predicts t + 1) with a target
    keep = labels.shape[1] - first
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=keep).logits
    targets = labels[:, first + 1 :]
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX
    )


def _epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


# ---------------------------------------------------------------------------------------------- training


def train_lm(
    *,
    stage: Stage,
    init_dir: str | os.PathLike[str],
    data_files: list[str | os.PathLike[str]],
    run_dir: str | os.PathLike[str],
    config: LMTrainConfig,
    resume: bool = False,
    progress: bool = False,
    num_threads: int | None = None,
) -> TrainResult:
    """Run one training stage; the trained model ends up in ``run_dir/model``.

    `num_threads`: torch intra-op threads for this process (None: torch's default). On a CPU shared with
    other jobs, 1 thread can be several times faster than 2 (OpenMP threads spin-wait for each other).
    """
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    t0 = time.monotonic()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    if config.stage != stage:
        config = replace(config, stage=stage)
    run = Path(run_dir)
    init = Path(init_dir)
    files = [Path(p) for p in data_files]
    if not files:
        raise ConfigError(f"no training data files for stage {stage}")
    for p in files:
        if not p.exists():
            raise ConfigError(f"training data file {p} does not exist")
    ckpts = _checkpoints(run)
    if ckpts and not resume:
        raise ConfigError(
            f"{run} already holds checkpoints; pass resume=True (--resume) to continue, or choose another run directory"
        )
    run.mkdir(parents=True, exist_ok=True)

    precision = _resolve_precision(config.mixed_precision)
    accelerator = Accelerator(mixed_precision=precision, gradient_accumulation_steps=config.grad_accum_steps)
    deepspeed = getattr(accelerator.state, "deepspeed_plugin", None) is not None
    model, tok, ext = _prepare_model(stage, init, config, bf16_weights=deepspeed and precision == "bf16")
    examples, dropped = _build_examples(stage, files, tok, config)
    if not examples:
        raise ConfigError(
            f"no usable training examples in {', '.join(map(str, files))} "
            f"(dropped {dropped} longer than cutoff_len {config.cutoff_len})"
        )
    n_tokens = sum(len(e.input_ids) for e in examples)
    log.info(
        "%s: %d examples (%d tokens, %d loss tokens), %d dropped",
        stage,
        len(examples),
        n_tokens,
        sum(e.loss_tokens for e in examples),
        dropped,
    )

    frozen_before: dict[str, str] | None = None
    rows: NewRowsOnly | None = None
    if stage == "align":
        frozen_before = fingerprint(model, ext)
        rows = NewRowsOnly(model, ext)
        params = rows.trainable_parameters()
    else:
        if config.lora is not None:
            model = _apply_lora(model, config)
        params = [p for p in model.parameters() if p.requires_grad]
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    n_train = sum(p.numel() for p in params)
    log.info(
        "%s: %.2fM trainable parameters of %.1fM",
        stage,
        n_train / 1e6,
        sum(p.numel() for p in model.parameters()) / 1e6,
    )

    n_proc = accelerator.num_processes
    micro_per_epoch = math.ceil(len(examples) / config.per_device_batch_size)
    steps_per_epoch = max(1, micro_per_epoch // (n_proc * config.grad_accum_steps))
    planned = math.ceil(config.epochs * steps_per_epoch)
    if config.max_steps is not None:
        planned = min(planned, config.max_steps)
    st = _Progress(planned_steps=planned)

    optimizer = torch.optim.AdamW(
        params, lr=config.learning_rate, betas=config.adam_betas, weight_decay=config.weight_decay
    )

    def lr_lambda(step: int) -> float:
        # Reads the (possibly shortened) plan at every step, so a time budget re-plans the cosine.
        return lr_at(step, st.planned_steps, int(config.warmup_ratio * st.planned_steps))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
    ds = getattr(accelerator.state, "deepspeed_plugin", None)
    if ds is not None:  # GPU-only path (not run here): DeepSpeed cannot infer these without a DataLoader.
        ds.deepspeed_config["train_micro_batch_size_per_gpu"] = config.per_device_batch_size
        ds.deepspeed_config["gradient_accumulation_steps"] = config.grad_accum_steps
        ds.deepspeed_config["gradient_clipping"] = config.max_grad_norm
    # The scheduler stays unprepared: accelerate would step it once per process per step, while this
    # plan already counts optimizer steps per process. It is stepped below on synchronised steps only.
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    if micro_per_epoch // n_proc < config.grad_accum_steps:
        raise ConfigError(
            f"{len(examples)} examples are fewer than one optimizer step needs "
            f"({config.per_device_batch_size} x {config.grad_accum_steps} accumulation x {n_proc} processes)"
        )

    if resume and ckpts:
        last = ckpts[-1]
        accelerator.load_state(str(last))
        saved = json.loads((last / "progress.json").read_text())
        # The plan comes from this invocation's config (e.g. a larger --max-steps continues further);
        # the data order and position come from the checkpoint.
        st = _Progress(
            step=saved["step"],
            epoch=saved["epoch"],
            micro_in_epoch=saved["micro_in_epoch"],
            planned_steps=max(planned, saved["step"]),
        )
        if st.planned_steps != saved["planned_steps"]:
            log.info("resumed run planned %d steps, now %d", saved["planned_steps"], st.planned_steps)
        log.info("resumed from %s (step %d of %d, epoch %d)", last, st.step, st.planned_steps, st.epoch)

    run_info = {
        "format_version": LM_FORMAT_VERSION,
        "stage": stage,
        "init_dir": str(init),
        "data_files": [str(p) for p in files],
        "config": config.to_dict(),
        "status": "running",
        "examples": len(examples),
        "dropped_examples": dropped,
        "vocab": asdict(ext),
        "processes": n_proc,
        "started_at": time.time(),
    }
    if accelerator.is_main_process:
        write_json_atomic(run / "run.json", run_info, indent=2, default=str)
    loss_log = run / "loss.jsonl"
    pad_id = int(tok.pad_token_id)
    # Kept free at the end of a budget for the final checkpoint, the frozen-row check and the model save.
    reserve_s = 0.0 if config.time_budget_s is None else max(10.0, 0.05 * config.time_budget_s)
    t_loop = time.monotonic()
    t_window, window_step = t_loop, 0
    full_plan = st.planned_steps
    steps_this_run = 0
    shortened = False
    stop_reason: StopReason = "completed"
    history: list[dict[str, float]] = []

    def save_checkpoint() -> None:
        final = run / "checkpoints" / f"step-{st.step:06d}"
        tmp = final.with_name(final.name + ".tmp")
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        accelerator.wait_for_everyone()
        # Pickle, not safetensors: tied models share one new-rows tensor between embedding and head.
        accelerator.save_state(str(tmp), safe_serialization=False)
        if accelerator.is_main_process:
            write_json_atomic(
                tmp / "progress.json",
                indent=2,
                default=str,
                data={
                    "step": st.step,
                    "epoch": st.epoch,
                    "micro_in_epoch": st.micro_in_epoch,
                    "planned_steps": st.planned_steps,
                },
            )
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            for old in _checkpoints(run)[: -config.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()

    def log_step() -> None:
        if st.loss_count == 0:
            return
        mean = st.loss_sum / st.loss_count
        st.last_loss = mean
        row = {
            "step": st.step,
            "epoch": st.epoch,
            "loss": mean,
            "lr": float(scheduler.get_last_lr()[0]),  # list[float | Tensor] in torch; a float here
            "elapsed_s": round(time.monotonic() - t0, 2),
        }
        history.append(row)
        if accelerator.is_main_process:
            with open(loss_log, "a") as f:
                f.write(json.dumps(row) + "\n")
        log.info("%s step %d/%d loss %.4f lr %.2e", stage, st.step, st.planned_steps, mean, row["lr"])
        st.loss_sum, st.loss_count = 0.0, 0

    bar = tqdm(
        total=st.planned_steps,
        initial=st.step,
        disable=not progress or not accelerator.is_main_process,
        unit="step",
        desc=f"train {stage}",
    )
    model.train()
    try:
        while st.step < st.planned_steps and stop_reason == "completed":
            batches = _epoch_batches(len(examples), config.per_device_batch_size, config.seed, st.epoch)
            mine = batches[accelerator.process_index :: n_proc]
            usable = (len(mine) // config.grad_accum_steps) * config.grad_accum_steps
            while st.micro_in_epoch < usable and st.step < st.planned_steps:
                idx = mine[st.micro_in_epoch]
                batch = {k: v.to(accelerator.device) for k, v in collate([examples[i] for i in idx], pad_id).items()}
                with accelerator.accumulate(model):
                    loss = causal_lm_loss(model, batch)
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and config.max_grad_norm:
                        accelerator.clip_grad_norm_(params, config.max_grad_norm)
                    optimizer.step()  # a no-op while accumulating (accelerate's wrapper)
                    optimizer.zero_grad(set_to_none=True)
                st.micro_in_epoch += 1
                st.loss_sum += float(loss.detach())
                st.loss_count += 1
                if not accelerator.sync_gradients:
                    continue
                scheduler.step()
                st.step += 1
                steps_this_run += 1
                bar.update(1)
                if st.step % config.log_every_steps == 0:
                    log_step()
                if config.save_every_steps and st.step % config.save_every_steps == 0 and st.step < st.planned_steps:
                    save_checkpoint()
                if config.time_budget_s is not None:
                    elapsed = time.monotonic() - t0
                    per_step = (time.monotonic() - t_loop) / steps_this_run
                    if elapsed + per_step + reserve_s > config.time_budget_s:
                        stop_reason = "time_budget"
                        break
                    # Re-plan after a few measured steps so the cosine still reaches 0 in the budget; on a
                    # shared machine the speed changes, so the plan may grow back (never past the full plan)
                    # when recent steps run faster than the early ones.
                    if steps_this_run >= 3 and (steps_this_run == 3 or steps_this_run % 10 == 0):
                        recent = (time.monotonic() - t_window) / max(1, steps_this_run - window_step)
                        rate = min(per_step, recent) if steps_this_run > 3 else per_step
                        affordable = min(full_plan, st.step + int((config.time_budget_s - elapsed - reserve_s) / rate))
                        t_window, window_step = time.monotonic(), steps_this_run
                        if abs(affordable - st.planned_steps) > 0.05 * st.planned_steps:
                            log.warning(
                                "time budget %.0f s: %.2f s/step, schedule %s from %d to %d steps",
                                config.time_budget_s,
                                rate,
                                "shortened" if affordable < st.planned_steps else "extended",
                                st.planned_steps,
                                affordable,
                            )
                            st.planned_steps = max(affordable, st.step + 1)
                            shortened = st.planned_steps < full_plan
                            bar.total = st.planned_steps
                            bar.refresh()
            else:
                if st.micro_in_epoch >= usable:
                    st.epoch += 1
                    st.micro_in_epoch = 0
    finally:
        bar.close()
    if shortened:
        stop_reason = "time_budget"
    log_step()
    save_checkpoint()

    model = accelerator.unwrap_model(model)
    frozen_check = None
    if rows is not None:
        model = rows.restore()
        assert frozen_before is not None
        check_unchanged(frozen_before, fingerprint(model, ext))
        frozen_check = "passed"
        log.info("frozen-row check passed: every old row and every backbone parameter is bit-identical")
    if stage == "sft" and config.lora is not None:
        model = model.merge_and_unload()
    model_dir = run / "model"
    seconds = time.monotonic() - t0
    if accelerator.is_main_process:
        _save_model(
            model,
            tok,
            model_dir,
            {
                "format_version": LM_FORMAT_VERSION,
                "stage": stage,
                "init_dir": str(init),
                "init_lm": _lineage(init),
                "backbone": _backbone_origin(init),
                "vocab": asdict(ext),
                "steps": st.step,
                "planned_steps": st.planned_steps,
                "stop_reason": stop_reason,
                "final_loss": st.last_loss,
                "config": config.to_dict(),
                "data_files": [str(p) for p in files],
                "frozen_check": frozen_check,
                "created_at": time.time(),
            },
        )
        run_info.update(
            status="done",
            steps=st.step,
            planned_steps=st.planned_steps,
            stop_reason=stop_reason,
            final_loss=st.last_loss,
            seconds=round(seconds, 1),
            model_dir=str(model_dir),
            frozen_check=frozen_check,
        )
        write_json_atomic(run / "run.json", run_info, indent=2, default=str)
    accelerator.wait_for_everyone()
    log.info(
        "%s done: %d steps (%s), final loss %s, %.0f s -> %s",
        stage,
        st.step,
        stop_reason,
        f"{st.last_loss:.4f}" if st.last_loss is not None else "n/a",
        seconds,
        model_dir,
    )
    return TrainResult(
        run_dir=run,
        model_dir=model_dir,
        stage=stage,
        steps=st.step,
        planned_steps=st.planned_steps,
        stop_reason=stop_reason,
        final_loss=st.last_loss,
        examples=len(examples),
        dropped_examples=dropped,
        seconds=seconds,
        frozen_check=frozen_check,
        loss_history=history,
    )


def _lineage(init: Path) -> dict[str, Any] | None:
    info = read_lm_info(init)
    return {"stage": info["stage"], "steps": info["steps"], "init_dir": info["init_dir"]} if info else None


def _backbone_origin(init: Path) -> str:
    info = read_lm_info(init)
    if info is not None:
        return str(info.get("backbone", ""))
    b = read_backbone_info(init)
    return b.origin if b is not None else str(init)


def _apply_lora(model, config: LMTrainConfig):
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ConfigError("LoRA needs the peft package (pip install peft)") from None
    assert config.lora is not None
    torch.manual_seed(config.seed)
    lc = LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=config.lora.target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lc)


def _save_model(model, tok, out: Path, info: dict[str, Any]) -> None:
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.config.use_cache = True
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    write_json_atomic(tmp / LM_INFO_FILENAME, info, indent=2, default=str)
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def extension_of(model_dir: str | os.PathLike[str]) -> VocabExtension | None:
    """The vocabulary extension recorded in a trained model directory."""
    info = read_lm_info(model_dir)
    return VocabExtension(**info["vocab"]) if info else None
