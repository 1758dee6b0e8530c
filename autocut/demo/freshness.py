"""When a `make demo` stage's output is current (pure file checks, like make's timestamps).

An output is current when it exists, fits the library (PCA version, encoder, vector counts) and was
made after the outputs it was made from (recorded creation times). Budgets do not make a model
stale: a model trained with another budget is kept.
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
    "corpus_freshness",
    "corpus_made_at",
    "index_freshness",
    "lm_freshness",
    "lm_made_at",
    "rqvae_freshness",
    "world_made_at",
]


@dataclass(frozen=True)
class Freshness:
    """Whether a stage's output is current, and why (printed either way)."""

    current: bool
    reason: str
    resume: bool = False  # an interrupted LM run that can continue from its checkpoint


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


def corpus_freshness(library: Path, *, pca_version: str | None) -> Freshness:
    """The corpus is current if its manifest lists existing files and is newer than both tokenizers."""
    corpus = LibraryLayout(library).corpus_dir
    p = corpus / "manifest.json"
    if not p.exists():
        return Freshness(False, f"no corpus in {corpus}")
    man = json.loads(p.read_text())
    missing = [f for f in man.get("files", {}) if not (corpus / f).exists()]
    if missing or not man.get("files"):
        return Freshness(False, f"corpus files missing: {', '.join(missing[:3]) or 'all'}")
    if man.get("pca_version") != pca_version:
        return Freshness(
            False, f"corpus tokens were made with PCA {man.get('pca_version')}, the library uses {pca_version}"
        )
    made, tok = float(man.get("created_at", 0.0)), _rqvae_made_at(library)
    if made < tok:
        return Freshness(False, f"corpus ({_when(made)}) is older than the tokenizers ({_when(tok)})")
    n = sum(man["files"].values())
    return Freshness(True, f"{n} records built {_when(made)}, after the tokenizers")


def corpus_made_at(library: Path) -> float:
    p = LibraryLayout(library).corpus_dir / "manifest.json"
    return float(json.loads(p.read_text()).get("created_at", 0.0)) if p.exists() else 0.0


def lm_made_at(model_dir: Path) -> float | None:
    """Creation time recorded by `autocut train` in `model_dir/autocut_lm.json` (None: no trained model)."""
    p = model_dir / "autocut_lm.json"
    if not (p.exists() and (model_dir / "config.json").exists()):
        return None
    try:
        return float(json.loads(p.read_text()).get("created_at", 0.0))
    except (OSError, json.JSONDecodeError, TypeError, ValueError):
        return None


def lm_freshness(run_dir: Path, *, inputs: dict[str, float], data_files: list[Path], init_dir: Path) -> Freshness:
    """A trained model in `run_dir/model` is current if it is newer than every input (name -> made-at);
    an interrupted run on the same init and data resumes from its newest checkpoint."""
    model = run_dir / "model"
    made = lm_made_at(model)
    if made is not None:
        older = [f"{name} ({_when(t)})" for name, t in inputs.items() if t > made]
        if older:
            return Freshness(False, f"{model} ({_when(made)}) is older than {', '.join(older)}")
        info = json.loads((model / "autocut_lm.json").read_text())
        return Freshness(
            True,
            f"{run_dir.name} model trained {_when(made)} ({info.get('steps')} steps, "
            f"{info.get('stop_reason')}), newer than its inputs",
        )
    ckpts = sorted((run_dir / "checkpoints").glob("step-*/progress.json")) if run_dir.exists() else []
    run_json = run_dir / "run.json"
    if ckpts and run_json.exists():
        info = json.loads(run_json.read_text())
        same = info.get("data_files") == [str(p) for p in data_files] and info.get("init_dir") == str(init_dir)
        if same:
            return Freshness(False, f"interrupted run: resuming from {ckpts[-1].parent.name}", resume=True)
    return Freshness(False, f"no trained model in {model}")


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
