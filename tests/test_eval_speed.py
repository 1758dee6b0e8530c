"""`autocut eval` run in forked units of work (`EvalConfig.jobs`): the rows do not depend on how the run is
split, and the shared work (candidate pools, lazy speech-rate checks) gives the same answers as doing it again.

espeak-ng's durations move by milliseconds with what a process synthesised before, so the runner plans each
unit (planner, seed, request) in a process forked from one that has planned nothing; these tests hold it to
that: one process or two, other planners or not, fewer ads or all, the same rows.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from autocut.demo_world import WorldConfig, build_world
from autocut.errors import ConfigError, PlanError
from autocut.evaluation import EvalConfig, EvalResult, evaluate, parse_planner_spec
from autocut.evaluation import runner as runner_mod
from autocut.library.catalog import Catalog
from autocut.planning import script as script_mod
from autocut.planning.candidates import CandidateCache, build_candidates
from autocut.planning.pipeline import plan_with_catalog
from autocut.planning.planners import base as planners_base
from autocut.types import PoolItem

_TIMES = ("ms", "score_ms")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lib = tmp_path_factory.mktemp("speed-world")
    build_world(lib, WorldConfig.preset("small"))
    return lib


def _config(**kw: Any) -> EvalConfig:
    base: dict[str, Any] = {
        "planners": (parse_planner_spec("random"), parse_planner_spec("heuristic")),
        "seeds": (0, 1),
    }
    return EvalConfig(**{**base, **kw})


def _masked(obj: Any) -> Any:
    """JSON-comparable, plan and score times masked (they are measured, not computed)."""
    if isinstance(obj, dict):
        return {k: ("<time>" if k in _TIMES else _masked(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_masked(v) for v in obj]
    if isinstance(obj, float) and math.isnan(obj):
        return "nan"
    return obj


def _rows(result: EvalResult) -> dict[tuple[str, int, str], str]:
    return {(r["planner"], r["seed"], r["sample_id"]): json.dumps(_masked(r)) for r in result.rows}


@pytest.fixture(scope="module")
def one_job(world: Path) -> EvalResult:
    return evaluate(world, _config(jobs=1))


def test_rows_do_not_depend_on_jobs(world: Path, one_job: EvalResult) -> None:
    ticks: list[tuple[int, int]] = []
    two = evaluate(world, _config(jobs=2), progress=lambda done, total, what: ticks.append((done, total)))
    assert len(one_job.rows) == 2 * 2 * len(one_job.samples) == 16
    assert all(r["ok"] for r in one_job.rows), [r["error"] for r in one_job.rows if not r["ok"]]
    # Same rows in the same (planner, seed, sample) order, the same failures and plan counts.
    assert [json.dumps(_masked(r)) for r in one_job.rows] == [json.dumps(_masked(r)) for r in two.rows]
    assert _masked(one_job.failures) == _masked(two.failures)
    assert {k: v["plans"] for k, v in one_job.timing.items()} == {k: v["plans"] for k, v in two.timing.items()}
    assert _masked(one_job.chance) == _masked(two.chance)
    # Progress on every row, ending at the total.
    assert [d for d, _ in ticks] == list(range(1, 17)) and {t for _, t in ticks} == {16}
    assert one_job.config["jobs"] == 1 and two.config["jobs"] == 2


def test_a_row_depends_on_its_planner_seed_and_sample_only(world: Path, one_job: EvalResult) -> None:
    """Without the other planner, the other seed and the other ad, the remaining rows are the same."""
    alone = evaluate(world, _config(planners=(parse_planner_spec("random"),), seeds=(1,), max_ads=1, jobs=2))
    assert alone.rows and all(r["planner"] == "random" and r["seed"] == 1 for r in alone.rows)
    full = _rows(one_job)
    for key, row in _rows(alone).items():
        assert row == full[key], key


def test_a_parent_that_used_torch_threads_does_not_hang_its_units(
    world: Path, one_job: EvalResult, tmp_path: Path
) -> None:
    """An OpenMP thread pool used before the fork would hang a unit that runs torch on several threads (the
    heuristic's frame encoder, the sentence-embedding model): units run torch on one thread, so this run, in a
    process that used two torch threads first, finishes with the same rows."""
    out = tmp_path / "rows.json"
    script = textwrap.dedent(
        f"""
        import json, torch
        torch.set_num_threads(2)
        a = torch.randn(600, 600)
        (a @ a).sum()
        from autocut.evaluation import EvalConfig, evaluate, parse_planner_spec
        cfg = EvalConfig(planners=(parse_planner_spec("random"), parse_planner_spec("heuristic")), seeds=(0,),
                         max_ads=1, jobs=2)
        rows = evaluate({str(world)!r}, cfg).rows
        open({str(out)!r}, "w").write(json.dumps(rows))
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=600)
    rows = json.loads(out.read_text())
    assert rows
    full = _rows(one_job)
    for r in rows:
        assert json.dumps(_masked(r)) == full[(r["planner"], r["seed"], r["sample_id"])]


def test_a_planner_that_cannot_work_stops_the_run(world: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(planners_base.PLANNERS, "broken", f"{__name__}:_BrokenPlanner")
    with pytest.raises(ConfigError, match=r"planner 'broken': no model here"):
        evaluate(world, _config(planners=(parse_planner_spec("broken"),), seeds=(0,), max_ads=1, jobs=2))


def test_an_evaluator_error_in_a_unit_is_raised_with_its_traceback(
    world: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_score(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("scoring bug")

    monkeypatch.setattr(runner_mod, "_score", broken_score)
    with pytest.raises(RuntimeError, match=r"(?s)eval unit \(random, seed 0.*ZeroDivisionError: scoring bug.*"):
        evaluate(world, _config(planners=(parse_planner_spec("random"),), seeds=(0,), max_ads=1, jobs=2))


def test_jobs_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="jobs"):
        _config(jobs=0)


class _BrokenPlanner(planners_base.Planner):
    name = "broken"

    def plan(self, task: planners_base.PlanningTask, n_variants: int) -> list[planners_base.Decision]:
        raise ConfigError("no model here")


# --------------------------------------------------------------------------- shared work, same answers


def test_candidate_cache_hands_out_the_same_pool(world: Path) -> None:
    with Catalog.open(world, create=False) as catalog:
        photo = catalog.sources()[0].photo_id
        pool = [PoolItem(photo_id=photo)]
        cache = CandidateCache()
        first = cache.build(catalog, pool)
        assert cache.build(catalog, pool) is first and (cache.builds, cache.hits) == (1, 1)
        fresh = build_candidates(catalog, pool)
        assert [(c.photo_id, c.start_s, c.end_s) for c in fresh.candidates] == [
            (c.photo_id, c.start_s, c.end_s) for c in first.candidates
        ]
        assert np.array_equal(fresh.frame_vectors, first.frame_vectors)
        # A refused pool is not remembered: it raises each time.
        with pytest.raises(PlanError):
            cache.build(catalog, [PoolItem(photo_id=10**9)])
        with pytest.raises(PlanError):
            cache.build(catalog, [PoolItem(photo_id=10**9)])


def test_plans_with_shared_pools_and_bgm_index_are_the_same(world: Path) -> None:
    from autocut.evaluation import build_samples
    from autocut.planning.grounding import BgmGrounder

    with Catalog.open(world, create=False) as catalog:
        samples, _ = build_samples(catalog, "test", max_ads=1)
        cache, bgm = CandidateCache(), BgmGrounder(catalog.root, catalog)
        for sample in samples:
            plain = plan_with_catalog(catalog, sample.request, "heuristic")
            shared = plan_with_catalog(catalog, sample.request, "heuristic", pools=cache, bgm=bgm)
            again = plan_with_catalog(catalog, sample.request, "heuristic", pools=cache, bgm=bgm)
            dump = [p.model_dump_json() for p in plain]
            assert dump == [p.model_dump_json() for p in shared] == [p.model_dump_json() for p in again]
        assert cache.builds == len(samples) and cache.hits == len(samples)


def _fit_line_eager(role, fields, target, language, rng, *, speech_rate, max_tries=12):  # type: ignore[no-untyped-def]
    """`fit_line` as it was: every rate of the near-best lines asked first."""
    options, words = script_mod._options_counted(role, language, tuple(sorted(fields.items())))
    gaps = np.abs(words - target)
    ranked = np.lexsort((rng.random(len(options)), gaps))
    rates = [(int(i), speech_rate(options[int(i)])) for i in ranked[:max_tries]]
    for i, r in rates:
        if r is not None and r <= 1.0 + 1e-9 and gaps[i] <= gaps[ranked[0]] + 1:
            return options[i]
    for i, r in rates:
        if r is not None:
            return options[i]
    for i in np.argsort(words, kind="stable")[:max_tries]:
        if speech_rate(options[int(i)]) is not None:
            return options[int(i)]
    return options[int(np.argmin(words))]


@pytest.mark.parametrize("language", ["en", "zh"])
def test_fit_line_asks_fewer_rates_for_the_same_line(language: str) -> None:
    fields = {"name": "FreshCo Bottle", "brand": "FreshCo", "category": "kitchen", "sp": "keeps drinks cold"}
    calls = {"lazy": 0, "eager": 0}
    for trial in range(120):
        # A pure stand-in for the voice: the rate a line needs grows with its length, some lines cannot fit.
        room = 8 + trial % 25

        def rate(text: str, kind: str, room: int = room) -> float | None:
            calls[kind] += 1
            need = len(text) / room / (3.0 if language == "en" else 1.2)
            return None if need > 1.15 else max(1.0, need)

        for role in ("hook", "feature", "benefit", "cta"):
            target = 3 + trial % 14
            lazy = script_mod.fit_line(
                role,
                fields,
                target,
                language,  # type: ignore[arg-type]
                np.random.default_rng(trial),
                speech_rate=lambda t: rate(t, "lazy"),
            )
            eager = _fit_line_eager(
                role,
                fields,
                target,
                language,
                np.random.default_rng(trial),
                speech_rate=lambda t: rate(t, "eager"),
            )
            assert lazy == eager, (role, target, trial)
    assert calls["lazy"] < calls["eager"] / 2, calls
