"""Errors raised by `indexes`.

`indexes` must not import `autocut` (docs/method.md, "Architecture and queue delivery"), so it
has its own small hierarchy; `autocut.library.indexing` translates these into `autocut.errors` for
users. Each class also derives from the closest builtin so callers that know nothing of this
package still catch them.
"""

from __future__ import annotations

__all__ = [
    "IndexBusyError",
    "IndexCorruptError",
    "IndexInputError",
    "IndexMismatchError",
    "IndexNotFoundError",
    "IndexesError",
]


class IndexesError(Exception):
    """Base class for every error raised by `indexes`."""


class IndexInputError(IndexesError, ValueError):
    """Vectors or ids handed to an index are unusable (wrong shape, NaN, zero norm, duplicate ids...)."""


class IndexMismatchError(IndexesError, ValueError):
    """A stored index was built for another kind, encoder, PCA version or dimension than expected."""


class IndexNotFoundError(IndexesError, FileNotFoundError):
    """No index has been published in the directory yet."""


class IndexCorruptError(IndexesError):
    """A stored index or its metadata is unreadable, of an unknown format version, or inconsistent."""


class IndexBusyError(IndexesError, TimeoutError):
    """Another writer held the index directory's lock past the caller's timeout."""
