"""What `make demo` builds and how long it may train: `DemoConfig`, and the stages `--force` can redo."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from autocut.library.layout import LibraryLayout

__all__ = ["FORCEABLE", "DemoConfig"]

# Stages `--force` can redo (the world builder has its own cache: delete the library to rebuild it).
FORCEABLE = ("rqvae", "planner", "indexes")


@dataclass(frozen=True)
class DemoConfig:
    """What the demo builds and how long each training stage may run (wall-clock budgets)."""

    library: Path
    world_size: str = "medium"
    rqvae_budget_s: float = 180.0  # per modality; the full world's paper preset takes ~40 s + ~25 s
    planner_budget_s: float = 600.0  # the compact planner's training (its held-out check comes on top)
    threads: int | None = None  # torch threads for training (None: torch's default)
    product_id: str | None = None  # held-out product to edit (None: the first test product)
    resolution: int = 1080  # short side of the output (1080 -> 1080x1920, the API's default)
    planner: str | None = None  # None = the server's default ("auto")
    job_timeout_s: float = 1800.0
    force: frozenset[str] = frozenset()

    @property
    def demo_dir(self) -> Path:
        return LibraryLayout(self.library).demo_dir
