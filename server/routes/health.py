"""Liveness (`/healthz`: the process answers) and readiness (`/readyz`: it can accept jobs).

`/healthz` is `async`: it is answered on the event loop, so it stays fast while every worker thread of the
pool is busy or blocked on a stalled dependency. `/readyz` reports its checks to anyone (load balancers
call it without a key) but its load figures (queue depth, active jobs, live workers) only to a caller with a
valid API key.
"""

from __future__ import annotations

import os

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from server.auth import hash_api_key
from server.routes.common import ServicesDep
from server.schemas import Health, Readiness

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness")
async def healthz() -> Health:
    return Health()


def _has_valid_key(request: Request, services) -> bool:
    raw = request.headers.get("x-api-key") or ""
    auth = request.headers.get("authorization") or ""
    if not raw and auth.lower().startswith("bearer "):
        raw = auth[7:].strip()
    if not raw or len(raw) > 256:
        return False
    try:
        pepper = services.settings.secret_key.get_secret_value()
        return services.store.lookup_api_key(hash_api_key(raw, pepper)) is not None
    except Exception:  # noqa: BLE001 - readiness reports, never raises
        return False


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness}},
    summary="Readiness: the job store answers and the data directory is writable (load figures need a key)",
)
def readyz(request: Request, services: ServicesDep) -> JSONResponse:
    checks: dict[str, str] = {}
    figures: dict[str, int] = {}
    if services.store.ping():
        checks["store"] = "ok"
        try:
            figures["queue_depth"] = services.queue.depth()
            figures["active_jobs"] = services.store.active_count()
            figures["live_workers"] = services.store.live_workers(services.settings.heartbeat_timeout_s)
            # Informational: jobs are accepted (and wait) while no worker runs.
            checks["workers"] = f"{figures['live_workers']} live"
        except Exception as exc:  # noqa: BLE001 - readiness reports, never raises
            checks["store"] = f"error: {type(exc).__name__}"
    else:
        checks["store"] = "unreachable"
    checks["data_dir"] = "ok" if os.access(services.layout.data_dir, os.W_OK) else "not writable"
    ready = checks["store"] == "ok" and checks["data_dir"] == "ok"
    if figures and not _has_valid_key(request, services):
        figures = {}
        checks.pop("workers", None)
    body = Readiness(ready=ready, checks=checks, **figures)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
