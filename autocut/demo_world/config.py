"""What a demo world build makes: `WorldConfig` and its size presets (small, medium, full).

Every field except `jobs` and `torch_threads` determines the output, so the config's hash
(`WorldConfig.key`, with the world and footage format versions) is the build's cache key.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace

from autocut.demo_world.frame import FOOTAGE_FORMAT_VERSION
from autocut.demo_world.products import stable_seed
from autocut.errors import ConfigError

__all__ = ["MIN_CLIP_S", "SIZES", "WORLD_FORMAT_VERSION", "WorldConfig"]

WORLD_FORMAT_VERSION = 1
SIZES = ("small", "medium", "full")
MIN_CLIP_S = 2.0  # AutoCut 4.1 keeps clips of 2-60 s


@dataclass(frozen=True)
class WorldConfig:
    """What to build. Everything except `jobs` determines the output (and its cache key)."""

    size: str = "small"
    seed: int = 0
    n_products: int = 8
    n_categories: int | None = 4  # None = all categories
    n_selling_points: int = 2  # per product; one feature shot each
    hook_shots: int = 1  # alternative shots per product for hook and usage (ads pick one)
    usage_shots: int = 1
    distractor_shots: int = 2  # look-alike rival shots per product
    ads_per_product: int = 2  # alternating EN / ZH
    # Shot length range in whole seconds: shots then start on 1 fps frame boundaries of their reel.
    shot_s: tuple[int, int] = (3, 4)
    fps: float = 10.0
    max_video_s: float | None = 6.0  # use only packaged videos up to this long (None = all)
    video_loop_s: float = 8.0  # shorter videos are ping-pong looped to this length
    max_photos: int | None = 12
    music_tracks: int | None = 2  # None = every packaged track >= 20 s
    music_track_s: float | None = 45.0  # cut tracks to this length (None = whole tracks)
    music_total_s: float | None = None  # stop adding tracks past this much music (None = no cap)
    bgm_excerpt_s: float = 25.0
    jobs: int = 2  # parallel ffmpeg processes (not part of the cache key)
    # torch threads for the frame/audio encoders during ingest (not part of the cache key). One thread
    # was 3x faster than two on this shared 2-core machine under load (OpenMP spin-waits).
    torch_threads: int = 1

    @classmethod
    def preset(cls, size: str, *, seed: int = 0, jobs: int = 2) -> WorldConfig:
        """`small` (tests, < 2 min), `medium` (`make demo`: 64 products) or `full` (>= 150 products,
        >= 10k frames, >= 200 BGM excerpts)."""
        if size == "small":
            return cls(size="small", seed=seed, jobs=jobs)
        if size == "medium":
            # What `make demo` builds: the full world's recipe at 64 products and ~40 min of music, so the
            # first demo run fits its time target; the LM trains on a time budget that sees only a few
            # hundred records either way. Evaluations use `full`.
            return replace(cls.preset("full", seed=seed, jobs=jobs), size="medium", n_products=64, music_total_s=2400.0)
        if size == "full":
            return cls(
                size="full",
                seed=seed,
                n_products=160,
                n_categories=None,
                n_selling_points=3,
                hook_shots=2,
                usage_shots=2,
                distractor_shots=3,
                ads_per_product=4,
                shot_s=(5, 6),
                max_video_s=None,
                video_loop_s=24.0,
                max_photos=None,
                music_tracks=None,
                music_track_s=None,
                # ~96 min of music -> ~230 excerpts of 25 s (the full world wants >= 200)
                music_total_s=5800.0,
                jobs=jobs,
            )
        raise ConfigError(f"unknown world size {size!r}; expected one of {', '.join(SIZES)}")

    def key(self) -> str:
        """Cache key: a hash of every field that changes the output."""
        d = asdict(self)
        d.pop("jobs")
        d.pop("torch_threads")
        d["format"] = (WORLD_FORMAT_VERSION, FOOTAGE_FORMAT_VERSION)
        return f"{stable_seed(json.dumps(d, sort_keys=True)):016x}"

    def validate(self) -> None:
        if self.jobs < 1 or self.jobs > 8:
            raise ConfigError(f"jobs must be in 1..8, got {self.jobs}")
        if self.n_products < 1:
            raise ConfigError(f"n_products must be >= 1, got {self.n_products}")
        lo, hi = self.shot_s
        if not (isinstance(lo, int) and isinstance(hi, int) and MIN_CLIP_S + 1 <= lo <= hi <= 60):
            raise ConfigError(f"shot_s must satisfy {MIN_CLIP_S + 0.5} <= lo <= hi <= 60, got {self.shot_s}")
        if self.fps <= 0 or self.fps > 30:
            raise ConfigError(f"fps must be in (0, 30], got {self.fps}")
