"""Shot planning for the demo world: what determines each generated shot (`ShotSpec`, its
`Background`), the background drawn for a shot's role, every shot of the world in reel order
(`plan_shots`), and a reel's file name.

Background brightness and saturation are drawn per shot independently of the role, so no global
cue (brightness, hue) tracks a clip's position in an ad; shot order within a reel is shuffled, so a
clip's position in its source file says nothing about its position in an ad.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from autocut.demo_world.config import WorldConfig
from autocut.demo_world.frame import FOOTAGE_FORMAT_VERSION
from autocut.demo_world.media import SourceMedia
from autocut.demo_world.products import ROLES, Product, stable_seed

__all__ = ["Background", "ShotSpec", "plan_background", "plan_shots", "reel_name"]


@dataclass(frozen=True)
class Background:
    """A real background: a Ken Burns move over a photo, or a window of a video."""

    kind: str  # "photo" | "video"
    path: str
    # photo: crop x (fraction of the slack), zoom start/end, pan end point (fractions of the slack)
    # video: start_s, crop x start/end (fractions of the slack), hflip
    params: tuple[float, ...]
    brightness: float  # ffmpeg eq brightness, drawn independently of the role
    saturation: float
    blur: bool


@dataclass(frozen=True)
class ShotSpec:
    """Everything that determines one generated shot (its hash is part of its reel's file name)."""

    shot_id: str
    product_id: str
    role: str
    kind: str  # "ad" (the product) | "distractor" (a look-alike rival)
    duration_s: float
    lang: str  # language of the on-screen text
    background: Background
    selling_point: str | None  # feature shots: the selling point's key
    seed: int
    fps: float

    def spec_hash(self) -> str:
        blob = json.dumps({"v": FOOTAGE_FORMAT_VERSION, **asdict(self)}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:10]


# Share of video backgrounds per role: usage is mostly real video, the others mostly photos, but
# every role gets both so the background type alone does not give the role away.
_VIDEO_SHARE = {"hook": 0.5, "showcase": 0.2, "feature": 0.3, "usage": 0.8, "proof": 0.35, "cta": 0.25}


def reel_name(product_id: str, shots: Sequence[ShotSpec]) -> str:
    """File name of a product's reel: its id plus a hash of every shot in it, in order."""
    h = hashlib.sha256("|".join(s.spec_hash() for s in shots).encode()).hexdigest()[:10]
    return f"{product_id}-{h}.mp4"


def plan_background(role: str, media: SourceMedia, rng: random.Random, duration_s: float) -> Background:
    """Draw a background for a shot of `role`."""
    brightness = round(rng.uniform(-0.18, 0.08), 3)
    saturation = round(rng.uniform(0.7, 1.3), 3)
    blur = rng.random() < (0.45 if role == "showcase" else 0.15)
    if media.videos and rng.random() < _VIDEO_SHARE[role]:
        # Pick videos in proportion to their length, so long sources are not over-reused per second.
        total = sum(d for _, d in media.videos)
        x = rng.uniform(0, total)
        for video in media.videos:
            x -= video[1]
            if x <= 0:
                break
        path, dur = video
        # Half a second of margin: a window must never run past the end of the cached file.
        start = round(rng.uniform(0, max(0.0, dur - duration_s - 0.5)), 2)
        a, b = rng.random(), rng.random()
        return Background(
            "video", path, (start, round(a, 3), round(b, 3), float(rng.random() < 0.5)), brightness, saturation, blur
        )
    path = rng.choice(media.photos)
    z0, z1 = 1.0, rng.uniform(1.12, 1.3)
    if rng.random() < 0.5:
        z0, z1 = z1, z0  # zoom out as often as in
    return Background(
        "photo",
        path,
        (
            round(rng.random(), 3),
            round(z0, 3),
            round(z1, 3),
            round(rng.random(), 3),
            round(rng.random(), 3),
            round(rng.random(), 3),
            round(rng.random(), 3),
        ),
        brightness,
        saturation,
        blur,
    )


def plan_shots(products: list[Product], cfg: WorldConfig, media: SourceMedia) -> list[ShotSpec]:
    """Every shot of the world, in reel order: per product its role shots (one feature shot per
    selling point, alternatives for hook and usage) and distractor shots of its look-alike rival,
    shuffled so the position of a shot in its reel says nothing about its role."""
    shots: list[ShotSpec] = []
    for p in products:
        rng = random.Random(stable_seed("shots", cfg.seed, p.product_id))
        wanted: list[tuple[str, str, str, str | None]] = []  # (shot_id, role, kind, selling point)
        wanted += [(f"{p.product_id}-hook{k + 1}", "hook", "ad", None) for k in range(cfg.hook_shots)]
        wanted.append((f"{p.product_id}-showcase", "showcase", "ad", None))
        wanted += [(f"{p.product_id}-feature-{sp.key}", "feature", "ad", sp.key) for sp in p.selling_points]
        wanted += [(f"{p.product_id}-usage{k + 1}", "usage", "ad", None) for k in range(cfg.usage_shots)]
        wanted.append((f"{p.product_id}-proof", "proof", "ad", None))
        wanted.append((f"{p.product_id}-cta", "cta", "ad", None))
        # The rival shows up in the roles where the product is large (the hard negatives for a
        # vision-only similarity baseline) and in one more role drawn at random.
        d_roles = ["showcase", "cta", rng.choice(["hook", "feature", "usage", "proof"])]
        d_roles += [rng.choice(ROLES) for _ in range(max(0, cfg.distractor_shots - 3))]
        for k, role in enumerate(d_roles[: cfg.distractor_shots]):
            sp = rng.choice(p.selling_points).key if role == "feature" else None
            wanted.append((f"{p.product_id}-rival{k + 1}-{role}", role, "distractor", sp))
        rng.shuffle(wanted)
        for shot_id, role, kind, sp in wanted:
            dur = float(rng.randint(*cfg.shot_s))
            bg = plan_background(role, media, rng, dur)
            shots.append(
                ShotSpec(
                    shot_id=shot_id,
                    product_id=p.product_id,
                    role=role,
                    kind=kind,
                    duration_s=dur,
                    lang=rng.choice(("en", "zh")),
                    background=bg,
                    selling_point=sp,
                    seed=cfg.seed,
                    fps=cfg.fps,
                )
            )
    return shots
