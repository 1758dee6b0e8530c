"""Building a library index for one kind (frames, clips, BGM tracks) from ids and vectors.

Structure by size: exact search (`IDMap,Flat`) while N x D is small enough for a
single query to stay around a millisecond, an approximate structure past that. Both approximate
structures are implemented and measured by `benchmarks/indexes.py`; IVF is the default (see
`BuildConfig.approximate`). Search parameters (HNSW efSearch, IVF nprobe) are not guessed: after
building, a sample of the indexed vectors is searched exactly and approximately and the smallest
setting that reaches the target recall@10 is kept and recorded in the metadata, so the same code
serves clustered synthetic data, real frame embeddings and whatever a new encoder produces.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal

import faiss
import numpy as np

from indexes.errors import IndexInputError
from indexes.index import KINDS, METRIC, IndexMeta, LibraryIndex, Structure, StructureParams
from indexes.runtime import keep_query_batches_on_simd
from indexes.vectors import as_ids, as_unit_vectors

__all__ = ["BuildConfig", "Progress", "build_index", "choose_structure", "rebuild_advised"]

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (vectors added so far, total)

_EF_SEARCH_STEPS = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
_NPROBE_STEPS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)


@dataclass(frozen=True)
class BuildConfig:
    """How to build an index; the defaults come from benchmarks/indexes.py on a 2-core machine."""

    # Exact search while count x dim is at most this. Exact single-query search measured ~1 ms at
    # 20k x 128-d (and ~10 ms at 200k, ~70 ms at 1M), so 20k 128-d frames or 1.25k 2048-d tracks.
    exact_max_values: int = 20_000 * 128
    # IVF, measured at 1M clustered 128-d vectors on 2 shared cores: IVF4096 reached recall@10
    # 0.9999 at nprobe 8 with p50 0.56 ms, built in ~2 min; HNSW32 (efConstruction 40) took ~5 min
    # to build and stayed at 0.944 even at efSearch 256 (p50 0.46 ms), and costs ~256 MB more.
    approximate: Literal["hnsw", "ivf"] = "ivf"
    # Overrides the size rule (benchmarks and tests build every structure at every size).
    force_structure: Structure | None = None
    hnsw_m: int = 32  # graph degree: memory is ~ 8*M bytes per vector on top of the vectors
    hnsw_ef_construction: int = 40  # FAISS's default; higher builds slower for little recall here
    ivf_lists_per_sqrt_n: float = 4.0  # nlist ~ 4 sqrt(N), rounded to a power of two
    ivf_train_per_list: int = 64  # k-means sample = nlist x this (FAISS warns below 39)
    # Calibrated on indexed vectors; a margin above the target of 0.95 on unseen queries (benchmarks/indexes.py).
    target_recall_at_10: float = 0.97
    calibration_queries: int = 256
    add_batch_size: int = 50_000  # progress granularity
    seed: int = 0


def choose_structure(count: int, dim: int, config: BuildConfig) -> Structure:
    """Flat while `count * dim <= config.exact_max_values`, else `config.approximate`."""
    if config.force_structure is not None:
        return config.force_structure
    return "flat" if count * dim <= config.exact_max_values else config.approximate


def rebuild_advised(meta: IndexMeta, config: BuildConfig | None = None) -> str | None:
    """Why an index that grew by incremental adds should be rebuilt, or None if it need not be."""
    config = config or BuildConfig()
    wanted = choose_structure(meta.count, meta.dim, config)
    if wanted != meta.params.structure:
        return (
            f"{meta.kind} index holds {meta.count} vectors, for which the size rule picks "
            f"{wanted} rather than its current {meta.params.structure}"
        )
    if meta.params.structure == "ivf" and meta.params.nlist and _ivf_nlist(meta.count, config) >= 4 * meta.params.nlist:
        return f"{meta.kind} IVF index has grown to {meta.count} vectors for {meta.params.nlist} lists"
    return None


def _ivf_nlist(count: int, config: BuildConfig) -> int:
    nlist = 2 ** round(math.log2(max(1.0, config.ivf_lists_per_sqrt_n * math.sqrt(count))))
    return int(max(1, min(nlist, count // 39)))  # FAISS needs >= 39 training points per list


def _factory(structure: Structure, count: int, config: BuildConfig) -> str:
    if structure == "flat":
        return "IDMap,Flat"
    if structure == "hnsw":
        return f"IDMap,HNSW{config.hnsw_m},Flat"
    return f"IDMap,IVF{_ivf_nlist(count, config)},Flat"


def build_index(
    ids: np.ndarray,
    vectors: np.ndarray,
    *,
    kind: str,
    encoder: str,
    pca_version: str | None,
    config: BuildConfig | None = None,
    progress: Progress | None = None,
) -> LibraryIndex:
    """Build the index of one kind over `vectors` (N, D) under `ids` (N,) int64."""
    config = config or BuildConfig()
    if kind not in KINDS:
        raise IndexInputError(f"unknown index kind {kind!r}; expected one of {', '.join(KINDS)}")
    ids = as_ids(ids)
    vecs = as_unit_vectors(vectors, ids=ids)  # (N, D)
    if vecs.shape[0] != ids.shape[0]:
        raise IndexInputError(f"{ids.shape[0]} ids for {vecs.shape[0]} vectors")
    count, dim = vecs.shape
    structure = choose_structure(count, dim, config)
    if structure == "ivf" and count < 39:
        raise IndexInputError(f"an IVF index needs at least 39 vectors to train, got {count}")
    keep_query_batches_on_simd()
    if progress is not None:
        progress(0, count)  # before IVF training, which can take minutes at 1M
    start = time.perf_counter()
    factory = _factory(structure, count, config)
    index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    assert isinstance(index, faiss.IndexIDMap), type(index)  # every factory string starts with IDMap
    inner = faiss.downcast_index(index.index)
    extra: dict[str, int] = {}
    if structure == "hnsw":
        assert isinstance(inner, faiss.IndexHNSW), type(inner)
        inner.hnsw.efConstruction = config.hnsw_ef_construction
        extra = {"hnsw_m": config.hnsw_m, "ef_construction": config.hnsw_ef_construction}
    elif structure == "ivf":
        assert isinstance(inner, faiss.IndexIVF), type(inner)
        train_count = min(count, inner.nlist * config.ivf_train_per_list)
        rng = np.random.default_rng(config.seed)
        sample = vecs[np.sort(rng.choice(count, train_count, replace=False))]
        log.info("training IVF%d on %d of %d %s vectors", inner.nlist, train_count, count, kind)
        index.train(sample)
        del sample
        extra = {"nlist": int(inner.nlist), "train_count": int(train_count)}
    for lo in range(0, count, config.add_batch_size):
        hi = min(count, lo + config.add_batch_size)
        index.add_with_ids(vecs[lo:hi], ids[lo:hi])
        if progress is not None:
            progress(hi, count)
    params = StructureParams(structure=structure, faiss_version=faiss.__version__, build_time_s=0.0, **extra)
    if isinstance(inner, faiss.IndexHNSW | faiss.IndexIVF):  # structure != "flat"
        params = _calibrate(index, inner, ids, vecs, params, config)
    params = replace(params, build_time_s=round(time.perf_counter() - start, 3))
    meta = IndexMeta(
        kind=kind,
        dim=int(dim),
        metric=METRIC,
        factory=factory,
        count=int(index.ntotal),
        encoder=encoder,
        pca_version=pca_version,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        params=params,
    )
    log.info("built %s index: %d x %d, %s, %.1f s", kind, count, dim, factory, params.build_time_s)
    return LibraryIndex(index, meta)


def _calibrate(
    index: faiss.IndexIDMap,
    inner: faiss.IndexHNSW | faiss.IndexIVF,
    ids: np.ndarray,
    vecs: np.ndarray,
    params: StructureParams,
    config: BuildConfig,
) -> StructureParams:
    """Smallest efSearch / nprobe whose recall@10 on a sample of indexed vectors meets the target."""
    count = vecs.shape[0]
    k = min(10, count - 1)
    nq = min(config.calibration_queries, count)
    rng = np.random.default_rng(config.seed + 1)
    rows = np.sort(rng.choice(count, nq, replace=False))
    queries = vecs[rows]  # (nq, D)
    # Ground truth by brute force over the same vectors (no second copy of the data).
    _, exact_pos = faiss.knn(queries, vecs, k + 1, metric=faiss.METRIC_INNER_PRODUCT)
    exact = [_drop(ids[p[p >= 0]], ids[r], k) for p, r in zip(exact_pos, rows, strict=True)]
    steps: tuple[int, ...]
    if isinstance(inner, faiss.IndexHNSW):
        steps, field = _EF_SEARCH_STEPS, "ef_search"
    else:
        steps, field = tuple(s for s in _NPROBE_STEPS if s < inner.nlist) + (int(inner.nlist),), "nprobe"
    recall = 0.0
    for value in steps:
        if isinstance(inner, faiss.IndexHNSW):
            inner.hnsw.efSearch = value
        else:
            inner.nprobe = value
        _, found = index.search(queries, k + 1)
        recall = float(
            np.mean(
                [np.intersect1d(_drop(f, ids[r], k), e).size / k for f, e, r in zip(found, exact, rows, strict=True)]
            )
        )
        log.debug("calibration %s=%d: recall@%d %.4f", field, value, k, recall)
        if recall >= config.target_recall_at_10:
            break
    else:
        log.warning(
            "%s index: recall@%d %.3f below target %.3f even at %s=%d",
            params.structure,
            k,
            recall,
            config.target_recall_at_10,
            field,
            value,
        )
    params = replace(
        params,
        target_recall_at_10=config.target_recall_at_10,
        calibrated_recall_at_10=round(recall, 4),
        calibration_queries=int(nq),
    )
    if isinstance(inner, faiss.IndexHNSW):
        return replace(params, ef_search=int(value))
    return replace(params, nprobe=int(value))


def _drop(found_ids: np.ndarray, own_id: int, k: int) -> np.ndarray:
    """First k ids of a result row other than the query's own (and other than padding)."""
    keep = found_ids[(found_ids != own_id) & (found_ids >= 0)]
    return keep[:k]
