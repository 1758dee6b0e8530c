"""The stages of `make demo`, in order, each timed and each skipped when its output is current.

1. demo world (`autocut demo-world build`); 2. RQ-VAE tokenizers (`autocut rqvae train`, capped by a
time budget); 3. LM corpus (`autocut corpus build`); 4. the planner LM, alignment then SFT (`autocut
train align|sft`, short time budgets); 5. FAISS indexes (`autocut index rebuild`); 6-8. the service
started, one edit over HTTP, the service stopped (`autocut.demo.service`, `autocut.demo.client`).
Stages 1-5 run in this process; when each counts as current is `autocut.demo.freshness`.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from autocut.demo.client import run_edit
from autocut.demo.config import DemoConfig
from autocut.demo.freshness import (
    Freshness,
    corpus_freshness,
    corpus_made_at,
    index_freshness,
    lm_freshness,
    lm_made_at,
    rqvae_freshness,
)
from autocut.demo.service import DemoServer
from autocut.files import write_json_atomic
from autocut.library.layout import LibraryLayout

if TYPE_CHECKING:
    from autocut.lm.train import Stage

__all__ = ["Demo", "DemoReport", "LibrarySpace", "StageTiming", "run_demo"]


@dataclass
class StageTiming:
    name: str
    status: str  # "ran", "cached", "failed"
    seconds: float
    detail: str = ""


@dataclass
class DemoReport:
    timings: list[StageTiming] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    summary: str = ""

    def table(self) -> str:
        total = sum(t.seconds for t in self.timings)
        rows = [f"  {t.name:<22} {t.status:<7} {t.seconds:8.1f} s  {t.detail}" for t in self.timings]
        return "\n".join(["stage timings", *rows, f"  {'total':<22} {'':<7} {total:8.1f} s"])


@dataclass(frozen=True)
class LibrarySpace:
    """The library's vector space: what tokenizers and the corpus must have been made on."""

    pca_version: str | None
    frame_encoder: str | None
    audio_encoder: str | None


class Demo:
    """Runs the stages in order, printing progress and timing each."""

    def __init__(self, cfg: DemoConfig) -> None:
        self.cfg = cfg
        self.lib = cfg.library
        self.report = DemoReport()
        self.n_stages = 8

    # ------------------------------------------------------------------ plumbing
    def _say(self, msg: str) -> None:
        print(msg, flush=True)

    @contextlib.contextmanager
    def stage(self, k: int, name: str, title: str) -> Iterator[StageTiming]:
        self._say(f"\n[{k}/{self.n_stages}] {title}")
        t = StageTiming(name=name, status="ran", seconds=0.0)
        t0 = time.perf_counter()
        try:
            yield t
        except BaseException:
            t.status = "failed"
            raise
        finally:
            t.seconds = time.perf_counter() - t0
            self.report.timings.append(t)
            if t.status == "cached":
                self._say(f"  cached: {t.detail} ({t.seconds:.1f} s)")
            elif t.status == "ran":
                self._say(f"  done in {t.seconds:.1f} s{': ' + t.detail if t.detail else ''}")

    def _forced(self, name: str) -> bool:
        return name in self.cfg.force

    def _set_threads(self) -> None:
        if self.cfg.threads:
            import torch

            torch.set_num_threads(self.cfg.threads)

    # ------------------------------------------------------------------ 1. world
    def world(self) -> None:
        from tqdm import tqdm

        from autocut.demo_world.build import build_world
        from autocut.demo_world.config import WorldConfig

        cfg = WorldConfig.preset(self.cfg.world_size)
        with self.stage(
            1, "world", f"demo world ({self.cfg.world_size}): generated products, reels, reference ads and BGM"
        ) as t:
            bars: dict[str, tqdm] = {}

            def progress(stage: str, done: int, total: int) -> None:
                bar = bars.get(stage)
                if bar is None:
                    bar = bars[stage] = tqdm(total=total, desc=f"  {stage}", unit="file", file=sys.stderr)
                bar.n = done
                bar.refresh()

            try:
                summary = build_world(self.lib, cfg, progress=progress)
            finally:
                for bar in bars.values():
                    bar.close()
            what = (
                f"{summary.products} products, {summary.shots} shots, {summary.frames} frames, "
                f"{sum(summary.reference_edits.values())} reference ads, {summary.bgm_excerpts} BGM excerpts"
            )
            if summary.cached:
                t.status, t.detail = "cached", f"world.json is complete for size={self.cfg.world_size} ({what})"
            else:
                t.detail = what

    # ------------------------------------------------------------------ 2. RQ-VAEs
    def _library_space(self) -> LibrarySpace:
        from autocut.library.catalog import Catalog

        with Catalog.open(self.lib, create=False) as cat:
            return LibrarySpace(cat.pca_version or None, cat.frame_encoder or None, cat.audio_encoder or None)

    def rqvae(self) -> None:
        from autocut.library.codes import train_library_tokenizer

        space = self._library_space()
        with self.stage(2, "rqvae", "RQ-VAE tokenizers (video, audio)") as t:
            details, cached = [], []
            for modality, enc in (("video", space.frame_encoder), ("audio", space.audio_encoder)):
                fr = rqvae_freshness(self.lib, modality, pca_version=space.pca_version, encoder=enc)
                if fr.current and not self._forced("rqvae"):
                    cached.append(f"{modality}: {fr.reason}")
                    continue
                self._say(
                    f"  training the {modality} tokenizer ({fr.reason if not fr.current else 'forced'}; "
                    f"budget {self.cfg.rqvae_budget_s:.0f} s)"
                )
                self._set_threads()
                rep = train_library_tokenizer(self.lib, modality, time_budget_s=self.cfg.rqvae_budget_s, progress=True)
                cos = rep.final_val.mean_cosine if rep.final_val is not None else float("nan")
                details.append(
                    f"{modality} {rep.epochs_run}/{rep.epochs_planned} epochs in {rep.duration_s:.0f} s, "
                    f"held-out cosine {cos:.3f}"
                )
            if not details:
                t.status = "cached"
            t.detail = "; ".join(details + cached)

    # ------------------------------------------------------------------ 3. corpus
    def corpus(self) -> None:
        from autocut.library.catalog import Catalog
        from autocut.library.codes import tokenizer_dir
        from autocut.lm.corpus import CorpusConfig, build_corpus
        from rqvae import Tokenizer

        pca = self._library_space().pca_version
        with self.stage(3, "corpus", "LM corpus: alignment ads + select / sort / script / BGM tasks") as t:
            fr = corpus_freshness(self.lib, pca_version=pca)
            if fr.current and not self._forced("corpus"):
                t.status, t.detail = "cached", fr.reason
                return
            self._say(f"  building ({fr.reason if not fr.current else 'forced'})")
            vdir, adir = tokenizer_dir(self.lib, "video"), tokenizer_dir(self.lib, "audio")
            video = Tokenizer.load(vdir, expect_modality="video", expect_pca_version=pca)
            audio = Tokenizer.load(adir, expect_modality="audio")
            info = {"video": {"path": str(vdir), "pca_version": video.pca_version}, "audio": {"path": str(adir)}}
            with Catalog.open(self.lib, create=False) as cat:
                rep = build_corpus(
                    cat,
                    LibraryLayout(self.lib).corpus_dir,
                    video_tokenizer=video,
                    audio_tokenizer=audio,
                    config=CorpusConfig(),
                    tokenizer_info=info,
                )
            t.detail = f"{sum(rep.files.values())} records in {len(rep.files)} files"

    # ------------------------------------------------------------------ 4. LM
    def lm(self) -> None:
        from autocut.lm.backbone import DEFAULT_CPU_BACKBONE, resolve_backbone
        from autocut.lm.corpus import sft_files

        corpus = LibraryLayout(self.lib).corpus_dir
        with self.stage(
            4,
            "lm",
            f"planner LM ({DEFAULT_CPU_BACKBONE}): alignment "
            f"({self.cfg.align_budget_s:.0f} s) then SFT ({self.cfg.sft_budget_s:.0f} s)",
        ) as t:
            corpus_t = corpus_made_at(self.lib)
            align_dir, sft_dir = LibraryLayout(self.lib).lm_run_dir("align"), LibraryLayout(self.lib).lm_run_dir("sft")
            align_data = [corpus / "align_train.jsonl"]
            backbone_cache = LibraryLayout(self.lib).backbones_dir
            details, cached = [], []

            # Converts the packaged GGUF once (~20 s); later runs only check its digest.
            backbone = resolve_backbone(DEFAULT_CPU_BACKBONE, backbone_cache, seed=0)
            fr = lm_freshness(align_dir, inputs={"the corpus": corpus_t}, data_files=align_data, init_dir=backbone)
            if self._forced("lm"):
                fr = Freshness(False, "forced")
            if fr.current:
                cached.append(f"align: {fr.reason}")
            else:
                details.append(
                    "align " + self._train("align", align_dir, backbone, align_data, fr, self.cfg.align_budget_s)
                )
            align_model = align_dir / "model"
            sft_data = sft_files(corpus, "train")
            fr = lm_freshness(
                sft_dir,
                inputs={"the corpus": corpus_t, "the aligned model": lm_made_at(align_model) or float("inf")},
                data_files=sft_data,
                init_dir=align_model,
            )
            if self._forced("lm"):
                fr = Freshness(False, "forced")
            if fr.current:
                cached.append(f"sft: {fr.reason}")
            else:
                details.append("sft " + self._train("sft", sft_dir, align_model, sft_data, fr, self.cfg.sft_budget_s))
            if not details:
                t.status = "cached"
            t.detail = "; ".join(details + cached)

    def _train(self, stage: Stage, run_dir: Path, init: Path, data: list[Path], fr: Freshness, budget_s: float) -> str:
        from dataclasses import replace

        from autocut.lm.train import preset, train_lm

        if not fr.resume and run_dir.exists():
            # A stale or half-made run: keep one previous generation rather than deleting a model.
            previous = run_dir.with_name(run_dir.name + ".previous")
            shutil.rmtree(previous, ignore_errors=True)
            os.replace(run_dir, previous)
            self._say(f"  moved the old {stage} run to {previous}")
        self._say(f"  {stage}: {fr.reason}; training for at most {budget_s:.0f} s")
        cfg = replace(preset(stage, "cpu"), time_budget_s=budget_s)
        res = train_lm(
            stage=stage,
            init_dir=init,
            data_files=list(data),  # train_lm takes list[str | PathLike[str]] (invariant)
            run_dir=run_dir,
            config=cfg,
            resume=fr.resume,
            progress=True,
            num_threads=self.cfg.threads,
        )
        gc.collect()
        first = res.loss_history[0]["loss"] if res.loss_history else None
        loss = (
            f"loss {first:.3f} -> {res.final_loss:.3f}"
            if first is not None and res.final_loss is not None
            else "loss n/a"
        )
        return f"{res.steps}/{res.planned_steps} steps in {res.seconds:.0f} s ({res.stop_reason}), {loss}"

    # ------------------------------------------------------------------ 5. indexes
    def indexes(self) -> None:
        from autocut.library.indexing import INDEX_KINDS, rebuild_indexes

        with self.stage(5, "indexes", "FAISS indexes (frames, clips, BGM)") as t:
            fr = index_freshness(self.lib)
            if fr.current and not self._forced("indexes"):
                t.status, t.detail = "cached", fr.reason
                return
            self._say(f"  rebuilding ({fr.reason if not fr.current else 'forced'})")
            rebuild_indexes(self.lib, list(INDEX_KINDS))
            t.detail = index_freshness(self.lib).reason.replace("every index holds", "indexes hold")

    # ------------------------------------------------------------------ 6-8. service and edit
    def serve_and_edit(self) -> None:
        server = DemoServer(self.cfg)
        try:
            with self.stage(6, "server start", "service: `python -m server all` (redis-server, API, 2 workers)") as t:
                server.start()
                t.detail = f"API at {server.base_url}, log {server.log_path}"
                self._say(f"  API at {server.base_url} (log: {server.log_path})")
            with self.stage(7, "edit over HTTP", "one edit of a held-out product over HTTP") as t:
                outcome = run_edit(self.cfg, server, say=self._say)
                self.report.outputs, self.report.summary = outcome.outputs, outcome.summary
                t.detail = f"planner {outcome.outputs.get('planner', '?')}"
        finally:
            with self.stage(8, "server stop", "stopping the service") as t:
                t.detail = server.stop()


def run_demo(cfg: DemoConfig) -> DemoReport:
    """Stages 1-8 in order; the service is stopped however the run ends."""
    demo = Demo(cfg)
    cfg.demo_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        demo.world()
        demo.rqvae()
        demo.corpus()
        demo.lm()
        demo.indexes()
        demo.serve_and_edit()
    finally:
        record = {
            "finished_at": time.time(),
            "wall_s": round(time.perf_counter() - t0, 1),
            "stages": [t.__dict__ for t in demo.report.timings],
            "outputs": demo.report.outputs,
        }
        write_json_atomic(cfg.demo_dir / "last_run.json", record)
    return demo.report
