"""The frame of a generated shot: portrait size, the square the frame encoder sees, the cached
photo height, and the footage format version (part of every shot's spec hash).

The frame encoder centre-crops frames to a square (`autocut.library.media`), so everything that
carries identity or role sits in the central square of the portrait frame (`SAFE_TOP`..`SAFE_BOTTOM`).
"""

from __future__ import annotations

__all__ = ["FOOTAGE_FORMAT_VERSION", "PHOTO_CACHE_H", "SAFE_BOTTOM", "SAFE_TOP", "H", "W"]

# Bump when the look of generated shots changes: it is part of every shot's spec hash,
# so a rebuild regenerates instead of reusing stale files.
FOOTAGE_FORMAT_VERSION = 3

W, H = 360, 640  # portrait 9:16, small on purpose (generation and ingest speed)
SAFE_TOP, SAFE_BOTTOM = (H - W) // 2, (H + W) // 2  # the square the frame encoder sees
PHOTO_CACHE_H = 768  # cached photos are scaled to this height; shots crop 432x768 then zoom
