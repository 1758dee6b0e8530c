"""Scores of one plan against its evaluation sample, and the exact chance expectations on that sample.

Metrics (docs/method.md, "Metrics"; the functions are `autocut.evaluation.metrics`), computed on the
*grounded* plan (segments mapped back to the candidate they overlap most; `grounded_match` = share that
are the candidate the planner chose):

- script-driven (`score_script_plan`): CSA (selection non-empty and only positives), selection precision,
  on-product share, SRA (the clip sequence equals the reference sequence), pairwise / tau (script): the
  order over the correctly selected clips, BGM Hit@k / MRR over the planner's full BGM ranking (its BGM
  query searched over every track with the plan's own `BgmGrounder`; rank 1 is the track the plan uses)
  and the cosine between the chosen and the reference track's embeddings (a proxy for the paper's MSS,
  not comparable);
- footage-driven (`score_footage_plan`): CRA (the planner's order *restricted to the reference clips* is
  exactly the reference order), pairwise / Kendall tau on that induced order, reference coverage, WCD
  (each line against round(rate x duration) of the candidate clip it was written for), SSA of each line
  segmented by `autocut.render.subtitles`, and the offline script proxies of
  `autocut.evaluation.text_proxies` (selling-point coverage, repetition, BLEU-4 / ROUGE-L between the
  planner's line on each reference clip and the reference sentence).

The runner adds WCD without length targets and the judge's VSC / SQ (`autocut.evaluation.runner`).
"Chance" values (`chance_scores`) are exact expectations for uniform random choices on the same sample
(e.g. CSA = C(P, k) / C(N, k)).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from autocut.evaluation import metrics as M
from autocut.evaluation.samples import CandidateSpan, EvalSample, most_overlapping, span_overlaps
from autocut.evaluation.text_proxies import ScriptProxies, bleu4, repetition, rouge_l
from autocut.planning.planners.base import Decision
from autocut.types import EditPlan

__all__ = ["chance_scores", "score_footage_plan", "score_script_plan", "segment_candidates"]


def segment_candidates(plan: EditPlan, candidates: Sequence[CandidateSpan]) -> list[int | None]:
    """Per plan segment, the candidate of the same source it overlaps most (None: overlaps none)."""
    return [
        most_overlapping(span_overlaps(seg.photo_id, seg.start_s, seg.start_s + seg.duration_s, candidates), eps=1e-9)
        for seg in plan.segments
    ]


def _sequence(mapped: Sequence[int | None]) -> list[Any]:
    """Mapped candidates as a sequence of distinct keys (unmapped segments become unique non-candidates)."""
    out: list[Any] = []
    for k, c in enumerate(mapped):
        key = c if c is not None else f"outside-{k}"
        if key not in out:
            out.append(key)
    return out


def _grounded_match(mapped: Sequence[int | None], decision: Decision | None) -> float:
    if decision is None or len(decision.order) != len(mapped):
        return math.nan
    return float(np.mean([m == d for m, d in zip(mapped, decision.order)]))


def _bgm_metrics(
    sample: EvalSample, ranking: Sequence[int], chosen: int | None, bgm_rows: dict[int, np.ndarray], ks: Sequence[int]
) -> dict[str, float]:
    ref = sample.ref_audio_id
    out: dict[str, float] = {}
    if ref is None or int(ref) not in bgm_rows:
        for k in ks:
            out[f"bgm_hit{k}"] = math.nan
        out["bgm_mrr"] = out["bgm_cos"] = math.nan
        return out
    for k in ks:
        out[f"bgm_hit{k}"] = M.bgm_hit_at_k([list(ranking)], [int(ref)], k)
    out["bgm_mrr"] = M.bgm_mrr([list(ranking)], [int(ref)])
    # Clipped: the same track against itself can come out at 1 + 1e-16 in float64.
    out["bgm_cos"] = (
        float(np.clip(M.bgm_cosine(bgm_rows[int(chosen)], bgm_rows[int(ref)]), -1.0, 1.0))
        if chosen is not None and int(chosen) in bgm_rows
        else math.nan
    )
    return out


def score_script_plan(
    sample: EvalSample,
    plan: EditPlan,
    decision: Decision | None = None,
    *,
    bgm_ranking: Sequence[int] = (),
    bgm_rows: dict[int, np.ndarray] | None = None,
    bgm_ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """Selection, order and BGM scores of one script-driven plan against its reference ad."""
    mapped = segment_candidates(plan, sample.candidates)
    selected = [c if c is not None else -1 - k for k, c in enumerate(mapped)]
    pos = sample.positives
    seq = _sequence(mapped)
    ref = sample.reference_distinct
    out = {
        "csa": float(M.selection_only_positive(selected, pos)),
        "precision": float(np.mean([c in pos for c in selected])) if selected else math.nan,
        "on_product": float(np.mean([s.photo_id in sample.product_photo_ids for s in plan.segments])),
        "sra": float(M.sequence_exact(seq, sample.reference)),
        "pairwise_script": M.pairwise_order_accuracy(seq, ref),
        "tau_script": M.kendall_tau(seq, ref),
        "grounded_match": _grounded_match(mapped, decision),
    }
    chosen = plan.bgm.audio_id if plan.bgm is not None else None
    out.update(_bgm_metrics(sample, bgm_ranking, chosen, bgm_rows or {}, bgm_ks))
    return out


def score_footage_plan(
    sample: EvalSample,
    plan: EditPlan,
    decision: Decision | None = None,
    *,
    durations_s: Sequence[float] | None = None,
    proxies: ScriptProxies | None = None,
    words_per_s: dict[str, float] | None = None,
) -> dict[str, float]:
    """Order and script scores of one footage-driven plan.

    `durations_s`: per segment, the duration of the candidate clip its line was written for (the
    planner's decision); None = the mapped candidate's duration.
    """
    from autocut.render.subtitles import segment_sentence

    mapped = segment_candidates(plan, sample.candidates)
    seq = _sequence(mapped)
    ref = sample.reference_distinct
    induced = [c for c in seq if c in set(ref)]
    lines = [s.sentence for s in plan.segments]
    if durations_s is None:
        span = {c.index: c.duration_s for c in sample.candidates}
        durations_s = [span[c] if c is not None else s.duration_s for c, s in zip(mapped, plan.segments)]
    line_on = {c: s.sentence for c, s in zip(mapped, plan.segments) if c is not None}
    ref_pairs = [(line_on[c], sent) for c, sent in zip(sample.reference, sample.ref_sentences) if c in line_on]
    out = {
        "cra": float(induced == ref),
        "pairwise": M.pairwise_order_accuracy(seq, ref),
        "tau": M.kendall_tau(seq, ref),
        "ref_coverage": len(induced) / len(ref) if ref else math.nan,
        "wcd": M.wcd(lines, list(durations_s), sample.language, words_per_s=words_per_s),
        "ssa": M.ssa([[g.text for g in segment_sentence(s)] for s in lines], lines),
        "repetition": repetition(lines),
        "bleu": float(np.mean([bleu4(h, r) for h, r in ref_pairs])) if ref_pairs else math.nan,
        "rouge_l": float(np.mean([rouge_l(h, r) for h, r in ref_pairs])) if ref_pairs else math.nan,
        "sp_coverage": proxies.coverage(lines, sample.selling_points, sample.language) if proxies else math.nan,
        "grounded_match": _grounded_match(mapped, decision),
    }
    return out


def chance_scores(
    sample: EvalSample, n_tracks: int, ref_cos_mean: float | None, bgm_ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """Exact expectations of the metrics under uniform random choices on this sample."""
    out: dict[str, float] = {}
    if sample.scenario == "script":
        n, k, p = len(sample.candidates), len(sample.ref_sentences), len(sample.positives)
        out["csa"] = math.comb(p, k) / math.comb(n, k) if k <= n else math.nan
        out["precision"] = p / n
        exact_possible = len(set(sample.reference)) == len(sample.reference)
        out["sra"] = 1.0 / math.perm(n, k) if exact_possible else 0.0
        out["pairwise_script"], out["tau_script"] = 0.5, 0.0
        if sample.ref_audio_id is not None and n_tracks:
            for kk in bgm_ks:
                out[f"bgm_hit{kk}"] = min(kk, n_tracks) / n_tracks
            out["bgm_mrr"] = sum(1.0 / r for r in range(1, n_tracks + 1)) / n_tracks
            out["bgm_cos"] = ref_cos_mean if ref_cos_mean is not None else math.nan
    else:
        m = len(sample.reference_distinct)
        exact_possible = len(set(sample.reference)) == len(sample.reference)
        out["cra"] = 1.0 / math.factorial(m) if exact_possible else 0.0
        out["pairwise"], out["tau"] = 0.5, 0.0
    return out
