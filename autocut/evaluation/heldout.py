"""Held-out scores of a trained LM on the SFT task files: greedy decoding, parsing, task metrics.

For each task, up to `max_per_task` records are answered greedily from exactly the training prompt
(`autocut.lm.chat.render_prompt`) and parsed with `autocut.lm.tokens`; an unparseable answer counts as
wrong. Metrics (docs/method.md, "Metrics"; `autocut.evaluation.metrics`):

- select: CSA (selection non-empty and only positives), exact-set accuracy;
- sort: CRA (exact order), pairwise order accuracy;
- script: share of answers with one line per clip, mean WCD over those;
- bgm: level-0 code accuracy and all-8-codes exact (coarse stand-ins before retrieval grounding).

Random baselines come from the same samples (uniform random picks / permutations / codes, simulated
with a fixed seed), so "better than random" is judged on the same data. The teacher-forced response
NLL per task is reported too: it moves before greedy answers do.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from autocut.evaluation import metrics as M
from autocut.lm import tokens as T
from autocut.lm.chat import render_exchange, render_prompt
from autocut.lm.dataset import load_jsonl

__all__ = ["SftEvaluation", "TaskScores", "evaluate_sft", "generate_answer"]

log = logging.getLogger(__name__)

_MAX_NEW = {"select": 64, "sort": 64, "bgm": 24}


@dataclass
class TaskScores:
    task: str
    n: int
    parse_rate: float  # share of answers that parse in the task's format
    metrics: dict[str, float]
    random_baseline: dict[str, float]
    response_nll: float  # mean teacher-forced NLL per response token
    examples: list[dict[str, str]] = field(default_factory=list)  # first few (prompt tail, answer, reference)


@dataclass
class SftEvaluation:
    model_dir: str
    tasks: dict[str, TaskScores]
    seconds: float

    def summary(self) -> str:
        lines = [f"evaluation of {self.model_dir} ({self.seconds:.0f} s)"]
        for t, s in self.tasks.items():
            m = ", ".join(f"{k} {v:.3f}" for k, v in s.metrics.items())
            r = ", ".join(f"{k} {v:.3f}" for k, v in s.random_baseline.items())
            lines.append(
                f"  {t:6s} n={s.n:3d} parsed {s.parse_rate:.2f} | {m} | random: {r} | response NLL {s.response_nll:.3f}"
            )
        return "\n".join(lines)


@torch.no_grad()
def generate_answer(model, tok, human: str, *, system: str = "", max_new_tokens: int = 64) -> str:
    """Greedy answer to one prompt (the training prompt format), special tokens stripped."""
    prompt = render_prompt(tok, human, system=system)
    ids = torch.tensor([tok(prompt, add_special_tokens=False)["input_ids"]], device=model.device)
    end = tok.convert_tokens_to_ids("<|im_end|>")
    eos = [i for i in {end, tok.eos_token_id} if isinstance(i, int) and i >= 0]
    out = model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=eos,
        pad_token_id=tok.pad_token_id or eos[0],
    )
    return tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()


@torch.no_grad()
def _response_nll(model, tok, rec: dict[str, Any]) -> tuple[float, int]:
    conv = rec["conversations"]
    turns = render_exchange(tok, conv[0]["value"], conv[1]["value"], system=rec.get("system") or "")
    p = tok(turns.prompt, add_special_tokens=False)["input_ids"]
    r = tok(turns.response, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p + r], device=model.device)
    logits = model(input_ids=ids).logits[0, len(p) - 1 : -1].float()
    nll = torch.nn.functional.cross_entropy(logits, ids[0, len(p) :], reduction="sum")
    return float(nll), len(r)


def _score(task: str, rec: dict[str, Any], answer: str, rng: np.random.Generator) -> tuple[bool, dict, dict]:
    """(parsed, metric values, random-baseline values) for one sample."""
    meta = rec.get("meta") or {}
    ref = rec["conversations"][1]["value"]
    human = rec["conversations"][0]["value"]
    n_shown = len(T.parse_ad(human).clips)
    if task == "select":
        pos = set(T.parse_indices(ref, pool_size=n_shown))
        sims = [set(rng.choice(np.arange(1, n_shown + 1), size=len(pos), replace=False).tolist()) for _ in range(200)]
        rand = {"csa": float(np.mean([s <= pos for s in sims])), "exact": float(np.mean([s == pos for s in sims]))}
        try:
            pred = T.parse_indices(answer, pool_size=n_shown)
        except T.TokenFormatError:
            return False, {"csa": 0.0, "exact": 0.0}, rand
        return True, {"csa": float(M.selection_only_positive(pred, pos)), "exact": float(set(pred) == pos)}, rand
    if task == "sort":
        order = T.parse_indices(ref, pool_size=n_shown, expect_count=n_shown)
        rand = {"cra": 1 / math.factorial(n_shown), "pairwise": 0.5}
        try:
            pred = T.parse_indices(answer, pool_size=n_shown, expect_count=n_shown)
        except T.TokenFormatError:
            return False, {"cra": 0.0, "pairwise": 0.0}, rand
        return True, {"cra": float(pred == order), "pairwise": M.pairwise_order_accuracy(pred, order)}, rand
    if task == "script":
        durations = meta.get("durations_s") or []
        lines = [x.strip() for x in answer.split("\n") if x.strip()]
        ok = len(lines) == n_shown and len(durations) == n_shown
        lang = meta.get("language", "auto")
        ref_wcd = M.wcd(ref.split("\n"), durations, lang) if len(durations) == n_shown else math.nan
        rand = {"reference_wcd": ref_wcd}
        if not ok:
            return False, {"line_count_ok": 0.0, "wcd": math.nan}, rand
        return True, {"line_count_ok": 1.0, "wcd": M.wcd(lines, durations, lang)}, rand
    if task == "bgm":
        truth = T.parse_audio(ref)
        rand = {"level0": 1 / T.CODEBOOK_SIZE, "exact": T.CODEBOOK_SIZE**-T.NUM_LEVELS}
        try:
            pred_codes = T.parse_audio(answer)
        except T.TokenFormatError:
            return False, {"level0": 0.0, "exact": 0.0}, rand
        return (
            True,
            {"level0": float(pred_codes[0] == truth[0]), "exact": float(np.array_equal(pred_codes, truth))},
            rand,
        )
    raise ValueError(task)


def evaluate_sft(
    model_dir: str | os.PathLike[str],
    files: list[str | os.PathLike[str]],
    *,
    max_per_task: int = 20,
    seed: int = 0,
    num_examples: int = 2,
    greedy: bool = True,
    num_threads: int | None = None,
) -> SftEvaluation:
    """Score a model directory on SFT files (held-out split); see the module docstring.

    `greedy=False` skips decoding and reports only the teacher-forced response NLL (cheap).
    """
    from autocut.lm.backbone import load_causal_lm

    t0 = time.perf_counter()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    model, tok = load_causal_lm(model_dir)
    model.eval()
    by_task: dict[str, list[dict]] = defaultdict(list)
    for f in files:
        for rec in load_jsonl(f):
            task = (rec.get("meta") or {}).get("task")
            if task and len(by_task[task]) < max_per_task:
                by_task[task].append(rec)
    rng = np.random.default_rng(seed)
    out: dict[str, TaskScores] = {}
    for task, recs in by_task.items():
        parsed = 0
        vals: dict[str, list[float]] = defaultdict(list)
        rands: dict[str, list[float]] = defaultdict(list)
        nll_sum, nll_tok = 0.0, 0
        examples: list[dict[str, str]] = []
        for rec in recs:
            human = rec["conversations"][0]["value"]
            n_lines = len(rec["conversations"][1]["value"].split("\n"))
            answer = ""
            if greedy:
                answer = generate_answer(
                    model, tok, human, system=rec.get("system") or "", max_new_tokens=_MAX_NEW.get(task, 40 * n_lines)
                )
                ok, m, r = _score(task, rec, answer, rng)
                parsed += ok
                for k, v in m.items():
                    vals[k].append(v)
                for k, v in r.items():
                    rands[k].append(v)
            s, n = _response_nll(model, tok, rec)
            nll_sum, nll_tok = nll_sum + s, nll_tok + n
            if len(examples) < num_examples:
                examples.append({"answer": answer, "reference": rec["conversations"][1]["value"]})
        mean = lambda xs: float(np.nanmean(xs)) if xs and not all(math.isnan(x) for x in xs) else math.nan  # noqa: E731
        out[task] = TaskScores(
            task,
            len(recs),
            parsed / len(recs) if greedy else math.nan,
            {k: mean(v) for k, v in vals.items()},
            {k: mean(v) for k, v in rands.items()},
            nll_sum / max(nll_tok, 1),
            examples,
        )
        log.info("%s: %s", task, out[task].metrics)
    return SftEvaluation(str(model_dir), out, time.perf_counter() - t0)
