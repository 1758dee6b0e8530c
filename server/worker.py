"""One worker process: a Dramatiq consumer with one worker thread running `JobRunner.handle`.

SIGTERM/SIGINT: stop taking jobs, give the running job `shutdown_grace_s` to finish, then stop
it (ffmpeg is terminated) and hand it back to the queue; then exit. SIGKILL needs no handling:
the job's message stays unacknowledged and the broker redelivers it once this process's
heartbeat is stale (see `server.queue`). SIGSTOP past the heartbeat timeout looks the same to the
broker; after SIGCONT the job store refuses the stale delivery's fenced writes and the runner stops it
(ffmpeg included) without recording anything (see `server.tasks`).

Resource limits (docs/deploy.md, "Media limits"), applied at start-up, before models are loaded:
RLIMIT_DATA on this process (`worker_max_memory_mb`: a runaway job gets MemoryError, not the OOM
killer; RLIMIT_DATA rather than RLIMIT_AS because torch and the BLAS/CUDA libraries reserve far more
address space than they use), a raised OOM score (if the kernel must kill something, a worker goes
before Redis or the API), and the media limits plus per-ffmpeg RLIMIT_DATA/RLIMIT_CPU that
`autocut.library.media` applies to every ffprobe/ffmpeg the jobs start.
"""

from __future__ import annotations

import contextlib
import logging
import resource
import signal
import threading

import dramatiq

from autocut.library.media import MediaLimits, configure_limits
from server.queue import JobQueue, Reconciler
from server.settings import Settings, media_limits
from server.store import JobStore
from server.tasks import JobRunner

__all__ = ["apply_worker_limits", "media_limits", "run_worker_process"]

log = logging.getLogger(__name__)

# A worker's imports and models take ~0.6 GiB of RLIMIT_DATA (measured: torch, the CNN, the pipeline);
# below about half a GiB torch does not even import (it segfaults), so a limit under this is refused.
MIN_WORKER_MEMORY_MB = 1024
# /proc/self/oom_score_adj of workers (and the ffmpeg they start): the OOM killer's first choice.
WORKER_OOM_SCORE_ADJ = 1000


def apply_worker_limits(settings: Settings) -> MediaLimits:
    """Limit this (worker) process: RLIMIT_DATA, OOM score, and the media limits of its jobs."""
    if 0 < settings.worker_max_memory_mb < MIN_WORKER_MEMORY_MB:
        raise ValueError(
            f"AUTOCUT_WORKER_MAX_MEMORY_MB={settings.worker_max_memory_mb} is below the {MIN_WORKER_MEMORY_MB} MiB "
            "a worker needs to load its models (0 = no limit)"
        )
    if settings.worker_max_memory_mb:
        # Soft limit only: the hard limit stays, so ffmpeg children can set their own.
        _soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
        limit = settings.worker_max_memory_mb * 1024 * 1024
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as f:
        f.write(str(WORKER_OOM_SCORE_ADJ))
    limits = media_limits(settings)
    configure_limits(limits)
    return limits


def run_worker_process(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT; returns the exit code."""
    limits = apply_worker_limits(settings)
    log.info(
        "worker limits: memory %s MiB (RLIMIT_DATA), per ffmpeg %s MiB / %s CPU-s; media <= %dx%d, %d px, %g fps, %g s",
        settings.worker_max_memory_mb or "unlimited",
        settings.ffmpeg_max_memory_mb or "unlimited",
        settings.ffmpeg_max_cpu_s or "unlimited",
        limits.max_width,
        limits.max_height,
        limits.max_pixels,
        limits.max_fps,
        limits.max_duration_s,
    )
    store = JobStore.from_url(settings.broker_url, settings.redis_namespace, timeout_s=settings.redis_timeout_s)
    queue = JobQueue(settings)
    runner = JobRunner(settings, store, lambda job_id, delay_s: queue.enqueue(job_id, delay_s=delay_s))
    queue.declare_actor(runner.handle)
    worker = dramatiq.Worker(queue.broker, worker_threads=1, worker_timeout=settings.poll_interval_ms)
    # Prefetch 1: a worker holds only the job it runs, never a second one behind a long render.
    worker.queue_prefetch = 1
    reconciler = Reconciler(store, queue)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("worker %s: signal %d, shutting down", runner.worker_id, signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def presence() -> None:
        # Liveness for /readyz and Retry-After estimates (delivery itself relies on Dramatiq's heartbeats).
        while not stop.wait(settings.heartbeat_timeout_s / 4):
            try:
                store.worker_heartbeat(runner.worker_id)
            except Exception:  # a Redis hiccup: try again next beat
                log.warning("presence heartbeat failed", exc_info=True)

    runner.warm_up()
    worker.start()
    reconciler.start()
    store.worker_heartbeat(runner.worker_id)
    threading.Thread(target=presence, name="autocut-presence", daemon=True).start()
    log.info("worker %s ready (queue namespace %s)", runner.worker_id, queue.namespace)
    while not stop.wait(0.5):
        pass
    reconciler.stop()
    runner.draining = True
    # Worker threads stop after their current job while the consumers keep heartbeating (so the
    # running job is not redelivered meanwhile); past the grace period the job is stopped and
    # handed back. Messages fetched but not started are requeued by `Worker.stop`.
    timer = threading.Timer(settings.shutdown_grace_s, runner.stop_current, args=("shutdown",))
    timer.daemon = True
    timer.start()
    worker.stop(timeout=int((settings.shutdown_grace_s + 60) * 1000))
    timer.cancel()
    store.worker_gone(runner.worker_id)
    queue.close()
    log.info("worker %s stopped", runner.worker_id)
    return 0
