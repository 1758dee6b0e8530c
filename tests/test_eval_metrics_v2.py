"""eval-v2 metrics against hand-computed values on a tiny hand-made sample (no world build): strict and
role-equivalent selection (precision, recall, F1, CSA), ROC-AUC with ties, order over correctly selected clips,
the hook/CTA pairs of footage-driven plans, BGM mood accuracy and its Hit@1 ceiling, the LM's raw answer, and
the exact chance values of `chance_scores` (checked by enumerating every selection)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from autocut.demo_world.config import WORLD_FORMAT_VERSION
from autocut.demo_world.manifest import MANIFEST_FORMAT
from autocut.errors import ConfigError
from autocut.evaluation import metrics as m
from autocut.evaluation.metric_table import METRIC_BY_KEY, METRICS
from autocut.evaluation.samples import (
    CandidateSpan,
    EvalSample,
    _load_world,
    _ReferenceMatch,
    _roles,
)
from autocut.evaluation.scoring import chance_scores, lm_answer, score_footage_plan, score_script_plan
from autocut.library.catalog import RefEditRecord, RefSegment
from autocut.planning.planners.base import Decision
from autocut.types import BgmChoice, EditPlan, PlanRequest, PlanSegment, PoolItem, ProductInfo

# --------------------------------------------------------------------------- the fixture
#
# Photo 1 is the product's reel: hook1, hook2, feature A, usage1, usage2, cta, a rival's cta (distractor);
# photo 2 is another product. The reference ad uses hook1, feature A, usage1, cta (candidates 0, 2, 3, 5);
# hook2 (1) and usage2 (4) are interchangeable alternatives.
SHOTS = ["hook1", "hook2", "feature-a", "usage1", "usage2", "cta", "rival1-cta"]
ROLES = ["hook", "hook", "feature", "usage", "usage", "cta", ""]
SPANS = [CandidateSpan(i, 1, 5.0 * i, 5.0 * i + 5.0) for i in range(7)] + [CandidateSpan(7, 2, 0.0, 5.0)]
REFERENCE = [0, 2, 3, 5]
ROLE_SEGMENTS = [frozenset({0, 1}), frozenset({2}), frozenset({3, 4}), frozenset({5})]
SENTENCES = ["Tired of spills?", "It never leaks.", "Just twist and go.", "Buy it today!"]
PRODUCT = ProductInfo(name="Zesto Jar", brand="Zesto", category="kitchen")
MOOD_TRACKS = frozenset({10, 11, 12})  # the reference track (10) and two more of its mood; 13, 14 another mood


def _sample(scenario: str = "script", *, roles: bool = True) -> EvalSample:
    spans = SPANS if scenario == "script" else SPANS[:7]
    request = PlanRequest(
        product=PRODUCT,
        pool=[PoolItem(photo_id=p) for p in sorted({s.photo_id for s in spans})],
        script=SENTENCES if scenario == "script" else None,
        max_duration_s=120.0,
    )
    extra: dict[str, Any] = {}
    if roles:
        extra = {
            "role_segments": ROLE_SEGMENTS,
            "role_source": "world manifest",
            "candidate_roles": ROLES + ([""] if scenario == "script" else []),
        }
    return EvalSample(
        sample_id=f"ad-1/{scenario}",
        edit_id="ad-1",
        product_id="p1",
        scenario=scenario,
        language="en",
        request=request,
        product_photo_ids=[1],
        candidates=spans,
        positives=frozenset(REFERENCE),
        reference=REFERENCE,
        ref_sentences=SENTENCES,
        ref_durations_s=[3.0] * 4,
        ref_audio_id=10,
        selling_points=["never leaks"],
        ref_mood="warm",
        mood_track_ids=MOOD_TRACKS,
        **extra,
    )


def _plan(clips: list[int], *, audio_id: int | None = 11, scenario: str = "script") -> EditPlan:
    """A grounded plan showing the middle 3 s of each candidate, in this order."""
    segs = [
        PlanSegment(
            source_path=f"/reels/{SPANS[c].photo_id}.mp4",
            start_s=SPANS[c].start_s + 1.0,
            duration_s=3.0,
            sentence=SENTENCES[k % 4] if scenario == "script" else f"Line number {k + 1}.",
            photo_id=SPANS[c].photo_id,
        )
        for k, c in enumerate(clips)
    ]
    bgm = BgmChoice(path="/bgm.wav", audio_id=audio_id) if audio_id is not None else None
    return EditPlan(product=PRODUCT, scenario=scenario, segments=segs, bgm=bgm)  # type: ignore[arg-type]


def _decision(order: list[int], **kw: Any) -> Decision:
    return Decision(tuple(sorted(order)), tuple(order), tuple(SENTENCES[: len(order)]), **kw)


BGM_ROWS = {a: np.eye(5)[a - 10] + 0.1 for a in range(10, 15)}


def _score(clips: list[int], decision: Decision | None = None, **kw: Any) -> dict[str, float]:
    return score_script_plan(
        _sample(), _plan(clips, **kw), decision, bgm_ranking=[11, 10, 12, 13, 14], bgm_rows=BGM_ROWS
    )


# --------------------------------------------------------------------------- metric functions


def test_roc_auc_exact_with_ties() -> None:
    assert m.roc_auc([0.2, 0.1], [True, False]) == 1.0
    assert m.roc_auc([0.1, 0.2], [True, False]) == 0.0
    assert m.roc_auc([1, 1, 1, 1], [True, False, True, False]) == 0.5  # all tied: every pair counts 0.5
    # Hand count: positives 0.9, 0.7, 0.5, 0.6 against negatives 0.8, 0.5, 0.5, 0.1 -> 4 + 3 + 2 + 3 = 12 of 16.
    scores = [0.9, 0.8, 0.7, 0.5, 0.5, 0.6, 0.5, 0.1]
    assert m.roc_auc(scores, [i in REFERENCE for i in range(8)]) == pytest.approx(12 / 16)
    assert math.isnan(m.roc_auc([0.3, 0.4], [True, True])) and math.isnan(m.roc_auc([], []))
    with pytest.raises(ConfigError):
        m.roc_auc([0.1, 0.2], [True])
    with pytest.raises(ConfigError):
        m.roc_auc([0.1, math.nan], [True, False])
    # Against the pair count, on integer scores with many ties.
    rng = np.random.default_rng(0)
    for _ in range(20):
        s = rng.integers(0, 4, 15)
        y = rng.random(15) < 0.4
        if y.all() or not y.any():
            continue
        pairs = [(1.0 if a > b else 0.5 if a == b else 0.0) for a in s[y] for b in s[~y]]
        assert m.roc_auc(s, y) == pytest.approx(np.mean(pairs))


def test_selection_precision_recall_f1_and_assignment() -> None:
    sets = [{0, 1}, {2}, {3, 4}, {5}]
    assert m.selection_precision([1, 2, 7, 9], {0, 1, 2}) == 0.5
    assert math.isnan(m.selection_precision([], {1}))
    # Two hooks for one hook segment: one of them stands for nothing.
    assert m.assign_segments([0, 1, 2, 5], sets) == [0, None, 1, 3]
    assert m.selection_recall([0, 1, 2, 5], sets) == 0.75
    # The matching is maximal: 1 could take segment 0 only if 0 moves away, which it cannot; 8 matches nothing.
    assert m.assign_segments([1, 0], [{0, 1}, {0}]) == [0, 1]
    assert m.selection_recall([8], sets) == 0.0 and math.isnan(m.selection_recall([1], []))
    assert m.f1_score(1.0, 0.75) == pytest.approx(6 / 7)
    assert m.f1_score(0.0, 0.0) == 0.0 and math.isnan(m.f1_score(math.nan, 1.0))
    assert m.segment_order([5, 0, 3, 7], sets) == [3, 0, 2]


def test_anchored_pair_accuracy_hand_counted() -> None:
    assert m.anchored_pair_accuracy(["hook", "feature", "cta"]) == 1.0
    assert m.anchored_pair_accuracy(["cta", "feature", "hook"]) == 0.0
    assert math.isnan(m.anchored_pair_accuracy(["feature", "usage"]))  # no hook, no cta: nothing fixed
    assert math.isnan(m.anchored_pair_accuracy(["hook", "hook"]))
    assert math.isnan(m.anchored_pair_accuracy(["hook", None, ""]))  # unknown roles are not judged
    # hook, feature, cta, hook, usage, usage: 11 fixed pairs (hook-hook and the rest not), 7 right.
    assert m.anchored_pair_accuracy(["hook", "feature", "cta", "hook", "usage", "usage", None]) == pytest.approx(7 / 11)


# --------------------------------------------------------------------------- per-plan scores


def test_the_role_alternative_scores_one_role_equivalent_and_less_strict() -> None:
    # hook2 instead of hook1 and usage2 instead of usage1, in the reference order.
    s = _score([1, 2, 4, 5])
    assert s["csa"] == 0.0 and s["csa_role"] == 1.0
    assert s["precision"] == s["recall"] == s["f1"] == 0.5
    assert s["precision_role"] == s["recall_role"] == s["f1_role"] == 1.0
    assert s["pairwise_script_role"] == 1.0 and s["tau_script_role"] == 1.0
    assert s["pairwise_script"] == 1.0  # strict: over the two reference clips picked (2, 5), in order
    # The reference itself: 1.0 both ways.
    s = _score(REFERENCE)
    assert s["csa"] == s["csa_role"] == s["f1"] == s["f1_role"] == s["sra"] == 1.0


def test_wrong_order_and_two_alternatives_for_one_segment() -> None:
    s = _score([5, 0, 3, 7])  # cta, hook1, usage1, another product's clip
    assert s["precision"] == s["recall"] == s["precision_role"] == s["recall_role"] == 0.75
    assert s["csa"] == s["csa_role"] == 0.0
    # Segments stood for, in plan order: 3, 0, 2 -> one concordant pair of three.
    assert s["pairwise_script_role"] == pytest.approx(1 / 3) and s["tau_script_role"] == pytest.approx(-1 / 3)
    s = _score([0, 1, 2, 5])  # both hooks, no usage
    assert s["precision"] == s["recall"] == 0.75
    # Every pick is role-positive (CSA (role) = 1: only positives), but the second hook covers no segment.
    assert s["precision_role"] == 1.0 and s["csa_role"] == 1.0 and s["recall_role"] == 0.75
    assert s["f1_role"] == pytest.approx(6 / 7)


def test_auc_of_candidate_scores_strict_and_role() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.5, 0.5, 0.6, 0.5, 0.1])
    s = _score(REFERENCE, _decision(REFERENCE, candidate_scores=scores))
    assert s["auc"] == pytest.approx(12 / 16)
    # Role positives 0-5 against 6 (0.5) and 7 (0.1): 2 + 2 + 2 + 1.5 + 1.5 + 2 = 11 of 12.
    assert s["auc_role"] == pytest.approx(11 / 12)
    s = _score(REFERENCE, _decision(REFERENCE))  # a planner without scores: n/a
    assert math.isnan(s["auc"]) and math.isnan(s["auc_role"])


def test_bgm_mood_accuracy_and_hit1_ceiling() -> None:
    s = _score(REFERENCE, audio_id=11)  # another track of the reference's mood
    assert s["bgm_mood"] == 1.0 and s["bgm_hit1"] == 0.0 and s["bgm_hit1_ceiling"] == pytest.approx(1 / 3)
    assert _score(REFERENCE, audio_id=13)["bgm_mood"] == 0.0
    assert _score(REFERENCE, audio_id=None)["bgm_mood"] == 0.0  # no music: not the mood
    sample = _sample()
    sample.mood_track_ids, sample.ref_mood = frozenset(), ""
    s = score_script_plan(sample, _plan(REFERENCE), None, bgm_ranking=[10], bgm_rows=BGM_ROWS)
    assert math.isnan(s["bgm_mood"]) and math.isnan(s["bgm_hit1_ceiling"])


def test_lm_raw_answer_before_grounding() -> None:
    # The LM answered hook2, feature, usage2, cta (1-based "2,3,5,6"); grounding moved two clips to hook1/usage1.
    d = _decision([1, 2, 4, 5], notes={"lm_select": "2,3,5,6"})
    assert lm_answer(d) == [1, 2, 4, 5]
    s = _score(REFERENCE, d)
    assert s["lm_precision"] == s["lm_recall"] == 0.5
    assert s["lm_precision_role"] == s["lm_recall_role"] == 1.0
    assert s["lm_grounded_share"] == 0.5 and s["grounded_match"] == 0.5
    assert s["csa"] == 1.0  # the grounded plan is scored as before
    s = _score(REFERENCE, _decision(REFERENCE))  # not an LM planner
    assert all(math.isnan(s[k]) for k in ("lm_precision", "lm_recall_role", "lm_grounded_share"))
    assert lm_answer(_decision(REFERENCE, notes={"lm_select": "x"})) is None


def test_footage_hook_and_cta_pairs() -> None:
    sample = _sample("footage")
    plan = _plan([1, 2, 5, 0, 3, 4, 6], scenario="footage")
    s = score_footage_plan(sample, plan, None)
    # Roles in plan order: hook, feature, cta, hook, usage, usage, (rival: not judged) -> 7 of 11 fixed pairs.
    assert s["pairwise_roles"] == pytest.approx(7 / 11)
    s = score_footage_plan(sample, _plan([0, 1, 2, 3, 4, 6, 5], scenario="footage"), None)
    assert s["pairwise_roles"] == 1.0
    s = score_footage_plan(_sample("footage", roles=False), plan, None)
    assert math.isnan(s["pairwise_roles"])  # no roles known


# --------------------------------------------------------------------------- chance and the table


def test_chance_values_are_exact_expectations() -> None:
    sample = _sample()
    c = chance_scores(sample, n_tracks=5, ref_cos_mean=None)
    n, k = 8, 4
    draws = list(itertools.combinations(range(n), k))

    def expect(fn: Any) -> float:
        return float(np.mean([fn(list(d)) for d in draws]))

    role = sample.role_positives
    assert c["precision_role"] == pytest.approx(expect(lambda d: m.selection_precision(d, role))) == 0.75
    assert c["csa_role"] == pytest.approx(expect(lambda d: m.selection_only_positive(d, role)))
    assert c["recall"] == pytest.approx(expect(lambda d: m.selection_recall(d, sample.segment_positives))) == 0.5
    assert c["recall_role"] == pytest.approx(expect(lambda d: m.selection_recall(d, ROLE_SEGMENTS)))
    assert c["recall_role"] == pytest.approx(9 / 14)
    assert c["auc"] == c["auc_role"] == c["pairwise_script_role"] == 0.5 and c["tau_script_role"] == 0.0
    assert c["bgm_mood"] == pytest.approx(3 / 5)
    assert c["lm_precision"] == c["precision"] == 0.5
    assert chance_scores(_sample("footage"), 5, None)["pairwise_roles"] == 0.5
    # Overlapping per-segment sets: recall has no simple exact chance.
    overlapping = _sample()
    overlapping.role_segments = [frozenset({0, 1}), frozenset({1, 2}), frozenset({3}), frozenset({5})]
    assert math.isnan(chance_scores(overlapping, 5, None)["recall_role"])


def test_new_metrics_are_in_the_table_and_old_keys_unchanged() -> None:
    keys = [x.key for x in METRICS]
    assert len(set(keys)) == len(keys) and len({x.label for x in METRICS}) == len(METRICS)
    for key in ("csa_role", "precision_role", "recall_role", "f1_role", "auc_role", "pairwise_script_role"):
        assert METRIC_BY_KEY[key].main and METRIC_BY_KEY[key].scenario == "script"
    assert METRIC_BY_KEY["pairwise_roles"].scenario == "footage" and METRIC_BY_KEY["bgm_mood"].main
    for key in ("recall", "f1", "auc", "tau_script_role", "bgm_hit1_ceiling", "lm_precision", "lm_grounded_share"):
        assert key in METRIC_BY_KEY
    for key in ("csa", "cra", "sra", "precision", "pairwise_script", "grounded_match", "bgm_hit1"):
        assert key in METRIC_BY_KEY
    # Every per-plan score has a row in the table (or is the runner's: wcd_free, vsc, sq).
    s = _score(REFERENCE)
    f = score_footage_plan(_sample("footage"), _plan(REFERENCE, scenario="footage"), None)
    assert set(s) | set(f) <= set(keys)


# --------------------------------------------------------------------------- samples


def test_sample_without_role_facts_is_strict_and_says_what_it_holds() -> None:
    sample = _sample(roles=False)
    assert sample.segment_positives == [frozenset({c}) for c in REFERENCE]
    assert sample.role_segments == sample.segment_positives and sample.role_positives == sample.positives
    s = _score([1, 2, 4, 5])
    strict_sample = score_script_plan(sample, _plan([1, 2, 4, 5]), None)
    assert strict_sample["csa_role"] == strict_sample["csa"] == 0.0 and s["csa_role"] == 1.0
    summary = _sample().summary()
    assert summary["role_positives"] == [0, 1, 2, 3, 4, 5]
    assert summary["role_segments"] == [[0, 1], [2], [3, 4], [5]]
    assert summary["ref_mood"] == "warm" and summary["n_mood_tracks"] == 3
    json.dumps(summary)  # JSON-ready
    with pytest.raises(ConfigError, match="role_segments"):
        dataclasses.replace(_sample(), role_segments=[frozenset({0})])


def _manifest(tmp_path: Path) -> SimpleNamespace:
    """A world manifest for the fixture: photo 1's shots 5 s each (offset 5 i), photo 2 another product's."""
    shots = [
        {
            "shot_id": f"p1-{sid}",
            "product_id": "p1",
            "role": "cta" if sid == "rival1-cta" else ROLES[i],
            "kind": "distractor" if sid.startswith("rival") else "ad",
            "selling_point": "a" if sid == "feature-a" else None,
            "photo_id": 1,
            "offset_s": 5.0 * i,
            "duration_s": 5.0,
        }
        for i, sid in enumerate(SHOTS)
    ]
    shots.append(
        {
            "shot_id": "p2-hook1",
            "product_id": "p2",
            "role": "hook",
            "kind": "ad",
            "selling_point": None,
            "photo_id": 2,
            "offset_s": 0.0,
            "duration_s": 5.0,
        }
    )
    segments = [
        {"shot_id": "p1-hook1", "role": "hook", "selling_point": None},
        {"shot_id": "p1-feature-a", "role": "feature", "selling_point": "a"},
        {"shot_id": "p1-usage1", "role": "usage", "selling_point": None},
        {"shot_id": "p1-cta", "role": "cta", "selling_point": None},
    ]
    man = {
        "format": MANIFEST_FORMAT,
        "version": WORLD_FORMAT_VERSION,
        "shots": shots,
        "ads": [{"edit_id": "ad-1", "segments": segments}],
    }
    (tmp_path / "world").mkdir()
    (tmp_path / "world" / "world.json").write_text(json.dumps(man))
    return SimpleNamespace(root=tmp_path)


def test_role_equivalents_from_the_world_manifest(tmp_path: Path) -> None:
    ad = RefEditRecord(
        "ad-1",
        "p1",
        "en",
        [RefSegment(1, 5.0 * c + 1.0, 3.0, SENTENCES[k]) for k, c in enumerate(REFERENCE)],
    )
    match = _ReferenceMatch(SPANS, frozenset(REFERENCE), REFERENCE, [frozenset({c}) for c in REFERENCE])
    world, why = _load_world(_manifest(tmp_path))  # type: ignore[arg-type]
    assert world is not None and not why
    roles = _roles(SimpleNamespace(world=world, world_missing=""), ad, match)  # type: ignore[arg-type]
    # hook2 and usage2 join their segments; the rival's cta and the other product's hook never do.
    assert roles.role_segments == ROLE_SEGMENTS and roles.role_source == "world manifest"
    assert roles.candidate_roles == [*ROLES, ""]
    assert roles.candidate_shots == [f"p1-{s}" for s in SHOTS] + ["p2-hook1"]
    assert roles.ref_roles == ["hook", "feature", "usage", "cta"] and roles.ref_selling_points == [
        None,
        "a",
        None,
        None,
    ]
    # No manifest: role-equivalent = strict, and the reason is kept for the sample's notes.
    world, why = _load_world(SimpleNamespace(root=tmp_path / "none"))  # type: ignore[arg-type]
    assert world is None and "no world manifest" in why
    roles = _roles(SimpleNamespace(world=None, world_missing=why), ad, match)  # type: ignore[arg-type]
    assert roles.role_segments == match.segment_positives and "role-equivalent = strict" in roles.role_source


def test_wcd_compares_each_line_with_the_length_it_was_written_for():
    from autocut.evaluation.runner import line_durations
    from autocut.planning.planners.base import Decision

    clips = np.array([6.0, 5.0, 4.0])
    whole = Decision((0, 2), (2, 0), ("a", "b"))
    assert line_durations(whole, 2, clips) == [4.0, 6.0]  # the chosen clips' lengths, in ad order
    cut = Decision((0, 2), (2, 0), ("a", "b"), durations_s=(2.5, 3.0))
    assert line_durations(cut, 2, clips) == [2.5, 3.0]  # the lengths the planner decided
    assert line_durations(cut, 3, clips) is None and line_durations(None, 2, clips) is None
