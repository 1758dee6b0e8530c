"""FAISS indexes over (int64 id, vector) pairs: build, store, search. Imports nothing of autocut."""

from indexes.build import BuildConfig, build_index, choose_structure, rebuild_advised
from indexes.errors import (
    IndexBusyError,
    IndexCorruptError,
    IndexesError,
    IndexInputError,
    IndexMismatchError,
    IndexNotFoundError,
)
from indexes.index import KINDS, METRIC, IndexMeta, LibraryIndex, SearchResult, StructureParams
from indexes.search import IndexHolder, PoolIndex, add_to_stored_index, search_pool
from indexes.store import (
    FORMAT_VERSION,
    ExpectedIndex,
    IndexWriter,
    current_generation,
    load_index,
    read_meta,
    save_index,
)

__all__ = [
    "FORMAT_VERSION",
    "KINDS",
    "METRIC",
    "BuildConfig",
    "ExpectedIndex",
    "IndexBusyError",
    "IndexCorruptError",
    "IndexHolder",
    "IndexInputError",
    "IndexMeta",
    "IndexMismatchError",
    "IndexNotFoundError",
    "IndexWriter",
    "IndexesError",
    "LibraryIndex",
    "PoolIndex",
    "SearchResult",
    "StructureParams",
    "add_to_stored_index",
    "build_index",
    "choose_structure",
    "current_generation",
    "load_index",
    "read_meta",
    "rebuild_advised",
    "save_index",
    "search_pool",
]
