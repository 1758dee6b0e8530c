"""`autocut index rebuild|status`: the library's FAISS indexes (logic in `autocut.library.indexing`)."""

from __future__ import annotations

import argparse
import sys

# Mirrors autocut.library.indexing.INDEX_KINDS, which imports FAISS: building the parser stays light
# (tests/test_cli_startup.py checks the two agree).
INDEX_KINDS = ("frames", "clips", "bgm")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="FAISS indexes over the material library")
    isub = p.add_subparsers(dest="index_command", metavar="ACTION")
    isub.required = True
    r = isub.add_parser(
        "rebuild", help="rebuild indexes from the catalog; serving processes pick up the new index atomically"
    )
    r.add_argument("--kind", choices=[*INDEX_KINDS, "all"], default="all", help="which index (default: all)")
    r.add_argument(
        "--lock-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="give up if another writer holds an index longer than this (default: wait)",
    )
    r.set_defaults(func=rebuild)
    s = isub.add_parser("status", help="print what each published index holds")
    s.set_defaults(func=status)


def rebuild(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from autocut.library.indexing import rebuild_indexes

    kinds = list(INDEX_KINDS) if args.kind == "all" else [args.kind]
    bars: dict[str, tqdm] = {}

    def progress(kind: str, done: int, total: int) -> None:
        bar = bars.get(kind)
        if bar is None:
            bar = bars[kind] = tqdm(total=total, desc=f"{kind} index", unit="vec", file=sys.stderr)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()  # one finished bar per kind, not a stack of open ones

    try:
        summary = rebuild_indexes(args.library, kinds, progress=progress, lock_timeout_s=args.lock_timeout)
    finally:
        for bar in bars.values():
            bar.close()
    print(summary.to_text())
    return 0


def status(args: argparse.Namespace) -> int:
    from autocut.library.indexing import index_status

    print(f"indexes of {args.library}")
    for st in index_status(args.library):
        print(st.to_text())
    return 0
