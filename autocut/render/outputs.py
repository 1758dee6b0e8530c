"""The files one render writes: the MP4 and its sidecars (SRT subtitles, plan JSON, OTIO timeline)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["RESULT_FILES", "RESULT_SUFFIXES", "sidecar_paths"]

# What one render writes, by the artifact kind the API and the demo name it: file suffixes, and the
# file names a job's result directory uses (`edit.mp4` + sidecars beside it).
RESULT_SUFFIXES = {"video": ".mp4", "subtitles": ".srt", "timeline": ".otio", "plan": ".plan.json"}
RESULT_FILES = {kind: "edit" + suffix for kind, suffix in RESULT_SUFFIXES.items()}


def sidecar_paths(out_path: Path) -> dict[str, Path]:
    """Where the SRT, plan JSON and OTIO files go for `out_path`."""
    stem = str(Path(out_path).with_suffix(""))
    return {
        "srt": Path(stem + RESULT_SUFFIXES["subtitles"]),
        "plan": Path(stem + RESULT_SUFFIXES["plan"]),
        "otio": Path(stem + RESULT_SUFFIXES["timeline"]),
    }
