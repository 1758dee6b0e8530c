"""Library index speed and recall: exact vs the approximate structures, on clustered 128-d vectors.

Data: a mixture of 1,000 Gaussian clusters (unit-norm centres, per-dimension std 0.05,
then L2-normalised), N = 100k and 1M; queries are fresh draws from the same mixture. Uniform random
vectors make every approximate index look terrible (recall@10 < 0.2 at 1M), so they are not used.
Per structure: build time (including the recall calibration that picks efSearch / nprobe), single-
query p50/p99, batch throughput, memory (index bytes on disk and RSS growth), recall@10 against exact
search in the same run. Target at 1M: recall@10 >= 0.95 with single-query p50 < 1 ms.
Also: exact single-query latency by N (where the exact->approximate threshold comes from) and FAISS's
BLAS vs SIMD exact-search paths (`indexes/runtime.py`), and `--library DIR` runs the same on a real
library's frame vectors (queries = held-out frames).
The machine is shared: latencies move with other people's load; ratios within one run are steadier.
Run: nice .venv/bin/python -m benchmarks.indexes [--quick] [--library DIR] [--structures flat,ivf,hnsw]
"""

from __future__ import annotations

import argparse
import gc
import shutil
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
import psutil

from benchmarks.common import print_table
from indexes import BuildConfig, LibraryIndex, build_index, load_index, save_index
from indexes.runtime import SIMD_MAX_QUERIES, openblas_core

K = 10
N_QUERIES = 1000
DIM = 128
N_CLUSTERS = 1000
CLUSTER_STD = 0.05


def clustered(n: int, centres: np.ndarray, rng: np.random.Generator, chunk: int = 100_000) -> np.ndarray:
    """`n` L2-normalised draws from the Gaussian mixture around `centres` (float32, built in chunks)."""
    out = np.empty((n, centres.shape[1]), np.float32)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        x = centres[rng.integers(0, len(centres), hi - lo)]
        x += rng.normal(0.0, CLUSTER_STD, x.shape).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[lo:hi] = x
    return out


def mixture(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(base (n, 128), queries (1000, 128)) from the clustered mixture above."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((N_CLUSTERS, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    return clustered(n, centres, rng), clustered(N_QUERIES, centres, rng)


def _percentile_ms(times_s: list[float], q: float) -> float:
    return float(np.percentile(times_s, q) * 1e3)


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def measure_index(index: LibraryIndex, queries: np.ndarray, truth: np.ndarray, *, n_single: int) -> dict:
    """Latency, throughput and recall@10 of one built index."""
    index.search(queries[:8], K)  # warm-up
    times = []
    for i in range(n_single):
        t0 = time.perf_counter()
        index.search(queries[i % queries.shape[0]], K)
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    res = index.search(queries, K)
    batch_s = time.perf_counter() - t0
    recall = float(np.mean([np.intersect1d(a, b).size / K for a, b in zip(res.ids, truth, strict=True)]))
    return {
        "p50_ms": _percentile_ms(times, 50),
        "p99_ms": _percentile_ms(times, 99),
        "batch_qps": queries.shape[0] / batch_s,
        "recall_at_10": recall,
    }


def run_structure(
    structure: str, ids: np.ndarray, base: np.ndarray, queries: np.ndarray, truth: np.ndarray, workdir: Path
) -> dict:
    gc.collect()
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    index = build_index(
        ids, base, kind="frames", encoder="benchmark", pca_version=None, config=BuildConfig(force_structure=structure)
    )
    build_s = time.perf_counter() - t0
    gc.collect()
    rss_growth = _rss_mb() - rss0
    directory = workdir / structure
    t0 = time.perf_counter()
    save_index(directory, index)
    save_s = time.perf_counter() - t0
    disk_mb = sum(p.stat().st_size for p in directory.rglob("index.faiss")) / 2**20
    del index
    gc.collect()
    t0 = time.perf_counter()
    index = load_index(directory)
    load_s = time.perf_counter() - t0
    # Exact search at 1M is ~50-100 ms a query: fewer single queries keep the run short.
    n_single = 100 if structure == "flat" and base.shape[0] > 200_000 else 300
    figures = measure_index(index, queries, truth, n_single=n_single)
    p = index.meta.params
    figures.update(
        {
            "factory": index.meta.factory,
            "build_s": build_s,
            "save_s": save_s,
            "load_s": load_s,
            "index_mb": disk_mb,
            "rss_growth_mb": rss_growth,
            "search_param": {"hnsw": f"efSearch={p.ef_search}", "ivf": f"nprobe={p.nprobe}"}.get(structure, ""),
            "calibrated_recall_at_10": p.calibrated_recall_at_10,
        }
    )
    shutil.rmtree(directory, ignore_errors=True)
    return figures


def blas_vs_simd(base: np.ndarray, queries: np.ndarray) -> dict:
    """Exact search of a 64-query batch through FAISS's BLAS path and its SIMD path (ms per query)."""
    index = faiss.IndexFlatIP(base.shape[1])
    index.add(base)
    q = queries[:64]
    previous = faiss.cvar.distance_compute_blas_threshold
    out = {}
    try:
        for name, threshold in (("blas", 1), ("simd", SIMD_MAX_QUERIES), ("blas", 1), ("simd", SIMD_MAX_QUERIES)):
            faiss.cvar.distance_compute_blas_threshold = threshold
            t0 = time.perf_counter()
            index.search(q, K)
            ms = (time.perf_counter() - t0) * 1e3 / q.shape[0]
            out[f"{name}_ms_per_query"] = min(ms, out.get(f"{name}_ms_per_query", ms))
    finally:
        faiss.cvar.distance_compute_blas_threshold = previous
    return out


def exact_latency_by_size(base: np.ndarray, queries: np.ndarray, sizes: tuple[int, ...]) -> dict:
    """Exact single-query p50 at growing N: where exact search stops being ~1 ms."""
    out = {}
    for n in sizes:
        if n > base.shape[0]:
            continue
        index = build_index(
            np.arange(n),
            base[:n],
            kind="frames",
            encoder="benchmark",
            pca_version=None,
            config=BuildConfig(force_structure="flat"),
        )
        index.search(queries[0], K)
        times = []
        for i in range(200):
            t0 = time.perf_counter()
            index.search(queries[i], K)
            times.append(time.perf_counter() - t0)
        out[n] = _percentile_ms(times, 50)
    return out


def run_dataset(
    label: str, ids: np.ndarray, base: np.ndarray, queries: np.ndarray, structures: tuple[str, ...]
) -> dict:
    t0 = time.perf_counter()
    _, truth_pos = faiss.knn(queries, base, K, metric=faiss.METRIC_INNER_PRODUCT)
    truth = ids[truth_pos]
    result: dict = {
        "n": int(base.shape[0]),
        "truth_s": time.perf_counter() - t0,
        "blas_vs_simd": blas_vs_simd(base, queries),
    }
    workdir = Path(tempfile.mkdtemp(prefix="bench_indexes_"))
    try:
        for structure in structures:
            print(f"  [{label}] building {structure} ...", flush=True)
            result[structure] = run_structure(structure, ids, base, queries, truth, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    exact = result.get("flat")
    rows = []
    for structure in structures:
        f = result[structure]
        ratio = ""
        if exact and structure != "flat":
            f["p50_speedup_vs_exact"] = exact["p50_ms"] / f["p50_ms"]
            f["qps_ratio_vs_exact"] = f["batch_qps"] / exact["batch_qps"]
            ratio = f", p50 {f['p50_speedup_vs_exact']:.0f}x faster than exact, batch {f['qps_ratio_vs_exact']:.1f}x"
        rows.append(
            (
                f"{structure:<5} {f['factory']} {f['search_param']}".rstrip(),
                f"recall@10 {f['recall_at_10']:.4f}, p50 {f['p50_ms']:.3f} ms, p99 {f['p99_ms']:.3f} ms, "
                f"batch {f['batch_qps']:,.0f} q/s, build {f['build_s']:.1f} s, "
                f"index {f['index_mb']:.0f} MB (RSS +{f['rss_growth_mb']:.0f} MB), load {f['load_s']:.2f} s" + ratio,
            )
        )
    bs = result["blas_vs_simd"]
    rows.append(
        (
            "exact 64-query batch",
            f"BLAS path {bs['blas_ms_per_query']:.3f} ms/query, SIMD path {bs['simd_ms_per_query']:.3f} ms/query",
        )
    )
    print_table(f"{label}: N={base.shape[0]:,} x {base.shape[1]}, {queries.shape[0]} queries, k={K}", rows)
    return result


def library_vectors(library: Path) -> tuple[np.ndarray, np.ndarray]:
    from autocut.library.catalog import Catalog  # only this optional path needs the catalog

    with Catalog.open(library, create=False) as cat:
        return cat.frame_vectors()


def main(
    quick: bool = False, library: Path | None = None, structures: tuple[str, ...] = ("flat", "ivf", "hnsw")
) -> dict:
    figures: dict = {
        "openblas_core": openblas_core(),
        "faiss_version": faiss.__version__,
        "default_structure": BuildConfig().approximate,
        "default_exact_max_vectors_128d": BuildConfig().exact_max_values // DIM,
    }
    print(
        f"faiss {faiss.__version__}, OpenBLAS core {figures['openblas_core']}, "
        f"{faiss.omp_get_max_threads()} threads; shared machine: latencies are noisy, compare within a run"
    )
    sizes = (100_000,) if quick else (100_000, 1_000_000)
    for n in sizes:
        base, queries = mixture(n)
        label = f"mixture {n // 1000}k"
        figures[f"mixture_{n}"] = run_dataset(label, np.arange(n, dtype=np.int64), base, queries, structures)
        if n == 100_000:
            by_size = exact_latency_by_size(base, queries, (5_000, 10_000, 20_000, 50_000, 100_000))
            figures["exact_p50_ms_by_n"] = by_size
            print_table(
                "exact single-query p50 by N (128-d)", [(f"N={n:,}", f"{ms:.3f} ms") for n, ms in by_size.items()]
            )
        del base, queries
        gc.collect()
    if library is not None:
        ids, vecs = library_vectors(Path(library))
        if len(ids) < 2 * K + 10:
            print(f"library {library}: only {len(ids)} frames, skipped")
        else:
            rng = np.random.default_rng(0)
            held = rng.choice(len(ids), min(N_QUERIES, len(ids) // 10), replace=False)
            keep = np.setdiff1d(np.arange(len(ids)), held)
            figures["library"] = run_dataset(
                f"library {library}",
                ids[keep],
                vecs[keep],
                vecs[held],
                tuple(s for s in structures if s != "ivf" or len(keep) >= 39),
            )
    at_1m = figures.get("mixture_1000000", {}).get(BuildConfig().approximate)
    if at_1m:
        ok = at_1m["recall_at_10"] >= 0.95 and at_1m["p50_ms"] < 1.0
        figures["target_met_at_1m"] = ok
        print(
            f"\ntarget at 1M (recall@10 >= 0.95, p50 < 1 ms) with the default {BuildConfig().approximate}: "
            f"{'met' if ok else 'NOT met'} (recall {at_1m['recall_at_10']:.4f}, p50 {at_1m['p50_ms']:.3f} ms)"
        )
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k only")
    parser.add_argument("--library", type=Path, default=None, help="also run on this library's frame vectors")
    parser.add_argument("--structures", default="flat,ivf,hnsw", help="comma-separated subset of flat,ivf,hnsw")
    args = parser.parse_args()
    main(quick=args.quick, library=args.library, structures=tuple(args.structures.split(",")))
