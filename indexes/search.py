"""Searching: per-request pool search, incremental adds, and hot-swapping served indexes.

Grounding within a request's pool searches the pool's own vectors exactly, in a small index
built for the request, so fresh uploads need no rebuild (as the public AutoCut code does;
docs/method.md, "Decoding and grounding"). Library-wide indexes (BGM, whole-library video) are
served by `IndexHolder`, which picks up a rebuilt or grown index atomically, and grow on ingest
through `add_to_stored_index`.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import faiss
import numpy as np

from indexes.build import BuildConfig, rebuild_advised
from indexes.errors import IndexesError, IndexInputError
from indexes.index import LibraryIndex, SearchResult, as_search_result, check_k
from indexes.runtime import threads_for_batch
from indexes.store import ExpectedIndex, IndexWriter, load_index, pointer_signature
from indexes.vectors import as_ids, as_unit_vectors

__all__ = ["IndexHolder", "PoolIndex", "add_to_stored_index", "search_pool"]

log = logging.getLogger(__name__)


class PoolIndex:
    """Exact inner-product index over one request's pool of (id, vector) pairs."""

    def __init__(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.ids = as_ids(ids, name="pool ids")
        vecs = as_unit_vectors(vectors, ids=self.ids, name="pool vectors")  # (P, D)
        if vecs.shape[0] != self.ids.shape[0]:
            raise IndexInputError(f"{self.ids.shape[0]} pool ids for {vecs.shape[0]} pool vectors")
        self.dim = int(vecs.shape[1])
        self._index = faiss.IndexFlatIP(self.dim)
        self._index.add(vecs)
        self._order = np.argsort(self.ids, kind="stable")  # for id -> position lookups

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def _positions(self, subset_ids: np.ndarray) -> np.ndarray:
        subset = np.unique(np.asarray(subset_ids, dtype=np.int64).ravel())
        sorted_ids = self.ids[self._order]
        where = np.searchsorted(sorted_ids, subset)
        found = where < sorted_ids.shape[0]
        found[found] = sorted_ids[where[found]] == subset[found]
        if not found.all():
            raise IndexInputError(f"subset ids not in the pool: {subset[~found][:5].tolist()}")
        return self._order[where]

    def search(self, queries: np.ndarray, k: int, *, subset_ids: np.ndarray | None = None) -> SearchResult:
        """The `k` pool vectors most similar to each query, optionally only among `subset_ids`."""
        k = check_k(k)
        q = as_unit_vectors(queries, dim=self.dim, name="queries")  # (Q, D)
        params = None
        if subset_ids is not None:
            positions = self._positions(subset_ids)
            # The selector filters inside the scan: exact, and no second index per subset.
            params = faiss.SearchParameters()
            params.sel = faiss.IDSelectorBatch(positions.astype(np.int64))  # the params keep it alive
        if q.shape[0] == 0 or len(self) == 0:
            return as_search_result(np.zeros((q.shape[0], k), np.float32), np.full((q.shape[0], k), -1, np.int64))
        with threads_for_batch(q.shape[0]):
            scores, pos = self._index.search(q, k, params=params)
        ids = np.where(pos >= 0, self.ids[np.maximum(pos, 0)], -1)
        return as_search_result(scores, ids)


def search_pool(
    ids: np.ndarray,
    vectors: np.ndarray,
    queries: np.ndarray,
    k: int,
    *,
    subset_ids: np.ndarray | None = None,
) -> SearchResult:
    """One-shot exact search of `queries` over a request's pool (see `PoolIndex`)."""
    return PoolIndex(ids, vectors).search(queries, k, subset_ids=subset_ids)


def add_to_stored_index(
    directory: Path,
    ids: np.ndarray,
    vectors: np.ndarray,
    *,
    expected: ExpectedIndex,
    timeout_s: float | None = None,
    config: BuildConfig | None = None,
    skip_existing: bool = False,
) -> LibraryIndex:
    """Add vectors to the published index in `directory` and publish the result as a new generation.

    Runs under the directory's writer lock, so it waits for (and cannot be lost by) a rebuild.
    With `skip_existing`, ids already in the index are left alone instead of refused: an ingest
    whose rows a concurrent rebuild already picked up from the catalog can then add safely, and
    a retried ingest is idempotent. Servers pick the new generation up through `IndexHolder`.
    """
    ids = as_ids(ids)
    vecs = as_unit_vectors(vectors, ids=ids)
    if vecs.shape[0] != ids.shape[0]:
        raise IndexInputError(f"{ids.shape[0]} ids for {vecs.shape[0]} vectors")
    with IndexWriter(directory, timeout_s=timeout_s) as writer:
        index = load_index(directory, expected=expected)
        if skip_existing and ids.size:
            new = ~np.isin(ids, index.ids())
            ids, vecs = ids[new], vecs[new]
        if not ids.size:
            return index  # nothing new: no generation published
        index.add(ids, vecs)
        writer.publish(index)
    reason = rebuild_advised(index.meta, config)
    if reason:
        log.warning("%s: a rebuild would pick a better structure", reason)
    return index


class IndexHolder:
    """The index a serving process searches, swapped for each newly published generation.

    A query reads the current reference once and searches that object; a new generation is
    loaded fully in a background thread and only then swapped in under a lock, so a query never
    waits for a load and never sees a half-loaded index. If a new generation cannot be loaded
    (corrupt, or built for another encoder/PCA than `expected`), the holder keeps serving the
    one it has and logs the error once.
    """

    def __init__(
        self,
        directory: Path,
        *,
        expected: ExpectedIndex | None = None,
        check_interval_s: float = 1.0,
        verify_checksum: bool = True,
    ) -> None:
        self.directory = Path(directory)
        self.expected = expected
        self.check_interval_s = check_interval_s  # how often a query may stat current.json
        self.verify_checksum = verify_checksum
        self._swap_lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._loader: threading.Thread | None = None
        self._failed_signature: tuple[int, int, int] | None = None
        self._next_check_s = 0.0
        signature = pointer_signature(self.directory)
        self._index = load_index(self.directory, expected=expected, verify_checksum=verify_checksum)
        self._signature = signature

    @property
    def index(self) -> LibraryIndex:
        """The index being served right now."""
        return self._index

    @property
    def generation(self) -> int | None:
        return self._index.generation

    def search(self, queries: np.ndarray, k: int) -> SearchResult:
        """k-NN over the current index; may start a background reload if a new generation exists."""
        now = time.monotonic()
        if now >= self._next_check_s:
            self._next_check_s = now + self.check_interval_s
            self._reload_in_background()
        index = self._index  # one read: a swap after this line does not touch this query
        return index.search(queries, k)

    def _stale(self) -> bool:
        signature = pointer_signature(self.directory)
        return signature is not None and signature not in (self._signature, self._failed_signature)

    def _reload_in_background(self) -> None:
        if not self._stale() or not self._load_lock.acquire(blocking=False):
            return
        try:
            if self._loader is not None and self._loader.is_alive():
                return
            self._loader = threading.Thread(
                target=self.refresh, name=f"index-reload-{self.directory.name}", daemon=True
            )
            self._loader.start()
        finally:
            self._load_lock.release()

    def refresh(self) -> bool:
        """Load and swap in a newly published generation now; True if the index changed."""
        signature = pointer_signature(self.directory)
        if signature is None or signature in (self._signature, self._failed_signature):
            return False
        try:
            new = load_index(self.directory, expected=self.expected, verify_checksum=self.verify_checksum)
        except IndexesError as exc:
            self._failed_signature = signature
            log.error(
                "keeping %s index generation %s: the newly published one cannot be served: %s",
                self._index.kind,
                self._index.generation,
                exc,
            )
            return False
        with self._swap_lock:
            old = self._index
            if new.generation is not None and old.generation is not None and new.generation < old.generation:
                return False  # a slower concurrent refresh must not move us backwards
            self._index = new
            self._signature = signature
        log.info("now serving %s index generation %s (was %s)", new.kind, new.generation, old.generation)
        return True

    def close(self) -> None:
        """Wait for a background reload to finish (call before discarding the holder in tests)."""
        loader = self._loader
        if loader is not None:
            loader.join()
