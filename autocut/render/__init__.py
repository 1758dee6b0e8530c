"""Rendering: a checked `EditPlan` -> one ffmpeg pass -> MP4 with voice, BGM, subtitles and
sidecars (SRT, plan JSON, OTIO timeline)."""

from typing import TYPE_CHECKING

from autocut._lazy import lazy_exports

if TYPE_CHECKING:
    from autocut.render.outputs import RESULT_FILES, sidecar_paths
    from autocut.render.edit import RenderCancelled, RenderResult, crop_to_aspect, output_fps, place_segments, prepare, render, voice_window_s

__all__ = [
    "RESULT_FILES",
    "RenderCancelled",
    "RenderResult",
    "crop_to_aspect",
    "output_fps",
    "place_segments",
    "prepare",
    "render",
    "sidecar_paths",
    "voice_window_s",
]

_SOURCES = {
    "RESULT_FILES": "outputs",
    "RenderCancelled": "edit",
    "RenderResult": "edit",
    "crop_to_aspect": "edit",
    "output_fps": "edit",
    "place_segments": "edit",
    "prepare": "edit",
    "render": "edit",
    "sidecar_paths": "outputs",
    "voice_window_s": "edit",
}
__getattr__ = lazy_exports(__name__, _SOURCES)
