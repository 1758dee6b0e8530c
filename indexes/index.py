"""The in-memory library index: a FAISS index with its ids and metadata, and search results.

Every index is `IDMap,<structure>` over inner product on L2-normalised vectors (cosine), so
ids are AutoCut's int64 ids (frame_id, clip_id, audio_id) and scores are cosine similarities.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Literal

import faiss
import numpy as np

from indexes.errors import IndexInputError
from indexes.runtime import threads_for_batch
from indexes.vectors import as_ids, as_unit_vectors

__all__ = ["KINDS", "METRIC", "IndexMeta", "LibraryIndex", "SearchResult", "StructureParams"]

log = logging.getLogger(__name__)

KINDS = ("frames", "clips", "bgm")
METRIC = "inner_product"  # on L2-normalised vectors, i.e. cosine similarity

Structure = Literal["flat", "hnsw", "ivf"]


@dataclass(frozen=True)
class StructureParams:
    """How an index was built and is searched; recorded in its metadata."""

    structure: Structure
    faiss_version: str
    build_time_s: float
    hnsw_m: int | None = None  # HNSW graph degree
    ef_construction: int | None = None
    ef_search: int | None = None  # HNSW search beam, chosen by calibration
    nlist: int | None = None  # IVF inverted lists
    nprobe: int | None = None  # IVF lists visited per query, chosen by calibration
    train_count: int | None = None  # IVF k-means sample size
    target_recall_at_10: float | None = None
    # recall@10 vs exact search at build time, on a sample of the indexed vectors used as queries
    # (each query's own id left out); None for exact indexes.
    calibrated_recall_at_10: float | None = None
    calibration_queries: int | None = None


@dataclass(frozen=True)
class IndexMeta:
    """What an index holds and was built from; stored beside it as versioned JSON."""

    kind: str  # one of KINDS
    dim: int
    metric: str
    factory: str  # faiss.index_factory string, e.g. "IDMap,HNSW32,Flat"
    count: int
    encoder: str  # encoder that produced the vectors
    pca_version: str | None  # PCA the vectors went through (None: no PCA, e.g. BGM embeddings)
    created_at: str  # ISO 8601 UTC of the build
    params: StructureParams
    added_since_build: int = 0  # vectors added incrementally after the build


@dataclass(frozen=True)
class SearchResult:
    """k-NN results for a batch of queries; row i answers query i, best first."""

    ids: np.ndarray  # (Q, k) int64; -1 where fewer than k vectors could be returned
    scores: np.ndarray  # (Q, k) float32 cosine similarity; -inf where ids == -1

    def hits(self, row: int) -> list[tuple[int, float]]:
        """(id, score) pairs of query `row`, padding dropped."""
        keep = self.ids[row] >= 0
        return [(int(i), float(s)) for i, s in zip(self.ids[row][keep], self.scores[row][keep], strict=True)]


def as_search_result(scores: np.ndarray, ids: np.ndarray) -> SearchResult:
    """Wrap FAISS's (D, I) output, marking padding with -1 / -inf."""
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    scores = np.array(scores, dtype=np.float32)
    scores[ids < 0] = -np.inf
    return SearchResult(ids=ids, scores=scores)


def _calibrated(value: int | None, name: str) -> int:
    """A search parameter that calibration recorded for an approximate index."""
    if value is None:  # only a hand-edited metadata file lacks it
        raise TypeError(f"index metadata has no {name} for its approximate structure")
    return value


def check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise IndexInputError(f"k must be a positive integer, got {k!r}")
    return int(k)


class LibraryIndex:
    """A FAISS `IndexIDMap` with its metadata.

    Concurrent `search` calls are safe (FAISS CPU search is); `add` mutates the index and must
    not run while other threads search it: serving processes add through the store and pick up
    the new generation instead (`indexes.search.IndexHolder`).
    """

    def __init__(self, faiss_index: faiss.Index, meta: IndexMeta, *, generation: int | None = None) -> None:
        if not isinstance(faiss_index, faiss.IndexIDMap):
            raise TypeError(f"expected a faiss.IndexIDMap, got {type(faiss_index).__name__}")
        assert faiss_index.d == meta.dim and faiss_index.ntotal == meta.count, "metadata disagrees with index"
        self.faiss_index = faiss_index
        self._meta = meta
        self.generation = generation  # store generation it was loaded from / published as, if any
        self._apply_search_params()

    @property
    def meta(self) -> IndexMeta:
        return self._meta

    @property
    def kind(self) -> str:
        return self._meta.kind

    @property
    def dim(self) -> int:
        return self._meta.dim

    @property
    def count(self) -> int:
        return int(self.faiss_index.ntotal)

    def _apply_search_params(self) -> None:
        # Search parameters live in the metadata, not only in the FAISS file, so what the
        # calibration chose is what every load uses.
        params = self._meta.params
        inner = faiss.downcast_index(self.faiss_index.index)
        if params.structure == "hnsw":
            assert isinstance(inner, faiss.IndexHNSW), type(inner)
            inner.hnsw.efSearch = int(_calibrated(params.ef_search, "ef_search"))
        elif params.structure == "ivf":
            assert isinstance(inner, faiss.IndexIVF), type(inner)
            inner.nprobe = int(_calibrated(params.nprobe, "nprobe"))

    def ids(self) -> np.ndarray:
        """All ids in the index, in insertion order (int64)."""
        return faiss.vector_to_array(self.faiss_index.id_map).astype(np.int64, copy=False)

    def search(self, queries: np.ndarray, k: int) -> SearchResult:
        """The `k` most similar stored vectors for each query (Q, D) or (D,)."""
        k = check_k(k)
        q = as_unit_vectors(queries, dim=self.dim, name="queries")  # (Q, D)
        if q.shape[0] == 0:
            return SearchResult(np.empty((0, k), np.int64), np.empty((0, k), np.float32))
        with threads_for_batch(q.shape[0]):
            scores, ids = self.faiss_index.search(q, k)
        return as_search_result(scores, ids)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under new ids (ids already in the index are refused)."""
        ids = as_ids(ids)
        vecs = as_unit_vectors(vectors, dim=self.dim, ids=ids)
        if vecs.shape[0] != ids.shape[0]:
            raise IndexInputError(f"{ids.shape[0]} ids for {vecs.shape[0]} vectors")
        if ids.size == 0:
            return
        present = np.isin(ids, self.ids())
        if present.any():
            raise IndexInputError(
                f"{int(present.sum())} id(s) already in the {self.kind} index, e.g. {ids[present][:5].tolist()}"
            )
        self.faiss_index.add_with_ids(vecs, ids)
        self._meta = replace(
            self._meta, count=self.count, added_since_build=self._meta.added_since_build + int(ids.size)
        )
        log.debug("added %d vectors to the %s index (now %d)", ids.size, self.kind, self.count)
