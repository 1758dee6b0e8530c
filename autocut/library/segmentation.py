"""Visual clip segmentation, for by-clip assembly (docs/method.md, "Decoding and grounding").

Boundaries are where adjacent-frame similarity drops sharply, measured on a dense stream of tiny
grey thumbnails (default 5 fps, 64x36) decoded in the same ffmpeg pass as the 1 fps frames. The
public AutoCut code thresholds adjacent cosine at about 0.85 on 20 fps CNN features; on
mean-centred thumbnails the same idea works with a cheap signal. A boundary must also stand out
from its neighbourhood (a local-median test) so that continuous camera motion is not cut.

Clips are then forced into [min_clip_s, max_clip_s]: short shots merge into a neighbour, long
ones are split evenly. Clip times are exact seconds; the AutoCut clip id quantises them to 1 fps
frames (`autocut.library.ids.clip_id`).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

__all__ = ["ClipSpan", "SegmentationConfig", "adjacent_similarity", "clip_embeddings", "segment_clips"]


@dataclass(frozen=True)
class SegmentationConfig:
    # A boundary needs adjacent cosine below this (on mean-centred thumbnails) ...
    max_cosine: float = 0.6
    # ... and a dissimilarity at least this many times the local median dissimilarity.
    contrast: float = 3.0
    # Window (in thumbnail samples) for the local median.
    window: int = 9
    min_clip_s: float = 2.0  # AutoCut 4.1 keeps clips of 2-60 s
    max_clip_s: float = 60.0


@dataclass(frozen=True)
class ClipSpan:
    """A visual clip in source time."""

    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def start_frame(self) -> int:
        """First 1 fps frame index inside the clip."""
        return int(math.ceil(self.start_s - 1e-6))

    @property
    def duration_frames(self) -> int:
        """Number of 1 fps frames the clip covers (at least 1)."""
        end_frame = int(math.ceil(self.end_s - 1e-6))
        return max(1, end_frame - self.start_frame)


def adjacent_similarity(thumbs: np.ndarray) -> np.ndarray:
    """Cosine similarity of each thumbnail with the previous one (mean-centred): (T-1,)."""
    x = thumbs.reshape(len(thumbs), -1).astype(np.float32)
    x -= x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    # Flat frames (a black frame, a solid colour) have no texture: treat them as identical to each other.
    x = np.where(norm > 1e-3, x / np.maximum(norm, 1e-6), 0.0)
    sim = (x[1:] * x[:-1]).sum(axis=1)
    flat = (norm[1:, 0] <= 1e-3) & (norm[:-1, 0] <= 1e-3)
    sim[flat] = 1.0
    # A flat frame next to a textured one is a real change (fade to black/cut from black).
    return sim


def _boundaries(thumbs: np.ndarray, rate_hz: float, cfg: SegmentationConfig) -> list[float]:
    if len(thumbs) < 2:
        return []
    # Mean absolute intensity jump catches cuts between textureless frames (e.g. a colour card to black).
    sim = adjacent_similarity(thumbs)
    d = 1.0 - sim
    jump = np.abs(thumbs[1:].astype(np.float32).mean(axis=(1, 2)) - thumbs[:-1].astype(np.float32).mean(axis=(1, 2)))
    cuts = []
    half = cfg.window // 2
    for i in range(len(d)):
        lo, hi = max(0, i - half), min(len(d), i + half + 1)
        neighbours = np.concatenate([d[lo:i], d[i + 1 : hi]])
        local = float(np.median(neighbours)) if len(neighbours) else 0.0
        sharp = d[i] >= cfg.contrast * max(local, 0.02)
        if (sim[i] < cfg.max_cosine and sharp) or jump[i] > 60.0:
            cuts.append((i + 1) / rate_hz)  # boundary at the later thumbnail's time
    return cuts


def segment_clips(
    thumbs: np.ndarray, rate_hz: float, duration_s: float, cfg: SegmentationConfig | None = None
) -> list[ClipSpan]:
    """Split a video of `duration_s` into visual clips from its dense thumbnail stream."""
    cfg = cfg or SegmentationConfig()
    if duration_s <= 0:
        return []
    cuts = [c for c in _boundaries(thumbs, rate_hz, cfg) if 0 < c < duration_s]
    edges = [0.0, *cuts, duration_s]
    spans = [[a, b] for a, b in itertools.pairwise(edges) if b - a > 1e-6]
    # Merge shots shorter than min_clip_s into the shorter neighbour, repeatedly.
    while len(spans) > 1:
        lengths = [b - a for a, b in spans]
        i = int(np.argmin(lengths))
        if lengths[i] >= cfg.min_clip_s:
            break
        if i == 0:
            j = 1
        elif i == len(spans) - 1:
            j = i - 1
        else:
            j = i - 1 if lengths[i - 1] <= lengths[i + 1] else i + 1
        lo, hi = min(i, j), max(i, j)
        spans[lo : hi + 1] = [[spans[lo][0], spans[hi][1]]]
    out: list[ClipSpan] = []
    for a, b in spans:
        n = max(1, int(math.ceil((b - a) / cfg.max_clip_s - 1e-9)))
        step = (b - a) / n
        out.extend(ClipSpan(a + k * step, a + (k + 1) * step if k < n - 1 else b) for k in range(n))
    return out


def clip_embeddings(spans: list[ClipSpan], frame_vecs: np.ndarray) -> np.ndarray:
    """Clip embedding = mean of its 1 fps frame embeddings, L2-normalised: (len(spans), D)."""
    out = np.zeros((len(spans), frame_vecs.shape[1]), np.float32)
    n = len(frame_vecs)
    for k, s in enumerate(spans):
        lo = min(s.start_frame, n - 1)
        hi = min(max(lo + 1, s.start_frame + s.duration_frames), n)
        v = frame_vecs[lo:hi].mean(axis=0)
        out[k] = v / max(float(np.linalg.norm(v)), 1e-12)
    return out
