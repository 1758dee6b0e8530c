"""Bootstrap intervals over samples and paired differences of `autocut eval` (`autocut.evaluation.stats`),
their place in `EvalResult` / eval.json / eval.md, and reading eval.json files written before them.

Rows are constructed by hand (no planning): each test knows what the numbers must be.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from autocut.errors import ConfigError
from autocut.evaluation import EvalConfig, EvalResult, PlannerSpec, load_result, summary_text, write_report
from autocut.evaluation.metric_table import METRIC_BY_KEY
from autocut.evaluation.report import reading
from autocut.evaluation.result import add_intervals, compare, summarise
from autocut.evaluation.stats import Bootstrap, resample_counts, resolve_baseline, seed_mean

SEEDS = (0, 1)
CSA, PAIRWISE, WCD, PRECISION = (METRIC_BY_KEY[k] for k in ("csa", "pairwise", "wcd", "precision"))


def _rows(values: dict[str, Any], n: int = 30, seeds: tuple[int, ...] = SEEDS) -> list[dict[str, Any]]:
    """One row per (planner, seed, sample) of both scenarios; `values[label](key, i, seed)` -> value, or
    the string "fail" for a failed plan."""
    rows = []
    for label, fn in values.items():
        for seed in seeds:
            for scenario, keys in (("script", ("csa", "precision")), ("footage", ("pairwise", "wcd"))):
                for i in range(n):
                    vals = {k: fn(k, i, seed) for k in keys}
                    failed = any(v == "fail" for v in vals.values())
                    rows.append(
                        {
                            "planner": label,
                            "seed": seed,
                            "sample_id": f"ad{i:03d}/{scenario}",
                            "scenario": scenario,
                            "ok": not failed,
                            "error": "PlanError: constructed" if failed else None,
                            "metrics": {} if failed else vals,
                        }
                    )
    return rows


def _noise(scale: float, salt: int) -> Any:
    rng = np.random.default_rng(salt)
    table = rng.normal(0.0, scale, size=(1000, 8))
    return lambda k, i, seed: float(table[i, (seed * 4 + len(k)) % 8])


def _result(rows: list[dict[str, Any]], labels: list[str], **kw: Any) -> EvalResult:
    summary = summarise(rows, labels, SEEDS, **kw)
    bootstrap, paired = compare(rows, labels, SEEDS, **kw)
    return EvalResult(
        config={
            "split": "test",
            "library": "/nowhere",
            "seeds": list(SEEDS),
            "segment_mode": "by_frame",
            "negative_products": 1,
            "planner_specs": [{"label": lb, "name": lb, "options": {}} for lb in labels],
        },
        versions={"pca_version": "v1"},
        samples=[],
        skipped=[],
        rows=rows,
        summary=summary,
        chance={"csa": 0.01},
        failures={
            lb: {"count": 0, "by_scenario": {}, "reasons": {}, "free_failures": 0, "judge_failures": 0} for lb in labels
        },
        timing={lb: {"plans": 0} for lb in labels},
        notes={"samples": "constructed", "wcd_free": "n/a", "sp_coverage": "n/a", "judge": "none"},
        seconds=1.0,
        bootstrap=bootstrap,
        paired=paired,
    )


def _spread(base: float, scale: float, salt: int) -> Any:
    noise = _noise(scale, salt)
    return lambda k, i, seed: base + noise(k, i, seed)


# --------------------------------------------------------------------------- the bootstrap itself


def test_bootstrap_is_seeded_and_reproducible() -> None:
    rows = _rows({"a": _spread(0.5, 0.2, 1), "heuristic": _spread(0.4, 0.2, 2)})
    one = summarise(rows, ["a", "heuristic"], SEEDS, n_boot=500, bootstrap_seed=7)
    two = summarise(rows, ["a", "heuristic"], SEEDS, n_boot=500, bootstrap_seed=7)
    other = summarise(rows, ["a", "heuristic"], SEEDS, n_boot=500, bootstrap_seed=8)
    for key in ("csa", "precision", "pairwise", "wcd"):
        assert one["a"][key]["ci"] == two["a"][key]["ci"]
        assert one["a"][key]["ci"] != other["a"][key]["ci"]
    # The same draws whatever order the rows come in (sample ids are sorted before drawing).
    shuffled = list(reversed(rows))
    assert (
        summarise(shuffled, ["a", "heuristic"], SEEDS, n_boot=500, bootstrap_seed=7)["a"]["csa"]["ci"]
        == (one["a"]["csa"]["ci"])
    )
    assert compare(rows, ["a", "heuristic"], SEEDS, n_boot=500, bootstrap_seed=7) == compare(
        rows, ["a", "heuristic"], SEEDS, n_boot=500, bootstrap_seed=7
    )
    # Each resample draws n samples; streams (scenarios) draw independently.
    c = resample_counts(30, 100, 0, "script")
    assert c.shape == (100, 30) and np.all(c.sum(axis=1) == 30)
    assert not np.array_equal(c, resample_counts(30, 100, 0, "footage"))


def test_intervals_contain_the_mean_and_the_figure_is_todays_mean() -> None:
    rows = _rows({"a": _spread(0.5, 0.3, 3), "heuristic": _spread(0.2, 0.1, 4)})
    summary = summarise(rows, ["a", "heuristic"], SEEDS, n_boot=1000)
    boot = Bootstrap(rows, SEEDS, n_boot=1000)
    for label, stats in summary.items():
        for key in ("csa", "precision", "pairwise", "wcd"):
            st = stats[key]
            lo, hi = st["ci"]
            assert lo < st["mean"] < hi, (label, key, st)
            assert hi - lo > 0
            # The resampled figure on the samples as they are is the reported mean of per-seed means.
            assert seed_mean(boot.values(label, METRIC_BY_KEY[key]))[0] == pytest.approx(st["mean"], abs=1e-12)
    # Metrics without any value have no interval.
    assert summary["a"]["ssa"]["mean"] is None and summary["a"]["ssa"]["ci"] is None


def test_paired_difference_of_a_planner_with_itself_is_exactly_zero() -> None:
    fn = _spread(0.5, 0.3, 5)
    rows = _rows({"a": fn, "heuristic": fn})
    _, paired = compare(rows, ["a", "heuristic"], SEEDS, n_boot=300)
    for key in ("csa", "precision", "pairwise", "wcd"):
        p = paired["a"][key]
        assert (p["diff"], p["lo"], p["hi"]) == (0.0, 0.0, 0.0) and p["verdict"] == "equal"
        assert p["n_pairs"] == 60 and p["n_samples"] == 30
    boot = Bootstrap(rows, SEEDS, n_boot=300)
    same = boot.paired("a", "a", CSA)
    assert same is not None and (same["diff"], same["lo"], same["hi"]) == (0.0, 0.0, 0.0)


def test_a_clear_win_is_resolved_and_a_tie_is_not() -> None:
    def tie(k: str, i: int, seed: int) -> float:  # differs from the baseline by +-0.1, alternating: mean 0
        return 0.5 + (0.1 if i % 2 else -0.1)

    rows = _rows(
        {
            "good": _spread(0.8, 0.05, 6),  # clearly higher everywhere: better, except on WCD (lower is better)
            "tie": tie,
            "heuristic": lambda k, i, seed: 0.5,
        }
    )
    bootstrap, paired = compare(rows, ["good", "tie", "heuristic"], SEEDS)
    assert bootstrap["baseline"] == "heuristic" and set(paired) == {"good", "tie"}
    good, tied = paired["good"], paired["tie"]
    assert good["csa"]["verdict"] == "better" and good["csa"]["lo"] > 0.25
    assert good["pairwise"]["verdict"] == "better"
    assert good["wcd"]["verdict"] == "worse" and good["wcd"]["lo"] > 0  # a higher WCD is worse
    for key in ("csa", "pairwise", "wcd", "precision"):
        p = tied[key]
        assert p["verdict"] == "unresolved" and p["lo"] < 0 < p["hi"] and p["diff"] == pytest.approx(0.0)
    result = _result(rows, ["good", "tie", "heuristic"])
    text = reading(result)
    assert re.search(r"`good` beats `heuristic` on CSA by \+0\.\d{3} \[\+0\.\d{3}, \+0\.\d{3}\]", text)
    assert re.search(r"`heuristic` beats `good` on WCD ↓ by -0\.\d\d \[-0\.\d\d, -0\.\d\d\]", text)
    assert "`tie` vs `heuristic`: no resolved difference on any headline metric" in text
    md_cells = summary_text(result)
    assert md_cells.startswith("**Reading**") and re.search(
        r"\| `good` \| 0\.8\d\d \[0\.\d{3}, 0\.\d{3}\] \|", md_cells
    )


def test_wcd_direction_lower_is_better() -> None:
    rows = _rows({"low": lambda k, i, seed: 0.1 + 0.01 * (i % 3), "heuristic": lambda k, i, seed: 0.5})
    _, paired = compare(rows, ["low", "heuristic"], SEEDS, n_boot=200)
    assert paired["low"]["wcd"]["verdict"] == "better" and paired["low"]["wcd"]["diff"] < 0
    assert paired["low"]["csa"]["verdict"] == "worse"
    assert "indicative only" not in reading(_result(rows, ["low", "heuristic"], n_boot=200))
    few = _rows({"low": lambda k, i, seed: 0.1 + 0.01 * i, "heuristic": lambda k, i, seed: 0.5}, n=5)
    assert "With 5 samples in a scenario (fewer than 20)" in reading(_result(few, ["low", "heuristic"], n_boot=200))


def test_failed_plans_count_as_the_fail_value() -> None:
    def flaky(k: str, i: int, seed: int) -> Any:
        return "fail" if i < 10 else 1.0

    rows = _rows({"flaky": flaky, "heuristic": lambda k, i, seed: 1.0}, n=20)
    summary = summarise(rows, ["flaky", "heuristic"], SEEDS, n_boot=300)
    # CSA: a failed plan counts as 0 -> 10 of 20 samples at 1.0; pairwise has no fail value: left out.
    assert summary["flaky"]["csa"]["mean"] == pytest.approx(0.5)
    assert summary["flaky"]["pairwise"]["mean"] == pytest.approx(1.0) and summary["flaky"]["pairwise"]["n"] == 10
    boot = Bootstrap(rows, SEEDS, n_boot=300)
    v = boot.values("flaky", CSA)
    assert np.all(v[:10] == 0.0) and np.all(v[10:] == 1.0)
    assert np.all(np.isnan(boot.values("flaky", PAIRWISE)[:10]))
    lo, hi = summary["flaky"]["csa"]["ci"]
    assert 0.2 < lo < 0.5 < hi < 0.8
    _, paired = compare(rows, ["flaky", "heuristic"], SEEDS, n_boot=300)
    assert paired["flaky"]["csa"]["diff"] == pytest.approx(-0.5) and paired["flaky"]["csa"]["verdict"] == "worse"
    # Paired over the samples both have a value for: on pairwise only the 10 planned samples, no difference.
    pw = paired["flaky"]["pairwise"]
    assert pw["n_samples"] == 10 and pw["n_pairs"] == 20 and pw["verdict"] == "equal"


def test_undefined_values_are_left_out_and_missing_pairs_are_na() -> None:
    rows = _rows({"a": lambda k, i, seed: math.nan if k == "pairwise" else 0.5, "heuristic": lambda k, i, s: 0.5})
    summary = summarise(rows, ["a", "heuristic"], SEEDS, n_boot=100)
    assert summary["a"]["pairwise"]["mean"] is None and summary["a"]["pairwise"]["ci"] is None
    assert summary["a"]["pairwise"]["n_undefined"] == 60
    _, paired = compare(rows, ["a", "heuristic"], SEEDS, n_boot=100)
    assert paired["a"]["pairwise"] is None


def test_baseline_choice() -> None:
    assert resolve_baseline(["random", "heuristic"], None) == ("heuristic", "default")
    assert resolve_baseline(["random", "heur"], None, {"heur": "heuristic"})[0] == "heur"
    assert resolve_baseline(["x", "y"], None)[0] == "x"
    assert resolve_baseline(["x"], None)[0] is None
    assert resolve_baseline(["x", "y"], "y") == ("y", "configured")
    with pytest.raises(ConfigError, match="baseline planner 'z'"):
        resolve_baseline(["x", "y"], "z")
    planners = (PlannerSpec("random", "random"), PlannerSpec("heur", "heuristic"))
    with pytest.raises(ConfigError, match="baseline 'heuristic'"):
        EvalConfig(planners=planners, baseline="heuristic")
    with pytest.raises(ConfigError, match="n_boot"):
        EvalConfig(planners=planners, n_boot=0)
    assert EvalConfig(planners=planners, baseline="random").baseline == "random"


# --------------------------------------------------------------------------- eval.json and eval.md


def test_report_shows_intervals_paired_tables_and_reading(tmp_path: Path) -> None:
    rows = _rows({"random": _spread(0.3, 0.2, 8), "heuristic": _spread(0.6, 0.2, 9)})
    result = _result(rows, ["random", "heuristic"], n_boot=400, bootstrap_seed=3)
    write_report(result, tmp_path / "rep")
    data = json.loads((tmp_path / "rep" / "eval.json").read_text())
    assert data["bootstrap"]["n_boot"] == 400 and data["bootstrap"]["seed"] == 3
    assert data["bootstrap"]["baseline"] == "heuristic" and data["bootstrap"]["samples"] == {
        "script": 30,
        "footage": 30,
    }
    assert set(data["paired"]) == {"random"} and data["paired"]["random"]["csa"]["verdict"] == "worse"
    assert len(data["summary"]["random"]["csa"]["ci"]) == 2
    md = (tmp_path / "rep" / "eval.md").read_text()
    head = md.split("## Planners")[0]
    assert "**Reading**" in head and "`heuristic` beats `random` on CSA by +0." in head
    assert "## Paired differences to the baseline" in md and "### script-driven samples (30)" in md
    assert "### footage-driven samples (30)" in md and "| `random` − `heuristic` |" in md
    assert "✗ = resolved, the planner is worse" in md and "## Spread over seeds" in md
    assert "| **CSA** | -0.3" in md and "] ✗ |" in md
    # Re-rendered from eval.json alone, table for table.
    loaded = load_result(tmp_path / "rep" / "eval.json")
    assert loaded.bootstrap == data["bootstrap"] and not loaded.bootstrap.get("computed_on_load")
    write_report(loaded, tmp_path / "again")
    assert (tmp_path / "again" / "eval.md").read_text() == md


def test_old_eval_json_without_intervals_still_loads(tmp_path: Path) -> None:
    rows = _rows({"random": _spread(0.3, 0.2, 10), "heuristic": _spread(0.6, 0.2, 11)})
    result = _result(rows, ["random", "heuristic"])
    write_report(result, tmp_path / "new")
    data = json.loads((tmp_path / "new" / "eval.json").read_text())
    # What a run wrote before this change: no bootstrap / paired, no "ci" in the summary.
    del data["bootstrap"], data["paired"]
    for stats in data["summary"].values():
        for st in stats.values():
            del st["ci"]
    (tmp_path / "old.json").write_text(json.dumps(data))
    old = load_result(tmp_path / "old.json")
    assert old.bootstrap["computed_on_load"] is True and old.bootstrap["n_boot"] == 2000
    # Computed from the rows with the default settings: what the run itself would have reported.
    assert old.paired == json.loads(json.dumps(result.paired))
    assert old.summary["random"]["csa"]["ci"] == pytest.approx(result.summary["random"]["csa"]["ci"])
    write_report(old, tmp_path / "old-rep")
    md = (tmp_path / "old-rep" / "eval.md").read_text()
    assert "computed from its rows when it was loaded" in md and "**Reading**" in md
    # add_intervals is idempotent and follows its settings.
    again = add_intervals(old, n_boot=50, bootstrap_seed=1)
    assert again.bootstrap["n_boot"] == 50 and "computed_on_load" not in again.bootstrap
