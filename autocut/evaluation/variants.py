"""How different a request's variant plans are from each other (`autocut plan --variants`)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from autocut.evaluation.metrics import pairwise_order_accuracy
from autocut.types import EditPlan, PlanSegment

__all__ = ["VariantReport", "variant_distinctness"]


@dataclass(frozen=True)
class VariantReport:
    """How different a request's plans are from each other (pairwise means; 0 = identical)."""

    n_plans: int
    all_distinct: bool  # no two plans have the same clips, order and script
    selection_distance: float  # 1 - Jaccard similarity of the sets of clips used
    order_distance: float  # share of discordant pairs among clips two plans share (NaN: none share 2)
    script_distance: float  # share of positions whose sentence differs
    bgm_distance: float  # share of pairs with different BGM tracks

    def to_text(self) -> str:
        return (
            f"{self.n_plans} plans, all distinct: {self.all_distinct}; mean pairwise distance: "
            f"selection {self.selection_distance:.2f}, order {self.order_distance:.2f}, "
            f"script {self.script_distance:.2f}, BGM {self.bgm_distance:.2f}"
        )


def _clip_key(s: PlanSegment) -> tuple:
    return (s.photo_id, s.clip_id if s.mode == "by_clip" else s.frame_id, round(s.start_s, 1))


def variant_distinctness(plans: Sequence[EditPlan]) -> VariantReport:
    """Pairwise distinctness of a request's plans in selection, order, script and BGM."""
    pairs = list(itertools.combinations(plans, 2))
    if not pairs:
        return VariantReport(len(plans), True, math.nan, math.nan, math.nan, math.nan)
    sel, order, script, bgm = [], [], [], []
    signatures = set()
    for p in plans:
        signatures.add((tuple(_clip_key(s) for s in p.segments), tuple(s.sentence for s in p.segments)))
    for a, b in pairs:
        ka, kb = [_clip_key(s) for s in a.segments], [_clip_key(s) for s in b.segments]
        sa, sb = set(ka), set(kb)
        sel.append(1.0 - len(sa & sb) / len(sa | sb))
        acc = pairwise_order_accuracy(ka, kb)
        if not math.isnan(acc):
            order.append(1.0 - acc)
        n = max(len(a.segments), len(b.segments))
        diff = sum(
            1
            for i in range(n)
            if i >= len(a.segments) or i >= len(b.segments) or a.segments[i].sentence != b.segments[i].sentence
        )
        script.append(diff / n)
        bgm.append(float((a.bgm.audio_id if a.bgm else None) != (b.bgm.audio_id if b.bgm else None)))
    return VariantReport(
        n_plans=len(plans),
        all_distinct=len(signatures) == len(plans),
        selection_distance=float(np.mean(sel)),
        order_distance=float(np.mean(order)) if order else math.nan,
        script_distance=float(np.mean(script)),
        bgm_distance=float(np.mean(bgm)),
    )
