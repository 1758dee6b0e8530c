"""`autocut eval`: planners side by side on a held-out split (logic in `autocut.evaluation`)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from autocut.errors import ConfigError

_DEFAULT_PLANNERS = ["random", "heuristic"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="score planners on a held-out split's reference ads (CSA, CRA, SRA, WCD, SSA, BGM, ...)",
        description="Plan every reference ad of a split with each planner through the real planning path "
        "(script-driven and footage-driven requests), score the plans (CSA, CRA, SRA, WCD, SSA, BGM "
        "Hit@k, ...; see docs/evaluation.md) and "
        "write <out>/eval.json, eval.md and PNG plots. Planner specs: NAME, NAME:key=value,... "
        "(options go to the planner's constructor) or LABEL=NAME:key=value (the report shows LABEL). "
        "An LLM judge for VSC/SQ is used when --judge-url or AUTOCUT_JUDGE_URL is set "
        "(model: --judge-model or AUTOCUT_JUDGE_MODEL; key: AUTOCUT_JUDGE_KEY).",
    )
    p.add_argument("--split", default="test", help="split whose reference ads are evaluated (default test)")
    p.add_argument(
        "--planners",
        nargs="+",
        default=_DEFAULT_PLANNERS,
        metavar="SPEC",
        help=f"planner specs (default: {' '.join(_DEFAULT_PLANNERS)}), e.g. "
        "token-sft-only=token:model_dir=var/models/lm/sft",
    )
    p.add_argument("--seeds", default="0", metavar="S,S,...", help="comma-separated request seeds (default 0)")
    p.add_argument(
        "--max-ads",
        type=int,
        default=None,
        metavar="N",
        help="evaluate the first N reference ads, spread over products (default: all)",
    )
    p.add_argument(
        "--scenarios", default="script,footage", metavar="LIST", help="script and/or footage (default script,footage)"
    )
    p.add_argument(
        "--negative-products",
        type=int,
        default=1,
        metavar="N",
        help="other products whose reels join a script-driven pool (default 1; capped by the 64-candidate limit)",
    )
    p.add_argument("--mode", choices=["by_frame", "by_clip"], default="by_frame", help="grounding mode")
    p.add_argument(
        "--no-text-model",
        action="store_true",
        help="skip the sentence-embedding model (selling-point coverage reported as n/a)",
    )
    p.add_argument(
        "--judge-url",
        default=None,
        metavar="URL",
        help="OpenAI-compatible API base for the VSC/SQ judge (default $AUTOCUT_JUDGE_URL)",
    )
    p.add_argument("--judge-model", default=None, metavar="NAME", help="judge model (default $AUTOCUT_JUDGE_MODEL)")
    p.add_argument("--threads", type=int, default=1, metavar="N", help="torch CPU threads (default 1)")
    p.add_argument(
        "--out", type=Path, default=Path("eval-report"), metavar="DIR", help="report directory (default ./eval-report)"
    )
    p.set_defaults(func=run)


def _seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise ConfigError(f"--seeds must be comma-separated integers, got {text!r}") from None
    if not seeds:
        raise ConfigError("--seeds is empty")
    return seeds


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from autocut.evaluation import EvalConfig, evaluate, parse_planner_spec, summary_text, write_report
    from autocut.evaluation.judge import JudgeConfig
    from autocut.planning import PlanOptions
    from autocut.planning.candidates import CandidateConfig

    if args.threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {args.threads}")
    import torch

    torch.set_num_threads(args.threads)
    judge = None
    url = args.judge_url or os.environ.get("AUTOCUT_JUDGE_URL")
    if url:
        model = args.judge_model or os.environ.get("AUTOCUT_JUDGE_MODEL") or ""
        judge = JudgeConfig(url=url, model=model, api_key=os.environ.get("AUTOCUT_JUDGE_KEY") or None)
    config = EvalConfig(
        planners=tuple(parse_planner_spec(s) for s in args.planners),
        split=args.split,
        seeds=_seeds(args.seeds),
        max_ads=args.max_ads,
        scenarios=tuple(s.strip() for s in args.scenarios.split(",") if s.strip()),
        negative_products=args.negative_products,
        plan_options=PlanOptions(segment_mode=args.mode, candidates=CandidateConfig()),
        script_proxies=not args.no_text_model,
        judge=judge,
    )
    bar = None

    def progress(done: int, total: int, what: str) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="plan", file=sys.stderr, dynamic_ncols=True)
        bar.set_description(what, refresh=False)
        bar.update(done - bar.n)

    result = evaluate(args.library, config, progress=progress)
    if bar is not None:
        bar.close()
    paths = write_report(result, args.out)
    print(summary_text(result))
    planned = sum(int(t.get("plans", 0)) for t in result.timing.values())
    print(
        f"{len(result.rows)} scored plans ({planned} planned requests) in {result.seconds:.0f} s; "
        f"{result.notes['samples']}"
    )
    for p in paths:
        print(f"wrote {p}")
    return 0
