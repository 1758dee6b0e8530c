"""Run every component benchmark and print one summary table (`make bench`).

Each benchmark module exposes `main(quick: bool) -> dict` of figures (and prints its own detail).
A benchmark that fails is reported in the table and the others still run. The summary shows each
benchmark's headline figures beside the baseline measured in the same run (as a ratio) and the
benchmark's target where there is one; every figure is also written to a JSON file.

    .venv/bin/python -m benchmarks.run_all [--quick] [--only NAME ...]
    .venv/bin/python -m benchmarks.run_all --summary-only [--json FILE]   # reprint a stored run
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCHMARKS = [
    "ingest",
    "encoders",
    "indexes",
    "rqvae",
    "render",
    "planner",
    "planner_latency",
    "server",
    "lm_backbone",
    "lm_asr",
]

Row = tuple[str, str, str, str]  # (figure, value, compared with, target)


def _num(v: Any, digits: int = 3) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{digits}g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _x(v: Any) -> str:
    return f"{_num(v)}x" if isinstance(v, (int, float)) and not isinstance(v, bool) else "n/a"


def _get(d: dict, *path: str) -> Any:
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


# --------------------------------------------------------------------------- headline rows per benchmark


def _ingest(f: dict) -> list[Row]:
    return [
        (
            "ingest, 1080p30 H.264",
            f"{_num(f.get('ingest_x_realtime'))}x real time",
            f"decode-only {_num(f.get('decode_only_x_realtime'))}x; ratio {_num(f.get('ingest_vs_decode_only'))}",
            ">= 5x; ratio >= 0.5",
        ),
    ]


def _encoders(f: dict) -> list[Row]:
    rows = [
        (
            "EfficientNet-Lite0 frames",
            f"{_num(f.get('efficientnet_lite0_frames_per_s'))} frames/s",
            f"{_x(f.get('efficientnet_lite0_speedup_vs_shipped'))} the shipped model",
            "",
        ),
        (
            "ResNet-50 frames (paper shape)",
            f"{_num(f.get('resnet50_frames_per_s'))} frames/s",
            f"{_x(f.get('resnet50_vs_lite0_speed'))} Lite0's speed",
            "",
        ),
        (
            "aisfx audio",
            f"{_num(f.get('aisfx_x_realtime'))}x real time",
            f"{_x(f.get('aisfx_speed_vs_package_pipeline'))} the package pipeline",
            "",
        ),
        (
            "VAD (silero)",
            f"{_num(f.get('vad_x_realtime'))}x real time",
            f"{_x(f.get('vad_speed_vs_torchscript'))} TorchScript, 1 thread",
            "",
        ),
        (
            "PCA transform",
            f"{_num(f.get('pca_transform_vectors_per_s'))} vectors/s",
            f"fit {_num(f.get('pca_fit_s'))} s on {_num(f.get('pca_fit_rows'))} rows",
            "",
        ),
    ]
    if "panns_x_realtime" in f:
        rows.append(("PANNs Cnn14 audio", f"{_num(f['panns_x_realtime'])}x real time", "", ""))
    return rows


def _indexes(f: dict) -> list[Row]:
    rows: list[Row] = []
    default = f.get("default_structure")
    for key, label in (("mixture_100000", "100k"), ("mixture_1000000", "1M"), ("library", "library")):
        d = f.get(key)
        if not isinstance(d, dict):
            continue
        s = d.get(default) or {}
        if s:
            target = "recall >= 0.95, p50 < 1 ms" if key == "mixture_1000000" else ""
            rows.append(
                (
                    f"{default} search, {label} x 128-d",
                    f"recall@10 {_num(s.get('recall_at_10'), 4)}, p50 {_num(s.get('p50_ms'))} ms",
                    f"{_x(s.get('p50_speedup_vs_exact'))} faster than exact (p50 {_num(_get(d, 'flat', 'p50_ms'))} ms)",
                    target,
                )
            )
    if "target_met_at_1m" in f:
        rows.append(("target at 1M met", str(f["target_met_at_1m"]), "", ""))
    return rows


def _rqvae(f: dict) -> list[Row]:
    rows: list[Row] = []
    for name in ("video", "audio_aisfx", "audio"):
        d = f.get(name)
        if isinstance(d, dict):
            rows.append(
                (
                    f"RQ-VAE {name} encode",
                    f"{_num(d.get('encode_vps'))} vectors/s",
                    f"{_x(d.get('encode_ratio'))} the plain reference",
                    ">= 0.8x",
                )
            )
            rows.append(
                (
                    f"RQ-VAE {name} decode",
                    f"{_num(d.get('decode_vps'))} vectors/s",
                    f"{_x(d.get('decode_ratio'))} the plain reference",
                    ">= 0.8x",
                )
            )
    return rows


def _render(f: dict) -> list[Row]:
    a = f.get("autocut") or {}
    rows: list[Row] = [
        (
            f"render {f.get('output')} {_num(f.get('plan_duration_s'))} s ad",
            f"{_num(a.get('wall_s'))} s wall, {_num(a.get('peak_rss_mb'))} MB peak",
            f"{_x(f.get('ratio_to_floor'))} the decode+encode floor (CPU {_x(f.get('ratio_to_floor_cpu'))})",
            "<= 1.15x floor",
        ),
    ]
    if "speedup_vs_moneyprinter" in f:
        rows.append(
            (
                "vs MoneyPrinterTurbo's approach",
                f"{_x(f['speedup_vs_moneyprinter'])} faster",
                f"CPU {_x(f.get('speedup_vs_moneyprinter_cpu'))}, bound {_x(f.get('speedup_bound_cpu'))}",
                "",
            )
        )
    return rows


def _planner(f: dict) -> list[Row]:
    rows: list[Row] = []
    for metric in ("CSA (selection)", "CRA (sorting)", "pairwise order acc", "BGM Hit@1", "ms per plan (selection)"):
        h, r = f.get(f"heuristic/{metric}"), f.get(f"random/{metric}")
        if h is None:
            continue
        ratio = f" ({_x(h / r)})" if isinstance(r, (int, float)) and r and "ms" not in metric else ""
        rows.append((f"heuristic {metric}", _num(h), f"random {_num(r)}{ratio}", ""))
    return rows


def _planner_latency(f: dict) -> list[Row]:
    if "skipped" in f:
        return [("skipped", str(f["skipped"]), "", "")]
    rows: list[Row] = []
    for scenario in ("script", "footage"):
        c, h = f.get(f"compact/{scenario}/median_ms"), f.get(f"heuristic/{scenario}/median_ms")
        if c is None:
            continue
        lm = f.get(f"compact/{scenario}/lm_median_s")
        rows.append(
            (
                f"compact LM plan, {scenario}-driven",
                f"median {_num(c)} ms, p90 {_num(f.get(f'compact/{scenario}/p90_ms'))} ms"
                + (f" (LM decode {_num(lm)} s)" if lm is not None else ""),
                f"{_x(f.get(f'compact_vs_heuristic/{scenario}'))} the heuristic (median {_num(h)} ms)",
                "",
            )
        )
    if "compact/load_s" in f:
        rows.append(("compact LM load", f"{_num(f['compact/load_s'])} s", "not in the plan times", ""))
    return rows


def _server(f: dict) -> list[Row]:
    return [
        (
            "service overhead (minus render, plan)",
            f"{_num(f.get('service_overhead_vs_render_pct'))} % of render",
            f"submit-to-done {_num(f.get('submit_to_done_s_median'))} s, render {_num(f.get('render_s_median'))} s",
            "< 5 %",
        ),
        ("service vs direct library call", _x(f.get("service_vs_direct_ratio")), "", ""),
        (
            "throughput, 2 workers",
            f"{_num(f.get('jobs_per_min_2_workers'))} jobs/min",
            f"{_x(f.get('scaling_2_vs_1_workers'))} 1 worker; direct {_num(f.get('jobs_per_min_direct_sequential'))}",
            "",
        ),
    ]


def _lm_backbone(f: dict) -> list[Row]:
    rows: list[Row] = []
    for name, b in (f.get("backbones") or {}).items():
        losses = b.get("sft_loss_first_last") or [None, None]
        rows.append(
            (
                f"{name} training",
                f"align {_num(b.get('align_s_per_step'))} s/step, sft {_num(b.get('sft_s_per_step'))} s/step",
                f"sft loss {_num(losses[0])} -> {_num(losses[-1])}",
                f"{_num(f.get('budget_s_per_stage'))} s per stage",
            )
        )
        for task, e in (b.get("eval") or {}).items():
            pairs = []
            for k, v in e.items():
                if not k.startswith("random_"):
                    continue
                base = k.removeprefix("random_").removeprefix("reference_")
                if base in e:
                    pairs.append(f"{base} {_num(e[base])} (random {_num(v)})")
            rows.append(
                (f"{name} {task} (test, n={e.get('n')})", f"parse {_num(e.get('parse_rate'))}", "; ".join(pairs), "")
            )
    return rows


def _lm_asr(f: dict) -> list[Row]:
    rows: list[Row] = []
    for key, d in f.items():
        if not isinstance(d, dict):
            continue
        unit = "CER" if key.startswith("zh") else "WER"
        rows.append(
            (
                f"ASR {key}",
                f"{unit} {_num(d.get('error_rate'))}, {d.get('sentences')}/{d.get('spoken')} sentences",
                f"RTF {_num(d.get('real_time_factor'))}; max boundary error "
                f"{_num(d.get('max_boundary_error_s'))} s (ASR only "
                f"{_num(d.get('asr_only_max_boundary_error_s'))} s)",
                "",
            )
        )
    return rows


HEADLINES: dict[str, Callable[[dict], list[Row]]] = {
    "ingest": _ingest,
    "encoders": _encoders,
    "indexes": _indexes,
    "rqvae": _rqvae,
    "render": _render,
    "planner": _planner,
    "planner_latency": _planner_latency,
    "server": _server,
    "lm_backbone": _lm_backbone,
    "lm_asr": _lm_asr,
}


def _fallback(f: dict) -> list[Row]:
    return [(k, _num(v), "", "") for k, v in f.items() if isinstance(v, (int, float, str, bool))]


def summary_rows(results: dict[str, dict]) -> list[tuple[str, ...]]:
    """(benchmark, figure, value, compared with, target) rows; a failed benchmark gets one row."""
    rows: list[tuple[str, ...]] = []
    for name, r in results.items():
        head = f"{name} ({r.get('wall_s', 0):.0f} s)"
        if not r.get("ok"):
            rows.append((head, "FAILED", str(r.get("error", ""))[:80], "", ""))
            continue
        figures = r.get("figures") or {}
        try:
            got = HEADLINES.get(name, _fallback)(figures)
        except Exception as exc:  # noqa: BLE001 - a changed figure layout must not hide the others
            got = [("(summary unavailable)", repr(exc)[:60], "", "")] + _fallback(figures)
        if not got:
            got = [("(no figures)", "", "", "")]
        for i, row in enumerate(got):
            rows.append((head if i == 0 else "", *row))
    return rows


def format_table(rows: list[tuple[str, ...]]) -> str:
    header = ("benchmark", "figure", "value", "compared with (same run)", "target")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    widths = [min(w, 70) for w in widths]

    def line(r: tuple[str, ...]) -> str:
        return "  ".join(str(c)[: widths[i]].ljust(widths[i]) for i, c in enumerate(r)).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes (minutes instead of tens of minutes)")
    ap.add_argument("--only", nargs="*", default=None, choices=BENCHMARKS)
    ap.add_argument("--json", type=Path, default=Path("benchmarks/.cache/summary.json"))
    ap.add_argument("--summary-only", action="store_true", help="print the table of the figures stored in --json")
    args = ap.parse_args()
    if args.summary_only:
        results = json.loads(args.json.read_text())
    else:
        results = {}
        for name in args.only or BENCHMARKS:
            t0 = time.perf_counter()
            try:
                figures = importlib.import_module(f"benchmarks.{name}").main(quick=args.quick)
                results[name] = {"ok": True, "wall_s": time.perf_counter() - t0, "figures": figures or {}}
            except Exception as exc:  # noqa: BLE001 - keep going, report at the end
                traceback.print_exc()
                results[name] = {"ok": False, "wall_s": time.perf_counter() - t0, "error": repr(exc)}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str))
    print("\n" + "=" * 100 + f"\nSUMMARY{' (quick sizes)' if args.quick else ''}\n" + "=" * 100)
    print(format_table(summary_rows(results)))
    print(f"\nall figures: {args.json}")
    return 0 if all(r.get("ok") for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
