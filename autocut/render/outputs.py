"""The files one render writes: the MP4 and its sidecars (SRT subtitles, plan JSON, OTIO timeline); the
render qualities (`apply_quality`: final, or a fast preview of the same plan); platform presets applied to a
plan (`apply_preset`); segment thumbnails for reviewing a plan before it is rendered (`write_thumbnails`)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Literal

from autocut.types import EditPlan, OutputSpec

__all__ = [
    "PREVIEW_CRF",
    "PREVIEW_SHORT_SIDE",
    "PREVIEW_X264_PRESET",
    "RESULT_FILES",
    "RESULT_SUFFIXES",
    "THUMBNAIL_HEIGHT",
    "RenderQuality",
    "apply_preset",
    "apply_quality",
    "sidecar_paths",
    "thumbnail_name",
    "write_thumbnails",
]

# What one render writes, by the artifact kind the API and the demo name it: file suffixes, and the
# file names a job's result directory uses (`edit.mp4` + sidecars beside it).
RESULT_SUFFIXES = {"video": ".mp4", "subtitles": ".srt", "timeline": ".otio", "plan": ".plan.json"}
RESULT_FILES = {kind: "edit" + suffix for kind, suffix in RESULT_SUFFIXES.items()}

# final: the plan's own output settings. preview: the same plan, the same audio, at a short side of at most
# PREVIEW_SHORT_SIDE px, encoded with x264's fastest preset at a lower quality.
RenderQuality = Literal["final", "preview"]
PREVIEW_SHORT_SIDE = 540
PREVIEW_X264_PRESET = "ultrafast"
PREVIEW_CRF = 30

# Segment thumbnails: JPEG frames this many pixels high.
THUMBNAIL_HEIGHT = 180


def sidecar_paths(out_path: Path) -> dict[str, Path]:
    """Where the SRT, plan JSON and OTIO files go for `out_path`."""
    stem = str(Path(out_path).with_suffix(""))
    return {
        "srt": Path(stem + RESULT_SUFFIXES["subtitles"]),
        "plan": Path(stem + RESULT_SUFFIXES["plan"]),
        "otio": Path(stem + RESULT_SUFFIXES["timeline"]),
    }


def apply_quality(plan: EditPlan, quality: RenderQuality) -> EditPlan:
    """`plan` as rendered at `quality`. "final": unchanged. "preview": a copy whose output is scaled to a short
    side of at most `PREVIEW_SHORT_SIDE` (aspect kept) and encoded with `PREVIEW_X264_PRESET` at CRF
    `PREVIEW_CRF` (or the plan's, if higher); segments, voice, music, subtitles and timing are the plan's."""
    if quality == "final":
        return plan
    if quality != "preview":
        raise ValueError(f"unknown render quality {quality!r} (final or preview)")
    o = plan.output
    short = min(o.width, o.height, PREVIEW_SHORT_SIDE)
    sized = OutputSpec.for_aspect(o.aspect, short_side=short)
    output = OutputSpec.model_validate(
        {
            **o.model_dump(),
            "width": sized.width,
            "height": sized.height,
            "x264_preset": PREVIEW_X264_PRESET,
            "video_crf": max(o.video_crf, PREVIEW_CRF),
        }
    )
    return plan.model_copy(update={"output": output})


def apply_preset(plan: EditPlan, preset: str) -> EditPlan:
    """`plan` for platform `preset` (`autocut.render.presets`): the preset's aspect, size, frame rate, safe area
    and loudness target; segments, transition, encoder settings and subtitle style are the plan's. An unknown
    name raises ConfigError listing the known ones."""
    from autocut.render.presets import get_preset

    p = get_preset(preset)
    kept = plan.output.model_dump(exclude={"preset", "aspect", "width", "height", "fps", "safe_area"})
    output = OutputSpec.model_validate({**kept, "preset": p.name})
    return plan.model_copy(update={"output": output, "loudness_lufs": p.loudness_lufs, "true_peak_db": p.true_peak_db})


def thumbnail_name(index: int) -> str:
    """The file name of segment `index`'s thumbnail (0-based, as in `plan.segments`)."""
    return f"thumb-{index:03d}.jpg"


def write_thumbnails(
    plan: EditPlan,
    out_dir: Path,
    *,
    library_root: Path | None = None,
    height: int = THUMBNAIL_HEIGHT,
    cancel: threading.Event | None = None,
) -> list[Path]:
    """A small JPEG per segment of `plan` (`thumbnail_name(k)` in `out_dir`): the source frame in the middle
    of the segment's span, `height` px high. Sources are opened as the renderer opens them (`run_ffmpeg`)."""
    from autocut.errors import RenderError
    from autocut.files import atomic_path
    from autocut.render.ffmpeg import FfmpegCommand, run_ffmpeg

    out: list[Path] = []
    for k, seg in enumerate(plan.segments):
        src = Path(seg.source_path).expanduser()
        if not src.is_absolute() and library_root is not None:
            src = Path(library_root) / src
        at_s = seg.start_s + seg.duration_s / 2
        dest = Path(out_dir) / thumbnail_name(k)
        with atomic_path(dest, suffix=".tmp.jpg") as tmp:
            args = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-ss", f"{at_s:.3f}"]
            args += ["-i", str(src), "-frames:v", "1", "-vf", f"scale=-2:{int(height)}", "-q:v", "5"]
            args += ["-f", "image2", "-c:v", "mjpeg", str(tmp)]
            run_ffmpeg(FfmpegCommand(args, Path(out_dir), 0.04), cancel=cancel)
            if not tmp.is_file() or tmp.stat().st_size == 0:
                raise RenderError(f"segment {k + 1}: no frame at {at_s:.2f} s of {src.name} for its thumbnail")
        out.append(dest)
    return out
