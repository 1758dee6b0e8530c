"""The job queue: Dramatiq on Redis, carrying only job ids (the job itself is in `JobStore`).

Why Dramatiq rather than Celery (docs/method.md, "Architecture and queue delivery"): both
acknowledge after the task, but Celery's Redis transport redelivers an unacknowledged message
when a fixed *visibility timeout* expires, whether or not its worker is alive: a render longer
than the timeout runs twice at once, and a timeout long enough for the longest render delays
recovery from a killed worker by that much. Dramatiq's Redis broker tracks each worker's
unacknowledged messages and requeues them when that worker's *heartbeat* stops
(`heartbeat_timeout`), independent of task length.
Heartbeats come from the consumer threads, so a worker busy for an hour stays alive.

Delivery settings: one worker thread and prefetch 1 per process (a long render never holds a
second job hostage), no Dramatiq retry/time-limit middleware (the job runner owns retries with
backoff, recorded in the job store, and stops ffmpeg itself on timeout), and delayed messages
for backoff and for edits waiting on uploads.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import MAINTENANCE_SCALE, RedisBroker
from dramatiq.message import Message
from dramatiq.middleware import CurrentMessage

from server.settings import Settings
from server.store import JobStore

__all__ = ["ACTOR_NAME", "QUEUE_NAME", "JobQueue", "Reconciler"]

log = logging.getLogger(__name__)

QUEUE_NAME = "jobs"
ACTOR_NAME = "autocut_job"


class JobQueue:
    """The broker plus the few operations the service needs from it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.namespace = f"{settings.redis_namespace}:dq"
        pool_kw: dict[str, Any] = {"db": settings.queue_db} if settings.queue_db is not None else {}
        # Bounded like the job store's commands: a stalled Redis fails an enqueue (503) instead of hanging it.
        pool_kw.update(
            socket_timeout=settings.redis_timeout_s, socket_connect_timeout=min(settings.redis_timeout_s, 5.0)
        )
        client = redis.Redis(connection_pool=redis.ConnectionPool.from_url(settings.broker_url, **pool_kw))
        self.broker = RedisBroker(
            client=client,
            namespace=self.namespace,
            middleware=[CurrentMessage()],
            heartbeat_timeout=int(settings.heartbeat_timeout_s * 1000),
            maintenance_chance=min(MAINTENANCE_SCALE, settings.maintenance_chance_ppm),
        )
        self.broker.declare_queue(QUEUE_NAME)

    def declare_actor(self, fn) -> dramatiq.Actor:
        """Register the function that runs a job id (worker processes only)."""
        return dramatiq.Actor(
            fn, broker=self.broker, actor_name=ACTOR_NAME, queue_name=QUEUE_NAME, priority=0, options={}
        )

    def enqueue(self, job_id: str, *, delay_s: float = 0.0) -> None:
        msg: Message[Any] = Message(queue_name=QUEUE_NAME, actor_name=ACTOR_NAME, args=(job_id,), kwargs={}, options={})
        self.broker.enqueue(msg, delay=int(delay_s * 1000) if delay_s > 0 else None)

    def depth(self) -> int:
        """Messages waiting (not yet fetched by a worker)."""
        return int(self.broker.client.llen(f"{self.namespace}:{QUEUE_NAME}"))

    def close(self) -> None:
        self.broker.close()
        self.broker.client.close()


class Reconciler:
    """Hands admitted-but-never-enqueued jobs to the queue (the admitting API died in between).

    Admission writes the records first and enqueues second; this closes the gap. Enqueuing a job
    twice is harmless: the runner's start step and the completion compare-and-set make it idempotent.
    """

    def __init__(self, store: JobStore, queue: JobQueue) -> None:
        self.store = store
        self.queue = queue
        self.interval_s = queue.settings.reconcile_interval_s
        self.min_age_s = queue.settings.reconcile_min_age_s
        self.stale_after_s = max(120.0, 10 * queue.settings.heartbeat_timeout_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> list[str]:
        ids = self.store.unenqueued_jobs(self.min_age_s)
        for jid in ids:
            log.warning("job %s was admitted but never enqueued; enqueuing it now", jid)
            self.queue.enqueue(jid)
        self.store.mark_enqueued(ids)
        # Last resort for a message lost outside the broker's protocol (e.g. Redis lost its last
        # second of writes in an OS crash): far later than the broker's own redelivery.
        stale = self.store.stale_running_jobs(self.stale_after_s)
        for jid in stale:
            log.warning("job %s is running on a worker gone for %.0f s; enqueuing it again", jid, self.stale_after_s)
            self.store.touch(jid)
            self.queue.enqueue(jid)
        return ids + stale

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.interval_s):
                try:
                    self.run_once()
                except Exception:  # keep reconciling after a Redis hiccup
                    log.exception("reconciler pass failed")

        self._thread = threading.Thread(target=loop, name="autocut-reconciler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
