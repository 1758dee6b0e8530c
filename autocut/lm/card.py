"""The compact planner's model card gate (no heavy imports: the planner registry reads it).

`lm_beats_heuristic` reads a held-out check recorded by `autocut.lm.compact_heldout.heldout_check`: the LM wins
only when its paired difference to the heuristic on role-equivalent selection precision is resolved above
zero (the 95 % interval's lower end > 0) and no headline metric is resolved worse.
"""

from __future__ import annotations

from typing import Any

__all__ = ["GATE_METRIC", "HEADLINE", "lm_beats_heuristic"]

GATE_METRIC = "precision_role"
# What the check reports (and what must not be resolved worse for the LM to win).
HEADLINE = ("precision_role", "pairwise_script_role", "pairwise_roles", "bgm_mood")


def lm_beats_heuristic(check: dict[str, Any] | None) -> bool:
    """True when a recorded held-out check says the LM won (see the module docstring)."""
    if not check or not isinstance(check.get("metrics"), dict):
        return False
    gate = (check["metrics"].get(GATE_METRIC) or {}).get("diff")
    if not gate or gate.get("lo") is None or not gate["lo"] > 0:
        return False
    for key in HEADLINE:
        d = (check["metrics"].get(key) or {}).get("diff")
        if d and d.get("verdict") == "worse":
            return False
    return True
