"""Run every component benchmark and print one summary table (`make bench`).

Each benchmark module exposes `main(quick: bool) -> dict` of figures (and prints its own detail).
A benchmark that fails is reported in the table and the others still run.

    .venv/bin/python -m benchmarks.run_all [--quick] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
import traceback
from pathlib import Path

BENCHMARKS = ["ingest", "encoders", "indexes", "rqvae", "render", "planner", "server", "lm_backbone", "lm_asr"]


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes (minutes instead of tens of minutes)")
    ap.add_argument("--only", nargs="*", default=None, choices=BENCHMARKS)
    ap.add_argument("--json", type=Path, default=Path("benchmarks/.cache/summary.json"))
    args = ap.parse_args()
    results: dict[str, dict] = {}
    for name in args.only or BENCHMARKS:
        t0 = time.perf_counter()
        try:
            figures = importlib.import_module(f"benchmarks.{name}").main(quick=args.quick)
            results[name] = {"ok": True, "wall_s": time.perf_counter() - t0, "figures": figures or {}}
        except Exception as exc:  # noqa: BLE001 - keep going, report at the end
            traceback.print_exc()
            results[name] = {"ok": False, "wall_s": time.perf_counter() - t0, "error": repr(exc)}
    print("\n" + "=" * 78 + "\nSUMMARY\n" + "=" * 78)
    for name, r in results.items():
        status = "ok" if r["ok"] else f"FAILED: {r['error'][:60]}"
        print(f"{name:<12} {status}  ({r['wall_s']:.0f} s)")
        for k, v in (r.get("figures") or {}).items():
            if isinstance(v, (int, float, str, bool)):
                print(f"    {k:<44} {_fmt(v)}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nfigures written to {args.json}")
    return 0 if all(r["ok"] for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
