"""Random baseline (docs/method.md, "Metrics"): uniform selection, order and BGM; template script."""

from __future__ import annotations

import numpy as np

from autocut.planning.planners.base import Planner, PlanningTask, select_under_budget

__all__ = ["RandomPlanner"]


class RandomPlanner(Planner):
    """The floor every other planner is compared with."""

    name = "random"

    def select(self, task: PlanningTask, variant: int, attempt: int, rng: np.random.Generator) -> list[int]:
        n = task.n_candidates
        if task.n_select is not None:
            return sorted(int(i) for i in rng.choice(n, size=task.n_select, replace=False))
        return select_under_budget(list(rng.permutation(n)), task.pool.durations_s, task.budget_s)

    def order(
        self, task: PlanningTask, selected: list[int], variant: int, attempt: int, rng: np.random.Generator
    ) -> list[int]:
        return [int(selected[i]) for i in rng.permutation(len(selected))]

    def bgm_query(
        self, task: PlanningTask, order: list[int], sentences: list[str], variant: int, rng: np.random.Generator
    ) -> np.ndarray | None:
        if len(task.bgm_ids) == 0:
            return None
        # A random track's own embedding: grounding retrieves that track (random BGM, uniformly).
        return task.bgm_vectors[int(rng.integers(len(task.bgm_ids)))].copy()
