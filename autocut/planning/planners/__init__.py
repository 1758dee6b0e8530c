"""Planners behind one interface: the baselines now, the token LM when a trained model exists."""

from autocut.planning.planners.base import (
    PLANNERS,
    Decision,
    Planner,
    PlanningTask,
    check_decision,
    default_planner,
    get_planner,
    select_under_budget,
)
from autocut.planning.planners.heuristic import HeuristicPlanner, ReferenceStats, reference_stats
from autocut.planning.planners.random import RandomPlanner

__all__ = [
    "PLANNERS",
    "Decision",
    "HeuristicPlanner",
    "Planner",
    "PlanningTask",
    "RandomPlanner",
    "ReferenceStats",
    "check_decision",
    "default_planner",
    "get_planner",
    "reference_stats",
    "select_under_budget",
]
