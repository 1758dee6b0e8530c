"""Bootstrap 95 % intervals over samples and paired differences between planners, for `autocut eval`.

The unit of resampling is the sample (one script-driven or footage-driven request built from a reference
ad), not the row: a resample draws the scenario's samples with replacement and keeps each drawn sample's
values over every seed together. A planner's figure on a resample is computed exactly as the report's
figure is (`seed_mean`): per seed the mean over the samples that have a value (a failed plan counts as the
metric's `fail_value`, an undefined value is left out), then the mean over the seeds that have one. The
interval is the percentile interval of those figures.

The resamples depend only on `seed`, the scenario and its sample ids (sorted), so every planner and every
metric of a scenario is resampled with the same draws: differences are paired. A paired difference to a
baseline planner is the same figure computed on per-(sample, seed) differences planner - baseline, over the
(sample, seed) pairs where both have a value; it is resolved when its interval excludes zero.

Caveats: samples are treated as independent, but two ads of one product and language make the same
footage-driven request (planned once, scored against each ad), so footage intervals run a little narrow;
with few samples (under about 20) any percentile bootstrap interval understates the uncertainty.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from autocut.errors import ConfigError
from autocut.evaluation.metric_table import METRICS, MetricDef

__all__ = [
    "DEFAULT_BASELINE",
    "DEFAULT_BOOTSTRAP_SEED",
    "DEFAULT_N_BOOT",
    "LEVEL",
    "Bootstrap",
    "percentile_interval",
    "resample_counts",
    "resolve_baseline",
    "row_value",
    "seed_mean",
    "verdict",
]

DEFAULT_N_BOOT = 2000
DEFAULT_BOOTSTRAP_SEED = 0
DEFAULT_BASELINE = "heuristic"  # the planner name (or label) compared against when none is configured
LEVEL = 0.95

METHOD = (
    "percentile bootstrap over samples: each resample draws a scenario's samples with replacement, keeping a "
    "sample's values over all seeds together; the same draws for every planner and metric of the scenario"
)


def row_value(row: Mapping[str, Any], metric: MetricDef) -> float:
    """One row's value of `metric`: its `fail_value` for a failed plan, NaN when left out or undefined."""
    if not row["ok"]:
        return math.nan if metric.fail_value is None else float(metric.fail_value)
    v = row["metrics"].get(metric.key)
    return math.nan if v is None else float(v)


def resample_counts(n: int, n_boot: int, seed: int, stream: str) -> np.ndarray:
    """(n_boot, n) float array: how often each of `n` samples is drawn in each resample (each row sums to n).

    Deterministic in (`seed`, `stream`, n); different streams (scenarios) draw independently."""
    if n_boot < 1 or n < 1:
        return np.zeros((max(n_boot, 0), max(n, 0)))
    rng = np.random.default_rng([int(seed), zlib.crc32(stream.encode("utf-8"))])
    idx = rng.integers(0, n, size=(n_boot, n))
    flat = (idx + n * np.arange(n_boot)[:, None]).ravel()
    return np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n).astype(np.float64)


def seed_mean(values: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The report's figure of a (samples x seeds) matrix (NaN = no value): per seed the mean over the samples
    with a value, then the mean over the seeds that have one; NaN where nothing has a value.

    `weights` (resamples x samples, how often each sample is drawn) gives one figure per resample; without
    it, one figure (a length-1 array) on the samples as they are."""
    valid = ~np.isnan(values)
    x = np.where(valid, values, 0.0)
    w = np.ones((1, values.shape[0])) if weights is None else weights
    sums = w @ x
    counts = w @ valid.astype(np.float64)
    have = counts > 0
    per_seed = np.divide(sums, counts, out=np.zeros_like(sums), where=have)
    n_seeds = have.sum(axis=1)
    total = per_seed.sum(axis=1)
    return np.divide(total, n_seeds, out=np.full(total.shape, np.nan), where=n_seeds > 0)


def percentile_interval(figures: np.ndarray, level: float = LEVEL) -> tuple[float, float] | None:
    """The central `level` percentile interval of the finite bootstrap figures (None when there is none)."""
    f = figures[np.isfinite(figures)]
    if not f.size:
        return None
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(f, [a, 1.0 - a])
    return float(lo), float(hi)


def verdict(lo: float, hi: float, higher_is_better: bool, *, equal: bool = False) -> str:
    """ "better" / "worse" (planner vs baseline) when the interval of the difference excludes 0, "equal" when
    every paired value is the same, else "unresolved"."""
    if equal:
        return "equal"
    if lo > 0 or hi < 0:
        return "better" if (lo > 0) == higher_is_better else "worse"
    return "unresolved"


def resolve_baseline(
    labels: Sequence[str], requested: str | None, names: Mapping[str, str] | None = None
) -> tuple[str | None, str]:
    """The planner label differences are taken against, and why: `requested` (must be a label); else the
    planner labelled or named `heuristic`; else the first planner; None with a single planner."""
    if requested is not None:
        if requested not in labels:
            raise ConfigError(f"baseline planner {requested!r} is not among the evaluated planners {list(labels)}")
        return requested, "configured"
    if len(labels) < 2:
        return None, "one planner: nothing to compare"
    if DEFAULT_BASELINE in labels:
        return DEFAULT_BASELINE, "default"
    for label in labels:
        if (names or {}).get(label) == DEFAULT_BASELINE:
            return label, f"default: the `{DEFAULT_BASELINE}` planner"
    return labels[0], f"no `{DEFAULT_BASELINE}` planner: the first one listed"


class Bootstrap:
    """The resamples of one run: per scenario its sorted sample ids and one (n_boot x samples) count matrix,
    shared by every planner and metric of that scenario."""

    def __init__(
        self,
        rows: Sequence[Mapping[str, Any]],
        seeds: Sequence[int],
        *,
        n_boot: int = DEFAULT_N_BOOT,
        seed: int = DEFAULT_BOOTSTRAP_SEED,
        level: float = LEVEL,
    ) -> None:
        self.n_boot, self.seed, self.level = int(n_boot), int(seed), float(level)
        self.seeds = [int(s) for s in seeds]
        self._seed_col = {s: j for j, s in enumerate(self.seeds)}
        by_key: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
        ids: dict[str, set[str]] = {}
        for r in rows:
            by_key.setdefault((r["planner"], r["scenario"]), []).append(r)
            ids.setdefault(r["scenario"], set()).add(str(r["sample_id"]))
        self._rows = by_key
        self.sample_ids: dict[str, list[str]] = {sc: sorted(v) for sc, v in ids.items()}
        self._index = {sc: {sid: i for i, sid in enumerate(v)} for sc, v in self.sample_ids.items()}
        self.counts = {sc: resample_counts(len(v), self.n_boot, self.seed, sc) for sc, v in self.sample_ids.items()}
        self._cache: dict[tuple[str, str], np.ndarray] = {}

    def meta(self) -> dict[str, Any]:
        return {
            "method": METHOD,
            "n_boot": self.n_boot,
            "seed": self.seed,
            "level": self.level,
            "samples": {sc: len(v) for sc, v in self.sample_ids.items()},
        }

    def values(self, label: str, metric: MetricDef) -> np.ndarray:
        """(samples x seeds) values of one planner on one metric; NaN where it has no row or no value."""
        key = (label, metric.key)
        if key not in self._cache:
            index = self._index.get(metric.scenario, {})
            out = np.full((len(index), len(self.seeds)), np.nan)
            for r in self._rows.get((label, metric.scenario), []):
                j = self._seed_col.get(int(r["seed"]))
                if j is not None:
                    out[index[str(r["sample_id"])], j] = row_value(r, metric)
            self._cache[key] = out
        return self._cache[key]

    def interval(self, label: str, metric: MetricDef) -> list[float] | None:
        """[lo, hi] of the planner's figure on `metric` (None when it has no value)."""
        counts = self.counts.get(metric.scenario)
        if counts is None:
            return None
        ci = percentile_interval(seed_mean(self.values(label, metric), counts), self.level)
        return None if ci is None else [ci[0], ci[1]]

    def paired(self, label: str, baseline: str, metric: MetricDef) -> dict[str, Any] | None:
        """Planner - baseline on `metric` over the (sample, seed) pairs both have a value for: the difference,
        its interval, the pair and sample counts and the verdict; None when there is no such pair."""
        counts = self.counts.get(metric.scenario)
        if counts is None:
            return None
        d = self.values(label, metric) - self.values(baseline, metric)
        valid = ~np.isnan(d)
        if not valid.any():
            return None
        diff = float(seed_mean(d)[0])
        # Resamples that drew no sample with a pair have no figure and are left out.
        lo, hi = percentile_interval(seed_mean(d, counts), self.level) or (math.nan, math.nan)
        equal = bool(np.all(d[valid] == 0.0))
        return {
            "diff": diff,
            "lo": lo,
            "hi": hi,
            "n_pairs": int(valid.sum()),
            "n_samples": int(valid.any(axis=1).sum()),
            "verdict": verdict(lo, hi, metric.higher_is_better, equal=equal),
        }

    def compare(self, labels: Sequence[str], baseline: str) -> dict[str, dict[str, Any]]:
        """Every planner but the baseline -> metric key -> `paired` (None where there is no pair)."""
        return {
            label: {m.key: self.paired(label, baseline, m) for m in METRICS} for label in labels if label != baseline
        }
