"""Reel encoding: one ffmpeg process composes every shot of a product (background, layout PNG,
animated product sprite) and concatenates them into one reel, the product's raw footage.

`build_reel_command` returns the argument list; `run_reel` runs it and moves the file into place.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from autocut.demo_world.frame import PHOTO_CACHE_H, H, W
from autocut.demo_world.media import run_ffmpeg
from autocut.demo_world.overlays import ShotLayers
from autocut.demo_world.shots import Background, ShotSpec
from autocut.errors import ConfigError
from autocut.files import atomic_path

__all__ = ["build_reel_command", "run_reel"]


def _background_chain(bg: Background, in_idx: int, n_frames: int, fps: float) -> str:
    """Filter chain turning input `in_idx` into a W x H, fps, n_frames background stream."""
    if bg.kind == "photo":
        cx, z0, z1, px0, py0, px1, py1 = bg.params
        cw = int(PHOTO_CACHE_H * W / H)  # 432: the portrait window cut from the cached photo
        last = max(n_frames - 1, 1)
        z = f"{z0}+({z1}-{z0})*on/{last}"
        x = f"(iw-iw/zoom)*({px0}+({px1}-{px0})*on/{last})"
        y = f"(ih-ih/zoom)*({py0}+({py1}-{py0})*on/{last})"
        chain = (
            f"[{in_idx}:v]crop={cw}:{PHOTO_CACHE_H}:(iw-{cw})*{cx}:0,"
            f"zoompan=z='{z}':x='{x}':y='{y}':d={n_frames}:s={W}x{H}:fps={fps}"
        )
    else:
        _start, a, b, flip = bg.params
        dur = n_frames / fps
        chain = f"[{in_idx}:v]fps={fps},crop={W}:{H}:x='(iw-{W})*({a}+({b}-{a})*min(t/{dur:.3f},1))':y=0" + (
            ",hflip" if flip else ""
        )
    chain += f",eq=brightness={bg.brightness}:saturation={bg.saturation}"
    if bg.blur:
        chain += ",boxblur=6:1"
    return chain + f",trim=end_frame={n_frames},setpts=PTS-STARTPTS,format=yuv420p"


def build_reel_command(shots: Sequence[tuple[ShotSpec, ShotLayers]], out_path: Path, *, crf: int = 26) -> list[str]:
    """One ffmpeg argument list composing several shots and concatenating them into one reel.

    Each shot contributes its background input (photo or video window), its layout PNG and,
    when present, its product sprite. A reel is a product's raw footage: one source video whose
    shots the ingest's segmentation finds again as clips.
    """
    if not shots:
        raise ConfigError("a reel needs at least one shot")
    fps = shots[0][0].fps
    if any(sp.fps != fps for sp, _ in shots):
        raise ConfigError("all shots of a reel need the same fps")
    args = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-filter_complex_threads", "1"]
    chains: list[str] = []
    n_in = 0
    total_frames = 0
    for k, (spec, layers) in enumerate(shots):
        n_frames = int(round(spec.duration_s * spec.fps))
        total_frames += n_frames
        bg = spec.background
        if bg.kind == "photo":
            args += ["-i", bg.path]
        else:
            args += ["-threads", "1", "-ss", f"{bg.params[0]:.2f}", "-t", f"{spec.duration_s + 1:.2f}", "-i", bg.path]
        bg_idx = n_in
        n_in += 1
        args += ["-i", str(layers.layout)]
        lay_idx = n_in
        n_in += 1
        chain = _background_chain(bg, bg_idx, n_frames, spec.fps) + f"[bg{k}];"
        chain += f"[bg{k}][{lay_idx}:v]overlay=0:0:format=auto"
        if layers.sprite is not None:
            args += ["-i", str(layers.sprite)]
            spr_idx = n_in
            n_in += 1
            chain += f"[l{k}];[l{k}][{spr_idx}:v]overlay=x='{layers.sprite_x}':y='{layers.sprite_y}':format=auto"
        # Same size and SAR on every segment, as concat requires (an fps filter here would drop
        # each shot's last frame at EOF).
        chain += f",format=yuv420p,setsar=1[o{k}]"
        chains.append(chain)
    concat = "".join(f"[o{k}]" for k in range(len(shots))) + f"concat=n={len(shots)}:v=1:a=0[reel]"
    return args + [
        "-filter_complex",
        ";".join(chains + [concat]),
        "-map",
        "[reel]",
        "-an",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-crf",
        str(crf),
        "-threads",
        "1",
        "-r",
        f"{fps}",
        "-frames:v",
        str(total_frames),
        "-pix_fmt",
        "yuv420p",
        "-f",
        "mp4",
        str(out_path),
    ]


def run_reel(shots: Sequence[tuple[ShotSpec, ShotLayers]], out_path: Path, *, crf: int = 26) -> None:
    """Render one reel to `out_path` (written as `<out>.tmp`, renamed into place on success)."""
    with atomic_path(out_path) as tmp:
        run_ffmpeg(build_reel_command(shots, tmp, crf=crf), out_path)
