"""Embeddings -> real library ids through FAISS (AutoCut appendix 7.2; docs/method.md, "Decoding and grounding").

Planners never hand back database rows: they produce target embeddings (for the token planner,
RQ-VAE-decoded codes; for the baselines, the chosen candidates' own vectors), and grounding
retrieves the nearest real assets:

- clips: exact search over the request's pool only (a small per-request FAISS index, as the public
  AutoCut code does, so fresh uploads need no rebuild) — `frame_id` for by-frame assembly,
  `clip_id` for by-clip assembly;
- BGM: the library-wide BGM index (`autocut.library.indexing`), top-k minus the tracks the user
  excluded; a library whose BGM index has not been built yet is searched exactly instead;
- video outside the pool (when a request allows it): the library-wide frame or clip index.

`SourceWindow` keeps grounded segments inside their sources and off each other.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from autocut.errors import CatalogError, PlanError
from autocut.library.catalog import BgmRow, Catalog
from autocut.library.ids import split_clip_id, split_frame_id, split_frame_ids
from autocut.planning.candidates import CandidatePool
from indexes import IndexInputError, PoolIndex, SearchResult

__all__ = [
    "BgmGrounder",
    "BgmHit",
    "ClipHit",
    "FrameHit",
    "LibraryVideoGrounder",
    "PoolGrounder",
    "Searcher",
    "SourceWindow",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrameHit:
    frame_id: int
    photo_id: int
    frame_index: int  # 1 fps frame index = source time in seconds
    score: float  # cosine similarity to the query


@dataclass(frozen=True)
class ClipHit:
    clip_id: int
    photo_id: int
    start_s: float
    end_s: float
    score: float


@dataclass(frozen=True)
class BgmHit:
    audio_id: int
    track: BgmRow
    score: float


def _frame_hits(res: SearchResult) -> list[list[FrameHit]]:
    out = []
    for row in range(res.ids.shape[0]):
        hits = []
        for fid, score in res.hits(row):
            photo, idx = split_frame_id(fid)
            hits.append(FrameHit(fid, photo, idx, score))
        out.append(hits)
    return out


class PoolGrounder:
    """Exact nearest-neighbour search over one request's pool frames and visual clips."""

    def __init__(self, pool: CandidatePool) -> None:
        self.pool = pool
        try:
            self._frames = PoolIndex(pool.frame_ids, pool.frame_vectors)
            self._clips = PoolIndex(pool.clip_ids, pool.clip_vectors) if len(pool.clip_ids) else None
        except IndexInputError as exc:
            raise PlanError(f"the pool's stored embeddings are unusable: {exc}") from None

    @staticmethod
    def _subset(all_ids: np.ndarray, exclude: Iterable[int]) -> np.ndarray | None:
        ex = np.fromiter((int(i) for i in exclude), np.int64)
        if ex.size == 0:
            return None
        keep = all_ids[~np.isin(all_ids, ex)]
        if keep.size == 0:
            raise PlanError(
                "every frame/clip of the pool is already used by the plan: the pool is too small "
                "for this many clips (or allow clip reuse)"
            )
        return keep

    def frames(self, queries: np.ndarray, k: int = 1, *, exclude_ids: Iterable[int] = ()) -> list[list[FrameHit]]:
        """The `k` pool frames nearest each query (Q, D), best first, skipping `exclude_ids`."""
        subset = self._subset(self.pool.frame_ids, exclude_ids)
        try:
            res = self._frames.search(np.atleast_2d(queries), k, subset_ids=subset)
        except IndexInputError as exc:
            raise PlanError(f"cannot ground clip embeddings in the pool: {exc}") from None
        return _frame_hits(res)

    def clips(self, queries: np.ndarray, k: int = 1, *, exclude_ids: Iterable[int] = ()) -> list[list[ClipHit]]:
        """The `k` visual clips of the pool nearest each query (Q, D), best first, skipping `exclude_ids`."""
        if self._clips is None:
            raise PlanError("the pool's videos have no visual clips (segmentation found none); use by-frame assembly")
        subset = self._subset(self.pool.clip_ids, exclude_ids)
        try:
            res = self._clips.search(np.atleast_2d(queries), k, subset_ids=subset)
        except IndexInputError as exc:
            raise PlanError(f"cannot ground clip embeddings in the pool: {exc}") from None
        out = []
        for row in range(res.ids.shape[0]):
            hits = []
            for cid, score in res.hits(row):
                r = self.pool.clip_rows[cid]
                hits.append(ClipHit(cid, r.photo_id, float(r.start_s), float(r.end_s), score))
            out.append(hits)
        return out

    def frames_in(self, photo_id: int, start_s: float, end_s: float) -> np.ndarray:
        """Frame ids of `photo_id` whose 1 fps time lies in [start_s, end_s)."""
        photo, t = split_frame_ids(self.pool.frame_ids)
        return self.pool.frame_ids[(photo == photo_id) & (t >= start_s - 1e-6) & (t < end_s - 1e-6)]

    def clips_overlapping(self, photo_id: int, start_s: float, end_s: float) -> list[int]:
        """Visual clips of `photo_id` that overlap [start_s, end_s) by more than a frame tolerance."""
        return [
            cid
            for cid, r in self.pool.clip_rows.items()
            if r.photo_id == photo_id and min(r.end_s, end_s) - max(r.start_s, start_s) > 1e-3
        ]


class Searcher(Protocol):
    """Anything with `search(queries, k) -> SearchResult`: a LibraryIndex, an IndexHolder (a server's
    hot-swapped BGM index), a PoolIndex."""

    def search(self, queries: np.ndarray, k: int) -> SearchResult: ...


class BgmGrounder:
    """Library-wide BGM retrieval: the FAISS BGM index, or exact search when none is built yet."""

    def __init__(self, library_dir: str | Path, catalog: Catalog, *, searcher: Searcher | None = None) -> None:
        self.catalog = catalog
        self.tracks = {t.audio_id: t for t in catalog.bgm_tracks()}
        self.source = "none"
        self._search: Searcher | None = searcher
        if not self.tracks:
            return
        if searcher is not None:
            self.source = "given index"
            return
        from autocut.library.indexing import open_library_index  # local: keeps faiss index files lazy

        try:
            index = open_library_index(Path(library_dir), "bgm", catalog)
            self._search = index
            self.source = "bgm index"
            if index.count < len(self.tracks):
                log.warning(
                    "the BGM index holds %d of the library's %d tracks; run `autocut index rebuild "
                    "--kind bgm` to search them all",
                    index.count,
                    len(self.tracks),
                )
        except CatalogError as exc:
            # No index built yet (or an unreadable one): a BGM library is a few hundred tracks, so an
            # exact search over the catalog's vectors is cheap and gives the same answer.
            log.info(
                "BGM search without an index (%s); searching the catalog's %d tracks exactly", exc, len(self.tracks)
            )
            ids, vecs = catalog.bgm_vectors()
            try:
                self._search = PoolIndex(ids, vecs)
            except IndexInputError as exc2:
                raise PlanError(f"the library's BGM embeddings are unusable: {exc2}") from None
            self.source = "exact"

    @property
    def available(self) -> bool:
        return self._search is not None

    def search(self, query: np.ndarray, k: int = 1, *, exclude_ids: Sequence[int] = ()) -> list[BgmHit]:
        """The `k` tracks nearest `query` (D,), best first, without `exclude_ids`; [] when the library has no BGM."""
        if self._search is None:
            return []
        excluded = {int(a) for a in exclude_ids}
        want = k + len(excluded)
        try:
            res = self._search.search(np.atleast_2d(query), min(want, max(len(self.tracks), 1)))
        except IndexInputError as exc:
            raise PlanError(f"cannot search BGM with this embedding: {exc}") from None
        out = []
        for aid, score in res.hits(0):
            if aid in excluded:
                continue
            track = self.tracks.get(aid)
            if track is None:  # an index entry whose track left the catalog: never hand it out
                log.warning("BGM index returned audio_id %d, which is not in the catalog; skipping it", aid)
                continue
            out.append(BgmHit(aid, track, score))
            if len(out) == k:
                break
        return out


class LibraryVideoGrounder:
    """Library-wide frame or clip search, for requests that allow clips from outside the pool."""

    def __init__(self, library_dir: str | Path, catalog: Catalog, kind: str = "frames") -> None:
        if kind not in ("frames", "clips"):
            raise PlanError(f"library video grounding searches frames or clips, not {kind!r}")
        from autocut.library.indexing import open_library_index

        self.kind = kind
        try:
            self._index = open_library_index(Path(library_dir), kind, catalog)
        except CatalogError as exc:
            raise PlanError(f"clips from outside the pool need the library's {kind} index: {exc}") from None

    def search(self, queries: np.ndarray, k: int = 1) -> list[list[tuple[int, int, float]]]:
        """Per query, (frame_id or clip_id, photo_id, score) of the `k` nearest library frames/clips."""
        try:
            res = self._index.search(np.atleast_2d(queries), k)
        except IndexInputError as exc:
            raise PlanError(f"cannot ground embeddings in the library: {exc}") from None
        photo = (lambda i: split_frame_id(i)[0]) if self.kind == "frames" else (lambda i: split_clip_id(i).photo_id)
        return [[(i, photo(i), s) for i, s in res.hits(r)] for r in range(res.ids.shape[0])]


class SourceWindow:
    """Which parts of each source the plan has used, so segments stay inside sources and apart."""

    def __init__(self, durations_s: dict[int, float], *, allow_reuse: bool = False) -> None:
        self.durations_s = durations_s
        self.allow_reuse = allow_reuse
        self._used: dict[int, list[tuple[float, float]]] = {}

    def free_span(
        self, photo_id: int, at_s: float, reserved: Iterable[tuple[int, float, float]] = ()
    ) -> tuple[float, float]:
        """The largest interval of `photo_id` around time `at_s` that is neither used nor `reserved`
        ((photo_id, start_s, end_s) spans kept for clips not yet grounded), clamped into the source."""
        dur = self.durations_s[photo_id]
        at = min(max(at_s, 0.0), dur)
        lo, hi = 0.0, dur
        if self.allow_reuse:
            return lo, hi
        blocked = self._used.get(photo_id, []) + [(a, b) for p, a, b in reserved if p == photo_id]
        for a, b in blocked:
            if b <= at + 1e-6:
                lo = max(lo, b)
            elif a >= at - 1e-6:
                hi = min(hi, a)
            else:  # `at` falls inside a blocked interval: nothing free here
                return at, at
        return lo, hi

    def take(self, photo_id: int, start_s: float, end_s: float) -> None:
        self._used.setdefault(photo_id, []).append((start_s, end_s))

    def used(self, photo_id: int) -> list[tuple[float, float]]:
        return list(self._used.get(photo_id, []))
