"""When a `make demo` stage's output is current (pure file checks, like make's timestamps).

An output is current when it exists, fits the library (PCA version, encoder, vector counts) and was
made after the outputs it was made from (recorded creation times, or file times where none is
recorded). Budgets do not make a model stale: a model trained with another budget is kept.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from autocut.library.layout import LibraryLayout

__all__ = [
    "Freshness",
    "compact_freshness",
    "index_freshness",
    "rqvae_freshness",
    "world_made_at",
]


@dataclass(frozen=True)
class Freshness:
    """Whether a stage's output is current, and why (printed either way)."""

    current: bool
    reason: str
    resume: bool = False  # the compact planner is trained and current; only its held-out check is missing


def _iso_to_epoch(s: str) -> float:
    try:
        return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def world_made_at(library: Path) -> float | None:
    """When the world's manifest was completed (its mtime), None if there is no complete world."""
    p = LibraryLayout(library).world_manifest
    if not p.exists():
        return None
    try:
        if not json.loads(p.read_text()).get("complete"):
            return None
    except (OSError, json.JSONDecodeError):
        return None
    return p.stat().st_mtime


def rqvae_freshness(library: Path, modality: str, *, pca_version: str | None, encoder: str | None) -> Freshness:
    """A tokenizer is current if it was trained on this library's vector space after the world was built."""
    from autocut.library.codes import tokenizer_dir
    from rqvae import RQVAEError, read_checkpoint_info

    d = tokenizer_dir(library, modality)
    try:
        info = read_checkpoint_info(d)
    except RQVAEError:
        return Freshness(False, f"no {modality} tokenizer in {d}")
    if modality == "video" and info.pca_version != pca_version:
        return Freshness(False, f"{d} was trained on PCA {info.pca_version}, the library uses {pca_version}")
    if encoder and info.encoder and info.encoder != encoder:
        return Freshness(False, f"{d} was trained on {info.encoder} vectors, the library has {encoder}")
    made, world = _iso_to_epoch(info.created_at), world_made_at(library) or 0.0
    if made < world:
        return Freshness(False, f"{d} ({_when(made)}) is older than the world ({_when(world)})")
    return Freshness(True, f"{d.name} trained {_when(made)}, after the world, on its vector space")


def _rqvae_made_at(library: Path) -> float:
    from autocut.library.codes import tokenizer_dir
    from rqvae import RQVAEError, read_checkpoint_info

    out = 0.0
    for m in ("video", "audio"):
        with contextlib.suppress(RQVAEError):
            out = max(out, _iso_to_epoch(read_checkpoint_info(tokenizer_dir(library, m)).created_at))
    return out


def compact_freshness(library: Path) -> Freshness:
    """The compact planner (`LibraryLayout.compact_model_dir`) is current when its model card records a
    held-out check and the model is newer than both RQ-VAE tokenizers and the world. When the model was
    made is its `config.json`'s time (written when training ends; the card is rewritten when a check is
    recorded, so its own time says nothing about the weights). A model newer than its inputs whose check
    is missing (a run stopped during the check) is not current, with `resume` set: only the check is left."""
    from autocut.lm.compact_train import CARD_NAME

    model = LibraryLayout(library).compact_model_dir
    p = model / CARD_NAME
    if not (p.exists() and (model / "config.json").exists()):
        return Freshness(False, f"no compact planner in {model}")
    try:
        card = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return Freshness(False, f"{p} is unreadable ({exc})")
    if not isinstance(card, dict):
        return Freshness(False, f"{p} is not a model card")
    made = (model / "config.json").stat().st_mtime
    tok, world = _rqvae_made_at(library), world_made_at(library) or 0.0
    if made < tok:
        return Freshness(False, f"{model} ({_when(made)}) is older than the tokenizers ({_when(tok)})")
    if made < world:
        return Freshness(False, f"{model} ({_when(made)}) is older than the world ({_when(world)})")
    check = card.get("heldout")
    if not check:
        return Freshness(False, f"{model} has no held-out check in its card", resume=True)
    tr = card.get("train") or {}
    verdict = "the LM wins" if check.get("lm_wins") else "the LM does not beat the heuristic"
    return Freshness(
        True,
        f"compact planner trained {_when(made)} ({tr.get('steps')} steps, loss {tr.get('final_loss')}), "
        f"after the tokenizers and the world; held-out check: {verdict}",
    )


def index_freshness(library: Path) -> Freshness:
    """Indexes are current when each kind holds every catalog vector of the library's encoder/PCA."""
    from autocut.library.catalog import Catalog
    from autocut.library.indexing import INDEX_KINDS, expected_index, index_status

    status = {s.kind: s for s in index_status(library)}
    with Catalog.open(library, create=False) as cat:
        counts = {
            "frames": len(cat.frame_vectors()[0]),
            "clips": len(cat.clip_vectors()[0]),
            "bgm": len(cat.bgm_vectors()[0]),
        }
        expected = {k: expected_index(cat, k) for k in INDEX_KINDS}
    held = []
    for kind in INDEX_KINDS:
        m = status[kind].meta
        if m is None:
            return Freshness(False, f"no {kind} index")
        e = expected[kind]
        if m.encoder != e.encoder or (m.pca_version or None) != e.pca_version:
            return Freshness(
                False,
                f"{kind} index was built on {m.encoder}/{m.pca_version}, the library has {e.encoder}/{e.pca_version}",
            )
        if m.count + m.added_since_build != counts[kind]:
            return Freshness(
                False, f"{kind} index holds {m.count + m.added_since_build} vectors, the library {counts[kind]}"
            )
        held.append(f"{kind} {counts[kind]}")
    return Freshness(True, "every index holds the whole library (" + ", ".join(held) + ")")
