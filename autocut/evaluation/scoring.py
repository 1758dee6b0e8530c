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

Selection two ways, side by side (`autocut.evaluation.samples`: strict positives overlap a reference
segment; role-equivalent ones show any ad shot of the product with the segment's role and selling point, e.g.
the second hook shot): CSA / `csa_role`; precision / `precision_role` (share of the picks that are positives);
`recall` / `recall_role` (share of reference segments a distinct pick stands for: a maximum one-to-one
matching of picks to segments, `metrics.assign_segments`); `f1` / `f1_role`; `auc` / `auc_role`: ROC-AUC of the
planner's candidate scores (`Decision.candidate_scores`, the heuristic's similarities; n/a without scores or
with one class). Every role-equivalent value is >= its strict one (role sets contain the strict ones).
`pairwise_script_role` / `tau_script_role`: the order of the correctly selected clips, each mapped to the
reference segment it stands for, against the reference order of those segments. `pairwise_roles`
(footage-driven): order accuracy on the pairs the world fixes, the hook before every other clip and the CTA
after every other clip (among clips showing the product's ad shots, `EvalSample.candidate_roles`). BGM:
`bgm_mood` = the chosen track has the reference track's mood; `bgm_hit1_ceiling` = 1 / (tracks of that mood),
the Hit@1 of an oracle that knows the mood (the world draws the reference uniformly within its mood). LM
planners: `lm_*` score the model's raw selection answer (`notes["lm_select"]`, 1-based indices of the shown
candidates, which are the pool's candidates in pool order) before grounding, and `lm_grounded_share` is the
share of grounded picks that are in it (`grounded_match` compares position by position with the decision).

The runner adds WCD without length targets and the judge's VSC / SQ (`autocut.evaluation.runner`).
"Chance" values (`chance_scores`) are exact expectations for uniform random choices on the same sample
(e.g. CSA = C(P, k) / C(N, k)); recall's is exact when the segments' positive sets are disjoint (else n/a).
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


def _selection_metrics(sample: EvalSample, selected: Sequence[int], suffix: str, prefix: str = "") -> dict[str, float]:
    """Precision, recall and F1 of `selected` (one item per plan segment), strict (`suffix` "") or role-equivalent
    ("_role")."""
    pos, sets = (
        (sample.role_positives, sample.role_segments) if suffix else (sample.positives, sample.segment_positives)
    )
    p = M.selection_precision(selected, pos)
    r = M.selection_recall(selected, sets)
    out = {f"{prefix}precision{suffix}": p, f"{prefix}recall{suffix}": r}
    if not prefix:
        out[f"f1{suffix}"] = M.f1_score(p, r)
    return out


def _auc(sample: EvalSample, decision: Decision | None, positives: frozenset[int]) -> float:
    scores = decision.candidate_scores if decision is not None else None
    if scores is None or len(scores) != len(sample.candidates):
        return math.nan
    return M.roc_auc(scores, [c.index in positives for c in sample.candidates])


def lm_answer(decision: Decision | None) -> list[int] | None:
    """The LM's raw selection answer as 0-based pool candidates (`notes["lm_select"]` lists 1-based indices of
    the shown candidates, which are every pool candidate in pool order); None when there is none."""
    raw = decision.notes.get("lm_select", "") if decision is not None else ""
    try:
        return [int(x) - 1 for x in raw.split(",")] if raw.strip() else None
    except ValueError:
        return None


def _lm_metrics(sample: EvalSample, mapped: Sequence[int | None], decision: Decision | None) -> dict[str, float]:
    answer = lm_answer(decision)
    keys = ("lm_precision", "lm_recall", "lm_precision_role", "lm_recall_role", "lm_grounded_share")
    if answer is None:
        return dict.fromkeys(keys, math.nan)
    out = _selection_metrics(sample, answer, "", prefix="lm_") | _selection_metrics(
        sample, answer, "_role", prefix="lm_"
    )
    chosen = set(answer)
    out["lm_grounded_share"] = float(np.mean([m in chosen for m in mapped])) if mapped else math.nan
    return out


def _bgm_metrics(
    sample: EvalSample, ranking: Sequence[int], chosen: int | None, bgm_rows: dict[int, np.ndarray], ks: Sequence[int]
) -> dict[str, float]:
    ref = sample.ref_audio_id
    out: dict[str, float] = {}
    moods = sample.mood_track_ids
    out["bgm_mood"] = float(chosen is not None and int(chosen) in moods) if moods else math.nan
    out["bgm_hit1_ceiling"] = 1.0 / len(moods) if moods else math.nan
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
        "csa_role": float(M.selection_only_positive(selected, sample.role_positives)),
        **_selection_metrics(sample, selected, ""),
        **_selection_metrics(sample, selected, "_role"),
        "auc": _auc(sample, decision, sample.positives),
        "auc_role": _auc(sample, decision, sample.role_positives),
        **_lm_metrics(sample, mapped, decision),
    }
    role_order = M.segment_order(selected, sample.role_segments)
    ref_order = list(range(len(sample.role_segments)))
    out["pairwise_script_role"] = M.pairwise_order_accuracy(role_order, ref_order)
    out["tau_script_role"] = M.kendall_tau(role_order, ref_order)
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

    `durations_s`: per segment, the duration its line was written for (the planner's decision: the segment
    length it chose, else its candidate clip's); None = the mapped candidate's duration.
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
        "pairwise_roles": M.anchored_pair_accuracy([_role(sample, c) for c in seq]),
    }
    return out


def _role(sample: EvalSample, c: Any) -> str | None:
    """A candidate's role (an ad shot of the sample's product), None when unknown or not a candidate."""
    if isinstance(c, int) and 0 <= c < len(sample.candidate_roles):
        return sample.candidate_roles[c] or None
    return None


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
        # Role-equivalent and the other selection metrics: the same formulas on their positive sets.
        p_role = len(sample.role_positives)
        out["csa_role"] = math.comb(p_role, k) / math.comb(n, k) if k <= n else math.nan
        out["precision_role"] = p_role / n
        out["recall"] = _chance_recall(sample.segment_positives, n, k)
        out["recall_role"] = _chance_recall(sample.role_segments, n, k)
        out["auc"] = 0.5 if 0 < p < n else math.nan
        out["auc_role"] = 0.5 if 0 < p_role < n else math.nan
        out["pairwise_script_role"], out["tau_script_role"] = 0.5, 0.0
        for key in ("precision", "recall", "precision_role", "recall_role"):
            out[f"lm_{key}"] = out[key]
        if sample.ref_audio_id is not None and n_tracks:
            for kk in bgm_ks:
                out[f"bgm_hit{kk}"] = min(kk, n_tracks) / n_tracks
            out["bgm_mrr"] = sum(1.0 / r for r in range(1, n_tracks + 1)) / n_tracks
            out["bgm_cos"] = ref_cos_mean if ref_cos_mean is not None else math.nan
            if sample.mood_track_ids:
                out["bgm_mood"] = min(len(sample.mood_track_ids), n_tracks) / n_tracks
    else:
        m = len(sample.reference_distinct)
        exact_possible = len(set(sample.reference)) == len(sample.reference)
        out["cra"] = 1.0 / math.factorial(m) if exact_possible else 0.0
        out["pairwise"], out["tau"] = 0.5, 0.0
        out["pairwise_roles"] = 0.5
    return out


def _chance_recall(segment_sets: Sequence[frozenset[int]], n: int, k: int) -> float:
    """Expected recall of k of n candidates drawn uniformly: with disjoint per-segment sets a segment is covered
    exactly when the draw hits its set, so E = mean over segments of 1 - C(n - |S|, k) / C(n, k). NaN when the
    sets overlap (no simple exact form) or k > n."""
    if not segment_sets or k > n:
        return math.nan
    if sum(len(s) for s in segment_sets) != len(frozenset().union(*segment_sets)):
        return math.nan
    total = math.comb(n, k)
    return float(np.mean([1.0 - math.comb(n - len(s), k) / total for s in segment_sets]))
