"""Planning latency of the compact LM planner against the heuristic, measured in the same run.

Requests: the library's held-out reference ads (`autocut.evaluation.samples.build_samples`, split "val" by
default, 6 ads with --quick, 20 otherwise), both scenarios (script-driven and footage-driven); a footage
request that two ads share is timed once. Each planner is built once and plans one warm-up request (not
timed; the compact model's load is reported apart as load seconds), then every `plan_edit` call (the whole
pipeline: candidates, planner, grounding, voice fit) is timed with `time.perf_counter`, the two planners
alternating request by request so a load change on the machine touches both. Reported per planner and
scenario: median and p90 ms per plan, the compact/heuristic ratio of medians, and the median of the LM's own
decode seconds (`notes["lm_seconds"]`, written by the compact planner). torch runs on 2 threads.

A library without reference ads in the split, or without a compact planner, is skipped with the reason
(`make demo` builds var/library with both; `autocut train compact` trains the planner).

Run: nice .venv/bin/python -m benchmarks.planner_latency [--quick] [--library DIR] [--model-dir DIR] [--split S]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import print_table

PLANNERS = ("heuristic", "compact")
SCENARIOS = ("script", "footage")
THREADS = 2


def _skip(reason: str) -> dict[str, Any]:
    print(f"\n== planner latency: skipped ({reason})")
    return {"skipped": reason}


def _ms(xs: list[float], q: float) -> float:
    return 1000.0 * float(np.percentile(xs, q)) if xs else float("nan")


def _median(xs: list[float]) -> float:
    return float(np.median(xs)) if xs else float("nan")


def main(
    quick: bool = False,
    library: str | Path | None = None,
    model_dir: str | Path | None = None,
    split: str = "val",
) -> dict[str, Any]:
    import torch

    from autocut.errors import AutoCutError
    from autocut.evaluation.samples import build_samples
    from autocut.library.catalog import Catalog
    from autocut.library.layout import LibraryLayout
    from autocut.planning import plan_edit
    from autocut.planning.planners import get_planner

    lib = Path(library or os.environ.get("AUTOCUT_LIBRARY") or "var/library")
    layout = LibraryLayout(lib)
    model = Path(model_dir) if model_dir is not None else layout.compact_model_dir
    if not layout.catalog_db.exists():
        return _skip(f"no library at {lib}: run `make demo` first (or pass --library)")
    if not (model / "config.json").exists():
        return _skip(f"no compact planner at {model}: run `make demo` or `autocut train compact` first")
    torch.set_num_threads(THREADS)
    max_ads = 6 if quick else 20

    with Catalog.open(lib, create=False) as catalog:
        if not any(a.split == split for a in catalog.reference_edits()):
            return _skip(f"library {lib} has no reference ads in split {split!r}: run `make demo` first")
        t0 = time.perf_counter()
        samples, skipped = build_samples(catalog, split, scenarios=SCENARIOS, max_ads=max_ads)
        samples_s = time.perf_counter() - t0
        # Two ads of one product in one language make the same footage request: time it once.
        seen: set[str] = set()
        requests = []
        for s in samples:
            key = s.request.model_dump_json()
            if key not in seen:
                seen.add(key)
                requests.append((s.scenario, s.request))
        if not requests:
            return _skip(f"no planning request from split {split!r} ({len(skipped)} ads skipped)")

        planners: dict[str, Any] = {}
        load_s: dict[str, float] = {}
        first_plan_s: dict[str, float] = {}
        for name in PLANNERS:
            t0 = time.perf_counter()
            p = get_planner(name, model_dir=model) if name == "compact" else get_planner(name)
            warm = getattr(p, "warm_up", None)
            if callable(warm):
                warm(catalog.root)  # loads the model (keyed by the catalog's root, as plans are)
            load_s[name] = time.perf_counter() - t0
            t0 = time.perf_counter()
            plan_edit(catalog, requests[0][1], p)  # warm-up plan (caches, reference stats, TTS): not timed
            first_plan_s[name] = time.perf_counter() - t0
            planners[name] = p

        wall: dict[tuple[str, str], list[float]] = {(p, s): [] for p in PLANNERS for s in SCENARIOS}
        lm_s: dict[tuple[str, str], list[float]] = {(p, s): [] for p in PLANNERS for s in SCENARIOS}
        failed: dict[tuple[str, str], int] = {(p, s): 0 for p in PLANNERS for s in SCENARIOS}
        for scenario, request in requests:
            for name in PLANNERS:  # alternating, so a load change on the machine touches both planners
                t0 = time.perf_counter()
                try:
                    plans = plan_edit(catalog, request, planners[name])
                except AutoCutError:
                    failed[name, scenario] += 1
                    continue
                wall[name, scenario].append(time.perf_counter() - t0)
                lm = plans[0].notes.get("lm_seconds") if plans else None
                if lm is not None:
                    lm_s[name, scenario].append(float(lm))

    figures: dict[str, Any] = {
        "library": str(lib),
        "model_dir": str(model),
        "split": split,
        "threads": THREADS,
        "samples_build_s": samples_s,
        "ads_skipped": len(skipped),
    }
    rows: list[tuple[str, str]] = [
        ("library / split", f"{lib} / {split} ({len(skipped)} ads skipped)"),
        ("compact model", str(model)),
        ("torch threads", str(THREADS)),
    ]
    for name in PLANNERS:
        figures[f"{name}/load_s"] = load_s[name]
        figures[f"{name}/first_plan_s"] = first_plan_s[name]
        rows.append(
            (f"{name} load / warm-up plan", f"{load_s[name]:.2f} s / {first_plan_s[name]:.2f} s (not timed below)")
        )
    for scenario in SCENARIOS:
        n = sum(1 for s, _ in requests if s == scenario)
        figures[f"{scenario}/requests"] = n
        for name in PLANNERS:
            w = wall[name, scenario]
            med, p90 = _ms(w, 50), _ms(w, 90)
            figures[f"{name}/{scenario}/median_ms"] = med
            figures[f"{name}/{scenario}/p90_ms"] = p90
            figures[f"{name}/{scenario}/failed"] = failed[name, scenario]
            extra = f", {failed[name, scenario]} failed" if failed[name, scenario] else ""
            lm = lm_s[name, scenario]
            if lm:
                figures[f"{name}/{scenario}/lm_median_s"] = _median(lm)
                extra += f"; LM decode median {_median(lm):.2f} s"
            rows.append((f"{scenario}: {name}", f"median {med:.0f} ms, p90 {p90:.0f} ms (n={len(w)}{extra})"))
        h, c = figures[f"heuristic/{scenario}/median_ms"], figures[f"compact/{scenario}/median_ms"]
        ratio = c / h if h and not np.isnan(h) and not np.isnan(c) else float("nan")
        figures[f"compact_vs_heuristic/{scenario}"] = ratio
        rows.append((f"{scenario}: compact / heuristic", f"{ratio:.2f}x the heuristic's median"))
    print_table(f"planning latency, compact LM vs heuristic ({len(requests)} requests per planner)", rows)
    return figures


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="6 reference ads instead of 20")
    ap.add_argument("--library", default=None, help="library directory (default: $AUTOCUT_LIBRARY or var/library)")
    ap.add_argument("--model-dir", default=None, help="compact planner (default: the library's compact model)")
    ap.add_argument("--split", default="val", help="reference-ad split the requests come from (default: val)")
    a = ap.parse_args()
    main(quick=a.quick, library=a.library, model_dir=a.model_dir, split=a.split)
