"""Planner specs as `autocut eval --planners` takes them: "name", "name:key=value,..." or
"label=name:key=value,..." -> `PlannerSpec` (registry name, constructor options, report label)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from autocut.errors import ConfigError
from autocut.planning.planners.base import Planner, get_planner

__all__ = ["PlannerSpec", "parse_planner_spec"]


def _parse_value(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "yes"):
        return True
    if low in ("false", "no"):
        return False
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


@dataclass(frozen=True)
class PlannerSpec:
    """A planner to evaluate: registry name, constructor options, and the label the report shows."""

    label: str
    name: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The spec as written on the command line (label omitted when it is the default)."""
        opts = ",".join(f"{k}={v}" for k, v in self.options.items())
        base = f"{self.name}:{opts}" if opts else self.name
        return base if self.label == base else f"{self.label}={base}"

    def build(self, **extra: Any) -> Planner:
        """The planner object (`get_planner(name, **options)`); unknown names and options are clear errors."""
        kw = {**self.options, **extra}
        if not kw:
            return get_planner(self.name)
        try:
            return get_planner(self.name, **kw)
        except TypeError as exc:
            raise ConfigError(f"planner {self.name!r} does not take options {sorted(kw)}: {exc}") from None


def parse_planner_spec(text: str) -> PlannerSpec:
    """ "name", "name:key=value,key=value" or "label=name:key=value" -> `PlannerSpec`.

    Values are read as bool/None/int/float when they look like one, else kept as text (so a value
    cannot contain a comma). The label defaults to the spec without the label part.
    """
    t = text.strip()
    if not t:
        raise ConfigError("empty planner spec")
    label = None
    head, sep, rest = t.partition(":")
    if "=" in head:  # "label=name[:opts]"
        label, _, head = head.partition("=")
        label = label.strip()
        if not label:
            raise ConfigError(f"planner spec {text!r}: empty label before '='")
    name = head.strip()
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ConfigError(f"planner spec {text!r}: {name!r} is not a planner name")
    options: dict[str, Any] = {}
    if sep:
        for part in rest.split(","):
            if not part.strip():
                continue
            key, eq, value = part.partition("=")
            key = key.strip()
            if not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise ConfigError(f"planner spec {text!r}: option {part!r} is not key=value")
            if key in options:
                raise ConfigError(f"planner spec {text!r}: option {key!r} given twice")
            options[key] = _parse_value(value.strip())
    opts = ",".join(f"{k}={v}" for k, v in options.items())
    return PlannerSpec(label or (f"{name}:{opts}" if opts else name), name, options)
