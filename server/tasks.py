"""What a worker does with a job id: claim it, run it, record exactly one outcome.

Every delivery of a job goes through `JobRunner.handle`:
1. `JobStore.start` claims it (a finished or cancelled job is acknowledged and dropped; a job
   whose previous worker died is counted, and failed after `max_lost_deliveries`) and gives this
   delivery its fencing token: every write below carries it, and when a newer delivery owns the job
   (this one was paused past its heartbeat and the job redelivered) the store refuses the write
   (`StaleDelivery`); the watcher also notices within `_CANCEL_POLL_S`. A superseded delivery stops
   (ffmpeg too), publishes nothing, records nothing and removes only its own attempt directories;
2. the kind's handler runs with a cancel event (set by DELETE, the job timeout or worker
   shutdown; the renderer stops ffmpeg when it is set) and a progress callback;
3. the outcome is recorded: done (compare-and-set: one completion record however often the job
   ran), failed (permanent `AutoCutError`, no retry), queued again with backoff (`TransientError`,
   up to `max_retries`), or deferred (an edit waiting for its uploads to finish ingesting).

Artifacts are idempotent (see `server.storage`): plans are written once per job, each variant
is rendered into an attempt directory and published by one rename, first attempt wins. Before a
job is marked done its result files and their directories are fsynced (`_make_durable`), so a
"done" in the job store never names files a power cut could take back.
Models (planners, encoders) are loaded once per worker process and reused across jobs.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import random
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from autocut.errors import AutoCutError, CatalogError, MediaError, PlanError, TransientError
from autocut.render.outputs import RESULT_FILES, apply_quality
from server.jobspec import (
    EditJobSpec,
    IngestJobSpec,
    LibraryRef,
    RebuildJobSpec,
    RenderJobSpec,
    UploadRef,
    render_choices,
    review_result,
    subtitle_style,
)
from server.settings import Settings
from server.storage import VARIANT_INFO, Layout, PathRefError, publish_dir, resolve_media_path, write_json_once
from server.store import ACTIVE_STATES, JobRecord, JobState, JobStore, StaleDelivery

__all__ = ["AUTO_PLANNER", "Deferred", "JobCancelled", "JobContext", "JobOutput", "JobRunner", "resolve_planner"]

log = logging.getLogger(__name__)

_PROGRESS_INTERVAL_S = 0.5
# The default planner name: the compact LM planner when the library holds one that beat the heuristic on its
# recorded held-out check, else the heuristic (`autocut.planning.planners.base.auto_planner`).
AUTO_PLANNER = "auto"
_CANCEL_POLL_S = 0.3


class Deferred(Exception):
    """The job cannot run yet (e.g. its uploads are still ingesting); run it again after `delay_s`."""

    def __init__(self, stage: str, delay_s: float) -> None:
        super().__init__(stage)
        self.stage = stage
        self.delay_s = delay_s


class JobCancelled(Exception):
    """The cancel event was set between steps (`reason`: client, timeout, shutdown or superseded)."""


@dataclass
class JobOutput:
    results: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


class JobContext:
    """What a handler gets: the job, a cancel event, throttled progress reporting, its work dirs."""

    def __init__(
        self, job: JobRecord, store: JobStore, layout: Layout, settings: Settings, *, fence: int | None = None
    ) -> None:
        self.job = job
        self.store = store
        self.layout = layout
        self.settings = settings
        # This delivery's fencing token (`JobStore.start`); every job-store write of the delivery carries it.
        self.fence = fence
        self.cancel = threading.Event()
        self.cancel_reason = ""
        self._last_report = 0.0
        self._last_stage = ""
        # Attempt directories this delivery made (a superseded delivery removes these, never another's).
        self.attempts: list[Path] = []

    def new_attempt_dir(self) -> Path:
        d = self.layout.new_attempt_dir(self.job.job_id)
        self.attempts.append(d)
        return d

    def check_owner(self) -> None:
        """Raise `StaleDelivery` if a newer delivery owns the job (checked before publishing results)."""
        if self.fence is not None and self.store.owning_fence(self.job.job_id)[0] != self.fence:
            self.stop("superseded")
            raise StaleDelivery(self.job.job_id, self.fence)

    def stop(self, reason: str) -> None:
        if not self.cancel.is_set():
            self.cancel_reason = reason
            self.cancel.set()

    def check_cancel(self) -> None:
        if self.cancel.is_set():
            raise JobCancelled(self.cancel_reason)

    def progress(self, stage: str, pct: float, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or stage != self._last_stage or now - self._last_report >= _PROGRESS_INTERVAL_S:
            self._last_report, self._last_stage = now, stage
            try:
                self.store.progress(self.job.job_id, stage, pct, fence=self.fence)
            except StaleDelivery:
                log.warning("job %s: a newer delivery owns it; this one (fence %s) stops", self.job.job_id, self.fence)
                self.stop("superseded")
            except Exception:  # progress is best effort; the job goes on
                log.warning("could not record progress of %s", self.job.job_id, exc_info=True)


class JobRunner:
    """Runs jobs in one worker process; holds the per-process model caches."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        enqueue: Callable[[str, float], None],
        *,
        on_store_lost: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.enqueue = enqueue
        # Fail-stop when the outcome of a job cannot be recorded (see `handle`).
        self.on_store_lost = on_store_lost or (lambda: os._exit(75))
        # Tries of each outcome write before giving up (backoff 0.5 s doubling: ~30 s in all).
        self.persist_attempts = 6
        self.layout = Layout.create(settings.data_dir)
        # Unique even where host name and pid repeat (containers on host networking share the host's name and
        # each runs its worker as the same pid): the reconciler tells a live worker from a dead one by this id.
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._planners: dict[str, Any] = {}
        self._current: JobContext | None = None
        # Set on worker shutdown: deliveries that arrive now go straight back to the queue.
        self.draining = False
        self._lock = threading.Lock()
        self._handlers: dict[str, Callable[[JobContext], JobOutput]] = {
            "edit": self._run_edit,
            "ingest": self._run_ingest,
            "rebuild": self._run_rebuild,
            "render": self._run_edit,  # a plan sent back (POST /v1/renders): `_build_plans` reads it from the spec
        }
        # Paths users should not see in error messages, longest first.
        roots = {
            str(settings.data_dir.resolve()): "<data>",
            str(settings.library_dir.resolve()): "<library>",
            str(settings.media_dir): "<media>",
        }
        self._private_roots = sorted(roots.items(), key=lambda kv: -len(kv[0]))

    def warm_up(self) -> None:
        """Import the pipeline and build the default planner before the first job (not during it)."""
        import autocut.library.ingest
        import autocut.planning.pipeline
        import autocut.render  # noqa: F401

        try:
            planner = self._planner(self.settings.default_planner)
            warm = getattr(planner, "warm_up", None)
            if callable(warm):  # a planner holding a model (the token LM) loads it now, not in the first job
                warm(self.settings.library_dir)
        except AutoCutError as exc:
            log.warning("default planner %r unavailable: %s", self.settings.default_planner, exc)

    def register_handler(self, kind: str, fn: Callable[[JobContext], JobOutput]) -> None:
        """Add (or replace) the handler of a job kind (extensions; tests of the delivery policy)."""
        self._handlers[kind] = fn

    # ------------------------------------------------------------------ lifecycle
    def stop_current(self, reason: str) -> bool:
        """Stop the running job (worker shutdown); it is queued again, not failed. True if one ran."""
        with self._lock:
            ctx = self._current
        if ctx is None:
            return False
        ctx.stop(reason)
        return True

    @property
    def busy(self) -> bool:
        return self._current is not None

    # ------------------------------------------------------------------ one delivery
    def handle(self, job_id: str) -> None:
        """The actor body. Returns only once the outcome is recorded (the broker then acknowledges).

        If the job store stays unreachable, the worker process exits *without* returning: the
        message stays unacknowledged and is redelivered, instead of being acknowledged for a job
        whose state was never written (which would leave it "running" forever)."""
        try:
            self._handle(job_id)
        except StaleDelivery as exc:
            # Paused past its heartbeat, this delivery was superseded: the job is the newer delivery's. Nothing
            # is recorded; the acknowledgement that follows is a no-op (the broker moved the message on).
            log.warning("%s; it stopped and recorded nothing", exc)
        except redis.RedisError:
            log.critical(
                "job store unreachable while handling %s; exiting without acknowledging it so the job is redelivered",
                job_id,
                exc_info=True,
            )
            self.on_store_lost()

    def _handle(self, job_id: str) -> None:
        if self.draining:
            self.enqueue(job_id, 0.0)
            return
        decision = self.store.start(job_id, self.worker_id, self.settings.max_lost_deliveries)
        if decision.action != "run":
            log.info("job %s: %s %s; nothing to do", job_id, decision.action, decision.state)
            return
        job = self.store.get_job(job_id)
        if job is None:  # deleted between start and now
            return
        ctx = JobContext(job, self.store, self.layout, self.settings, fence=decision.fence)
        with self._lock:
            self._current = ctx
        watcher = threading.Thread(target=self._watch, args=(ctx,), name=f"watch-{job_id}", daemon=True)
        watcher.start()
        t0 = time.monotonic()
        log.info("job %s (%s) delivery %d (fence %d) starting", job_id, job.kind, decision.deliveries, decision.fence)
        try:
            try:
                out = self._handlers[job.kind](ctx)
                ctx.check_cancel()
                _make_durable(self.layout.job_dir(job_id))  # the results before the "done" that names them
            finally:
                ctx.cancel.set()  # ends the watcher (cancel_reason stays empty unless a stop was asked)
                watcher.join(timeout=5)
            if ctx.cancel_reason == "superseded":  # the watcher noticed after the handler returned
                raise StaleDelivery(job_id, ctx.fence or 0)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Deferred as d:
            self._outcome(ctx, functools.partial(self._defer, ctx, d))
        except StaleDelivery:
            self._superseded(ctx)
            raise
        except BaseException as exc:  # noqa: BLE001 - every outcome is recorded, nothing escapes
            if ctx.cancel_reason == "superseded":
                self._superseded(ctx)
                raise StaleDelivery(job_id, ctx.fence or 0) from None
            self._outcome(ctx, functools.partial(self._record_failure, ctx, exc))
        else:
            out.timings["total_s"] = round(time.monotonic() - t0, 3)
            # The result files are charged to the key's storage quota by the completion (published whatever
            # their size: a finished render is never thrown away; the key's next job waits for room instead).
            stored = _stored_bytes(self.layout.job_dir(job_id))
            complete = functools.partial(
                self.store.complete, job_id, out.results, out.timings, fence=ctx.fence, stored_bytes=stored
            )
            if self._outcome(ctx, complete):
                self.store.stats_record("job_s", time.monotonic() - t0)
                log.info("job %s done in %.1f s", job_id, time.monotonic() - t0)
            else:
                log.info("job %s had already been completed by another delivery; this one is dropped", job_id)
            self._finished(ctx)
        finally:
            with self._lock:
                self._current = None

    def _outcome(self, ctx: JobContext, write: Callable[[], Any]) -> Any:
        """Record an outcome (riding out a Redis restart); a refused fence means this delivery was superseded."""
        try:
            return _persist(write, self.persist_attempts)
        except StaleDelivery:
            self._superseded(ctx)
            raise

    def _record_failure(self, ctx: JobContext, exc: BaseException) -> None:
        job_id = ctx.job.job_id
        if ctx.cancel_reason:
            self._cancelled(ctx)
        elif isinstance(exc, TransientError):
            self._retry(ctx, exc)
        elif isinstance(exc, AutoCutError):
            log.info("job %s failed: %s", job_id, exc)
            self.store.fail(job_id, _error_code(exc), self._public(str(exc)), fence=ctx.fence)
            self._finished(ctx)
        else:
            log.error("job %s: internal error", job_id, exc_info=exc)
            self.store.fail(
                job_id,
                "internal_error",
                f"internal error ({type(exc).__name__}); the operator can find it in the worker log",
                fence=ctx.fence,
            )
            self._finished(ctx)

    def _watch(self, ctx: JobContext) -> None:
        deadline = time.monotonic() + self.settings.job_timeout_s
        while not ctx.cancel.wait(_CANCEL_POLL_S):
            try:
                owner, cancel = self.store.owning_fence(ctx.job.job_id)
                if ctx.fence is not None and owner != ctx.fence:
                    log.warning("job %s: delivery %d owns it; this one (%d) stops", ctx.job.job_id, owner, ctx.fence)
                    ctx.stop("superseded")
                    return
                if cancel:
                    ctx.stop("client")
                    return
            except Exception:  # a Redis hiccup must not kill the job
                log.warning("cancel check failed for %s", ctx.job.job_id, exc_info=True)
            if time.monotonic() > deadline:
                ctx.stop("timeout")
                return

    def _finished(self, ctx: JobContext) -> None:
        self.layout.clean_attempts(ctx.job.job_id)

    def _superseded(self, ctx: JobContext) -> None:
        """A newer delivery owns the job: remove this delivery's own attempt directories, nothing else."""
        ctx.stop("superseded")
        for d in ctx.attempts:
            shutil.rmtree(d, ignore_errors=True)

    def _cancelled(self, ctx: JobContext) -> None:
        jid = ctx.job.job_id
        if ctx.cancel_reason == "shutdown":
            # Not the job's fault: hand it back to the queue for another worker, no retry counted.
            if self.store.requeue(jid, "queued (its worker shut down)", count_retry=False, fence=ctx.fence):
                self.enqueue(jid, 0.0)
            log.info("job %s handed back to the queue (worker shutdown)", jid)
        elif ctx.cancel_reason == "timeout":
            self.store.fail(
                jid, "timeout", f"the job ran longer than {self.settings.job_timeout_s:.0f} s", fence=ctx.fence
            )
            self._finished(ctx)
        else:
            self.store.fail(jid, "cancelled", "cancelled by the client", state=JobState.CANCELLED, fence=ctx.fence)
            log.info("job %s cancelled", jid)
            self._finished(ctx)

    def _retry(self, ctx: JobContext, exc: TransientError) -> None:
        jid, retries = ctx.job.job_id, ctx.job.retries
        if retries >= self.settings.max_retries:
            self.store.fail(
                jid, "transient_error", f"{self._public(str(exc))} (gave up after {retries} retries)", fence=ctx.fence
            )
            self._finished(ctx)
            return
        s = self.settings
        # Exponential backoff with jitter in [d/2, d] (spreads the retries of many jobs hit by one outage).
        delay = min(s.retry_max_backoff_s, s.retry_min_backoff_s * 2**retries)
        delay = random.uniform(delay / 2, delay)
        msg = self._public(str(exc))
        stage = f"retry {retries + 1}/{s.max_retries} in {delay:.0f} s"
        if not self.store.requeue(jid, stage, msg, count_retry=True, fence=ctx.fence):
            return
        self.enqueue(jid, delay)
        log.warning("job %s: transient error (%s); retry %d in %.1f s", jid, msg, retries + 1, delay)

    def _defer(self, ctx: JobContext, d: Deferred) -> None:
        if self.store.requeue(ctx.job.job_id, d.stage, count_retry=False, fence=ctx.fence):
            self.enqueue(ctx.job.job_id, d.delay_s)

    def _public(self, message: str) -> str:
        for root, name in self._private_roots:
            message = message.replace(root, name)
        return message

    # ------------------------------------------------------------------ ingest
    def _run_ingest(self, ctx: JobContext) -> JobOutput:
        from autocut.library.ingest import ingest_paths

        spec = IngestJobSpec.model_validate(ctx.job.spec)
        path = Path(spec.path)
        ctx.progress("waiting for the library", 1.0)
        t0 = time.monotonic()
        with self.layout.library_write_lock(ctx.cancel), _lock_contention_is_transient():
            ctx.check_cancel()
            ctx.progress("ingesting", 5.0)
            report = ingest_paths(
                self.settings.library_dir, [path], kind="footage", progress=lambda *_: ctx.progress("ingesting", 95.0)
            )
        res = report.results[0]
        if res.status == "failed":
            reason = res.reason.replace(str(path), spec.filename or "the upload")
            raise MediaError(spec.filename or "upload", reason.split(": ", 1)[-1])
        photo_id = res.ids[0] if res.ids else None
        return JobOutput(
            results=[{"type": "ingest", "clip_id": spec.clip_id, "photo_id": photo_id, "status": res.status}],
            timings={"ingest_s": round(time.monotonic() - t0, 3)},
        )

    # ------------------------------------------------------------------ index rebuild
    def _run_rebuild(self, ctx: JobContext) -> JobOutput:
        from autocut.library.indexing import rebuild_indexes

        kinds = RebuildJobSpec.model_validate(ctx.job.spec).kinds
        done: list[str] = []

        def progress(kind: str, d: int, t: int) -> None:
            frac = (len(done) + (d / t if t else 0.0)) / len(kinds)
            ctx.progress(f"rebuilding {kind} index", 100.0 * frac)

        t0 = time.monotonic()
        summary = rebuild_indexes(self.settings.library_dir, kinds, progress)
        results = [
            {"type": "rebuild", "kind": k.kind, "count": k.count, "factory": k.factory, "total_time_s": k.total_time_s}
            for k in summary.kinds
        ]
        return JobOutput(results=results, timings={"rebuild_s": round(time.monotonic() - t0, 3)})

    # ------------------------------------------------------------------ edit
    def _planner(self, name: str) -> Any:
        from autocut.planning.planners import get_planner

        name = resolve_planner(name, self.settings.library_dir)
        if name not in self._planners:
            # Loaded once per worker process: the token LM planner holds a model.
            self._planners[name] = get_planner(name)
        planner = self._planners[name]
        if hasattr(planner, "reference_split"):
            planner.reference_split = "train"
        return planner

    def _resolve_pool(self, ctx: JobContext, spec: EditJobSpec) -> list:
        """The stored pool references -> `PoolItem`s of ingested library videos."""
        from autocut.library.catalog import Catalog
        from autocut.library.ingest import ingest_paths
        from autocut.library.media import content_hash
        from autocut.types import PoolItem

        items: list[PoolItem] = []
        waiting: list[str] = []
        with Catalog.open(self.settings.library_dir, create=False) as cat:
            for ref in spec.pool:
                text = ref.text
                if isinstance(ref, LibraryRef):
                    src = cat.source(ref.photo_id)
                    if self.layout.is_upload(src.path) and not Path(src.path).is_file():
                        raise PlanError(f"video {ref.photo_id} was deleted after this job was submitted")
                    items.append(PoolItem(photo_id=ref.photo_id, text=text))
                elif isinstance(ref, UploadRef):
                    if self.store.get_clip(ref.clip_id) is None:
                        raise PlanError(f"clip {ref.clip_id} was deleted after this job was submitted")
                    pid = cat.has_source(ref.sha256)
                    if pid is not None:
                        items.append(PoolItem(photo_id=pid, text=text))
                        continue
                    ingest = self.store.get_job(ref.ingest_job_id) if ref.ingest_job_id else None
                    if ingest is not None and ingest.state in ACTIVE_STATES:
                        waiting.append(ref.clip_id)
                        items.append(PoolItem(photo_id=1, text=text))  # placeholder, never planned
                        continue
                    if ingest is not None and ingest.state == JobState.FAILED:
                        raise PlanError(f"clip {ref.clip_id} could not be ingested: {ingest.error_message}")
                    items.append(PoolItem(path=ref.path, text=text))  # ingested below
                else:  # a file under the media root; re-checked now (it may have changed since admission)
                    try:
                        path = resolve_media_path(self.settings.media_dir, ref.path)
                    except PathRefError as exc:
                        raise PlanError(str(exc)) from None
                    found = cat.video_by_path(path)
                    if found is None:
                        found_id = cat.has_source(content_hash(path))
                        items.append(
                            PoolItem(photo_id=found_id, text=text)
                            if found_id is not None
                            else PoolItem(path=str(path), text=text)
                        )
                    else:
                        items.append(PoolItem(photo_id=found.photo_id, text=text))
        if waiting:
            waited_s = time.time() - ctx.job.created_at
            if waited_s > self.settings.dependency_wait_s:
                raise TransientError(f"clips {', '.join(waiting)} are still ingesting after {waited_s:.0f} s")
            raise Deferred(f"waiting for {len(waiting)} clip(s) to finish ingesting", 2.0)
        to_ingest = [it.path for it in items if it.path is not None]
        if to_ingest:
            ctx.progress("ingesting referenced footage", 2.0)
            with self.layout.library_write_lock(ctx.cancel), _lock_contention_is_transient():
                report = ingest_paths(self.settings.library_dir, to_ingest, kind="footage")
            by_path = {r.path: r for r in report.results}
            for i, it in enumerate(items):
                if it.path is None:
                    continue
                r = by_path.get(it.path)
                if r is None or r.status == "failed" or not r.ids:
                    reason = r.reason if r is not None else "not ingested"
                    raise MediaError(f"pool item {i + 1}", reason.split(": ", 1)[-1])
                items[i] = PoolItem(photo_id=r.ids[0], text=it.text)
        return items

    def _build_plans(self, ctx: JobContext) -> tuple[list, float]:
        from autocut.planning import plan_edit
        from autocut.types import BgmChoice, EditPlan, EndCard

        plans_path = self.layout.plans_path(ctx.job.job_id)
        if plans_path.exists():  # an earlier delivery planned already: keep its plans (results must match)
            data = json.loads(plans_path.read_text(encoding="utf-8"))
            return [EditPlan.model_validate(p) for p in data["plans"]], 0.0
        if ctx.job.kind == "render":  # its ids looked up in the library now: never a path from the client
            ctx.progress("preparing the plan", 5.0)
            spec_r = RenderJobSpec.model_validate(ctx.job.spec)
            plan = spec_r.edit_plan(self.settings.library_dir, f"{ctx.job.job_id}-v1")
            stored = write_json_once(plans_path, {"version": 1, "plans": [plan.model_dump(mode="json")]})
            return [EditPlan.model_validate(p) for p in stored["plans"]], 0.0
        spec = EditJobSpec.model_validate(ctx.job.spec)
        opts = spec.request.options
        if spec.image_path and not Path(spec.image_path).is_file():
            raise PlanError("the product image was deleted after this job was submitted")
        pool = self._resolve_pool(ctx, spec)
        ctx.check_cancel()
        ctx.progress("planning", 5.0)
        t0 = time.monotonic()
        plans = plan_edit(self.settings.library_dir, spec.plan_request(pool), self._planner(spec.planner))
        if spec.planner == AUTO_PLANNER:
            from autocut.planning.planners.base import auto_planner

            why = auto_planner(self.settings.library_dir)[1]
            for plan in plans:
                plan.notes["planner_choice"] = why
        policy = opts.bgm.policy
        track = None
        if policy == "track":
            from autocut.library.catalog import Catalog

            with Catalog.open(self.settings.library_dir, create=False) as cat:
                track = cat.bgm_track(int(opts.bgm.audio_id))  # type: ignore[arg-type]
        for k, plan in enumerate(plans):
            plan.plan_id = f"{ctx.job.job_id}-v{k + 1}"
            plan.subtitles = subtitle_style(opts)
            if opts.title_card is not None:
                plan.title_card = opts.title_card.model_copy()
            if opts.end_card is not None:
                plan.end_card = EndCard.model_validate(opts.end_card.model_dump())
            if policy == "none":
                plan.bgm = None
            elif track is not None:
                plan.bgm = BgmChoice(path=track.source_path, audio_id=track.audio_id, start_s=track.start_s)
        plan_s = time.monotonic() - t0
        stored = write_json_once(plans_path, {"version": 1, "plans": [p.model_dump(mode="json") for p in plans]})
        return [EditPlan.model_validate(p) for p in stored["plans"]], plan_s

    def _plans_for_review(self, ctx: JobContext, plans: list, plan_s: float) -> JobOutput:
        """`stop_after: plan`: each plan as a `RenderPlan` (ids, no paths) with a JPEG thumbnail per segment,
        published like a rendered variant (`v<k>/`); nothing is rendered."""
        from autocut.render.outputs import write_thumbnails

        jid, request = ctx.job.job_id, EditJobSpec.model_validate(ctx.job.spec).request
        t0 = time.monotonic()
        results: list[dict[str, Any]] = []
        for k, plan in enumerate(plans, start=1):
            ctx.check_cancel()
            final = self.layout.variant_dir(jid, k)
            if not (final / VARIANT_INFO).exists():
                ctx.progress(f"thumbnails of plan {k}/{len(plans)}", 10.0 + 90.0 * (k - 1) / len(plans), force=True)
                attempt = ctx.new_attempt_dir()
                write_thumbnails(plan, attempt, library_root=self.settings.library_dir, cancel=ctx.cancel)
                (attempt / VARIANT_INFO).write_text(json.dumps(review_result(plan, request, k)), encoding="utf-8")
                _fsync_tree(attempt)
                ctx.check_owner()
                publish_dir(attempt, final)
            results.append(json.loads((final / VARIANT_INFO).read_text(encoding="utf-8")))
        timings = {"plan_s": round(plan_s, 3), "thumbnails_s": round(time.monotonic() - t0, 3)}
        return JobOutput(results=results, timings=timings)

    def _run_edit(self, ctx: JobContext) -> JobOutput:
        from autocut.render import render

        jid = ctx.job.job_id
        plans, plan_s = self._build_plans(ctx)
        stop_after, quality = render_choices(ctx.job.kind, ctx.job.spec)
        if stop_after == "plan":
            return self._plans_for_review(ctx, plans, plan_s)
        n = len(plans)
        render_s = 0.0
        results: list[dict[str, Any]] = []
        for k, plan in enumerate(plans, start=1):
            ctx.check_cancel()
            final = self.layout.variant_dir(jid, k)
            if not (final / VARIANT_INFO).exists():
                stage = f"rendering variant {k}/{n}"
                ctx.progress(stage, 10.0 + 90.0 * (k - 1) / n, force=True)
                attempt = ctx.new_attempt_dir()

                def on_progress(x: float, k: int = k, stage: str = stage) -> None:
                    ctx.progress(stage, 10.0 + 90.0 * (k - 1 + x) / n)

                used = apply_quality(plan, quality)  # preview: the same plan and audio, smaller, encoded faster
                t0 = time.monotonic()
                res = render(
                    used,
                    attempt / RESULT_FILES["video"],
                    library_root=self.settings.library_dir,
                    work_dir=attempt,
                    on_progress=on_progress,
                    cancel=ctx.cancel,
                    threads=self.settings.render_threads,
                )
                render_s += time.monotonic() - t0
                info = {
                    "variant": k,
                    "duration_s": round(res.duration_s, 3),
                    "width": used.output.width,
                    "height": used.output.height,
                    "planner": plan.planner,
                    "plan_id": plan.plan_id,
                    "render_s": round(time.monotonic() - t0, 3),
                    "quality": quality,
                    "preset": used.output.preset,
                    # ok or warn (a failed self-check fails the render): the report, warnings included.
                    "selfcheck": res.selfcheck.to_dict() if res.selfcheck is not None else None,
                }
                (attempt / VARIANT_INFO).write_text(json.dumps(info), encoding="utf-8")
                _fsync_tree(attempt)  # the files are durable before the rename makes them the result
                ctx.check_cancel()
                ctx.check_owner()  # a superseded delivery publishes nothing
                if not publish_dir(attempt, final):
                    log.info("job %s variant %d was published by another delivery", jid, k)
            info = json.loads((final / VARIANT_INFO).read_text(encoding="utf-8"))
            results.append({"type": "variant", **info})
        return JobOutput(results=results, timings={"plan_s": round(plan_s, 3), "render_s": round(render_s, 3)})


def resolve_planner(name: str, library_dir: Path) -> str:
    """`name`, except "auto": the compact planner when `library_dir` holds one whose model card records a won
    held-out check against the heuristic, else the heuristic (`autocut.planning.planners.base.auto_planner`).
    Resolved per job, so a model trained later is used."""
    if name != AUTO_PLANNER:
        return name
    from autocut.planning.planners.base import default_planner

    return default_planner(library_dir)


@contextlib.contextmanager
def _lock_contention_is_transient() -> Iterator[None]:
    """The catalog gives up after 30 s when another writer (an `autocut ingest` outside this
    service) holds the library; that clears by itself, so the job is retried rather than failed.
    The catalog has no distinct class for it, hence the message test."""
    try:
        yield
    except CatalogError as exc:
        if "locked by another writer" in str(exc):
            raise TransientError(str(exc)) from exc
        raise


def _persist(fn: Callable[[], Any], attempts: int = 6, first_delay_s: float = 0.5) -> Any:
    """Run a job-store write, riding out a Redis restart (about 30 s in all); re-raise after that."""
    delay = first_delay_s
    for attempt in range(attempts):
        try:
            return fn()
        except redis.RedisError:
            if attempt == attempts - 1:
                raise
            log.warning("job store write failed; retrying in %.1f s", delay, exc_info=True)
            time.sleep(delay)
            delay *= 2
    return None


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """fsync every file and directory under `root` (files first, then their directory), and `root`."""
    for dirpath, _dirs, files in os.walk(root, topdown=False):
        d = Path(dirpath)
        for name in files:
            _fsync_path(d / name)
        _fsync_path(d)


def _make_durable(job_dir: Path) -> None:
    """Make a job's published results durable before the job is marked done: every file and directory under
    `jobs/<id>/` except attempt work directories, then `jobs/` (the job directory's own entry). A failing fsync
    is a `TransientError` (the job is retried, never marked done on results that may not be on disk)."""
    if not job_dir.is_dir():
        return
    try:
        for entry in job_dir.iterdir():
            if entry.name.startswith(".attempt-"):
                continue
            if entry.is_dir():
                _fsync_tree(entry)
            else:
                _fsync_path(entry)
        _fsync_path(job_dir)
        _fsync_path(job_dir.parent)
    except OSError as exc:
        raise TransientError(f"the results could not be written to disk ({exc.strerror or exc})") from exc


def _stored_bytes(job_dir: Path) -> int:
    """Bytes of a job's published files (`jobs/<id>/` without attempt work directories, which are removed)."""
    total = 0
    if not job_dir.is_dir():
        return 0
    for entry in job_dir.iterdir():
        if entry.name.startswith(".attempt-"):
            continue
        files = [entry] if not entry.is_dir() else [f for f in entry.rglob("*") if not f.is_dir()]
        for f in files:
            with contextlib.suppress(FileNotFoundError):
                total += f.lstat().st_size
    return total


def _error_code(exc: AutoCutError) -> str:
    """`PlanError` -> "plan_error" (the class says what kind of problem the user has)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()
