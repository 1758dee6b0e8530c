"""Rendering: a checked `EditPlan` -> one ffmpeg pass -> MP4 with voice, BGM, subtitles and
sidecars (SRT, plan JSON, OTIO timeline).

Modules, in dependency order: `placement` (segments on output frames), `ffmpeg` (running one
command), `loudness` (EBU R128 results), `subtitles` and `timeline` (cue timing, ASS/SRT, OTIO),
`caption_styles` (caption style presets), `captions` (karaoke highlight from the TTS word timings),
`branding` (watermark, title and end card), `preparation` (plan checks, voice fit, stems), `filtergraph` (the
ffmpeg commands as data),
`selfcheck` (detectors run on the finished file), `pipeline` (`render`: measure, encode, check, publish),
`presets` (platform output presets), `outputs` (the files one render writes).
"""

from typing import TYPE_CHECKING

from autocut._lazy import lazy_exports

if TYPE_CHECKING:
    from autocut.render.ffmpeg import FfmpegCommand, RenderCancelled, run_ffmpeg
    from autocut.render.filtergraph import (
        build_audio_filters,
        build_measure_command,
        build_render_command,
        build_stems_command,
        build_video_filters,
        crop_to_aspect,
    )
    from autocut.render.loudness import LoudnessMeasurement
    from autocut.render.outputs import RESULT_FILES, RESULT_SUFFIXES, sidecar_paths
    from autocut.render.pipeline import RenderResult, measure_loudness, render
    from autocut.render.placement import SegmentPlacement, output_fps, place_segments, voice_window_s
    from autocut.render.preparation import PreparedRender, PreparedSegment, prepare
    from autocut.render.presets import PRESETS, PlatformPreset, get_preset
    from autocut.render.selfcheck import SelfCheckFailed, SelfCheckReport, run_selfcheck

__all__ = [
    "PRESETS",
    "RESULT_FILES",
    "RESULT_SUFFIXES",
    "FfmpegCommand",
    "LoudnessMeasurement",
    "PlatformPreset",
    "PreparedRender",
    "PreparedSegment",
    "RenderCancelled",
    "RenderResult",
    "SegmentPlacement",
    "SelfCheckFailed",
    "SelfCheckReport",
    "build_audio_filters",
    "build_measure_command",
    "build_render_command",
    "build_stems_command",
    "build_video_filters",
    "crop_to_aspect",
    "get_preset",
    "measure_loudness",
    "output_fps",
    "place_segments",
    "prepare",
    "render",
    "run_ffmpeg",
    "run_selfcheck",
    "sidecar_paths",
    "voice_window_s",
]

_SOURCES = {
    "PRESETS": "presets",
    "RESULT_FILES": "outputs",
    "RESULT_SUFFIXES": "outputs",
    "FfmpegCommand": "ffmpeg",
    "LoudnessMeasurement": "loudness",
    "PlatformPreset": "presets",
    "PreparedRender": "preparation",
    "PreparedSegment": "preparation",
    "RenderCancelled": "ffmpeg",
    "RenderResult": "pipeline",
    "SegmentPlacement": "placement",
    "SelfCheckFailed": "selfcheck",
    "SelfCheckReport": "selfcheck",
    "build_audio_filters": "filtergraph",
    "build_measure_command": "filtergraph",
    "build_render_command": "filtergraph",
    "build_stems_command": "filtergraph",
    "build_video_filters": "filtergraph",
    "crop_to_aspect": "filtergraph",
    "get_preset": "presets",
    "measure_loudness": "pipeline",
    "output_fps": "placement",
    "place_segments": "placement",
    "prepare": "preparation",
    "render": "pipeline",
    "run_ffmpeg": "ffmpeg",
    "run_selfcheck": "selfcheck",
    "sidecar_paths": "outputs",
    "voice_window_s": "placement",
}
__getattr__ = lazy_exports(__name__, _SOURCES)
