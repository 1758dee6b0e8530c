"""Baseline planners side by side on a synthetic library: task metrics and planning latency.

Data (synthetic embeddings, real catalog, real grounding and TTS): P products, each with one source
of R clips (3 s, one per narrative role, shot in a shuffled order) and one single-clip extra source.
A frame embedding is the product's centre + its role's direction + noise (L2-normalised); the
reference edit of a product lists its R clips in role order with its category's BGM track. 75 % of
products are training data (their reference edits are what the heuristic learns openings and
category music from); each held-out product is one script-driven selection sample: pool = its R-clip source + the
extra sources of R other products (positives + equal negatives, as AutoCut's selection task), and
one sorting sample: pool = its R clips only, to be ordered like the reference.
Scored with `autocut.evaluation.metrics`: CSA, CRA, SRA, pairwise order accuracy, Kendall tau, BGM Hit@1, and
ms per `plan_edit` call. The random planner is the baseline measured in the same run.
These figures say the planners do what they are built to do on data made for it; real planner
comparisons are the evaluation harness's job (`autocut eval`, docs/evaluation.md) on the demo world's held-out split.
Run: nice .venv/bin/python -m benchmarks.planner [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from autocut.evaluation import metrics
from autocut.library.catalog import Catalog, NewBgm, NewSource, ProductRecord, RefEditRecord, RefSegment
from autocut.planning import PlanOptions, plan_edit
from autocut.types import PlanRequest, PoolItem, ProductInfo
from benchmarks.common import print_table

DIM = 128
ROLES = 4  # clips per ad
CLIP_S = 3  # seconds (= 1 fps frames) per clip
N_CATEGORIES = 3
N_TRACKS = 12
# Norm of the per-frame noise vector (the centre and role directions have norms 1 and 0.8).
NOISE = 2.5
SCRIPT = ["Tired of slow mornings?", "Meet the bottle.", "It blends in seconds.", "Get yours today!"]


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _source(path: str, frames: np.ndarray, spans: list[tuple[float, float]]) -> NewSource:
    clips = np.stack([_unit(frames[int(a) : int(b)].mean(axis=0)) for a, b in spans])
    return NewSource(
        content_hash=hashlib.sha256(path.encode()).hexdigest(),
        path=path,
        kind="footage",
        duration_s=float(len(frames)),
        probe={"width": 320, "height": 240, "fps": 25.0},
        frame_times_s=[float(i) for i in range(len(frames))],
        frames_raw=frames[:, :16].copy(),
        frames=frames,
        clip_spans=spans,
        clips=clips,
    )


def build_library(root: Path, n_products: int, seed: int = 0) -> list[dict]:
    """Write the synthetic library; return the held-out samples."""
    rng = np.random.default_rng(seed)
    roles = _unit(rng.normal(size=(ROLES, DIM)))
    centres = _unit(rng.normal(size=(n_products, DIM)))
    tracks = _unit(rng.normal(size=(N_TRACKS, 64)))
    category_track = rng.choice(N_TRACKS, N_CATEGORIES, replace=False)
    products = []
    with Catalog.open(root, writable=True, frame_encoder="synthetic", audio_encoder="synthetic") as cat:
        audio_ids = cat.add_bgm(
            [
                NewBgm(
                    content_hash=f"t{k}",
                    source_path=f"/synthetic/track{k}.wav",
                    start_s=0.0,
                    duration_s=25.0,
                    blocks=tracks[k : k + 1],
                    track=tracks[k],
                )
                for k in range(N_TRACKS)
            ]
        )
        for p in range(n_products):
            shot_order = rng.permutation(ROLES)  # the source is not shot in ad order
            frames, role_span = [], {}
            for pos, role in enumerate(shot_order):
                f = centres[p] + 0.8 * roles[role] + NOISE * rng.normal(size=(CLIP_S, DIM)) / np.sqrt(DIM)
                frames.append(_unit(f))
                role_span[int(role)] = (float(pos * CLIP_S), float((pos + 1) * CLIP_S))
            main = np.concatenate(frames)
            spans = [(float(k * CLIP_S), float((k + 1) * CLIP_S)) for k in range(ROLES)]
            pid = cat.add_source(_source(f"/synthetic/p{p}-main.mp4", main, spans))
            extra = _unit(
                centres[p] + 0.8 * roles[rng.integers(ROLES)] + NOISE * rng.normal(size=(CLIP_S, DIM)) / np.sqrt(DIM)
            )
            xid = cat.add_source(_source(f"/synthetic/p{p}-extra.mp4", extra, [(0.0, float(CLIP_S))]))
            split = "train" if p < int(0.75 * n_products) else "test"
            category = p % N_CATEGORIES
            cat.upsert_product(ProductRecord(f"p{p}", f"Product {p}", category=f"cat{category}", split=split))
            ref_clips = [pid * 10**7 + int(role_span[r][0]) * 10**3 + CLIP_S for r in range(ROLES)]
            cat.add_reference_edit(
                RefEditRecord(
                    f"e{p}",
                    f"p{p}",
                    "en",
                    [RefSegment(pid, role_span[r][0], CLIP_S, SCRIPT[r]) for r in range(ROLES)],
                    audio_id=audio_ids[category_track[category]],
                    split=split,
                )
            )
            products.append(
                {
                    "p": p,
                    "main": pid,
                    "extra": xid,
                    "category": category,
                    "ref_clips": ref_clips,
                    "ref_audio": audio_ids[category_track[category]],
                    "split": split,
                }
            )
    samples = []
    for prod in (x for x in products if x["split"] == "test"):
        others = [x for x in products if x["p"] != prod["p"]]
        negs = rng.choice(len(others), ROLES, replace=False)
        pool = [prod["main"], *(others[i]["extra"] for i in negs)]
        samples.append({**prod, "pool": [int(x) for x in rng.permutation(pool)]})
    return samples


def _plan(root: Path, s: dict, pool: list[int], planner: str) -> tuple[list[int], int | None, float]:
    req = PlanRequest(
        product=ProductInfo(name=f"Product {s['p']}", category=f"cat{s['category']}"),
        pool=[PoolItem(photo_id=p) for p in pool],
        script=SCRIPT,
        seed=s["p"],
    )
    t0 = time.perf_counter()
    (plan,) = plan_edit(root, req, planner, options=PlanOptions(segment_mode="by_clip"))
    wall = time.perf_counter() - t0
    return [int(seg.clip_id) for seg in plan.segments], (plan.bgm.audio_id if plan.bgm else None), wall


def run_planner(root: Path, samples: list[dict], planner: str) -> dict[str, float]:
    """Selection (pool = positives + negatives) and sorting (pool = the positives) per held-out product."""
    sels, pos_sets, orders, refs, bgm_pred, bgm_ref, wall = ([] for _ in range(7))
    for s in samples:
        seq, _, w = _plan(root, s, s["pool"], planner)
        sels.append(seq)
        pos_sets.append(set(s["ref_clips"]))
        wall.append(w)
        order, audio, _ = _plan(root, s, [s["main"]], planner)
        orders.append(order)
        refs.append(s["ref_clips"])
        bgm_pred.append([audio] if audio is not None else [])
        bgm_ref.append(s["ref_audio"])
    return {
        "CSA (selection)": metrics.csa(sels, pos_sets),
        "SRA (selection run)": metrics.sra(sels, refs),
        "CRA (sorting)": metrics.cra(orders, refs),
        "pairwise order acc": metrics.mean_pairwise_order_accuracy(orders, refs),
        "Kendall tau": metrics.mean_kendall_tau(orders, refs),
        "BGM Hit@1": metrics.bgm_hit_at_k(bgm_pred, bgm_ref, 1),
        "ms per plan (selection)": 1000 * float(np.median(wall)),
    }


def main(quick: bool = False) -> dict:
    n_products = 24 if quick else 80
    tmp = Path(tempfile.mkdtemp(prefix="autocut-bench-planner-"))
    try:
        t0 = time.perf_counter()
        samples = build_library(tmp / "library", n_products)
        build_s = time.perf_counter() - t0
        # Warm the TTS cache so the first planner does not pay espeak's start-up alone.
        run_planner(tmp / "library", samples[:1], "random")
        results = {name: run_planner(tmp / "library", samples, name) for name in ("random", "heuristic")}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = [("samples (held-out products)", str(len(samples))), ("library build", f"{build_s:.1f} s")]
    for metric in results["random"]:
        r, h = results["random"][metric], results["heuristic"][metric]
        ratio = f" ({h / r:.2f}x random)" if r and not np.isnan(r) and metric != "Kendall tau" else ""
        rows.append((metric, f"heuristic {h:.3f}  random {r:.3f}{ratio}"))
    print_table("baseline planners on synthetic clustered embeddings (script-driven, by clip)", rows)
    return {
        "n_samples": len(samples),
        "build_s": build_s,
        **{f"{p}/{k}": v for p, r in results.items() for k, v in r.items()},
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer products")
    main(quick=ap.parse_args().quick)
