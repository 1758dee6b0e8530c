"""The held-out check a compact planner's model card records (`autocut train compact`, `make demo`), and the
gate the server's `auto` planner applies to it.

`heldout_check` runs the real evaluation harness (`autocut.evaluation.evaluate`: requests through the
planning pipeline, FAISS grounding, bootstrap intervals, paired differences) on a held-out split for the
heuristic and the trained model; `autocut.lm.card.lm_beats_heuristic` reads the recorded result.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from autocut.lm.card import HEADLINE, lm_beats_heuristic

__all__ = ["heldout_check"]

log = logging.getLogger(__name__)


def heldout_check(
    library_dir: str | Path, model_dir: str | Path, *, split: str = "val", max_ads: int | None = 20, seed: int = 0
) -> dict[str, Any]:
    """Heuristic vs the compact planner at `model_dir` on `split`; a JSON-able summary with a `reading`."""
    from autocut.evaluation import EvalConfig, evaluate, parse_planner_spec

    cfg = EvalConfig(
        planners=(parse_planner_spec("heuristic"), parse_planner_spec(f"compact=compact:model_dir={model_dir}")),
        split=split,
        seeds=(seed,),
        max_ads=max_ads,
        script_proxies=False,
        n_boot=1000,
    )
    res = evaluate(library_dir, cfg)
    out: dict[str, Any] = {
        "split": split,
        "ads": max_ads,
        "samples": res.notes.get("samples", ""),
        "metrics": {},
        "failed": dict(res.failures),
    }
    for key in HEADLINE:
        lm = res.summary.get("compact", {}).get(key) or {}
        base = res.summary.get("heuristic", {}).get(key) or {}
        diff = (res.paired.get("compact") or {}).get(key)
        out["metrics"][key] = {
            "compact": lm.get("mean"),
            "compact_ci": lm.get("ci"),
            "heuristic": base.get("mean"),
            "heuristic_ci": base.get("ci"),
            "diff": None if diff is None else {k: diff[k] for k in ("diff", "lo", "hi", "verdict")},
        }
    out["lm_wins"] = lm_beats_heuristic(out)
    out["reading"] = _reading(out)
    return out


def _fmt(x: Any) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _reading(check: dict[str, Any]) -> str:
    parts = []
    for key, m in check["metrics"].items():
        d = m.get("diff")
        dtxt = "" if not d else f", diff {d['diff']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}] {d['verdict']}"
        parts.append(f"{key}: compact {_fmt(m.get('compact'))} vs heuristic {_fmt(m.get('heuristic'))}{dtxt}")
    verdict = "the LM wins" if check["lm_wins"] else "the LM does not beat the heuristic"
    return f"held-out check ({check['split']}, {check['samples']}): " + "; ".join(parts) + f" -> {verdict}"
