"""The main job (`make demo`): from nothing to a finished ad, made by the real service over HTTP.

Stages, each timed, and each skipped when its output is current (it prints "cached" and why):

1. demo world: `autocut demo-world build --size medium` (generated products, reels, reference ads, BGM);
2. RQ-VAE tokenizers, video and audio (`autocut rqvae train`, capped by a time budget);
3. the compact planner (`autocut train compact`): a small Qwen3-architecture LM trained from scratch
   on the world's train-split reference ads (clip codes in the prompt, one decision per token) for a
   time budget, then its held-out check against the heuristic on the val split (printed, and
   recorded in its model card, `models/lm/compact/model/compact_card.json`);
4. FAISS indexes (`autocut index rebuild`);
5. the service: `python -m server all` (local redis-server, the API, two workers; the single-
   machine defaults) as a child process on free ports, with a fresh secret and admin key;
6. one edit over HTTP: a held-out (test-split) product, its reel as the pool, its product photo
   uploaded, and the sentences of one of its reference ads as the script (script-driven, so
   the planner selects, orders and picks music, and its picks can be compared with the
   reference); the job is polled until done and its results are downloaded over HTTP into
   `<library>/demo/output/<product>-<job>/`;
7. the service is stopped (also on Ctrl-C, `kill` or an error).

Then it prints where the MP4 and its sidecars (SRT, plan JSON, OTIO) are, a paragraph on what the
plan did, and the stage timings (also written to `<library>/demo/last_run.json`).

An output is current when it exists, fits the library (PCA version, encoder, vector counts) and
was made after the outputs it was made from (like make). Budgets do not make a model stale: a
model trained with another budget is kept; `--force STAGE` redoes a stage.
The planner is the server's default, "auto": the compact planner only when the held-out check
recorded in its model card says it beat the heuristic (role-equivalent selection precision
resolved better, no headline metric resolved worse), else the heuristic; the plan's notes
(`planner_choice`) say why.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path

from autocut.demo.config import FORCEABLE, DemoConfig
from autocut.demo.stages import run_demo
from autocut.errors import AutoCutError
from autocut.render.outputs import RESULT_FILES

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    d = DemoConfig(library=Path("var/library"))
    ap = argparse.ArgumentParser(
        prog="python -m autocut.demo",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]),
    )
    ap.add_argument("--library", type=Path, default=d.library, help="library directory (default var/library)")
    ap.add_argument(
        "--world-size",
        choices=("small", "medium", "full"),
        default=d.world_size,
        help="demo world size: medium (64 products, about 15 min to build here), full (160 "
        "products, about 34 min; what the evaluation uses) or small (8 products, ~30 s; too "
        "little data for the LM to learn anything) (default medium)",
    )
    ap.add_argument(
        "--rqvae-budget-s",
        type=float,
        default=d.rqvae_budget_s,
        metavar="S",
        help=f"time cap per RQ-VAE tokenizer (default {d.rqvae_budget_s:.0f})",
    )
    ap.add_argument(
        "--planner-budget-s",
        type=float,
        default=d.planner_budget_s,
        metavar="S",
        help=f"compact planner training time budget; its held-out check runs after it "
        f"(default {d.planner_budget_s:.0f})",
    )
    ap.add_argument("--threads", type=int, default=None, help="torch threads for training (default: torch's)")
    ap.add_argument("--product", default=None, metavar="ID", help="test-split product to edit (default: the first)")
    ap.add_argument(
        "--resolution", type=int, default=d.resolution, help=f"short side of the ad in pixels (default {d.resolution})"
    )
    ap.add_argument(
        "--planner",
        default=None,
        help="planner for the edit (default: the server's, 'auto' = the compact planner if its recorded "
        "held-out check beat the heuristic, else the heuristic)",
    )
    ap.add_argument(
        "--force",
        action="append",
        default=[],
        choices=FORCEABLE,
        metavar="STAGE",
        help=f"redo a stage even if its output is current ({', '.join(FORCEABLE)}; repeatable); "
        "a compact planner it replaces is kept as <model dir>.previous",
    )
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s: %(message)s", datefmt="%H:%M:%S"
    )
    cfg = DemoConfig(
        library=args.library.resolve(),
        world_size=args.world_size,
        rqvae_budget_s=args.rqvae_budget_s,
        planner_budget_s=args.planner_budget_s,
        threads=args.threads,
        product_id=args.product,
        resolution=args.resolution,
        planner=args.planner,
        force=frozenset(args.force),
    )
    print(f"AutoCut demo: library {cfg.library}")

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    # Ctrl-C and `kill` both unwind through the stages, so the service is always stopped.
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    t0 = time.perf_counter()
    try:
        report = run_demo(cfg)
    except KeyboardInterrupt:
        print(
            "\ndemo interrupted; the service was stopped. Run it again to continue: finished stages are cached.",
            file=sys.stderr,
        )
        return 130
    except AutoCutError as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        return 2
    print("\n" + "=" * 78)
    o = report.outputs
    print(f"the ad (job {o.get('job_id')}, planner {o.get('planner')}):")
    for artifact in RESULT_FILES:
        print(f"  {artifact:<10} {o.get(artifact)}")
    print("\n" + report.summary + "\n")
    print(report.table())
    print(f"\ndemo finished in {time.perf_counter() - t0:.1f} s (server log: {cfg.demo_dir / 'server.log'})")
    return 0
