"""`autocut render PLAN.json -o OUT.mp4`: render an EditPlan to a finished MP4 with sidecars."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from autocut.errors import PlanError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "render",
        help="render an edit plan (JSON) to an MP4",
        description="Render an EditPlan to H.264/AAC MP4 in one ffmpeg pass, with .srt, "
        ".plan.json and .otio sidecars next to it. Relative source paths in the "
        "plan are resolved against --library.",
    )
    p.add_argument("plan", type=Path, metavar="PLAN.json", help="edit plan (as produced by the planner or the API)")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.mp4", help="output video path")
    p.add_argument("--no-sidecars", action="store_true", help="do not write .srt/.plan.json/.otio")
    p.add_argument("--threads", type=int, default=None, help="ffmpeg threads (default: ffmpeg's choice)")
    p.add_argument(
        "--preset",
        metavar="NAME",
        default=None,
        help="render for a platform preset instead of the plan's output size: "
        "tiktok, reels, shorts, feed-square, feed-portrait or youtube (size, frame rate, caption safe area, "
        "loudness target)",
    )
    p.add_argument(
        "--no-selfcheck",
        action="store_true",
        help="skip the self-check of the output (black/frozen picture, silence under the voice, loudness, "
        "durations, every segment present; a failed check otherwise fails the render)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError
    from tqdm import tqdm

    from autocut.render import render
    from autocut.render.outputs import apply_preset
    from autocut.types import EditPlan

    try:
        plan = EditPlan.model_validate_json(args.plan.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PlanError(f"cannot read plan {args.plan}: {exc.strerror}") from None
    except ValidationError as exc:
        raise PlanError(f"{args.plan} is not a valid edit plan:\n{exc}") from None
    if args.preset is not None:
        plan = apply_preset(plan, args.preset)
    bar = tqdm(
        total=100,
        unit="%",
        desc="render",
        disable=None,
        file=sys.stderr,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}",
    )

    def progress(x: float) -> None:
        bar.update(int(round(x * 100)) - bar.n)

    result = render(
        plan,
        args.output,
        library_root=args.library,
        on_progress=progress,
        sidecars=not args.no_sidecars,
        threads=args.threads,
        selfcheck=not args.no_selfcheck,
    )
    bar.close()
    print(f"{result.output_path} ({result.duration_s:.2f} s, {result.n_frames} frames) in {result.wall_s:.1f} s")
    if result.selfcheck is not None:
        warnings = result.selfcheck.to_dict()["warnings"]
        print(f"self-check: {result.selfcheck.status.value}" + "".join(f"\n  warning: {w}" for w in warnings))
    return 0
