"""FAISS runtime settings: exact-search code path and threads for small batches (measured facts below).

FAISS computes exact inner products for a batch of `nq` queries through BLAS (sgemm) when
`nq >= faiss.cvar.distance_compute_blas_threshold`, else through its own SIMD loop. Which is
faster depends on the machine: on one 2-core machine the OpenBLAS bundled with faiss-cpu
(0.3.15) did not recognise the CPU and ran a generic kernel, and BLAS was 10x slower for
64-query batches at 1M x 128-d (29 vs 2.9 ms/query); on the
Zen CPU this package was developed on OpenBLAS recognises the core and BLAS was ~4x faster when
the machine was idle but ~4x slower when other processes loaded both cores (OpenMP threads of
small sgemm blocks then wait on each other). The SIMD loop never depends on OpenBLAS recognising
the CPU, and its cost is predictable, so this package keeps query batches on it: the switch is
raised (never lowered) to `SIMD_MAX_QUERIES`, which is faiss-cpu 1.15's own default. The switch
is process-global FAISS state, and only speed depends on it, never results.
Environment variables (OPENBLAS_CORETYPE) are deliberately not touched here: only `server`
reads or sets the environment, and a forced core type must first be verified against exact search.
`benchmarks/indexes.py` measures both paths on each run and prints them.
"""

from __future__ import annotations

import contextlib
import ctypes
import re
from collections.abc import Iterator

import faiss

__all__ = [
    "PARALLEL_MIN_QUERIES",
    "SIMD_MAX_QUERIES",
    "keep_query_batches_on_simd",
    "openblas_core",
    "threads_for_batch",
]

# Batches below this many queries take the SIMD loop: larger than any batch this package searches
# with (calibration uses a few hundred queries); IVF k-means assignment of a larger training
# sample may still use BLAS, which is where a recognised core type pays off (forcing one gave
# 2-6x faster index training on that machine).
SIMD_MAX_QUERIES = 128_000


def keep_query_batches_on_simd() -> int:
    """Raise FAISS's BLAS switch to at least `SIMD_MAX_QUERIES`; returns the value in force."""
    if faiss.cvar.distance_compute_blas_threshold < SIMD_MAX_QUERIES:
        faiss.cvar.distance_compute_blas_threshold = SIMD_MAX_QUERIES
    return int(faiss.cvar.distance_compute_blas_threshold)


def openblas_core() -> str | None:
    """Core type chosen by the OpenBLAS that faiss loaded, e.g. "Zen" (Linux only; None if unknown).

    "Prescott" or another generic name means OpenBLAS did not recognise the CPU (the slow generic-kernel case above).
    """
    try:
        with open("/proc/self/maps", encoding="utf-8") as fh:
            paths = set(re.findall(r"(/\S*openblas\S*\.so\S*)", fh.read()))
    except OSError:
        return None
    for path in sorted(paths):
        try:
            fn = ctypes.CDLL(path).openblas_get_corename
        except (OSError, AttributeError):
            continue
        fn.restype = ctypes.c_char_p
        name = fn()
        return name.decode() if name else None
    return None


# Batches smaller than this are searched on the calling thread alone. Every structure here keeps
# a query's own work around a millisecond or less (exact search only while N x D is small), and
# at that size FAISS's OpenMP fan-out costs more than it saves: on the 2-core development VM a
# single exact query over 100k vectors took 17 ms on one thread and 88 ms on two when other
# processes kept the cores busy, and single-thread was faster even when the machine was idle.
# Larger batches keep FAISS's parallelism over queries.
PARALLEL_MIN_QUERIES = 16


@contextlib.contextmanager
def threads_for_batch(n_queries: int) -> Iterator[None]:
    """Run a FAISS search of `n_queries` single-threaded when the batch is small.

    OpenMP's thread count is per calling thread (the nthreads-var ICV belongs to the current task),
    so this does not change the setting of other threads searching concurrently.
    """
    if n_queries >= PARALLEL_MIN_QUERIES:
        yield
        return
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)
