"""Atomic file writes: write `<name>.tmp` beside the target, then `os.replace` it into place.

A reader never sees a half-written file, and a crash leaves the previous version (or nothing),
never a truncated one. Every on-disk output of the library goes through here.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "write_json_atomic", "write_lines_atomic", "write_text_atomic"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path`, on error it is removed.

    `suffix` is appended to the name (writers that pick a format by extension want e.g. ".tmp.png").
    """
    path = Path(path)
    tmp = path.with_name(path.name + suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str, *, fsync: bool = False) -> Path:
    """Write `text` (UTF-8) to `path` atomically; `fsync` also flushes it to disk before the rename."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def write_json_atomic(path: str | os.PathLike[str], data: Any, *, indent: int | None = 1, default: Any = None) -> Path:
    """Write `data` as JSON (non-ASCII kept as is) to `path` atomically."""
    return write_text_atomic(path, json.dumps(data, ensure_ascii=False, indent=indent, default=default))


def write_lines_atomic(path: str | os.PathLike[str], lines: Iterable[str]) -> int:
    """Write one line per item (newline-terminated), fsynced, atomically; returns the line count."""
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(line)
            f.write("\n")
            n += 1
        f.flush()
        os.fsync(f.fileno())
    return n
