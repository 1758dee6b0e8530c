"""Ingest speed: seconds of 1080p30 H.264 footage per wall second, vs decode-only sampling.

Target: >= 5x real time, and >= 0.5 of the decode-only rate measured in the same run.
Run: .venv/bin/python -m benchmarks.ingest [--quick]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.common import cache_dir, make_1080p30, print_table


def decode_only_s(path: Path) -> float:
    """The same 1 fps sampling ffmpeg does during ingest, output discarded (no embedding, no storage)."""
    t0 = time.perf_counter()
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-threads",
            "2",
            "-i",
            str(path),
            "-vf",
            "fps=1:round=near,scale=224:224:force_original_aspect_ratio=increase:flags=bilinear,"
            "crop=224:224,format=rgb24",
            "-f",
            "null",
            "-",
        ],
        check=True,
    )
    return time.perf_counter() - t0


def main(quick: bool = False) -> dict:
    from autocut.encoders import load_frame_encoder
    from autocut.library.ingest import IngestConfig, ingest_paths

    dur = 20.0 if quick else 60.0
    src = make_1080p30(cache_dir() / f"bench_1080p30_{int(dur)}s.mp4", dur)
    _ = load_frame_encoder("efficientnet-lite0").model  # load the weights now: model load is not ingest throughput
    decode = min(decode_only_s(src) for _ in range(2))
    walls = []
    for _ in range(2):
        lib = Path(tempfile.mkdtemp(prefix="bench_lib_"))
        try:
            # Warm the model in this library's process, then time the ingest of the file itself.
            t0 = time.perf_counter()
            rep = ingest_paths(lib, [src], kind="footage", config=IngestConfig())
            walls.append(time.perf_counter() - t0)
            assert rep.added, rep.summary()
        finally:
            shutil.rmtree(lib, ignore_errors=True)
    wall = min(walls)
    figures = {
        "footage_s": dur,
        "decode_only_wall_s": decode,
        "ingest_wall_s": wall,
        "ingest_x_realtime": dur / wall,
        "decode_only_x_realtime": dur / decode,
        "ingest_vs_decode_only": decode / wall,
    }
    print_table(
        "ingest (1080p30 H.264, efficientnet-lite0, 1 fps + 5 fps thumbnails)",
        [
            ("footage", f"{dur:.0f} s"),
            ("decode-only sampling", f"{decode:.2f} s  ({dur / decode:.1f}x real time)"),
            ("ingest", f"{wall:.2f} s  ({dur / wall:.1f}x real time)   target >= 5x"),
            ("ingest rate / decode-only rate", f"{decode / wall:.2f}   target >= 0.5"),
        ],
    )
    return figures


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    main(ap.parse_args().quick)
