"""`autocut eval`: planners side by side on a held-out split; `autocut eval probe`: how well role, brand and
selling point can be read from each token representation (logic in `autocut.evaluation`).

`eval` keeps its own options and takes one optional sub-command, `probe`; the planner evaluation runs when
none is given, so every existing `autocut eval --planners ...` line parses as before."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from autocut.errors import ConfigError

_DEFAULT_PLANNERS = ["random", "heuristic"]
# Mirrors autocut.evaluation.probe.LEVELS / CODE_FEATURES (the parser must not import the probe's libraries).
_PROBE_LEVELS = "1,2,4,8"
_PROBE_CODE_FEATURES = ("onehot", "partial")


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
        "(model: --judge-model or AUTOCUT_JUDGE_MODEL; key: AUTOCUT_JUDGE_KEY). "
        "`autocut eval probe` (its own options, see `autocut eval probe --help`) probes the token "
        "representations instead.",
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
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="N",
        help="torch CPU threads for loading models before planning starts (planning units use 1; default 1)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="processes planning at once (default: one per CPU, at most 4); the results do not depend on it",
    )
    p.add_argument(
        "--baseline",
        default=None,
        metavar="LABEL",
        help="planner the paired differences are taken against (default: heuristic when evaluated, else the first)",
    )
    p.add_argument(
        "--n-boot",
        type=int,
        default=2000,
        metavar="N",
        help="bootstrap resamples for the 95 %% intervals (default 2000)",
    )
    p.add_argument("--bootstrap-seed", type=int, default=0, metavar="S", help="bootstrap seed (default 0)")
    p.add_argument(
        "--out", type=Path, default=Path("eval-report"), metavar="DIR", help="report directory (default ./eval-report)"
    )
    p.set_defaults(func=run)
    # Optional: with no sub-command `eval` runs the planner evaluation (func=run) as it always did.
    eval_sub = p.add_subparsers(dest="eval_command", metavar="[probe]", required=False)
    _register_probe(eval_sub)


def _register_probe(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "probe",
        help="how well role, brand and selling point can be read from PCA vectors, RQ reconstructions and "
        "RQ codes (linear probes, no LM)",
        description="Decodability probe: logistic regression fitted on the demo world's train products and scored "
        "on a held-out split, per frame and per clip (a shot's frames averaged), from the PCA frame vectors, "
        "their RQ-VAE reconstructions decode(encode(x)) and the RQ codes of the first 1, 2, 4 and 8 levels. "
        "Targets from <library>/world/world.json: the shot's role, the product's brand pattern (ad shots) "
        "and the selling point a feature shot shows. Prints a table (chance = majority class share) and "
        "writes <out>/probe.json and probe.md. Needs a demo world (`autocut demo-world build`) and the "
        "library's video tokenizer (`autocut rqvae train --modality video`). See docs/evaluation.md.",
    )
    p.add_argument("--split", default="test", choices=["test", "val"], help="held-out split scored (default test)")
    p.add_argument(
        "--levels",
        default=_PROBE_LEVELS,
        metavar="L,L,...",
        help=f"RQ levels whose codes are probed, each in 1..8 (default {_PROBE_LEVELS})",
    )
    p.add_argument(
        "--code-features",
        choices=_PROBE_CODE_FEATURES,
        default="onehot",
        help="codes as a one-hot bag of the first L levels' tokens (default; what the LM reads) or as the "
        "partial reconstruction (sum of the first L codebook vectors)",
    )
    p.add_argument(
        "--max-frames",
        type=int,
        default=None,
        metavar="N",
        help="probe about N frames (whole shots, train and held-out split in proportion) for a smoke run "
        "(default: all)",
    )
    p.add_argument(
        "--max-iter", type=int, default=300, metavar="N", help="lbfgs iterations per probe at most (default 300)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the --max-frames subsample (default 0)")
    p.add_argument("--threads", type=int, default=1, metavar="N", help="torch CPU threads for encoding (default 1)")
    p.add_argument(
        "--out", type=Path, default=None, metavar="DIR", help="output directory (default <library>/eval/probe)"
    )
    p.set_defaults(func=run_probe)


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
        n_boot=args.n_boot,
        bootstrap_seed=args.bootstrap_seed,
        baseline=args.baseline,
        jobs=args.jobs,
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


def _levels(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise ConfigError(f"--levels must be comma-separated integers, got {text!r}") from None
    if not levels or any(not 1 <= lv <= 8 for lv in levels):
        raise ConfigError(f"--levels must list levels in 1..8, got {text!r}")
    return tuple(sorted(set(levels)))


def run_probe(args: argparse.Namespace) -> int:
    levels = _levels(args.levels)
    if args.max_frames is not None and args.max_frames < 1:
        raise ConfigError(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.max_iter < 1:
        raise ConfigError(f"--max-iter must be >= 1, got {args.max_iter}")
    if args.threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {args.threads}")
    from autocut.demo_world.manifest import load_manifest

    load_manifest(args.library)  # a clear error before the heavy imports when there is no world
    import torch

    from autocut.evaluation.probe import probe_library, write_probe

    torch.set_num_threads(args.threads)
    last = [0.0]

    def progress(done: int, total: int, what: str) -> None:
        now = time.perf_counter()
        if done == total or now - last[0] >= 2.0:
            last[0] = now
            print(f"probe {done}/{total} {what}", file=sys.stderr, flush=True)

    result = probe_library(
        args.library,
        split=args.split,
        levels=levels,
        code_features_mode=args.code_features,
        max_frames=args.max_frames,
        max_iter=args.max_iter,
        seed=args.seed,
        progress=progress,
    )
    out = args.out if args.out is not None else Path(args.library) / "eval" / "probe"
    paths = write_probe(result, out)
    print(result.to_text())
    print(f"probe finished in {result.seconds:.1f} s")
    for p in paths:
        print(f"wrote {p}")
    return 0
