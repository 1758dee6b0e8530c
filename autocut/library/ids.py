"""AutoCut ids (AutoCut appendix 7.2; docs/method.md, "Ids"), with their digit budgets enforced.

- ``photo_id``: sequential integer per source video (starts at 1).
- ``frame_id = photo_id * 10**4 + frame_index`` (frames sampled at 1 fps, so <= 9,999 s per source).
- ``clip_id = photo_id * 10**7 + start_frame * 10**3 + duration_frames`` (<= 999 s per clip).
- ``audio_id``: sequential integer per BGM track.

All ids fit in int64 (FAISS id maps take int64).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from autocut.errors import IdRangeError

__all__ = [
    "MAX_CLIP_FRAMES",
    "MAX_FRAME_INDEX",
    "ClipRef",
    "clip_id",
    "frame_id",
    "frame_ids",
    "split_clip_id",
    "split_frame_id",
    "split_frame_ids",
]

MAX_FRAME_INDEX = 9_999  # frame index digits in frame_id and start-frame digits in clip_id
MAX_CLIP_FRAMES = 999  # duration digits in clip_id
_MAX_PHOTO_ID = (2**63 - 1) // 10**7


class ClipRef(NamedTuple):
    photo_id: int
    start_frame: int
    duration_frames: int


def _check_photo(photo_id: int) -> None:
    if not 0 < photo_id <= _MAX_PHOTO_ID:
        raise IdRangeError(f"photo_id {photo_id} out of range 1..{_MAX_PHOTO_ID}")


def frame_id(photo_id: int, frame_index: int) -> int:
    """Id of the `frame_index`-th 1 fps frame of source `photo_id`."""
    _check_photo(photo_id)
    if not 0 <= frame_index <= MAX_FRAME_INDEX:
        raise IdRangeError(
            f"frame index {frame_index} of photo {photo_id} exceeds {MAX_FRAME_INDEX} "
            f"(sources longer than {MAX_FRAME_INDEX} s at 1 fps must be split before ingest)"
        )
    return photo_id * 10**4 + frame_index


def split_frame_id(fid: int) -> tuple[int, int]:
    """Inverse of `frame_id`: (photo_id, frame_index)."""
    return divmod(int(fid), 10**4)


def split_frame_ids(fids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`split_frame_id` over an int64 array: (photo_ids, frame_indices), both int64 arrays."""
    photo, index = np.divmod(np.asarray(fids, dtype=np.int64), 10**4)
    return photo, index


def frame_ids(photo_id: int, frame_indices: np.ndarray) -> np.ndarray:
    """`frame_id` over an array of frame indices of one source (int64; range-checked)."""
    idx = np.asarray(frame_indices, dtype=np.int64)
    _check_photo(photo_id)
    if idx.size and not (idx.min() >= 0 and idx.max() <= MAX_FRAME_INDEX):
        raise IdRangeError(f"frame indices of photo {photo_id} outside 0..{MAX_FRAME_INDEX}")
    return photo_id * 10**4 + idx


def clip_id(photo_id: int, start_frame: int, duration_frames: int) -> int:
    """Id of a clip starting at 1 fps frame `start_frame` lasting `duration_frames` frames."""
    _check_photo(photo_id)
    if not 0 <= start_frame <= MAX_FRAME_INDEX:
        raise IdRangeError(f"clip start frame {start_frame} of photo {photo_id} exceeds {MAX_FRAME_INDEX}")
    if not 1 <= duration_frames <= MAX_CLIP_FRAMES:
        raise IdRangeError(
            f"clip of {duration_frames} frames in photo {photo_id} is outside 1..{MAX_CLIP_FRAMES} "
            "(split clips longer than 999 s)"
        )
    return photo_id * 10**7 + start_frame * 10**3 + duration_frames


def split_clip_id(cid: int) -> ClipRef:
    """Inverse of `clip_id`."""
    cid = int(cid)
    photo, rest = divmod(cid, 10**7)
    start, dur = divmod(rest, 10**3)
    return ClipRef(photo, start, dur)
