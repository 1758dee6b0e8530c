"""The library's FAISS indexes: glue between the catalog and `indexes` (docs/method.md, "Decoding and grounding").

Index files live in `<library>/indexes/<kind>/` (kinds: frames, clips, bgm). CLI, server, worker
and tests all go through these functions, which also translate `indexes` errors into
`autocut.errors` with the command that fixes them.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autocut.errors import CatalogError, ConfigError, TransientError, VersionMismatchError
from autocut.library.catalog import Catalog
from autocut.library.layout import LibraryLayout
from indexes import (
    KINDS,
    BuildConfig,
    ExpectedIndex,
    IndexBusyError,
    IndexCorruptError,
    IndexesError,
    IndexHolder,
    IndexInputError,
    IndexMeta,
    IndexMismatchError,
    IndexNotFoundError,
    IndexWriter,
    LibraryIndex,
    add_to_stored_index,
    build_index,
    load_index,
    read_meta,
)

__all__ = [
    "INDEX_KINDS",
    "IndexStatus",
    "KindRebuild",
    "RebuildProgress",
    "RebuildSummary",
    "add_to_library_index",
    "expected_index",
    "index_dir",
    "index_status",
    "library_index_holder",
    "open_library_index",
    "rebuild_indexes",
]

log = logging.getLogger(__name__)

INDEX_KINDS = KINDS  # ("frames", "clips", "bgm")

RebuildProgress = Callable[[str, int, int], None]  # (kind, vectors added so far, total)


def index_dir(library_dir: Path, kind: str) -> Path:
    """Directory holding the published index of `kind`."""
    _check_kind(kind)
    return LibraryLayout.of(library_dir).index_dir(kind)


def _check_kind(kind: str) -> None:
    if kind not in INDEX_KINDS:
        raise ConfigError(f"unknown index kind {kind!r}; choose from {', '.join(INDEX_KINDS)}")


def expected_index(catalog: Catalog, kind: str) -> ExpectedIndex:
    """What an index of `kind` must have been built from to serve this library now."""
    _check_kind(kind)
    if kind == "bgm":
        return ExpectedIndex(kind=kind, encoder=catalog.audio_encoder, pca_version=None)
    # Frame and clip vectors are 128-d PCA outputs: the PCA version pins their meaning
    # (docs/method.md, "Encoders and the library PCA").
    return ExpectedIndex(kind=kind, encoder=catalog.frame_encoder, pca_version=catalog.pca_version or None)


def _catalog_vectors(catalog: Catalog, kind: str) -> tuple[np.ndarray, np.ndarray]:
    if kind == "frames":
        return catalog.frame_vectors()
    if kind == "clips":
        return catalog.clip_vectors()
    return catalog.bgm_vectors()


@contextlib.contextmanager
def _translated(kind: str, library_dir: Path) -> Iterator[None]:
    """Re-raise `indexes` errors as AutoCut errors that say which command fixes them."""
    fix = f"run `autocut --library {library_dir} index rebuild --kind {kind}`"
    try:
        yield
    except IndexMismatchError as exc:
        raise VersionMismatchError(f"{exc}; {fix}") from exc
    except IndexNotFoundError as exc:
        raise CatalogError(f"no {kind} index has been built for library {library_dir}; {fix}") from exc
    except IndexCorruptError as exc:
        raise CatalogError(f"{kind} index is unusable: {exc}; {fix}") from exc
    except IndexBusyError as exc:
        raise TransientError(str(exc)) from exc
    except IndexInputError as exc:
        raise CatalogError(f"{kind} vectors of library {library_dir}: {exc}") from exc
    except IndexesError as exc:  # pragma: no cover - every subclass is handled above
        raise CatalogError(str(exc)) from exc


@dataclass(frozen=True)
class KindRebuild:
    """Outcome of rebuilding one kind."""

    kind: str
    count: int
    dim: int
    factory: str  # e.g. "IDMap,HNSW32,Flat"
    search_params: str  # e.g. "efSearch=48"; "" for exact indexes
    calibrated_recall_at_10: float | None  # None for exact indexes (recall 1 by construction)
    generation: int
    build_time_s: float
    total_time_s: float  # reading vectors + build + publish
    directory: Path


@dataclass(frozen=True)
class RebuildSummary:
    """What `rebuild_indexes` did."""

    library_dir: Path
    kinds: tuple[KindRebuild, ...]  # rebuilt and published
    skipped: tuple[tuple[str, str], ...]  # (kind, reason) left as they were, e.g. no vectors yet
    total_time_s: float

    def to_text(self) -> str:
        lines = [f"indexes of {self.library_dir} ({self.total_time_s:.1f} s)"]
        for k in self.kinds:
            recall = "exact" if k.calibrated_recall_at_10 is None else f"recall@10 {k.calibrated_recall_at_10:.3f}"
            params = f" {k.search_params}" if k.search_params else ""
            lines.append(
                f"  {k.kind:<6} {k.count:>9} x {k.dim:<4} {k.factory}{params}, {recall}, "
                f"built in {k.build_time_s:.1f} s, generation {k.generation}"
            )
        lines += [f"  {kind:<6} skipped: {reason}" for kind, reason in self.skipped]
        return "\n".join(lines)


def _search_params(meta: IndexMeta) -> str:
    p = meta.params
    if p.structure == "hnsw":
        return f"efSearch={p.ef_search}"
    if p.structure == "ivf":
        return f"nprobe={p.nprobe}"
    return ""


def rebuild_indexes(
    library_dir: Path,
    kinds: Sequence[str],
    progress: RebuildProgress | None = None,
    *,
    config: BuildConfig | None = None,
    lock_timeout_s: float | None = None,
) -> RebuildSummary:
    """Rebuild the given kinds of index from the catalog and publish each atomically.

    Each kind's writer lock is held from reading the vectors to publishing, so incremental adds
    wait and are not lost; a process killed midway leaves the previous index in service.
    """
    library_dir = Path(library_dir).resolve()
    for kind in kinds:
        _check_kind(kind)
    start = time.perf_counter()
    done: list[KindRebuild] = []
    skipped: list[tuple[str, str]] = []
    with Catalog.open(library_dir, create=False) as catalog:
        for kind in dict.fromkeys(kinds):  # de-duplicated, order kept
            kind_start = time.perf_counter()
            expected = expected_index(catalog, kind)
            directory = index_dir(library_dir, kind)
            with _translated(kind, library_dir), IndexWriter(directory, timeout_s=lock_timeout_s) as writer:
                ids, vecs = _catalog_vectors(catalog, kind)
                if len(ids) == 0:
                    # A library without BGM (or footage) yet: the other kinds still get rebuilt.
                    skipped.append((kind, "no vectors in the catalog yet"))
                    continue
                log.info("rebuilding %s index of %s from %d vectors", kind, library_dir, len(ids))
                index = build_index(
                    ids,
                    vecs,
                    kind=kind,
                    encoder=expected.encoder,
                    pca_version=expected.pca_version,
                    config=config,
                    progress=functools.partial(progress, kind) if progress else None,
                )
                del vecs
                generation = writer.publish(index)
            meta = index.meta
            done.append(
                KindRebuild(
                    kind=kind,
                    count=meta.count,
                    dim=meta.dim,
                    factory=meta.factory,
                    search_params=_search_params(meta),
                    calibrated_recall_at_10=meta.params.calibrated_recall_at_10,
                    generation=generation,
                    build_time_s=meta.params.build_time_s,
                    total_time_s=round(time.perf_counter() - kind_start, 3),
                    directory=directory,
                )
            )
    return RebuildSummary(
        library_dir=library_dir,
        kinds=tuple(done),
        skipped=tuple(skipped),
        total_time_s=round(time.perf_counter() - start, 3),
    )


def open_library_index(library_dir: Path, kind: str, catalog: Catalog) -> LibraryIndex:
    """Load the published `kind` index, refusing one built on another encoder or PCA version."""
    with _translated(kind, library_dir):
        return load_index(index_dir(library_dir, kind), expected=expected_index(catalog, kind))


def library_index_holder(
    library_dir: Path,
    kind: str,
    catalog: Catalog,
    *,
    check_interval_s: float = 1.0,
) -> IndexHolder:
    """An `IndexHolder` for a serving process: follows rebuilds and incremental adds atomically."""
    with _translated(kind, library_dir):
        return IndexHolder(
            index_dir(library_dir, kind), expected=expected_index(catalog, kind), check_interval_s=check_interval_s
        )


def add_to_library_index(
    library_dir: Path,
    kind: str,
    ids: np.ndarray,
    vectors: np.ndarray,
    catalog: Catalog,
    *,
    lock_timeout_s: float | None = None,
) -> LibraryIndex | None:
    """Add freshly ingested vectors to the `kind` index (call after the catalog commit).

    Ids already indexed are skipped, so a retried ingest, or one whose rows a concurrent rebuild
    already read, is harmless. With no index built yet, the kind is built from the catalog
    (which already holds these rows). If the stored index was built on another encoder or PCA
    version it must be rebuilt anyway and that rebuild will include these rows: nothing is added,
    a warning is logged and None is returned, so the ingest itself does not fail.
    """
    directory = index_dir(library_dir, kind)
    expected = expected_index(catalog, kind)
    with _translated(kind, library_dir):
        try:
            return add_to_stored_index(
                directory, ids, vectors, expected=expected, timeout_s=lock_timeout_s, skip_existing=True
            )
        except IndexMismatchError as exc:
            log.warning(
                "not adding %d vectors to the stale %s index (%s); run `autocut index rebuild --kind %s`",
                len(ids),
                kind,
                exc,
                kind,
            )
            return None
        except IndexNotFoundError:
            log.info("no %s index in %s yet: building it from the catalog", kind, library_dir)
    rebuild_indexes(library_dir, [kind], lock_timeout_s=lock_timeout_s)
    with _translated(kind, library_dir):
        return load_index(directory, expected=expected)


@dataclass(frozen=True)
class IndexStatus:
    """A published index as recorded in its metadata (None fields: not built)."""

    kind: str
    directory: Path
    generation: int | None
    meta: IndexMeta | None

    def to_text(self) -> str:
        if self.meta is None:
            return f"  {self.kind:<6} not built"
        m = self.meta
        params = _search_params(m)
        return (
            f"  {self.kind:<6} {m.count:>9} x {m.dim:<4} {m.factory}{' ' + params if params else ''}, "
            f"encoder {m.encoder}, PCA {m.pca_version or '-'}, built {m.created_at}, "
            f"+{m.added_since_build} added since, generation {self.generation}"
        )


def index_status(library_dir: Path) -> list[IndexStatus]:
    """Metadata of each kind's published index, without loading the indexes."""
    out = []
    for kind in INDEX_KINDS:
        directory = index_dir(library_dir, kind)
        with _translated(kind, library_dir):
            try:
                generation, meta = read_meta(directory)
            except IndexNotFoundError:
                generation, meta = None, None
        out.append(IndexStatus(kind=kind, directory=directory, generation=generation, meta=meta))
    return out
