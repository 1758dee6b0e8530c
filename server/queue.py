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

A worker that is only paused (SIGSTOP, a frozen VM) past its heartbeat also has its message requeued;
when it resumes, its writes carry a fence the job store refuses (`server.store`, "Fencing"), so it stops
without recording anything, and its acknowledgement is a no-op (the message is no longer in its ack set).

Messages lost outside the broker's protocol (a Redis restarted from an `everysec` AOF that missed its last
second, a message deleted by hand) are found by the `Reconciler`: a job the store calls queued (or running
on a worker long gone) that has no message in the broker is enqueued again, once.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import MAINTENANCE_SCALE, RedisBroker
from dramatiq.message import Message
from dramatiq.middleware import CurrentMessage

from server.settings import Settings
from server.store import JobState, JobStore, LeaseLost

__all__ = ["ACTOR_NAME", "QUEUE_NAME", "JobQueue", "Reconciler"]

log = logging.getLogger(__name__)

QUEUE_NAME = "jobs"
ACTOR_NAME = "autocut_job"
LEASE_NAME = "reconciler"

# The bodies of every message the broker still holds for delivery, read in one atomic step: waiting in the queue
# or the delay queue, or fetched by a worker listed in the heartbeats (its ack set; requeued by the broker's
# maintenance if that worker is dead). A message that is only in a `.msgs` hash, or only in a list, is lost.
# KEYS: namespace. ARGV: queue names.
_LUA_LIVE_MESSAGES = """
local ns = KEYS[1]
local workers = redis.call("ZRANGE", ns .. ":__heartbeats__", 0, -1)
local out = {}
for _, q in ipairs(ARGV) do
  local live = {}
  for _, id in ipairs(redis.call("LRANGE", ns .. ":" .. q, 0, -1)) do live[id] = true end
  for _, w in ipairs(workers) do
    for _, id in ipairs(redis.call("SMEMBERS", ns .. ":__acks__." .. w .. "." .. q)) do live[id] = true end
  end
  local h = redis.call("HGETALL", ns .. ":" .. q .. ".msgs")
  for i = 1, #h, 2 do
    if live[h[i]] then out[#out + 1] = h[i + 1] end
  end
end
return out
"""


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
        self._live: Any = None

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

    def live_messages(self) -> Counter[str]:
        """Job id -> number of messages the broker holds for it (waiting, delayed or being worked), read
        atomically (`_LUA_LIVE_MESSAGES`)."""
        if self._live is None:
            self._live = self.broker.client.register_script(_LUA_LIVE_MESSAGES)
        bodies = self._live(keys=[self.namespace], args=[QUEUE_NAME, f"{QUEUE_NAME}.DQ"])
        out: Counter[str] = Counter()
        for body in bodies:
            try:
                args = json.loads(body).get("args") or []
            except (ValueError, AttributeError):
                continue
            if args and isinstance(args[0], str):
                out[args[0]] += 1
        return out

    def close(self) -> None:
        self.broker.close()
        self.broker.client.close()


class Reconciler:
    """Finds jobs whose queue message is missing and enqueues them again, one reconciler at a time.

    Three cases: a job admitted but never enqueued (the admitting API died in between; admission writes
    the records first and enqueues second), a queued job whose message was lost (Redis restarted from an
    `everysec` AOF without its last second, a message deleted), and a job "running" on a worker gone for
    `stale_after_s` whose message is gone too. "Missing" means: queued (or running) in the job store for
    longer than `min_age_s` and no message for it in the broker, which is read *before* the store (a
    message that appears after the broker snapshot belongs to a job whose `queued_at` is newer than the
    grace period). Each recovery is a job-store script that checks the job is as the pass saw it and marks
    it, so it is enqueued exactly once.

    One reconciler acts at a time (API processes and workers all run one): each pass first takes or renews
    the lease `reconciler:lease` (SET NX PX with this reconciler's token, `lease_ttl_s`); a pass without it
    does nothing. Recoveries check the token in the same script, so a holder paused past its lease cannot act
    after another took over. The lease is released on `stop`.
    """

    def __init__(self, store: JobStore, queue: JobQueue) -> None:
        self.store = store
        self.queue = queue
        s = queue.settings
        self.interval_s = s.reconcile_interval_s
        self.min_age_s = s.reconcile_min_age_s
        # The broker itself redelivers a dead worker's messages after `heartbeat_timeout_s`; a running job is
        # recovered here only when no message for it is left anywhere and its worker has been silent far longer.
        self.stale_after_s = max(self.min_age_s, 3 * s.heartbeat_timeout_s)
        # Renewed every pass: a holder that misses two passes in a row (paused, dead) loses it.
        self.lease_ttl_s = max(3 * self.interval_s, 2.0)
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> list[str] | None:
        """One pass: the ids enqueued again, or None when another reconciler holds the lease."""
        if not self.store.acquire_lease(LEASE_NAME, self.token, self.lease_ttl_s):
            return None
        t0 = time.time()
        recovered: list[str] = []
        lost = False
        try:
            live = self.queue.live_messages()  # before the store: see the class docstring
            for jid, marker in self.store.queued_jobs(self.min_age_s):
                if live[jid] == 0 and self.store.recover(jid, LEASE_NAME, self.token, JobState.QUEUED, marker):
                    log.warning("job %s is queued but has no queue message (never enqueued or lost); enqueuing it", jid)
                    self.queue.enqueue(jid)
                    recovered.append(jid)
            for jid, fence in self.store.running_jobs_of_gone_workers(self.stale_after_s):
                if live[jid] == 0 and self.store.recover(jid, LEASE_NAME, self.token, JobState.RUNNING, fence):
                    log.warning(
                        "job %s is running on a worker gone for %.0f s and has no queue message; enqueuing it",
                        jid,
                        self.stale_after_s,
                    )
                    self.queue.enqueue(jid)
                    recovered.append(jid)
        except LeaseLost:
            log.warning("reconciler %s lost its lease mid-pass; another reconciler took over", self.token)
            lost = True
        self.store.record_reconcile_pass(self.token, t0, time.time(), recovered, lease_lost=lost)
        return recovered

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.interval_s):
                try:
                    self.run_once()
                except Exception:  # keep reconciling after a Redis hiccup
                    log.exception("reconciler pass failed")

        self._thread = threading.Thread(target=loop, name="autocut-reconciler", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Give the lease up (another reconciler takes over at its next pass instead of after the TTL)."""
        try:
            self.store.release_lease(LEASE_NAME, self.token)
        except Exception:  # it expires by itself
            log.warning("could not release the reconciler lease", exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.release()
