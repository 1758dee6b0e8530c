"""`autocut plan REQUEST.json [--planner NAME] [--model-dir DIR] -o PLAN.json` (logic in `autocut.planning`)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

from autocut.errors import PlanError
from autocut.files import write_text_atomic

# Mirrors CandidateConfig.max_frames, so building the parser imports neither the candidates module nor
# FAISS behind it (tests/test_cli_startup.py checks the two agree).
DEFAULT_MAX_FRAMES = 8


class _PlannerNames:
    """`--planner` choices, read from `autocut.planning.planners.PLANNERS` only when argparse checks a value or
    formats `autocut plan --help` (the planners package loads numpy and the catalog; `autocut --help` need not)."""

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    @staticmethod
    def _names() -> list[str]:
        from autocut.planning.planners import PLANNERS

        return sorted(PLANNERS)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plan",
        help="plan an edit (clips, order, script, BGM) from a request JSON",
        description="Turn a PlanRequest (product info, clip pool, optional script) into EditPlan "
        "JSON the renderer takes. With n_variants > 1 the extra plans are written "
        "next to the output as NAME.v2.json, NAME.v3.json, ...",
    )
    p.add_argument("request", type=Path, metavar="REQUEST.json", help="plan request (PlanRequest JSON)")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="PLAN.json", help="where to write the plan")
    p.add_argument(
        "--planner",
        choices=_PlannerNames(),
        default=None,
        help="planner (default: what the server's `auto` picks: compact when the library's compact planner "
        "(models/lm/compact/model) won its recorded held-out check against the heuristic, else heuristic)",
    )
    p.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="the LM for the compact, token and caption-sft planners (default: the library's own, "
        "models/lm/compact/model, models/lm/sft/model and models/lm/caption_sft/model)",
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=None,
        metavar="T",
        help="sampling temperature of LM planners for variants after the first (default 0.9)",
    )
    p.add_argument(
        "--mode",
        choices=["by_frame", "by_clip"],
        default="by_frame",
        help="assemble by retrieved frame + stored length, or by retrieved visual clip",
    )
    p.add_argument(
        "--split",
        choices=["clips", "whole"],
        default="clips",
        help="cut pool videos into visual clips (default) or keep each whole",
    )
    p.add_argument(
        "--max-frames",
        type=int,
        default=DEFAULT_MAX_FRAMES,
        metavar="K",
        help=f"frames shown per candidate clip (default {DEFAULT_MAX_FRAMES})",
    )
    p.add_argument(
        "--frame-weights",
        type=Path,
        default=None,
        metavar="DIR",
        help="local frame-encoder weights (resnet50 libraries), to embed the product photo",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from autocut.evaluation.variants import variant_distinctness
    from autocut.planning import PlanOptions, plan_edit
    from autocut.planning.candidates import CandidateConfig
    from autocut.types import PlanRequest

    try:
        request = PlanRequest.model_validate_json(args.request.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PlanError(f"cannot read request {args.request}: {exc.strerror}") from None
    except ValidationError as exc:
        raise PlanError(f"{args.request} is not a valid plan request:\n{exc}") from None
    options = PlanOptions(
        segment_mode=args.mode,
        frame_weights=args.frame_weights,
        candidates=CandidateConfig(split=args.split, max_frames=args.max_frames),
    )
    from autocut.planning.planners import default_planner, get_planner

    name = args.planner or default_planner(args.library)
    lm_options: dict[str, object] = {}
    if args.model_dir is not None:
        lm_options["model_dir"] = args.model_dir
    if args.temperature is not None:
        lm_options["temperature"] = args.temperature
    if lm_options and name not in ("compact", "token", "caption", "caption-sft"):
        raise PlanError(
            "--model-dir and --temperature apply to the LM planners (compact, token, caption, caption-sft), "
            f"not to {name!r}"
        )
    if args.model_dir is not None and not (args.model_dir / "config.json").is_file():
        raise PlanError(
            f"--model-dir {args.model_dir} holds no model (no config.json): pass the `model` directory "
            "of a training run, e.g. RUN_DIR/model"
        )
    plans = plan_edit(args.library, request, get_planner(name, **lm_options), options=options)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    for k, plan in enumerate(plans):
        out = args.output if k == 0 else args.output.with_name(f"{args.output.stem}.v{k + 1}{args.output.suffix}")
        write_text_atomic(out, plan.model_dump_json(indent=2))
        print(
            f"{out}: {len(plan.segments)} clips, {plan.duration_s:.1f} s, "
            f"BGM {plan.bgm.audio_id if plan.bgm else 'none'}"
        )
    if len(plans) > 1:
        print(variant_distinctness(plans).to_text())
    return 0
