"""`GET /v1/jobs/{id}/events`: a job's progress as server-sent events, until it finishes.

Each change of state, stage or progress is one event whose data is the job's status (the JSON of
`GET /v1/jobs/{id}`): `event: progress` while it is queued or running, then one final event named by its
end state (`done`, `failed` or `cancelled`) and the stream ends. A stream lives at most
`sse_max_duration_s` (then `event: timeout`: reconnect to go on); a key may hold `sse_max_streams_per_key`
streams at once (more: 429). Comment lines (`: keep-alive`) keep idle proxies from closing the connection.

The page reads it with `fetch` (an `EventSource` cannot send the API key header)."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import APIRouter, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from server.routes.common import ERROR_RESPONSES, KeyDep, Services, ServicesDep, api_error, job_status
from server.schemas import JOB_ID_PATTERN
from server.store import TERMINAL_STATES, JobRecord

__all__ = ["router"]

router = APIRouter(tags=["jobs"])

POLL_S = 0.5
KEEPALIVE_S = 15.0


def _event(name: str, data: str) -> bytes:
    return f"event: {name}\ndata: {data}\n\n".encode()


class _StreamSlots:
    """Per-key count of open streams, in Redis (several API processes share it). A slot is a member of
    `sse:<owner>` scored by its start; slots older than the longest stream life are stale (a crashed API)."""

    def __init__(self, services: Services, owner: str) -> None:
        self.r = services.store.r
        self.key = services.store.k("sse", owner)
        self.max_age_s = services.settings.sse_max_duration_s + 60.0
        self.cap = services.settings.sse_max_streams_per_key
        self.slot = secrets.token_hex(8)

    def take(self) -> bool:
        now = time.time()
        with self.r.pipeline(transaction=True) as p:
            p.zremrangebyscore(self.key, "-inf", now - self.max_age_s)
            p.zadd(self.key, {self.slot: now})
            p.zcard(self.key)
            p.expire(self.key, int(self.max_age_s))
            n = p.execute()[2]
        if n > self.cap:
            self.release()
            return False
        return True

    def release(self) -> None:
        self.r.zrem(self.key, self.slot)


@router.get(
    "/v1/jobs/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        **ERROR_RESPONSES,
        200: {
            "description": "`text/event-stream`: `progress` events, then `done`, `failed` or `cancelled` "
            "(or `timeout` after the longest stream life); each event's data is the job's status JSON",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
    },
    summary="Follow a job's progress as server-sent events until it finishes",
)
async def job_events(
    request: Request,
    job_id: Annotated[str, Path(pattern=JOB_ID_PATTERN)],
    principal: KeyDep,
    services: ServicesDep,
) -> StreamingResponse:
    store, settings = services.store, services.settings
    job = await run_in_threadpool(store.get_job, job_id)
    if job is None or job.owner != principal.key_id:
        raise api_error(404, "not_found", f"job {job_id} does not exist")
    slots = _StreamSlots(services, principal.key_id)
    if not await run_in_threadpool(slots.take):
        raise api_error(
            429,
            "too_many_streams",
            f"this key already has {slots.cap} event streams open; close one (or poll GET /v1/jobs/{job_id})",
            headers={"Retry-After": "5"},
        )

    async def stream(first: JobRecord) -> AsyncIterator[bytes]:
        try:
            deadline = time.monotonic() + settings.sse_max_duration_s
            last_key: tuple[str, str, float] | None = None
            last_sent = time.monotonic()
            current: JobRecord | None = first
            yield b"retry: 2000\n\n"
            while True:
                if current is None:
                    yield _event("gone", json.dumps({"job_id": job_id, "message": "the job was deleted"}))
                    return
                key = (current.state.value, current.stage, current.progress)
                final = current.state in TERMINAL_STATES
                if key != last_key:
                    last_key, last_sent = key, time.monotonic()
                    body = job_status(current, settings).model_dump_json()
                    yield _event(current.state.value if final else "progress", body)
                if final:
                    return
                if time.monotonic() > deadline:
                    yield _event("timeout", json.dumps({"job_id": job_id, "message": "stream time limit; reconnect"}))
                    return
                if time.monotonic() - last_sent > KEEPALIVE_S:
                    last_sent = time.monotonic()
                    yield b": keep-alive\n\n"
                await asyncio.sleep(POLL_S)
                if await request.is_disconnected():
                    return
                current = await run_in_threadpool(store.get_job, job_id)
        finally:
            with anyio.CancelScope(shield=True):  # also when the client went away (the task is being cancelled)
                await run_in_threadpool(slots.release)

    return StreamingResponse(
        stream(job),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
