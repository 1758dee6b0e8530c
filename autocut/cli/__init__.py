"""The `autocut` command line: thin argument parsing over library functions.

Each sub-command family lives in its own module exposing ``register(subparsers)``;
the module sets ``func`` on its parser, which receives the parsed namespace.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from pathlib import Path

from autocut.errors import AutoCutError

__all__ = ["build_parser", "main"]

# Sub-command modules, in --help order. Add a module here to add a command family.
_COMMAND_MODULES = [
    "autocut.cli.ingest",
    "autocut.cli.library",
    "autocut.cli.index",
    "autocut.cli.render",
    "autocut.cli.plan",
    "autocut.cli.train",
    "autocut.cli.rqvae",
    "autocut.cli.world",
    "autocut.cli.eval",
]


def default_library_dir() -> Path:
    """Library location: $AUTOCUT_LIBRARY, else ./var/library (the entry point's settings default)."""
    return Path(os.environ.get("AUTOCUT_LIBRARY", "var/library")).resolve()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autocut",
        description="AutoCut: turn product info and raw footage into short ad videos.",
    )
    parser.add_argument(
        "--library",
        type=Path,
        default=None,
        metavar="DIR",
        help="material library directory (default: $AUTOCUT_LIBRARY or ./var/library)",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.library is None:
        args.library = default_library_dir()
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        rc = args.func(args)
    except AutoCutError as exc:
        print(f"autocut: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("autocut: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
