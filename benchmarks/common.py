"""Shared helpers for benchmarks: a cache dir for generated inputs, peak RSS, a figures printer."""

from __future__ import annotations

import resource
import subprocess
from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache"


def cache_dir() -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    return CACHE


def peak_rss_mb(children: bool = False) -> float:
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024.0


def make_1080p30(path: Path, duration_s: float = 60.0) -> Path:
    """A 1080p30 H.264 file made of real packaged footage (scaled), cached."""
    if path.exists():
        return path
    from autocut.library.samples import sample_videos

    vids = [v for v in sample_videos() if v.suffix in (".mp4", ".avi")][:6]
    args: list[str] = []
    for v in vids:
        args += ["-stream_loop", "-1", "-t", str(duration_s / len(vids)), "-i", str(v)]
    n = len(vids)
    graph = "".join(
        f"[{i}:v]scale=1920:1080:force_original_aspect_ratio=increase,crop=1920:1080,fps=30,"
        f"format=yuv420p,setsar=1[v{i}];"
        for i in range(n)
    )
    graph += "".join(f"[v{i}]" for i in range(n)) + f"concat=n={n}:v=1:a=0[o]"
    tmp = path.with_suffix(".tmp.mp4")
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-y",
            *args,
            "-filter_complex",
            graph,
            "-map",
            "[o]",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-crf",
            "20",
            "-g",
            "60",
            str(tmp),
        ],
        check=True,
    )
    tmp.replace(path)
    return path


def print_table(title: str, rows: list[tuple[str, str]]) -> None:
    print(f"\n== {title}")
    w = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"  {k.ljust(w)}  {v}")
