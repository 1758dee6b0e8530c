"""Every path inside a material library, in one place.

<library>/
  catalog.sqlite, catalog.lock   the catalog (rows) and its single-writer lock
  arrays/                        memory-mapped vector arrays (frames, clips, BGM)
  pca/<version>.npz              PCA fits of this library (the packaged default lives in autocut/data)
  indexes/<kind>/                published FAISS indexes (`autocut index rebuild`)
  models/rqvae_<modality>/       RQ-VAE tokenizers (`autocut rqvae train`)
  models/lm/<stage>/model        trained planner LMs (`autocut train align|sft`)
  models/lm/caption_sft/model    the caption+SFT baseline
  models/backbones/              converted base LMs (cache)
  models/asr/                    the ASR model cache (ad ingest)
  lm/corpus/, lm/corpus_tags/    training corpora (`autocut corpus build|tags`)
  world/world.json               the generated demo world's manifest (`autocut demo-world build`)
  demo/                          what `make demo` writes (server data, outputs, logs)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LibraryLayout"]

_MODALITIES = ("video", "audio")


@dataclass(frozen=True)
class LibraryLayout:
    """Paths of one library; nothing is created or checked here."""

    root: Path

    @classmethod
    def of(cls, root: str | os.PathLike[str]) -> LibraryLayout:
        return cls(Path(root))

    # ---------------------------------------------------------------- catalog
    @property
    def catalog_db(self) -> Path:
        return self.root / "catalog.sqlite"

    @property
    def catalog_lock(self) -> Path:
        return self.root / "catalog.lock"

    @property
    def arrays_dir(self) -> Path:
        return self.root / "arrays"

    @property
    def pca_dir(self) -> Path:
        return self.root / "pca"

    def pca_path(self, version: str) -> Path:
        return self.pca_dir / f"{version}.npz"

    # ---------------------------------------------------------------- indexes and models
    def index_dir(self, kind: str) -> Path:
        return self.root / "indexes" / kind

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def rqvae_dir(self, modality: str) -> Path:
        if modality not in _MODALITIES:
            raise ValueError(f"modality must be one of {_MODALITIES}, got {modality!r}")
        return self.models_dir / f"rqvae_{modality}"

    def lm_run_dir(self, stage: str) -> Path:
        """A training run (`align`, `sft`, `caption_sft`); its final model is `<run>/model`."""
        return self.models_dir / "lm" / stage

    @property
    def planner_model_dir(self) -> Path:
        """The token LM the library plans with by default (may not exist yet)."""
        return self.lm_run_dir("sft") / "model"

    @property
    def compact_model_dir(self) -> Path:
        """The compact planner (`autocut train compact`); may not exist yet."""
        return self.lm_run_dir("compact") / "model"

    @property
    def caption_sft_model_dir(self) -> Path:
        return self.lm_run_dir("caption_sft") / "model"

    @property
    def backbones_dir(self) -> Path:
        return self.models_dir / "backbones"

    @property
    def asr_models_dir(self) -> Path:
        return self.models_dir / "asr"

    # ---------------------------------------------------------------- corpora, world, demo
    @property
    def corpus_dir(self) -> Path:
        return self.root / "lm" / "corpus"

    @property
    def tag_corpus_dir(self) -> Path:
        return self.root / "lm" / "corpus_tags"

    @property
    def world_dir(self) -> Path:
        return self.root / "world"

    @property
    def world_manifest(self) -> Path:
        return self.world_dir / "world.json"

    @property
    def demo_dir(self) -> Path:
        return self.root / "demo"
