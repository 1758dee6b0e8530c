"""Evaluation metrics for edit plans (docs/method.md, "Metrics"; AutoCut 4.2, VC-LLM 6.2, VideoNarrator).

Every function takes plain ids, strings and numbers, so the evaluation harness, the planner tests
and notebooks score the same way. Per-sample functions return one number; the `*_rate` /
`mean_*` aggregates average them over samples (NaN samples, e.g. an order of one clip, are left
out of the mean and counted in `MetricSummary.n_undefined`).

Word rule (WCD; docs/method.md, "Metrics"): a word is a whitespace-separated token in Latin scripts
and one character in CJK scripts; punctuation is not a word. Target words = round(rate x clip
duration), default rate 2.5 English words/s or 5 CJK characters/s (VideoNarrator), configurable.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from autocut.errors import ConfigError
from autocut.speech.words import (
    CJK_CHAR,
    DEFAULT_WORDS_PER_S,
    count_words,
    detect_language,
    is_word_char,
    speaking_rate,
    target_words,
)

__all__ = [
    "DEFAULT_WORDS_PER_S",
    "MetricSummary",
    "anchored_pair_accuracy",
    "assign_segments",
    "bgm_cosine",
    "bgm_hit_at_k",
    "bgm_mrr",
    "bgm_rank",
    "count_words",
    "cra",
    "csa",
    "detect_language",
    "f1_score",
    "kendall_tau",
    "mean_kendall_tau",
    "mean_pairwise_order_accuracy",
    "order_exact",
    "pairwise_order_accuracy",
    "roc_auc",
    "segment_order",
    "selection_only_positive",
    "selection_precision",
    "selection_recall",
    "sequence_exact",
    "sra",
    "ssa",
    "ssa_sentence",
    "summarize",
    "target_words",
    "wcd",
    "wcd_per_clip",
]


def wcd_per_clip(
    lines: Sequence[str],
    durations_s: Sequence[float],
    language: str = "auto",
    *,
    words_per_s: float | Mapping[str, float] | None = None,
) -> list[int]:
    """|words(line) - target(duration)| for each (script line, clip) pair."""
    if len(lines) != len(durations_s):
        raise ConfigError(f"{len(lines)} script lines for {len(durations_s)} clips: WCD needs one line per clip")
    out = []
    for line, dur in zip(lines, durations_s):
        if dur < 0:
            raise ConfigError(f"clip duration must be >= 0, got {dur}")
        rate = speaking_rate(language, line, words_per_s)
        out.append(abs(count_words(line) - int(math.floor(rate * dur + 0.5))))
    return out


def wcd(
    lines: Sequence[str],
    durations_s: Sequence[float],
    language: str = "auto",
    *,
    words_per_s: float | Mapping[str, float] | None = None,
) -> float:
    """Mean clip-level word count discrepancy of one script (AutoCut 4.2, VC-LLM eq. 12)."""
    per = wcd_per_clip(lines, durations_s, language, words_per_s=words_per_s)
    return float(np.mean(per)) if per else math.nan


# --------------------------------------------------------------------------- selection and order


def selection_only_positive(selected: Sequence[Hashable], positives: Collection[Hashable]) -> bool:
    """True when a sample's selection is non-empty and holds positive clips only (CSA's per-sample test).

    An empty selection counts as wrong: selecting nothing is not a correct selection.
    """
    pos = set(positives)
    return len(selected) > 0 and all(s in pos for s in selected)


def csa(selections: Sequence[Sequence[Hashable]], positives: Sequence[Collection[Hashable]]) -> float:
    """Clip Selection Accuracy: share of samples whose selected set contains only positive clips."""
    _same_len(selections, positives, "selections", "positive sets")
    if not selections:
        return math.nan
    return float(np.mean([selection_only_positive(s, p) for s, p in zip(selections, positives)]))


def order_exact(pred: Sequence[Hashable], ref: Sequence[Hashable]) -> bool:
    """The predicted sequence equals the reference sequence item for item."""
    return list(pred) == list(ref)


def cra(pred_orders: Sequence[Sequence[Hashable]], ref_orders: Sequence[Sequence[Hashable]]) -> float:
    """Clip Rank Accuracy: share of samples whose predicted order matches the reference exactly.

    Sorting samples give the model the reference clips, so both orders hold the same items.
    """
    _same_len(pred_orders, ref_orders, "predicted orders", "reference orders")
    if not pred_orders:
        return math.nan
    return float(np.mean([order_exact(p, r) for p, r in zip(pred_orders, ref_orders)]))


def sequence_exact(pred: Sequence[Hashable], ref: Sequence[Hashable]) -> bool:
    """Select-and-order exact: same clips in the same order (SRA's per-sample test)."""
    return order_exact(pred, ref)


def sra(pred_sequences: Sequence[Sequence[Hashable]], ref_sequences: Sequence[Sequence[Hashable]]) -> float:
    """VC-LLM SRA: share of samples whose selected-and-ordered clip sequence equals the reference."""
    _same_len(pred_sequences, ref_sequences, "predicted sequences", "reference sequences")
    if not pred_sequences:
        return math.nan
    return float(np.mean([sequence_exact(p, r) for p, r in zip(pred_sequences, ref_sequences)]))


def _pair_counts(pred: Sequence[Hashable], ref: Sequence[Hashable]) -> tuple[int, int]:
    """(concordant, discordant) pairs over the items both sequences hold."""
    pos = {x: i for i, x in enumerate(pred)}
    if len(pos) != len(pred):
        raise ConfigError("a predicted order lists the same clip twice")
    common = [x for x in ref if x in pos]
    if len(set(common)) != len(common):
        raise ConfigError("a reference order lists the same clip twice")
    conc = disc = 0
    for i in range(len(common)):
        for j in range(i + 1, len(common)):
            if pos[common[i]] < pos[common[j]]:
                conc += 1
            else:
                disc += 1
    return conc, disc


def pairwise_order_accuracy(pred: Sequence[Hashable], ref: Sequence[Hashable]) -> float:
    """Share of clip pairs (among clips in both) that the prediction orders as the reference does.

    NaN when fewer than two clips are shared (no pair to judge).
    """
    conc, disc = _pair_counts(pred, ref)
    return conc / (conc + disc) if conc + disc else math.nan


def kendall_tau(pred: Sequence[Hashable], ref: Sequence[Hashable]) -> float:
    """Kendall's tau-a between two orders of the same clips, in [-1, 1]; NaN for fewer than two clips."""
    conc, disc = _pair_counts(pred, ref)
    return (conc - disc) / (conc + disc) if conc + disc else math.nan


def mean_pairwise_order_accuracy(
    pred_orders: Sequence[Sequence[Hashable]], ref_orders: Sequence[Sequence[Hashable]]
) -> float:
    """Mean of `pairwise_order_accuracy` over samples that have at least one pair."""
    _same_len(pred_orders, ref_orders, "predicted orders", "reference orders")
    return _nanmean([pairwise_order_accuracy(p, r) for p, r in zip(pred_orders, ref_orders)])


def mean_kendall_tau(pred_orders: Sequence[Sequence[Hashable]], ref_orders: Sequence[Sequence[Hashable]]) -> float:
    """Mean of `kendall_tau` over samples that have at least one pair."""
    _same_len(pred_orders, ref_orders, "predicted orders", "reference orders")
    return _nanmean([kendall_tau(p, r) for p, r in zip(pred_orders, ref_orders)])


def selection_precision(selected: Sequence[Hashable], positives: Collection[Hashable]) -> float:
    """Share of the selected clips that are positives (each selected item counts; NaN for no selection)."""
    if not selected:
        return math.nan
    pos = set(positives)
    return float(np.mean([s in pos for s in selected]))


def assign_segments(selected: Sequence[Hashable], segment_sets: Sequence[Collection[Hashable]]) -> list[int | None]:
    """Per selected item, the reference segment it stands for (index into `segment_sets`), or None.

    A maximum one-to-one matching: item i may stand for segment k when it is in `segment_sets[k]`, each
    segment is covered by at most one item and each item stands for at most one segment. Items are taken in
    order and try segments in index order (augmenting paths), so the result is deterministic.
    """
    sets = [set(s) for s in segment_sets]
    options = [[k for k, s in enumerate(sets) if x in s] for x in selected]
    owner: dict[int, int] = {}  # segment -> item

    def augment(i: int, seen: set[int]) -> bool:
        for k in options[i]:
            if k in seen:
                continue
            seen.add(k)
            if k not in owner or augment(owner[k], seen):
                owner[k] = i
                return True
        return False

    for i in range(len(selected)):
        augment(i, set())
    out: list[int | None] = [None] * len(selected)
    for k, i in owner.items():
        out[i] = k
    return out


def selection_recall(selected: Sequence[Hashable], segment_sets: Sequence[Collection[Hashable]]) -> float:
    """Share of reference segments covered by a distinct selected clip (`assign_segments`); NaN without segments."""
    if not segment_sets:
        return math.nan
    return sum(k is not None for k in assign_segments(selected, segment_sets)) / len(segment_sets)


def f1_score(precision: float, recall: float) -> float:
    """Harmonic mean of precision and recall (0 when both are 0; NaN when either is NaN)."""
    if math.isnan(precision) or math.isnan(recall):
        return math.nan
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def segment_order(selected: Sequence[Hashable], segment_sets: Sequence[Collection[Hashable]]) -> list[int]:
    """The reference segments that correctly selected items stand for, in the order of the selection.

    With `pairwise_order_accuracy(segment_order(...), range(len(segment_sets)))` the order of the correctly
    selected clips is compared with the reference order of the segments they stand for.
    """
    return [k for k in assign_segments(selected, segment_sets) if k is not None]


def roc_auc(scores: Sequence[float] | np.ndarray, labels: Sequence[bool] | np.ndarray) -> float:
    """Exact ROC-AUC: the share of (positive, negative) pairs whose positive scores higher, a tie counting 0.5
    (Mann-Whitney U / (P N), from mid-ranks). NaN when there are no scores or only one class."""
    s = np.asarray(scores, np.float64).reshape(-1)
    y = np.asarray(labels, bool).reshape(-1)
    if s.shape != y.shape:
        raise ConfigError(f"{s.size} scores for {y.size} labels")
    if np.isnan(s).any():
        raise ConfigError("a score is NaN: ROC-AUC needs every candidate scored")
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return math.nan
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    mid_rank = (ends - counts + 1 + ends) / 2.0  # 1-based mean rank of each distinct score
    rank_sum = float(mid_rank[inverse][y].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def anchored_pair_accuracy(roles: Sequence[str | None], first: str = "hook", last: str = "cta") -> float:
    """Order accuracy on the pairs the roles alone fix: a `first` clip before every clip of another role, a
    `last` clip after every clip of another role.

    `roles`: per clip of a plan, in plan order, its role (None or "" = unknown: its pairs are not judged).
    Pairs of two `first` (or two `last`) clips are not fixed; a (`first`, `last`) pair counts once. NaN when
    no pair is fixed.
    """
    known = [r for r in roles if r]
    right = total = 0
    for i in range(len(known)):
        for j in range(i + 1, len(known)):
            a, b = known[i], known[j]  # a comes before b in the plan
            if a == b or (first not in (a, b) and last not in (a, b)):
                continue
            total += 1
            right += a == first or b == last
    return right / total if total else math.nan


# --------------------------------------------------------------------------- subtitles (SSA)


def _splits_latin_word(segments: Sequence[str], sentence: str) -> bool | None:
    """Whether a segment boundary falls inside a Latin word of `sentence`; None if the segments are
    not the sentence (whitespace aside)."""
    pos = 0
    bounds = []
    for seg in segments:
        for ch in seg:
            if ch.isspace():
                continue
            while pos < len(sentence) and sentence[pos].isspace():
                pos += 1
            if pos >= len(sentence) or sentence[pos] != ch:
                return None
            pos += 1
        bounds.append(pos)
    if sentence[pos:].strip():
        return None
    for b in bounds[:-1]:
        left, right = sentence[b - 1 : b], sentence[b : b + 1]
        if (
            left
            and right
            and not left.isspace()
            and not right.isspace()
            and not CJK_CHAR.match(left)
            and not CJK_CHAR.match(right)
            and is_word_char(left)
            and is_word_char(right)
        ):
            return True
    return False


def ssa_sentence(segments: Sequence[str], sentence: str | None = None) -> bool:
    """VC-LLM 6.2 subtitle segmentation check for one sentence given as its segments, in order.

    Rules (docs/method.md, "Metrics"): each segment <= 13 units (CJK character 1, Latin letter 0.4,
    space 0.5); the text between two punctuation marks spans at most ceil(units / 10) segments; no
    word is split across segments. The rules live in `autocut.render.subtitles`, which also produces the segments.
    Segments alone cannot show a Latin word cut in two ("Fresh" | "Co"), so give the `sentence`
    they came from to check that too (and that they are the sentence).
    """
    from autocut.render.subtitles import ssa_ok  # local: subtitles pulls in the TTS module

    if sentence is not None:
        split = _splits_latin_word(segments, sentence)
        if split is None or split:
            return False
    return ssa_ok(list(segments))


def ssa(segmented: Sequence[Sequence[str]], sentences: Sequence[str] | None = None) -> float:
    """SSA: share of sentences whose subtitle segmentation passes `ssa_sentence`."""
    if not segmented:
        return math.nan
    if sentences is not None:
        _same_len(segmented, sentences, "segmentations", "sentences")
        return float(np.mean([ssa_sentence(s, t) for s, t in zip(segmented, sentences)]))
    return float(np.mean([ssa_sentence(s) for s in segmented]))


# --------------------------------------------------------------------------- BGM


def bgm_rank(ranked_ids: Sequence[int], ref_id: int) -> int | None:
    """1-based rank of the reference track in a ranked retrieval list, None if absent."""
    for i, a in enumerate(ranked_ids):
        if a == ref_id:
            return i + 1
    return None


def bgm_hit_at_k(ranked: Sequence[Sequence[int]], refs: Sequence[int], k: int) -> float:
    """Share of samples whose reference track is among the top `k` retrieved."""
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    _same_len(ranked, refs, "rankings", "reference tracks")
    if not ranked:
        return math.nan
    hits = []
    for r, ref in zip(ranked, refs):
        rank = bgm_rank(r, ref)
        hits.append(rank is not None and rank <= k)
    return float(np.mean(hits))


def bgm_mrr(ranked: Sequence[Sequence[int]], refs: Sequence[int]) -> float:
    """Mean reciprocal rank of the reference track (0 for a sample whose list misses it)."""
    _same_len(ranked, refs, "rankings", "reference tracks")
    if not ranked:
        return math.nan
    rr = []
    for r, ref in zip(ranked, refs):
        rank = bgm_rank(r, ref)
        rr.append(0.0 if rank is None else 1.0 / rank)
    return float(np.mean(rr))


def bgm_cosine(pred: np.ndarray, ref: np.ndarray) -> float:
    """Mean cosine between predicted and reference BGM embeddings, row by row ((N, D) or (D,)).

    A proxy for the paper's MSS (a Music-Flamingo description similarity, not comparable).
    """
    p = np.atleast_2d(np.asarray(pred, np.float64))
    r = np.atleast_2d(np.asarray(ref, np.float64))
    if p.shape != r.shape:
        raise ConfigError(f"predicted BGM embeddings {p.shape} and reference {r.shape} differ in shape")
    if p.size == 0:
        return math.nan
    num = (p * r).sum(axis=1)
    den = np.linalg.norm(p, axis=1) * np.linalg.norm(r, axis=1)
    if (den <= 0).any():
        raise ConfigError("a BGM embedding has zero norm; cosine is undefined")
    return float(np.mean(num / den))


# --------------------------------------------------------------------------- summary


@dataclass(frozen=True)
class MetricSummary:
    """Mean of a per-sample metric with its spread; NaN samples are counted, not averaged."""

    name: str
    mean: float
    std: float
    n: int  # samples averaged
    n_undefined: int  # samples where the metric is undefined (NaN)


def summarize(name: str, values: Sequence[float | bool]) -> MetricSummary:
    """Mean and standard deviation of per-sample values, leaving NaN out."""
    arr = np.asarray([float(v) for v in values], np.float64)
    ok = arr[~np.isnan(arr)]
    if ok.size == 0:
        return MetricSummary(name, math.nan, math.nan, 0, int(arr.size))
    return MetricSummary(name, float(ok.mean()), float(ok.std()), int(ok.size), int(arr.size - ok.size))


def _nanmean(values: Sequence[float]) -> float:
    ok = [v for v in values if not math.isnan(v)]
    return float(np.mean(ok)) if ok else math.nan


def _same_len(a: Sequence, b: Sequence, what_a: str, what_b: str) -> None:
    if len(a) != len(b):
        raise ConfigError(f"{len(a)} {what_a} for {len(b)} {what_b}")
