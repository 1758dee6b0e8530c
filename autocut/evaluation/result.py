"""What one evaluation run measured (`EvalResult`), its per-planner summary over seeds (`summarise`), and
reading it back from its eval.json (`load_result`), so a report can be re-rendered without re-planning."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autocut.errors import ConfigError
from autocut.evaluation.metric_table import METRICS, PAPER_ANCHORS

__all__ = ["EVAL_FORMAT_VERSION", "EvalResult", "load_result", "summarise"]

EVAL_FORMAT_VERSION = 1


@dataclass
class EvalResult:
    """Everything one evaluation run measured (see `to_json`)."""

    config: dict[str, Any]
    versions: dict[str, Any]
    samples: list[dict[str, Any]]
    skipped: list[dict[str, str]]
    rows: list[dict[str, Any]]  # one per (planner, seed, sample)
    summary: dict[str, dict[str, Any]]  # planner label -> metric key -> stats
    chance: dict[str, float]
    failures: dict[str, dict[str, Any]]
    timing: dict[str, dict[str, float]]
    notes: dict[str, str]
    seconds: float

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
    names = [f.name for f in dataclasses.fields(EvalResult)]
    missing = [n for n in names if n not in data]
    if missing:
        raise ConfigError(f"{path} lacks {missing}")

    def nan(x: Any) -> Any:  # JSON null (a NaN when written) back to NaN inside metric dicts
        return {k: (math.nan if v is None else v) for k, v in x.items()}

    for r in data["rows"]:
        r["metrics"] = nan(r["metrics"])
    return EvalResult(**{n: data[n] for n in names})


def summarise(rows: list[dict[str, Any]], labels: Sequence[str], seeds: Sequence[int]) -> dict[str, dict]:
    """Per planner and metric: mean / std / min / max over seeds of the per-seed sample means, and the sem."""
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
            }
        out[label] = stats
    return out
