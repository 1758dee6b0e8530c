"""The demo world's manifest, `<library>/world/world.json`: where it lives and how to read it.

`autocut.demo_world.build` writes it last, when the world is complete; `stats`, `sheet` and the
demo read it. Its fields are described in docs/demo_world.md ("The manifest").
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from autocut.demo_world.config import WORLD_FORMAT_VERSION
from autocut.errors import CatalogError
from autocut.library.layout import LibraryLayout

__all__ = ["MANIFEST_FORMAT", "load_manifest", "manifest_path"]

MANIFEST_FORMAT = "autocut-demo-world"


def manifest_path(library: Path) -> Path:
    return LibraryLayout(library).world_manifest


def load_manifest(library: str | os.PathLike[str]) -> dict:
    """The world's manifest (`<library>/world/world.json`); CatalogError if there is no world."""
    p = manifest_path(Path(library).resolve())
    if not p.exists():
        raise CatalogError(f"no demo world in {Path(library).resolve()} (run `autocut demo-world build`)")
    data = json.loads(p.read_text())
    if data.get("format") != MANIFEST_FORMAT or data.get("version") != WORLD_FORMAT_VERSION:
        raise CatalogError(f"{p}: not a demo-world manifest of version {WORLD_FORMAT_VERSION}")
    return data
