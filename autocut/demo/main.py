"""The main job (`make demo`): from nothing to a finished ad, made by the real service over HTTP.

Stages, each timed, and each skipped when its output is current (it prints "cached" and why):

1. demo world: `autocut demo-world build --size medium` (generated products, reels, reference ads, BGM);
2. RQ-VAE tokenizers, video and audio (`autocut rqvae train`, capped by a time budget);
3. LM corpus (`autocut corpus build`);
4. the small planner LM: alignment, then SFT (`autocut train align|sft`) with short time budgets,
   far below the real training runs, so the first run fits in about 45 minutes on two cores;
5. FAISS indexes (`autocut index rebuild`);
6. the service: `python -m server all` (local redis-server, the API, two workers; the single-
   machine defaults) as a child process on free ports, with a fresh secret and admin key;
7. one edit over HTTP: a held-out (test-split) product, its reel as the pool, its product photo
   uploaded, and the sentences of one of its reference ads as the script (script-driven, so
   the planner selects, orders and picks music, and its picks can be compared with the
   reference); the job is polled until done and its results are downloaded over HTTP into
   `<library>/demo/output/<product>-<job>/`;
8. the service is stopped (also on Ctrl-C, `kill` or an error).

Then it prints where the MP4 and its sidecars (SRT, plan JSON, OTIO) are, a paragraph on what the
plan did, and the stage timings (also written to `<library>/demo/last_run.json`).

An output is current when it exists, fits the library (PCA version, encoder, vector counts) and
was made after the outputs it was made from (recorded creation times, like make). Budgets do
not make a model stale: a model trained with another budget is kept; `--force STAGE` retrains.
The planner is the server's default, "auto": the token LM planner once `models/lm/sft/model`
exists, else the heuristic.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from autocut.errors import AutoCutError, ConfigError
from autocut.library.layout import LibraryLayout
from autocut.render.outputs import RESULT_FILES

log = logging.getLogger("autocut.demo")

# Stages `--force` can redo (the world builder has its own cache: delete the library to rebuild it).
FORCEABLE = ("rqvae", "corpus", "lm", "indexes")
RESULT_ARTIFACTS = RESULT_FILES


@dataclass(frozen=True)
class DemoConfig:
    """What the demo builds and how long it may train (defaults fit a 2-core machine in ~45 min)."""

    library: Path
    world_size: str = "medium"
    rqvae_budget_s: float = 180.0  # per modality; the full world's paper preset takes ~40 s + ~25 s
    align_budget_s: float = 240.0
    sft_budget_s: float = 360.0
    threads: int | None = None  # torch threads for training (None: torch's default)
    product_id: str | None = None  # held-out product to edit (None: the first test product)
    resolution: int = 1080  # short side of the output (1080 -> 1080x1920, the API's default)
    planner: str | None = None  # None = the server's default ("auto")
    job_timeout_s: float = 1800.0
    force: frozenset[str] = frozenset()

    @property
    def demo_dir(self) -> Path:
        return LibraryLayout(self.library).demo_dir


@dataclass(frozen=True)
class Freshness:
    """Whether a stage's output is current, and why (printed either way)."""

    current: bool
    reason: str
    resume: bool = False  # an interrupted LM run that can continue from its checkpoint


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


# --------------------------------------------------------------------------- freshness (pure file checks)

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
    from rqvae import RQVAEError, read_checkpoint_info

    from autocut.library.codes import tokenizer_dir

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
    from rqvae import RQVAEError, read_checkpoint_info

    from autocut.library.codes import tokenizer_dir

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
        return Freshness(False, f"corpus tokens were made with PCA {man.get('pca_version')}, the library uses "
                                f"{pca_version}")
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
        return Freshness(True, f"{run_dir.name} model trained {_when(made)} ({info.get('steps')} steps, "
                               f"{info.get('stop_reason')}), newer than its inputs")
    ckpts = sorted((run_dir / "checkpoints").glob("step-*/progress.json")) if run_dir.exists() else []
    run_json = run_dir / "run.json"
    if ckpts and run_json.exists():
        info = json.loads(run_json.read_text())
        same = (info.get("data_files") == [str(p) for p in data_files] and info.get("init_dir") == str(init_dir))
        if same:
            return Freshness(False, f"interrupted run: resuming from {ckpts[-1].parent.name}", resume=True)
    return Freshness(False, f"no trained model in {model}")


def index_freshness(library: Path) -> Freshness:
    """Indexes are current when each kind holds every catalog vector of the library's encoder/PCA."""
    from autocut.library.catalog import Catalog
    from autocut.library.indexing import INDEX_KINDS, expected_index, index_status

    status = {s.kind: s for s in index_status(library)}
    with Catalog.open(library, create=False) as cat:
        counts = {"frames": len(cat.frame_vectors()[0]), "clips": len(cat.clip_vectors()[0]),
                  "bgm": len(cat.bgm_vectors()[0])}
        expected = {k: expected_index(cat, k) for k in INDEX_KINDS}
    held = []
    for kind in INDEX_KINDS:
        m = status[kind].meta
        if m is None:
            return Freshness(False, f"no {kind} index")
        e = expected[kind]
        if m.encoder != e.encoder or (m.pca_version or None) != e.pca_version:
            return Freshness(False, f"{kind} index was built on {m.encoder}/{m.pca_version}, the library has "
                                    f"{e.encoder}/{e.pca_version}")
        if m.count + m.added_since_build != counts[kind]:
            return Freshness(False, f"{kind} index holds {m.count + m.added_since_build} vectors, the library "
                                    f"{counts[kind]}")
        held.append(f"{kind} {counts[kind]}")
    return Freshness(True, "every index holds the whole library (" + ", ".join(held) + ")")


# --------------------------------------------------------------------------- stages 1-5 (in process)

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

        from autocut.demo_world import WorldConfig, build_world

        cfg = WorldConfig.preset(self.cfg.world_size)
        with self.stage(1, "world", f"demo world ({self.cfg.world_size}): generated products, reels, reference "
                                    "ads and BGM") as t:
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
            what = (f"{summary.products} products, {summary.shots} shots, {summary.frames} frames, "
                    f"{sum(summary.reference_edits.values())} reference ads, {summary.bgm_excerpts} BGM excerpts")
            if summary.cached:
                t.status, t.detail = "cached", f"world.json is complete for size={self.cfg.world_size} ({what})"
            else:
                t.detail = what

    # ------------------------------------------------------------------ 2. RQ-VAEs
    def _library_space(self) -> tuple[str | None, str | None, str | None]:
        from autocut.library.catalog import Catalog

        with Catalog.open(self.lib, create=False) as cat:
            return cat.pca_version or None, cat.frame_encoder or None, cat.audio_encoder or None

    def rqvae(self) -> None:
        from autocut.library.codes import train_library_tokenizer

        pca, fenc, aenc = self._library_space()
        with self.stage(2, "rqvae", "RQ-VAE tokenizers (video, audio)") as t:
            details, cached = [], []
            for modality, enc in (("video", fenc), ("audio", aenc)):
                fr = rqvae_freshness(self.lib, modality, pca_version=pca, encoder=enc)
                if fr.current and not self._forced("rqvae"):
                    cached.append(f"{modality}: {fr.reason}")
                    continue
                self._say(f"  training the {modality} tokenizer ({fr.reason if not fr.current else 'forced'}; "
                          f"budget {self.cfg.rqvae_budget_s:.0f} s)")
                self._set_threads()
                rep = train_library_tokenizer(self.lib, modality, time_budget_s=self.cfg.rqvae_budget_s,
                                              progress=True)
                cos = rep.final_val.mean_cosine if rep.final_val is not None else float("nan")
                details.append(f"{modality} {rep.epochs_run}/{rep.epochs_planned} epochs in {rep.duration_s:.0f} s, "
                               f"held-out cosine {cos:.3f}")
            if not details:
                t.status = "cached"
            t.detail = "; ".join(details + cached)

    # ------------------------------------------------------------------ 3. corpus
    def corpus(self) -> None:
        from rqvae import Tokenizer

        from autocut.library.catalog import Catalog
        from autocut.lm.corpus import CorpusConfig, build_corpus
        from autocut.library.codes import tokenizer_dir

        pca, _, _ = self._library_space()
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
                rep = build_corpus(cat, LibraryLayout(self.lib).corpus_dir, video_tokenizer=video, audio_tokenizer=audio,
                                   config=CorpusConfig(), tokenizer_info=info)
            t.detail = f"{sum(rep.files.values())} records in {len(rep.files)} files"

    # ------------------------------------------------------------------ 4. LM
    def lm(self) -> None:
        from autocut.lm.backbone import DEFAULT_CPU_BACKBONE, resolve_backbone
        from autocut.lm.corpus import sft_files

        corpus = LibraryLayout(self.lib).corpus_dir
        with self.stage(4, "lm", f"planner LM ({DEFAULT_CPU_BACKBONE}): alignment "
                                 f"({self.cfg.align_budget_s:.0f} s) then SFT ({self.cfg.sft_budget_s:.0f} s)") as t:
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
                details.append("align " + self._train("align", align_dir, backbone, align_data, fr,
                                                      self.cfg.align_budget_s))
            align_model = align_dir / "model"
            sft_data = sft_files(corpus, "train")
            fr = lm_freshness(sft_dir, inputs={"the corpus": corpus_t, "the aligned model": lm_made_at(align_model)
                                               or float("inf")}, data_files=sft_data, init_dir=align_model)
            if self._forced("lm"):
                fr = Freshness(False, "forced")
            if fr.current:
                cached.append(f"sft: {fr.reason}")
            else:
                details.append("sft " + self._train("sft", sft_dir, align_model, sft_data, fr, self.cfg.sft_budget_s))
            if not details:
                t.status = "cached"
            t.detail = "; ".join(details + cached)

    def _train(self, stage: str, run_dir: Path, init: Path, data: list[Path], fr: Freshness, budget_s: float) -> str:
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
        res = train_lm(stage=stage, init_dir=init, data_files=data, run_dir=run_dir, config=cfg, resume=fr.resume,
                       progress=True, num_threads=self.cfg.threads)
        gc.collect()
        first = res.loss_history[0]["loss"] if res.loss_history else None
        loss = (f"loss {first:.3f} -> {res.final_loss:.3f}" if first is not None and res.final_loss is not None
                else "loss n/a")
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

    # ------------------------------------------------------------------ 6-9. service and edit
    def serve_and_edit(self) -> None:
        server = DemoServer(self.cfg)
        try:
            with self.stage(6, "server start", "service: `python -m server all` (redis-server, API, 2 workers)") as t:
                server.start()
                t.detail = f"API at {server.base_url}, log {server.log_path}"
                self._say(f"  API at {server.base_url} (log: {server.log_path})")
            with self.stage(7, "edit over HTTP", "one edit of a held-out product over HTTP") as t:
                outputs, summary = run_edit(self.cfg, server, say=self._say)
                self.report.outputs, self.report.summary = outputs, summary
                t.detail = f"planner {outputs.get('planner', '?')}"
        finally:
            with self.stage(8, "server stop", "stopping the service") as t:
                t.detail = server.stop()


# --------------------------------------------------------------------------- the service as a child process

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DemoServer:
    """`python -m server all` in its own process group, on free ports, with a fresh secret and admin key."""

    def __init__(self, cfg: DemoConfig) -> None:
        self.cfg = cfg
        self.data_dir = (cfg.demo_dir / "server").resolve()
        self.log_path = cfg.demo_dir / "server.log"
        self.port = free_port()
        self.redis_port = free_port()
        self.api_key = "ak_" + secrets.token_urlsafe(32)
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self._log = None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        lib = str(self.cfg.library.resolve())
        env.update({
            "AUTOCUT_SECRET_KEY": secrets.token_urlsafe(32),
            "AUTOCUT_BOOTSTRAP_ADMIN_KEY": self.api_key,
            "AUTOCUT_LIBRARY_DIR": lib, "AUTOCUT_LIBRARY": lib,
            "AUTOCUT_DATA_DIR": str(self.data_dir),
            "AUTOCUT_API_PORT": str(self.port),
            "AUTOCUT_REDIS_PORT": str(self.redis_port),
            "PYTHONUNBUFFERED": "1",
        })
        env.pop("AUTOCUT_REDIS_URL", None)  # the demo runs its own local redis-server
        if self.cfg.planner:
            env["AUTOCUT_DEFAULT_PLANNER"] = self.cfg.planner
        return env

    def start(self, timeout_s: float = 300.0) -> None:
        import httpx

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        # A new session: Ctrl-C in the terminal reaches the demo only, which then stops the service
        # in order (SIGTERM to the supervisor, which stops workers, API and redis-server).
        self.proc = subprocess.Popen([sys.executable, "-m", "server", "all"], env=self.env(), cwd=self.data_dir,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        headers = {"X-API-Key": self.api_key}
        shown = ""
        with httpx.Client(base_url=self.base_url, timeout=5.0) as c:
            while True:
                if self.proc.poll() is not None:
                    raise ConfigError(f"the service exited with code {self.proc.returncode} during start-up; "
                                      f"see {self.log_path}")
                if time.monotonic() > deadline:
                    raise ConfigError(f"the service did not become ready within {timeout_s:.0f} s; see {self.log_path}")
                try:
                    ready = c.get("/readyz").json()
                    keyed = c.get("/v1/jobs", params={"limit": 1}, headers=headers).status_code == 200
                except (httpx.HTTPError, ValueError):
                    ready, keyed = {}, False
                workers = int(ready.get("live_workers") or 0)
                state = f"api {'up' if ready else 'starting'}, key {'ok' if keyed else 'pending'}, {workers} worker(s)"
                if state != shown:
                    print(f"  {state}", flush=True)
                    shown = state
                if ready.get("ready") and keyed and workers >= 1:
                    return
                time.sleep(0.5)

    def stop(self, timeout_s: float = 90.0) -> str:
        if self.proc is None:
            return "not started"
        code = self.proc.poll()
        if code is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=timeout_s)
            except (subprocess.TimeoutExpired, KeyboardInterrupt):  # too slow, or a second Ctrl-C
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                code = None
        if self._log is not None:
            self._log.close()
        return f"stopped (exit code {code})" if code is not None else "killed (it did not stop in time)"


# --------------------------------------------------------------------------- the edit

@dataclass(frozen=True)
class EditChoice:
    """The held-out product, its reel(s) and the reference ad whose script the edit uses."""

    product: Any  # ProductRecord
    photo_ids: list[int]
    reference: Any  # RefEditRecord
    bgm_mood: str


def choose_edit(library: Path, product_id: str | None) -> EditChoice:
    """A test-split product with an English reference ad (the first one, unless `product_id` is given)."""
    from autocut.library.catalog import Catalog

    with Catalog.open(library, create=False) as cat:
        products = {p.product_id: p for p in cat.products(split="test")}
        if not products:
            raise ConfigError(f"library {library} has no test-split products (build the demo world first)")
        if product_id is not None and product_id not in products:
            raise ConfigError(f"{product_id} is not a test-split product; choose one of "
                              f"{', '.join(sorted(products)[:10])} ...")
        ads = [a for a in cat.reference_edits(split="test") if a.language == "en"]
        for pid in [product_id] if product_id else sorted(products):
            mine = sorted((a for a in ads if a.product_id == pid), key=lambda a: a.edit_id)
            if mine:
                ref = mine[0]
                mood = cat.bgm_track(ref.audio_id).mood if ref.audio_id is not None else ""
                photo_ids = sorted({s.photo_id for s in ref.segments})
                return EditChoice(product=products[pid], photo_ids=photo_ids, reference=ref, bgm_mood=mood)
    raise ConfigError(f"no English reference ad for {product_id or 'any test product'} in {library}")


def run_edit(cfg: DemoConfig, server: DemoServer, *, say: Callable[[str], None]) -> tuple[dict[str, str], str]:
    """Upload the product photo, POST the edit, poll it, download its files; returns (paths, summary)."""
    import httpx

    choice = choose_edit(cfg.library, cfg.product_id)
    p, ref = choice.product, choice.reference
    script = [s.sentence for s in ref.segments]
    say(f"  product {p.product_id} (test split, never trained on): {p.name} by {p.brand}, {p.category}")
    say(f"  pool: its reel (photo_id {', '.join(map(str, choice.photo_ids))}: its ad shots and a look-alike "
        f"rival's); script-driven with reference ad {ref.edit_id}'s {len(script)} sentences")
    headers = {"X-API-Key": server.api_key}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=60.0) as c:
        image_id = None
        if p.image_path and Path(p.image_path).exists():
            with open(p.image_path, "rb") as f:
                r = c.post("/v1/images", files={"file": (Path(p.image_path).name, f, "image/png")})
            _check(r, "uploading the product photo")
            image_id = r.json()["clip_id"]
            say(f"  uploaded the product photo: {image_id}")
        options: dict[str, Any] = {"resolution": cfg.resolution, "language": "en", "max_duration_s": 60}
        if cfg.planner:
            options["planner"] = cfg.planner
        body = {"product": {"name": p.name, "brand": p.brand, "category": p.category,
                            "selling_points": list(p.selling_points), "description": p.description,
                            **({"image_id": image_id} if image_id else {})},
                "clips": [{"photo_id": pid} for pid in choice.photo_ids], "script": script, "options": options}
        t0 = time.perf_counter()
        r = c.post("/v1/edits", json=body)
        _check(r, "POST /v1/edits")
        job_id = r.json()["job_id"]
        say(f"  POST /v1/edits -> {r.status_code}, job {job_id}")
        try:
            job = _poll(c, job_id, cfg.job_timeout_s, say)
        except KeyboardInterrupt:  # cancel the job (stops its ffmpeg), so the service stops at once
            with contextlib.suppress(Exception):
                c.delete(f"/v1/jobs/{job_id}", timeout=5.0)
            raise
        wall = time.perf_counter() - t0
        if job["state"] != "done":
            err = job.get("error") or {}
            raise ConfigError(f"job {job_id} ended {job['state']}: {err.get('code')}: {err.get('message')}")
        res = job["results"][0]
        out_dir = cfg.demo_dir / "output" / f"{p.product_id}-{job_id}"
        out_dir.mkdir(parents=True, exist_ok=True)
        outputs: dict[str, str] = {"job_id": job_id, "planner": res["planner"]}
        for artifact, name in RESULT_ARTIFACTS.items():
            dest = out_dir / name
            with c.stream("GET", res["links"][artifact]) as rr:
                _check(rr, f"downloading the {artifact}")
                with open(dest, "wb") as f:
                    for chunk in rr.iter_bytes(1 << 16):
                        f.write(chunk)
            outputs[artifact] = str(dest)
        timings = job.get("timings") or {}
        say(f"  done in {wall:.1f} s (planning {timings.get('plan_s', 0):.1f} s, rendering "
            f"{timings.get('render_s', 0):.1f} s); downloaded into {out_dir}")
    plan = json.loads(Path(outputs["plan"]).read_text())
    return outputs, summarize_plan(cfg.library, plan, choice)


def _check(r: Any, what: str) -> None:
    if r.status_code >= 400:
        with contextlib.suppress(Exception):
            r.read()
        raise ConfigError(f"{what}: HTTP {r.status_code}: {r.text[:500]}")


def _poll(c: Any, job_id: str, timeout_s: float, say: Callable[[str], None]) -> dict:
    deadline = time.monotonic() + timeout_s
    shown, shown_pct = "", -100.0
    while True:
        r = c.get(f"/v1/jobs/{job_id}")
        _check(r, f"GET /v1/jobs/{job_id}")
        job = r.json()
        stage, pct = f"{job['state']}: {job['stage'] or '-'}", float(job["progress_pct"])
        if stage != shown or pct >= shown_pct + 10:  # a line per stage and per 10 %
            say(f"    {stage} {pct:.0f}%")
            shown, shown_pct = stage, pct
        if job["state"] in ("done", "failed", "cancelled"):
            return job
        if time.monotonic() > deadline:
            c.delete(f"/v1/jobs/{job_id}")
            raise ConfigError(f"job {job_id} did not finish within {timeout_s:.0f} s (cancelled)")
        time.sleep(0.5)


def _shot_at(shots: list[dict], photo_id: int | None, t_s: float) -> dict | None:
    for s in shots:
        if s["photo_id"] == photo_id and s["offset_s"] <= t_s < s["offset_s"] + s["duration_s"]:
            return s
    return None


def summarize_plan(library: Path, plan: dict, choice: EditChoice) -> str:
    """One paragraph: which shots the plan used (roles from the world manifest), the script, the music."""
    from autocut.library.catalog import Catalog

    man = json.loads(LibraryLayout(library).world_manifest.read_text())
    shots = man["shots"]
    segs = plan["segments"]
    used = []
    for s in segs:
        shot = _shot_at(shots, s.get("photo_id"), s["start_s"] + s["duration_s"] / 2)
        if shot is None:
            used.append("?")
        elif shot["kind"] == "ad":
            used.append(shot["role"])
        else:
            used.append("rival's " + shot["role"])
    ref_roles = [sg.role for sg in choice.reference.segments]
    own = sum(1 for u in used if u != "?" and not u.startswith("rival"))
    same = sum(1 for a, b in zip(used, ref_roles, strict=False) if a == b)
    dur = sum(s["duration_s"] for s in segs)
    bgm = plan.get("bgm")
    if bgm and bgm.get("audio_id") is not None:
        with Catalog.open(library, create=False) as cat:
            track = cat.bgm_track(int(bgm["audio_id"]))
        music = (f"background music: excerpt {track.audio_id} of \"{track.title}\" at {bgm.get('start_s', 0):.0f} s "
                 f"(mood {track.mood}; the reference ad's music is {choice.bgm_mood})")
    else:
        music = "no background music"
    words = " / ".join(f"\"{s['sentence']}\"" for s in segs)
    return (f"The {plan.get('planner') or '?'} planner cut {len(segs)} clips ({dur:.1f} s) from the pool: "
            f"{own} of the product's own ad shots and {len(segs) - own} of the look-alike rival's, in the order "
            f"{' -> '.join(used)} (reference ad: {' -> '.join(ref_roles)}; {same} of {len(segs)} positions "
            f"match). The espeak-ng voice-over and subtitles speak the reference ad's script, one sentence per "
            f"clip: {words}. {music[0].upper() + music[1:]}.")


# --------------------------------------------------------------------------- entry point

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
        record = {"finished_at": time.time(), "wall_s": round(time.perf_counter() - t0, 1),
                  "stages": [t.__dict__ for t in demo.report.timings], "outputs": demo.report.outputs}
        (cfg.demo_dir / "last_run.json").write_text(json.dumps(record, indent=1))
    return demo.report


def build_parser() -> argparse.ArgumentParser:
    d = DemoConfig(library=Path("var/library"))
    ap = argparse.ArgumentParser(prog="python -m autocut.demo", description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[2:]))
    ap.add_argument("--library", type=Path, default=d.library, help="library directory (default var/library)")
    ap.add_argument("--world-size", choices=("small", "medium", "full"), default=d.world_size,
                    help="demo world size: medium (64 products, about 15 min to build here), full (160 "
                         "products, about 34 min; what the evaluation uses) or small (8 products, ~30 s; too "
                         "little data for the LM to learn anything) (default medium)")
    ap.add_argument("--rqvae-budget-s", type=float, default=d.rqvae_budget_s, metavar="S",
                    help=f"time cap per RQ-VAE tokenizer (default {d.rqvae_budget_s:.0f})")
    ap.add_argument("--align-budget-s", type=float, default=d.align_budget_s, metavar="S",
                    help=f"LM alignment time budget (default {d.align_budget_s:.0f})")
    ap.add_argument("--sft-budget-s", type=float, default=d.sft_budget_s, metavar="S",
                    help=f"LM SFT time budget (default {d.sft_budget_s:.0f})")
    ap.add_argument("--threads", type=int, default=None, help="torch threads for training (default: torch's)")
    ap.add_argument("--product", default=None, metavar="ID", help="test-split product to edit (default: the first)")
    ap.add_argument("--resolution", type=int, default=d.resolution,
                    help=f"short side of the ad in pixels (default {d.resolution})")
    ap.add_argument("--planner", default=None,
                    help="planner for the edit (default: the server's, 'auto' = token LM if trained, else heuristic)")
    ap.add_argument("--force", action="append", default=[], choices=FORCEABLE, metavar="STAGE",
                    help=f"redo a stage even if its output is current ({', '.join(FORCEABLE)}; repeatable); "
                         "a model it replaces is kept as <run dir>.previous")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s: %(message)s",
                        datefmt="%H:%M:%S")
    cfg = DemoConfig(library=args.library.resolve(), world_size=args.world_size, rqvae_budget_s=args.rqvae_budget_s,
                     align_budget_s=args.align_budget_s, sft_budget_s=args.sft_budget_s, threads=args.threads,
                     product_id=args.product, resolution=args.resolution, planner=args.planner,
                     force=frozenset(args.force))
    print(f"AutoCut demo: library {cfg.library}")

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    # Ctrl-C and `kill` both unwind through the stages, so the service is always stopped.
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    t0 = time.perf_counter()
    try:
        report = run_demo(cfg)
    except KeyboardInterrupt:
        print("\ndemo interrupted; the service was stopped. Run it again to continue: finished stages are cached.",
              file=sys.stderr)
        return 130
    except AutoCutError as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        return 2
    print("\n" + "=" * 78)
    o = report.outputs
    print(f"the ad (job {o.get('job_id')}, planner {o.get('planner')}):")
    for artifact in RESULT_ARTIFACTS:
        print(f"  {artifact:<10} {o.get(artifact)}")
    print("\n" + report.summary + "\n")
    print(report.table())
    print(f"\ndemo finished in {time.perf_counter() - t0:.1f} s (server log: {cfg.demo_dir / 'server.log'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
