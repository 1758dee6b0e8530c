"""The stages of `make demo`, in order, each timed and each skipped when its output is current.

1. demo world (`autocut demo-world build`); 2. RQ-VAE tokenizers (`autocut rqvae train`, capped by a
time budget); 3. the compact planner, trained for a time budget and then checked against the heuristic
on the val split, the check recorded in its model card (`autocut train compact`); 4. FAISS indexes
(`autocut index rebuild`); 5-7. the service started, one edit over HTTP, the service stopped
(`autocut.demo.service`, `autocut.demo.client`). Stages 1-4 run in this process; when each counts as
current is `autocut.demo.freshness`.
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
from typing import Any

from autocut.demo.client import run_edit
from autocut.demo.config import DemoConfig
from autocut.demo.freshness import Freshness, compact_freshness, index_freshness, rqvae_freshness
from autocut.demo.service import DemoServer
from autocut.files import write_json_atomic
from autocut.library.layout import LibraryLayout

__all__ = ["Demo", "DemoReport", "LibrarySpace", "StageTiming", "run_demo"]

_HELDOUT_ADS = 20  # val-split reference ads in the compact planner's held-out check


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
    """The library's vector space: what the tokenizers must have been trained on."""

    pca_version: str | None
    frame_encoder: str | None
    audio_encoder: str | None


class Demo:
    """Runs the stages in order, printing progress and timing each."""

    def __init__(self, cfg: DemoConfig) -> None:
        self.cfg = cfg
        self.lib = cfg.library
        self.report = DemoReport()
        self.n_stages = 7

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

    # ------------------------------------------------------------------ 3. planner
    def planner(self) -> None:
        """Train the compact planner (as `autocut train compact` does) and record its held-out check."""
        model = LibraryLayout(self.lib).compact_model_dir
        with self.stage(
            3,
            "planner",
            f"compact planner: a small LM trained from scratch on the train split's ads "
            f"({self.cfg.planner_budget_s:.0f} s), then its held-out check against the heuristic",
        ) as t:
            fr = compact_freshness(self.lib)
            if self._forced("planner"):
                fr = Freshness(False, "forced")
            if fr.current:
                t.status, t.detail = "cached", fr.reason
                return
            from autocut.lm.compact_train import read_card, write_card

            if fr.resume:  # trained and current: only the check is missing
                self._say(f"  {fr.reason}: running the held-out check only")
                card = read_card(model)
            else:
                card = self._train_planner(model, fr)
            from autocut.lm.compact_heldout import heldout_check

            self._say(f"  held-out check: heuristic vs the compact planner on up to {_HELDOUT_ADS} val-split ads")
            check = heldout_check(self.lib, model, split="val", max_ads=_HELDOUT_ADS)
            card["heldout"] = check
            write_card(model, card)
            self._say(f"  {check['reading']}")
            tr = card.get("train") or {}
            loss = tr.get("final_loss")
            t.detail = (
                f"{tr.get('steps')} steps in {float(tr.get('seconds') or 0.0):.0f} s, "
                f"loss {'n/a' if loss is None else f'{loss:.3f}'}; held-out check: "
                + ("the LM beat the heuristic" if check.get("lm_wins") else "the LM did not beat the heuristic")
                + ("" if not fr.resume else " (training was cached)")
            )

    def _train_planner(self, model: Path, fr: Freshness) -> dict[str, Any]:
        from autocut.lm.compact_train import CompactTrainConfig, train_library_planner

        def move_old(data: Any) -> None:
            if model.exists():  # a stale or forced model: keep one previous generation rather than deleting it
                previous = model.with_name(model.name + ".previous")
                shutil.rmtree(previous, ignore_errors=True)
                os.replace(model, previous)
                self._say(f"  moved the old model to {previous}")
            self._say(f"  {fr.reason}")

        # The held-out check runs in `planner()` (it is also what a resumed stage runs alone).
        card = train_library_planner(
            self.lib,
            model,
            CompactTrainConfig(budget_s=self.cfg.planner_budget_s, threads=self.cfg.threads),
            check=False,
            before_training=move_old,
            say=lambda msg: self._say(f"  {msg}"),
        )
        gc.collect()
        return card

    # ------------------------------------------------------------------ 4. indexes
    def indexes(self) -> None:
        from autocut.library.indexing import INDEX_KINDS, rebuild_indexes

        with self.stage(4, "indexes", "FAISS indexes (frames, clips, BGM)") as t:
            fr = index_freshness(self.lib)
            if fr.current and not self._forced("indexes"):
                t.status, t.detail = "cached", fr.reason
                return
            self._say(f"  rebuilding ({fr.reason if not fr.current else 'forced'})")
            rebuild_indexes(self.lib, list(INDEX_KINDS))
            t.detail = index_freshness(self.lib).reason.replace("every index holds", "indexes hold")

    # ------------------------------------------------------------------ 5-7. service and edit
    def serve_and_edit(self) -> None:
        server = DemoServer(self.cfg)
        try:
            with self.stage(5, "server start", "service: `python -m server all` (redis-server, API, 2 workers)") as t:
                server.start()
                t.detail = f"API at {server.base_url}, log {server.log_path}"
                self._say(f"  API at {server.base_url} (log: {server.log_path})")
            with self.stage(6, "edit over HTTP", "one edit of a held-out product over HTTP") as t:
                outcome = run_edit(self.cfg, server, say=self._say)
                self.report.outputs, self.report.summary = outcome.outputs, outcome.summary
                t.detail = f"planner {outcome.outputs.get('planner', '?')}"
        finally:
            with self.stage(7, "server stop", "stopping the service") as t:
                t.detail = server.stop()


def run_demo(cfg: DemoConfig) -> DemoReport:
    """Stages 1-7 in order; the service is stopped however the run ends."""
    demo = Demo(cfg)
    cfg.demo_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        demo.world()
        demo.rqvae()
        demo.planner()
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
