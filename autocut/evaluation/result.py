"""What one evaluation run measured (`EvalResult`), its per-planner summary over seeds with bootstrap
intervals over samples (`summarise`), the paired differences to a baseline planner (`compare`), and reading
it back from its eval.json (`load_result`), so a report can be re-rendered without re-planning.

An eval.json written before the intervals existed (no `bootstrap` / `paired`) still loads: they are
computed from its rows on load with the default settings (`add_intervals`)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence
from dataclasses import MISSING, asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autocut.errors import ConfigError
from autocut.evaluation.metric_table import METRIC_BY_KEY, METRICS, PAPER_ANCHORS
from autocut.evaluation.stats import DEFAULT_BOOTSTRAP_SEED, DEFAULT_N_BOOT, Bootstrap, resolve_baseline

__all__ = ["EVAL_FORMAT_VERSION", "EvalResult", "add_intervals", "compare", "load_result", "summarise"]

EVAL_FORMAT_VERSION = 1


@dataclass
class EvalResult:
    """Everything one evaluation run measured (see `to_json`)."""

    config: dict[str, Any]
    versions: dict[str, Any]
    samples: list[dict[str, Any]]
    skipped: list[dict[str, str]]
    rows: list[dict[str, Any]]  # one per (planner, seed, sample)
    summary: dict[str, dict[str, Any]]  # planner label -> metric key -> stats (with "ci": [lo, hi])
    chance: dict[str, float]
    failures: dict[str, dict[str, Any]]
    timing: dict[str, dict[str, float]]
    notes: dict[str, str]
    seconds: float
    # Bootstrap settings (n_boot, seed, level, baseline, samples per scenario; see `compare`).
    bootstrap: dict[str, Any] = field(default_factory=dict)
    # Planner label (every one but the baseline) -> metric key -> paired difference to the baseline or None.
    paired: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": "autocut-eval",
            "version": EVAL_FORMAT_VERSION,
            **asdict(self),
            "paper_anchors": PAPER_ANCHORS,
        }


def load_result(path: str | os.PathLike[str]) -> EvalResult:
    """An `EvalResult` back from its eval.json (to re-render a report without re-planning)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read evaluation results {path}: {exc}") from None
    if data.get("format") != "autocut-eval" or data.get("version") != EVAL_FORMAT_VERSION:
        raise ConfigError(f"{path} is not an autocut-eval v{EVAL_FORMAT_VERSION} file")
    fields = dataclasses.fields(EvalResult)
    names = [f.name for f in fields]
    required = [f.name for f in fields if f.default is MISSING and f.default_factory is MISSING]
    missing = [n for n in required if n not in data]
    if missing:
        raise ConfigError(f"{path} lacks {missing}")

    def nan(x: Any) -> Any:  # JSON null (a NaN when written) back to NaN inside metric dicts
        return {k: (math.nan if v is None else v) for k, v in x.items()}

    for r in data["rows"]:
        r["metrics"] = nan(r["metrics"])
    result = EvalResult(**{n: data[n] for n in names if n in data})
    if not result.bootstrap:  # written before the intervals: computed now from its rows, default settings
        add_intervals(result)
        result.bootstrap["computed_on_load"] = True
    return result


def summarise(
    rows: list[dict[str, Any]],
    labels: Sequence[str],
    seeds: Sequence[int],
    *,
    n_boot: int = DEFAULT_N_BOOT,
    bootstrap_seed: int = DEFAULT_BOOTSTRAP_SEED,
) -> dict[str, dict]:
    """Per planner and metric: mean / std / min / max over seeds of the per-seed sample means, the sem, and
    "ci": the 95 % bootstrap interval of the mean over samples ([lo, hi], `autocut.evaluation.stats`)."""
    boot = Bootstrap(rows, seeds, n_boot=n_boot, seed=bootstrap_seed)
    out: dict[str, dict] = {}
    for label in labels:
        stats: dict[str, Any] = {}
        for m in METRICS:
            per_seed, sems, ns, undefined = [], [], [], 0
            for seed in seeds:
                vals = []
                for r in rows:
                    if r["planner"] != label or r["seed"] != seed or r["scenario"] != m.scenario:
                        continue
                    if not r["ok"]:
                        if m.fail_value is not None:
                            vals.append(m.fail_value)
                        continue
                    v = r["metrics"].get(m.key, math.nan)
                    if v is None or (isinstance(v, float) and math.isnan(v)):
                        undefined += 1
                        continue
                    vals.append(float(v))
                if vals:
                    per_seed.append(float(np.mean(vals)))
                    sems.append(float(np.std(vals, ddof=1) / math.sqrt(len(vals))) if len(vals) > 1 else math.nan)
                    ns.append(len(vals))
            if not per_seed:
                stats[m.key] = {
                    "mean": None,
                    "std": None,
                    "min": None,
                    "max": None,
                    "per_seed": [],
                    "n": 0,
                    "n_undefined": undefined,
                    "sem": None,
                    "ci": None,
                }
                continue
            arr = np.asarray(per_seed)
            sem = [s for s in sems if not math.isnan(s)]
            stats[m.key] = {
                "mean": float(arr.mean()),
                "std": float(arr.std()),
                "min": float(arr.min()),
                "max": float(arr.max()),
                "per_seed": per_seed,
                "n": int(np.mean(ns)),
                "n_undefined": undefined,
                "sem": float(np.mean(sem)) if sem else None,
                "ci": boot.interval(label, m),
            }
        out[label] = stats
    return out


def compare(
    rows: list[dict[str, Any]],
    labels: Sequence[str],
    seeds: Sequence[int],
    *,
    baseline: str | None = None,
    planner_names: dict[str, str] | None = None,
    n_boot: int = DEFAULT_N_BOOT,
    bootstrap_seed: int = DEFAULT_BOOTSTRAP_SEED,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(bootstrap settings, paired differences): every planner but the baseline, per metric, planner -
    baseline over the (sample, seed) pairs both have a value for, with its 95 % interval from the same
    resamples as `summarise` and a verdict (better / worse / unresolved / equal, `higher_is_better`
    respected). `baseline` None: the planner labelled or named `heuristic`, else the first planner."""
    boot = Bootstrap(rows, seeds, n_boot=n_boot, seed=bootstrap_seed)
    label, why = resolve_baseline(labels, baseline, planner_names)
    meta = {**boot.meta(), "baseline": label, "baseline_reason": why}
    return meta, ({} if label is None else boot.compare(labels, label))


def add_intervals(
    result: EvalResult,
    *,
    n_boot: int = DEFAULT_N_BOOT,
    bootstrap_seed: int = DEFAULT_BOOTSTRAP_SEED,
    baseline: str | None = None,
) -> EvalResult:
    """Fill `result`'s intervals ("ci" of each summary entry), `bootstrap` and `paired` from its rows (in
    place; also returned), e.g. for a result written before they existed."""
    labels = list(result.summary)
    seeds = [int(s) for s in result.config.get("seeds", sorted({int(r["seed"]) for r in result.rows}))]
    boot = Bootstrap(result.rows, seeds, n_boot=n_boot, seed=bootstrap_seed)
    for label, stats in result.summary.items():
        for key, st in stats.items():
            if key in METRIC_BY_KEY and isinstance(st, dict):
                st["ci"] = boot.interval(label, METRIC_BY_KEY[key]) if st.get("mean") is not None else None
    names = {s["label"]: s["name"] for s in result.config.get("planner_specs", []) if "label" in s and "name" in s}
    result.bootstrap, result.paired = compare(
        result.rows,
        labels,
        seeds,
        baseline=baseline,
        planner_names=names,
        n_boot=n_boot,
        bootstrap_seed=bootstrap_seed,
    )
    return result
