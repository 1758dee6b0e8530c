"""The data the identity metric is fitted on (`autocut.planning.identity`): per product of a demo-world split,
its photo embedded as planners embed it and its reel's clips labelled own ad shot or not.

A module of its own because it embeds photos through the heuristic planner, which itself reads the identity
metric."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autocut.errors import ConfigError
from autocut.planning.identity import IdentityPools

__all__ = ["load_identity_pools"]


def load_identity_pools(library_dir: str | Path, split: str, frame_weights: Path | None = None) -> IdentityPools:
    """The demo world's products of `split` (needs `<library>/world/world.json`: which shot is whose)."""
    from autocut.demo_world.manifest import load_manifest
    from autocut.library.catalog import Catalog
    from autocut.planning.candidates import build_candidates
    from autocut.planning.planners.heuristic import embed_product_image
    from autocut.types import PoolItem

    world = load_manifest(library_dir)
    by_photo: dict[int, list[dict]] = {}
    owner: dict[int, str] = {}
    for s in world["shots"]:
        by_photo.setdefault(int(s["photo_id"]), []).append(s)
        if s.get("kind") == "ad":
            owner[int(s["photo_id"])] = str(s["product_id"])
    out = IdentityPools(split, {}, {}, {})
    with Catalog.open(library_dir, create=False) as cat:
        for prod in cat.products(split):
            photo_ids = sorted(p for p, o in owner.items() if o == prod.product_id)
            if not photo_ids or not prod.image_path:
                continue
            pool = build_candidates(cat, [PoolItem(photo_id=p) for p in photo_ids])
            vecs, labels = [], []
            for c in pool.candidates:
                mid = (c.start_s + c.end_s) / 2
                shot = next(
                    (
                        s
                        for s in by_photo.get(c.photo_id, [])
                        if float(s["offset_s"]) <= mid < float(s["offset_s"]) + float(s["duration_s"])
                    ),
                    None,
                )
                vecs.append(np.asarray(c.vector, np.float32))
                labels.append(1 if shot is not None and shot.get("kind") == "ad" else 0)
            out.reels[prod.product_id] = (np.stack(vecs), np.asarray(labels, np.int64))
            out.photos[prod.product_id] = embed_product_image(prod.image_path, cat, frame_weights)
            out.categories[prod.product_id] = prod.category
    if not out.reels:
        raise ConfigError(f"split {split!r} of {library_dir} has no product with a photo and a reel")
    return out
