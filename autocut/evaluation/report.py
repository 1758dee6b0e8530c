"""The report of an evaluation run: eval.json (everything), eval.md (a plain-language reading, tables:
planners and detail with 95 % bootstrap intervals, paired differences to the baseline per scenario, spread
over seeds, paper anchors, timing, failures, notes), the PNG plots, and the reading + main table as text for
the CLI.

Notation of a paired difference (planner - baseline, `autocut.evaluation.stats`): `+0.080 [+0.040, +0.120] ✓`
= resolved, the planner is better (the 95 % interval excludes 0; better respects lower-is-better metrics);
`✗` = resolved, worse; `~` = unresolved (the interval includes 0); `=` = equal on every paired sample."""

from __future__ import annotations

import logging
import math
import os
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autocut.evaluation.metric_table import METRIC_BY_KEY, METRICS, PAPER_ANCHORS
from autocut.evaluation.result import EvalResult
from autocut.evaluation.text_proxies import SP_COVERAGE_THRESHOLD
from autocut.files import atomic_path, write_json_atomic, write_text_atomic

__all__ = ["reading", "summary_text", "write_report"]

log = logging.getLogger(__name__)


def _num(v: float, digits: int) -> str:
    """Fixed-point, except a non-zero value too small to show (chance CSA is ~1e-5): scientific."""
    return f"{v:.1e}" if 0 < abs(v) < 0.5 * 10**-digits else f"{v:.{digits}f}"


def _signed(v: float, digits: int) -> str:
    """Like `_num`, always with a sign (+0.000 for zero)."""
    v = v + 0.0  # no "-0.000"
    return f"{v:+.1e}" if 0 < abs(v) < 0.5 * 10**-digits else f"{v:+.{digits}f}"


def _fmt(stats: dict[str, Any] | None, digits: int) -> str:
    """ "mean [lo, hi]": the figure and its 95 % bootstrap interval over samples (no interval: the mean alone)."""
    if not stats or stats.get("mean") is None:
        return "n/a"
    s = _num(stats["mean"], digits)
    ci = stats.get("ci")
    if ci and ci[0] is not None and ci[1] is not None:
        s += f" [{_num(ci[0], digits)}, {_num(ci[1], digits)}]"
    return s


FEW_SAMPLES = 20  # below this many samples in a scenario the reading warns that intervals run narrow
MARKS = {"better": "✓", "worse": "✗", "unresolved": "~", "equal": "="}
NOTATION = (
    "Cell: mean paired difference planner − baseline over the (sample, seed) pairs where both have a value "
    "(same samples, same seeds; a failed plan counts as the metric's fail value), then [lo, hi], its 95 % "
    "bootstrap interval over samples. ✓ = resolved, the planner is better than the baseline (the interval "
    "excludes 0; for ↓ metrics better is lower); ✗ = resolved, the planner is worse; ~ = not resolved (the "
    "interval includes 0); = = equal on every paired sample; n/a = no sample where both have a value. "
    "**Bold** metrics are the headline metrics of the main table."
)


def _diff_cell(p: dict[str, Any] | None, digits: int) -> str:
    if not p or p.get("diff") is None:
        return "n/a"
    s = _signed(p["diff"], digits)
    if p.get("lo") is not None and p.get("hi") is not None:
        s += f" [{_signed(p['lo'], digits)}, {_signed(p['hi'], digits)}]"
    return f"{s} {MARKS.get(p.get('verdict', ''), '?')}"


def _scope(result: EvalResult) -> str:
    boot = result.bootstrap
    n = boot.get("samples", {})
    samples = " + ".join(f"{v} {k}-driven" for k, v in n.items()) or "no"
    n_seeds = len(result.config["seeds"])
    return (
        f"95 % bootstrap intervals over samples: {samples} samples, {boot.get('n_boot')} resamples, bootstrap "
        f"seed {boot.get('seed')}, a sample's values over the {n_seeds} seed{'s' if n_seeds != 1 else ''} "
        "kept together"
    )


def _join(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def reading(result: EvalResult) -> str:
    """One plain-language paragraph, generated from the paired differences on the headline metrics (`main`):
    what beat what, by how much with its 95 % interval, and where no difference is resolved."""
    boot = result.bootstrap
    base = boot.get("baseline")
    head = "**Reading** (headline metrics, generated from the numbers below): "
    if base is None or not result.paired:
        return head + f"one planner evaluated, nothing is compared ({_scope(result)})."
    sentences = []
    na: dict[str, None] = {}  # headline metrics some planner has no paired value on (ordered set)
    for label, diffs in result.paired.items():
        wins, losses, open_, equal = [], [], [], []
        for m in METRICS:
            if not m.main:
                continue
            p = diffs.get(m.key)
            name = m.label + ("" if m.higher_is_better else " ↓")
            if not p or p.get("diff") is None:
                na[name] = None
                continue
            d = m.digits
            if p["verdict"] == "better":
                wins.append(f"{name} by {_signed(p['diff'], d)} [{_signed(p['lo'], d)}, {_signed(p['hi'], d)}]")
            elif p["verdict"] == "worse":  # said from the baseline's side: baseline - planner
                losses.append(f"{name} by {_signed(-p['diff'], d)} [{_signed(-p['hi'], d)}, {_signed(-p['lo'], d)}]")
            elif p["verdict"] == "equal":
                equal.append(name)
            else:
                open_.append(name)
        parts = []
        if wins:
            parts.append(f"`{label}` beats `{base}` on {_join(wins)}")
        if losses:
            parts.append(f"`{base}` beats `{label}` on {_join(losses)}")
        if not parts:
            parts.append(f"`{label}` vs `{base}`: no resolved difference on any headline metric")
        elif open_:
            parts.append(f"no resolved difference on {_join(open_)}")
        if equal:
            parts.append(f"equal on every sample on {_join(equal)}")
        sentences.append("; ".join(parts) + ".")
    if na:
        sentences.append(f"Not compared (no paired values for some planner): {_join(list(na))}.")
    why = boot.get("baseline_reason", "")
    tail = (
        f" Baseline: `{base}`" + (f" ({why})" if why else "") + "; differences are paired on the same samples "
        f"and seeds; {_scope(result)}; resolved = the interval excludes 0; ↓ = lower is better."
    )
    few = min(boot.get("samples", {}).values(), default=0)
    if few < FEW_SAMPLES:
        tail += (
            f" With {few} samples in a scenario (fewer than {FEW_SAMPLES}) a bootstrap interval understates the "
            "uncertainty: read a resolved difference as indicative only."
        )
    return head + " ".join(sentences) + tail


def _paired_tables(result: EvalResult) -> list[str]:
    base = result.bootstrap.get("baseline")
    if base is None or not result.paired:
        return ["One planner evaluated: nothing is compared.", ""]
    others = list(result.paired)
    out = [
        f"Baseline: `{base}` ({result.bootstrap.get('baseline_reason', '')}); {_scope(result)}.",
        "",
    ]
    for scenario in dict.fromkeys(m.scenario for m in METRICS):
        metrics = [m for m in METRICS if m.scenario == scenario and any(result.paired[lb].get(m.key) for lb in others)]
        if not metrics:
            continue
        n = result.bootstrap.get("samples", {}).get(scenario, 0)
        out += [
            f"### {scenario}-driven samples ({n})",
            "",
            "| metric | " + " | ".join(f"`{lb}` − `{base}`" for lb in others) + " |",
            "|" + "---|" * (len(others) + 1),
        ]
        for m in metrics:
            name = m.label + ("" if m.higher_is_better else " ↓")
            cells = [
                f"**{name}**" if m.main else name,
                *(_diff_cell(result.paired[lb].get(m.key), m.digits) for lb in others),
            ]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    out += [NOTATION, ""]
    return out


def _seed_spread(result: EvalResult) -> list[str]:
    labels = list(result.summary)
    out = [
        "| metric | " + " | ".join(f"`{lb}`" for lb in labels) + " |",
        "|" + "---|" * (len(labels) + 1),
    ]
    for m in METRICS:
        cells = []
        for lb in labels:
            st = result.summary[lb].get(m.key) or {}
            per_seed = st.get("per_seed") or []
            cells.append(
                f"{st['std']:.{m.digits}f} ({', '.join(_num(v, m.digits) for v in per_seed)})"
                if st.get("std") is not None
                else "n/a"
            )
        if any(c != "n/a" for c in cells):
            out.append(f"| {m.label}{'' if m.higher_is_better else ' ↓'} | " + " | ".join(cells) + " |")
    return out


def _table(result: EvalResult, keys: Sequence[str], *, with_extra: bool) -> list[str]:
    head = [
        "planner",
        *[METRIC_BY_KEY[k].label + (" ↓" if not METRIC_BY_KEY[k].higher_is_better else "") for k in keys],
    ]
    if with_extra:
        head += ["ms/plan", "failed"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, stats in result.summary.items():
        cells = [f"`{label}`", *[_fmt(stats.get(k), METRIC_BY_KEY[k].digits) for k in keys]]
        if with_extra:
            t = result.timing.get(label, {})
            f = result.failures.get(label, {})
            cells += [
                f"{t.get('ms_mean', math.nan):.0f}" if t.get("plans") else "n/a",
                f"{f.get('count', 0)}/{sum(1 for r in result.rows if r['planner'] == label)}",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    chance = [("chance (exact, uniform random)", result.chance)]
    for name, vals in chance:
        cells = [name, *[_num(vals[k], METRIC_BY_KEY[k].digits) if k in vals else "n/a" for k in keys]]
        if with_extra:
            cells += ["", ""]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _markdown(result: EvalResult, plot_names: Sequence[str]) -> str:
    c = result.config
    main_keys = [m.key for m in METRICS if m.main]
    detail_keys = [m.key for m in METRICS if not m.main]
    n_seeds = len(c["seeds"])
    out = [
        f"# AutoCut evaluation: split `{c['split']}`",
        "",
        f"Library `{c['library']}` (frames {result.versions.get('frame_encoder')}, PCA "
        f"{result.versions.get('pca_version')}); {result.notes['samples']}; seeds {c['seeds']}; "
        f"{c['segment_mode']} grounding; script-driven pools = the product's reel + "
        f"{c['negative_products']} other product(s)' reel(s); run took {result.seconds:.0f} s "
        f"(autocut {result.versions.get('autocut')}, commit {str(result.versions.get('git_commit', '?'))[:10]}"
        f"{' + local changes' if result.versions.get('git_dirty') else ''}).",
        "",
        _wrap(reading(result)),
        "",
        "## Planners (Table 1 layout)",
        "",
        (
            "Mean over samples per seed, then mean over seeds (spread over seeds: below). "
            if n_seeds > 1
            else "Mean over samples (one seed). "
        )
        + "[lo, hi] = 95 % bootstrap interval over samples. "
        "CSA, SRA, BGM: script-driven samples; CRA, pairwise, tau, WCD, SSA: footage-driven samples "
        "(order scored on the reference clips). ↓ = lower is better.",
        "",
        *_table(result, main_keys, with_extra=True),
        "",
        "## Detail",
        "",
        *_table(result, detail_keys, with_extra=False),
        "",
        "## Paired differences to the baseline",
        "",
        *_paired_tables(result),
    ]
    if n_seeds > 1:
        out += [
            "## Spread over seeds",
            "",
            f"Std over seeds of the per-seed means (the per-seed means in brackets, in seed order {list(c['seeds'])}).",
            "",
            *_seed_spread(result),
            "",
        ]
    out += [
        "## Paper anchors (AutoCut Table 1 / Table 2, on the paper's data: not comparable)",
        "",
        "Their CRA is the sorting task with the ordered script given; their MSS is a Music-Flamingo description "
        "similarity, unlike our BGM cosine; their encoders, data and judge differ. Compare planners with each "
        "other on the same split.",
        "",
        "| paper row | CSA | CRA | VSC | SQ | WCD ↓ | MSS |",
        "|---|---|---|---|---|---|---|",
    ]
    for a in PAPER_ANCHORS:
        out.append(
            f"| {a['label']} | "
            + " | ".join(f"{a[k]:g}" if k in a else "-" for k in ("csa", "cra", "vsc", "sq", "wcd", "mss"))
            + " |"
        )
    out += [
        "",
        "## Timing",
        "",
        "| planner | planned requests | ms/plan mean | median | max | planning total s |",
        "|---|---|---|---|---|---|",
    ]
    for label, t in result.timing.items():
        if t.get("plans"):
            out.append(
                f"| `{label}` | {t['plans']} | {t['ms_mean']:.0f} | {t['ms_median']:.0f} | {t['ms_max']:.0f} | "
                f"{t['s_total']:.1f} |"
            )
        else:
            out.append(f"| `{label}` | 0 | n/a | n/a | n/a | 0 |")
    out += ["", "## Failures", ""]
    any_fail = False
    for label, f in result.failures.items():
        if f["count"] or f["free_failures"] or f["judge_failures"]:
            any_fail = True
            out.append(
                f"- `{label}`: {f['count']} failed plans {f['by_scenario']}, {f['free_failures']} failed "
                f"length-free plans, {f['judge_failures']} judge failures"
            )
            for reason, n in sorted(f["reasons"].items(), key=lambda kv: -kv[1])[:5]:
                out.append(f"  - {n} x {reason}")
    if not any_fail:
        out.append("None.")
    if result.skipped:
        out.append(
            f"- skipped reference ads: {len(result.skipped)} ("
            + "; ".join(f"{s['edit_id']}: {s['reason']}" for s in result.skipped[:3])
            + ")"
        )
    out += [
        "",
        "## Notes",
        "",
        "- WCD without length targets (footage samples re-planned by the planner built with option "
        "`length_targets=False`; the baselines' template writer always fits lines to clip durations):",
        *(f"  - {ln}" for ln in result.notes["wcd_free"].splitlines()),
        f"- Selling-point coverage: {result.notes['sp_coverage']}; covered = cosine >= "
        f"{SP_COVERAGE_THRESHOLD['en']} (en) / {SP_COVERAGE_THRESHOLD['zh']} (zh).",
        f"- Judge: {result.notes['judge']}.",
        "- A failed plan counts as its metric's fail value ("
        + ", ".join(f"{m.label} {m.fail_value:g}" for m in METRICS if m.fail_value is not None)
        + ") and is left out of the other metrics, in the intervals and paired differences too.",
        *(
            [
                "- This file was written before intervals were reported: they were computed from its rows when "
                "it was loaded (default settings)."
            ]
            if result.bootstrap.get("computed_on_load")
            else []
        ),
        "- Pools are whole source videos (a request cannot name a sub-span), so unused clips of the product's own "
        "reel are negatives too; see `autocut/evaluation/` for the sample design.",
        "- `grounded = chosen`: share of segments whose grounded footage is the candidate the planner chose.",
        "",
    ]
    out += [f"![{n}]({n})" for n in plot_names]
    return "\n".join(out) + "\n"


def _wrap(text: str) -> str:
    return textwrap.fill(text, width=110, break_long_words=False, break_on_hyphens=False)


def _plots(result: EvalResult, out_dir: Path) -> list[str]:
    try:
        import matplotlib
    except ImportError:
        log.warning("matplotlib is not installed: the report has no plots (pip install matplotlib)")
        return []
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(result.summary)
    keys = [
        "csa",
        "sra",
        "cra",
        "pairwise",
        "tau",
        "wcd",
        "ssa",
        "bgm_hit5",
        "bgm_mrr",
        "bgm_cos",
        "precision",
        "sp_coverage",
        "rouge_l",
    ]
    keys = [k for k in keys if any((result.summary[lb].get(k) or {}).get("mean") is not None for lb in labels)]
    names: list[str] = []
    if keys:
        ncol = 4
        nrow = math.ceil(len(keys) / ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(3.4 * ncol, 2.8 * nrow), squeeze=False)
        colours = plt.cm.tab10(np.arange(len(labels)) % 10)
        for ax, key in zip(axes.flat, keys):
            m = METRIC_BY_KEY[key]
            sts = [result.summary[lb].get(key) or {} for lb in labels]
            means = [st.get("mean") for st in sts]
            errs_lo, errs_hi = zip(*(_err_bar(st) for st in sts))
            x = np.arange(len(labels))
            ax.bar(x, [v if v is not None else 0 for v in means], yerr=[errs_lo, errs_hi], color=colours, capsize=3)
            chance = result.chance.get(key)
            if chance is not None:
                ax.axhline(chance, color="grey", ls="--", lw=1)
            shown = [v for v in means if v is not None] + ([chance] if chance is not None else [])
            hi = max([(v or 0) + e for v, e in zip(means, errs_hi)] + ([chance] if chance is not None else []))
            lo = min([(v or 0) - e for v, e in zip(means, errs_lo)] + [0.0])
            if key == "bgm_cos" and shown:  # cosines of music embeddings sit close together: zoom in
                bottom, top = max(-1.0, min(shown) - 0.05), min(1.0, max(shown) + 0.03)
            else:
                top = max(hi * 1.25, 0.05)  # an all-zero panel still shows a readable scale
                bottom = lo * 1.25 if lo < 0 else 0.0
            ax.set_ylim(bottom, top)
            for xi, v in zip(x, means):
                label = "n/a" if v is None else f"{v:.{min(m.digits, 3)}f}"
                ax.text(
                    xi, max(v or 0.0, bottom), label, ha="center", va="bottom" if (v or 0) >= 0 else "top", fontsize=7
                )
            ax.set_title(m.label + (" (lower better)" if not m.higher_is_better else ""), fontsize=9)
            ax.set_xticks(x)
            ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=7)
            ax.tick_params(axis="y", labelsize=7)
        for ax in list(axes.flat)[len(keys) :]:
            ax.axis("off")
        fig.suptitle(
            f"split {result.config['split']}: mean over samples and seeds ({len(result.config['seeds'])}), "
            "error bars = 95 % bootstrap interval over samples; dashed = chance (exact, uniform random)",
            fontsize=10,
        )
        fig.tight_layout()
        names.append("eval_metrics.png")
        _save(fig, out_dir / names[-1])
        plt.close(fig)
    ms = [(lb, result.timing[lb]) for lb in labels if result.timing.get(lb, {}).get("plans")]
    if ms:
        fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(ms) + 2), 3))
        ax.bar([lb for lb, _ in ms], [t["ms_mean"] for _, t in ms], color="tab:blue", label="mean")
        ax.plot([lb for lb, _ in ms], [t["ms_median"] for _, t in ms], "k_", markersize=20, label="median")
        ax.set_yscale("log")
        ax.set_ylabel("ms per plan (log)")
        ax.set_title("planning time per request (plan_edit, grounding included)", fontsize=9)
        ax.legend(fontsize=7)
        plt.setp(ax.get_xticklabels(), rotation=30, ha="right", fontsize=8)
        fig.tight_layout()
        names.append("eval_timing.png")
        _save(fig, out_dir / names[-1])
        plt.close(fig)
    return names


def _err_bar(st: dict[str, Any]) -> tuple[float, float]:
    """(below, above) the mean: its 95 % interval (the std over seeds for a result without intervals)."""
    mean, ci = st.get("mean"), st.get("ci")
    if mean is None:
        return 0.0, 0.0
    if ci and ci[0] is not None and ci[1] is not None:
        return max(mean - ci[0], 0.0), max(ci[1] - mean, 0.0)
    return st.get("std") or 0.0, st.get("std") or 0.0


def _save(fig: Any, path: Path) -> None:
    with atomic_path(path, suffix=".tmp.png") as tmp:
        fig.savefig(tmp, dpi=110)


def _json_safe(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return _json_safe(float(x))
    if isinstance(x, frozenset | set):
        return sorted(x)
    return x


def write_report(result: EvalResult, out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write eval.json (everything), eval.md (tables) and the PNG plots into `out_dir`; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = _plots(result, out)
    paths = [out / "eval.json", out / "eval.md", *(out / p for p in plots)]
    write_json_atomic(out / "eval.json", _json_safe(result.to_json()))
    write_text_atomic(out / "eval.md", _markdown(result, plots))
    return paths


def summary_text(result: EvalResult) -> str:
    """The reading and the main table as plain markdown lines (what the CLI prints)."""
    return "\n".join([_wrap(reading(result)), "", *_table(result, [m.key for m in METRICS if m.main], with_extra=True)])
