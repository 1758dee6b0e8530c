"""`make demo`: the main job end to end on the embedded defaults (`python -m autocut.demo --help`).

Builds the generated demo world, trains the tokenizers and the compact planner within time budgets
(and checks the planner against the heuristic on held-out ads), starts the service, sends one edit
over HTTP and prints what came back.

Modules: `config` (what to build, time budgets), `freshness` (when a stage's output is current),
`stages` (the stage runner and stages 1-7), `service` (the server as a child process), `client`
(the edit over HTTP), `edit` (which product and reference ad, and a summary of the plan), `cli`
(the argument parser and `main`).
"""

from typing import TYPE_CHECKING

from autocut._lazy import lazy_exports

if TYPE_CHECKING:
    from autocut.demo.cli import build_parser, main
    from autocut.demo.client import EditOutcome, run_edit
    from autocut.demo.config import FORCEABLE, DemoConfig
    from autocut.demo.edit import EditChoice, choose_edit, summarize_plan
    from autocut.demo.freshness import (
        Freshness,
        compact_freshness,
        index_freshness,
        rqvae_freshness,
        world_made_at,
    )
    from autocut.demo.service import DemoServer
    from autocut.demo.stages import Demo, DemoReport, StageTiming, run_demo

__all__ = [
    "FORCEABLE",
    "Demo",
    "DemoConfig",
    "DemoReport",
    "DemoServer",
    "EditChoice",
    "EditOutcome",
    "Freshness",
    "StageTiming",
    "build_parser",
    "choose_edit",
    "compact_freshness",
    "index_freshness",
    "main",
    "rqvae_freshness",
    "run_demo",
    "run_edit",
    "summarize_plan",
    "world_made_at",
]

_SOURCES = {
    "FORCEABLE": "config",
    "Demo": "stages",
    "DemoConfig": "config",
    "DemoReport": "stages",
    "DemoServer": "service",
    "EditChoice": "edit",
    "EditOutcome": "client",
    "Freshness": "freshness",
    "StageTiming": "stages",
    "build_parser": "cli",
    "choose_edit": "edit",
    "compact_freshness": "freshness",
    "index_freshness": "freshness",
    "main": "cli",
    "rqvae_freshness": "freshness",
    "run_demo": "stages",
    "run_edit": "client",
    "summarize_plan": "edit",
    "world_made_at": "freshness",
}
__getattr__ = lazy_exports(__name__, _SOURCES)
