"""Lazy re-exports for stage packages whose modules import heavy libraries (numpy, FAISS, torch).

A package's `__init__` names its public API in `__all__` and maps each name to the submodule that
defines it; the submodule is imported on first attribute access, so importing one light module of a
stage (`autocut.library.layout`) does not load the whole stage.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, sources: Mapping[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` resolving `name` from `<package>.<sources[name]>` on first use."""

    def __getattr__(name: str) -> Any:
        sub = sources.get(name)
        if sub is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{sub}"), name)

    return __getattr__
