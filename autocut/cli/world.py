"""`autocut demo-world build|stats|sheet`: the generated demo ad world (docs/demo_world.md)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo-world", help="build and inspect the generated demo ad world")
    wsub = p.add_subparsers(dest="world_command", metavar="ACTION")
    wsub.required = True
    b = wsub.add_parser(
        "build",
        help="generate the world's media, ingest it and store products and reference ads "
        "(cached: a rerun with the same options does nothing)",
    )
    b.add_argument(
        "--size",
        choices=("small", "medium", "full"),
        default="full",
        help="small: 8 products for tests (< 2 min); medium: 64 products (what `make demo` builds); "
        "full: 160 products, >= 10k frames, for training and evaluation (default)",
    )
    b.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    b.add_argument("--jobs", type=int, default=2, help="parallel ffmpeg processes (default 2)")
    b.add_argument("--torch-threads", type=int, default=1, help="encoder threads during ingest (default 1)")
    b.set_defaults(func=build)
    s = wsub.add_parser("stats", help="learnability statistics on a split (role classifier, similarity heuristic)")
    s.add_argument("--split", choices=("test", "val"), default="test")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=stats)
    c = wsub.add_parser("sheet", help="write contact sheets (PNG grids of frames per product and per role)")
    c.add_argument(
        "--out",
        type=Path,
        default=Path("docs/contact_sheet.png"),
        help="per-product sheet; the per-role sheet goes next to it as *_roles.png",
    )
    c.add_argument(
        "--split",
        choices=("train", "val", "test"),
        default="test",
        help="split the per-product sheet draws from (default test)",
    )
    c.set_defaults(func=sheet)


def build(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from autocut.demo_world.build import build_world
    from autocut.demo_world.config import WorldConfig

    bars: dict[str, tqdm] = {}

    def progress(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=total, desc=stage, unit="file", file=sys.stderr, leave=True)
        bar.n = done
        bar.refresh()

    cfg = replace(WorldConfig.preset(args.size, seed=args.seed, jobs=args.jobs), torch_threads=args.torch_threads)
    t0 = time.perf_counter()
    summary = build_world(args.library, cfg, progress=progress)
    for bar in bars.values():
        bar.close()
    print(summary.to_text())
    print(f"build finished in {time.perf_counter() - t0:.1f} s")
    return 0


def stats(args: argparse.Namespace) -> int:
    from autocut.demo_world.stats import world_stats

    st = world_stats(args.library, split=args.split)
    print(json.dumps(st.to_dict(), indent=2) if args.json else st.to_text())
    return 0


def sheet(args: argparse.Namespace) -> int:
    from autocut.demo_world.sheet import contact_sheet_by_product, contact_sheet_by_role

    a = contact_sheet_by_product(args.library, args.out, split=args.split)
    b = contact_sheet_by_role(args.library, args.out.with_name(args.out.stem + "_roles" + args.out.suffix))
    print(f"wrote {a} and {b}")
    return 0
