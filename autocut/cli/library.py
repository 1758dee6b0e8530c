"""`autocut library stats|refit-pca`."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("library", help="inspect or maintain the material library")
    lsub = p.add_subparsers(dest="library_command", metavar="ACTION")
    lsub.required = True
    s = lsub.add_parser("stats", help="print a summary of the library")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=stats)
    r = lsub.add_parser(
        "refit-pca",
        help="refit the 128-d PCA on this library's own frames (bumps the PCA "
        "version: indexes, RQ-VAEs and LMs built on the old one must be rebuilt)",
    )
    r.add_argument(
        "--min-frames", type=int, default=2000, help="refuse to refit on fewer frames than this (default 2000)"
    )
    r.set_defaults(func=refit)


def stats(args: argparse.Namespace) -> int:
    from autocut.library.catalog import Catalog

    with Catalog.open(args.library, create=False) as cat:
        st = cat.stats()
        failures = cat.failures()
    if args.json:
        print(json.dumps(asdict(st), indent=2))
    else:
        print(st.to_text())
        for path, reason in failures[:20]:
            print(f"  failed: {path}: {reason}")
    return 0


def refit(args: argparse.Namespace) -> int:
    from autocut.library.catalog import Catalog
    from autocut.library.pca import refit_library_pca

    with Catalog.open(args.library, create=False, writable=True) as cat:
        old = cat.pca_version
        new = refit_library_pca(cat, min_frames=args.min_frames)
    print(f"PCA refitted: {old or '(none)'} -> {new}")
    print("rebuild what was built on the old version: `autocut index rebuild --kind all`, RQ-VAE and LM training")
    return 0
