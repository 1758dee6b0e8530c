"""Catalog sources with synthetic embeddings (no media behind them), for tests of what reads a catalog."""

from __future__ import annotations

import numpy as np

from autocut.encoders.base import l2_normalize
from autocut.library.catalog import NewSource


def synthetic_source(i: int, n_frames: int = 30, n_clips: int = 1, noise: float = 0.4) -> NewSource:
    """Always the same source `i` (content hash `h{i}`): 128-d unit frames drifting around one random
    direction (as footage of one scene does), 8-d raw frames, `n_clips` equal clips tiling the frames."""
    rng = np.random.default_rng(100 + i)
    frames = l2_normalize(rng.standard_normal(128) + rng.normal(0, noise, (n_frames, 128)))
    step = n_frames / n_clips
    spans = [(k * step, (k + 1) * step) for k in range(n_clips)]
    clips = l2_normalize(np.stack([frames[int(a) : int(b)].mean(axis=0) for a, b in spans]))
    return NewSource(
        content_hash=f"h{i}",
        path=f"/media/v{i}.mp4",
        kind="footage",
        duration_s=float(n_frames),
        probe={"width": 320, "height": 240, "fps": 25.0, "has_audio": False},
        frame_times_s=[float(k) for k in range(n_frames)],
        frames_raw=rng.normal(size=(n_frames, 8)).astype(np.float32),
        frames=frames,
        clip_spans=spans,
        clips=clips,
    )
