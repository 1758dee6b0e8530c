"""Checking and normalising the ids and vectors handed to an index.

Every index in this package is inner product over L2-normalised vectors (= cosine similarity),
so vectors are normalised here, once, on a copy (callers' arrays are never modified).
"""

from __future__ import annotations

import numpy as np

from indexes.errors import IndexInputError

__all__ = ["as_ids", "as_unit_vectors"]

# Below this norm a vector has no direction to speak of (all-black frame features, silence).
_MIN_NORM = 1e-12


def as_ids(ids: np.ndarray, *, count: int | None = None, name: str = "ids") -> np.ndarray:
    """`ids` as a 1-D int64 array of unique non-negative integers (`count` long if given).

    -1 is FAISS's "no result" marker, so negative ids are refused.
    """
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise IndexInputError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise IndexInputError(f"{name} must be integers, got dtype {arr.dtype}")
    if count is not None and arr.shape[0] != count:
        raise IndexInputError(f"{name} has {arr.shape[0]} entries but there are {count} vectors")
    if arr.size and np.issubdtype(arr.dtype, np.unsignedinteger) and arr.max() > np.iinfo(np.int64).max:
        raise IndexInputError(f"{name} holds values above the int64 range")
    out = np.ascontiguousarray(arr, dtype=np.int64)
    if out.size:
        if out.min() < 0:
            raise IndexInputError(f"{name} must be non-negative, found {int(out.min())}")
        uniq, counts = np.unique(out, return_counts=True)
        if uniq.shape[0] != out.shape[0]:
            dups = uniq[counts > 1][:5].tolist()
            raise IndexInputError(f"{name} contains duplicates, e.g. {dups}")
    return out


def as_unit_vectors(
    vectors: np.ndarray,
    *,
    dim: int | None = None,
    ids: np.ndarray | None = None,
    name: str = "vectors",
) -> np.ndarray:
    """An L2-normalised float32 C-contiguous copy of `vectors` (N, D); 1-D input is one vector.

    Raises `IndexInputError` naming the offending row (and its id, when `ids` is given) for
    non-finite or zero vectors, and for a dimension other than `dim`.
    """
    arr = np.asarray(vectors)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise IndexInputError(f"{name} must be 2-D (N, D), got shape {arr.shape}")
    if arr.size and not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise IndexInputError(f"{name} must be numeric, got dtype {arr.dtype}")
    if dim is not None and arr.shape[1] != dim:
        raise IndexInputError(f"{name} have dimension {arr.shape[1]}, expected {dim}")
    if arr.shape[1] == 0:
        raise IndexInputError(f"{name} have dimension 0")
    out = np.array(arr, dtype=np.float32, order="C", copy=True)  # (N, D)
    if out.shape[0] == 0:
        return out
    norms = np.linalg.norm(out, axis=1)  # (N,)
    bad = ~np.isfinite(norms) | (norms < _MIN_NORM)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        what = "non-finite values" if not np.isfinite(norms[row]) else "zero norm"
        where = f"row {row}" + (f" (id {int(ids[row])})" if ids is not None else "")
        raise IndexInputError(f"{name} {where} has {what}; {int(bad.sum())} such row(s) in all")
    out /= norms[:, None]
    return out
