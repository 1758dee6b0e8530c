"""One worker process: a Dramatiq consumer with one worker thread running `JobRunner.handle`.

SIGTERM/SIGINT: stop taking jobs, give the running job `shutdown_grace_s` to finish, then stop
it (ffmpeg is terminated) and hand it back to the queue; then exit. SIGKILL needs no handling:
the job's message stays unacknowledged and the broker redelivers it once this process's
heartbeat is stale (see `server.queue`).
"""

from __future__ import annotations

import logging
import signal
import threading

import dramatiq

from server.queue import JobQueue, Reconciler
from server.settings import Settings
from server.store import JobStore
from server.tasks import JobRunner

__all__ = ["run_worker_process"]

log = logging.getLogger(__name__)


def run_worker_process(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT; returns the exit code."""
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
