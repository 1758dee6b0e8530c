"""Generated media fixtures (ffmpeg lavfi), so no binary blobs are committed."""

from __future__ import annotations

import subprocess
from pathlib import Path


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def make_video(
    path: Path,
    *,
    duration_s: float = 3.0,
    size: str = "320x240",
    rate: int = 25,
    src: str = "testsrc2",
    pix_fmt: str = "yuv420p",
    codec: str = "libx264",
    audio: bool = False,
    extra: tuple[str, ...] = (),
) -> Path:
    args = ["-f", "lavfi", "-t", str(duration_s), "-i", f"{src}=size={size}:rate={rate}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={duration_s}"]
    args += ["-c:v", codec, "-pix_fmt", pix_fmt]
    if codec == "libx264":
        args += ["-preset", "ultrafast"]
    if audio:
        args += ["-c:a", "aac", "-shortest"]
    ffmpeg(*args, *extra, str(path))
    return path


def make_shots(path: Path, shots: list[tuple[str, float]], *, size: str = "320x240", rate: int = 25) -> Path:
    """A video of hard cuts between distinct shots; each shot is a lavfi source name or a colour name."""
    sources = {"testsrc2", "mandelbrot", "smptebars", "rgbtestsrc", "testsrc", "yuvtestsrc"}
    args: list[str] = []
    for kind, dur in shots:
        spec = f"{kind}=size={size}:rate={rate}" if kind in sources else f"color=c={kind}:size={size}:rate={rate}"
        args += ["-f", "lavfi", "-t", str(dur), "-i", spec]
    n = len(shots)
    graph = "".join(f"[{i}:v]format=yuv420p,setsar=1[v{i}];" for i in range(n))
    graph += "".join(f"[v{i}]" for i in range(n)) + f"concat=n={n}:v=1:a=0[out]"
    ffmpeg(
        *args,
        "-filter_complex",
        graph,
        "-map",
        "[out]",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        str(path),
    )
    return path


def make_audio(path: Path, *, duration_s: float = 12.0, freq: int = 440) -> Path:
    ffmpeg("-f", "lavfi", "-i", f"sine=frequency={freq}:duration={duration_s}", str(path))
    return path
