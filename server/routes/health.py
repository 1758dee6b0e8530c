"""Liveness (`/healthz`: the process answers) and readiness (`/readyz`: it can accept jobs)."""

from __future__ import annotations

import os

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from server.routes.common import ServicesDep
from server.schemas import Health, Readiness

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness")
def healthz() -> Health:
    return Health()


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness}},
    summary="Readiness: the job store answers and the data directory is writable",
)
def readyz(services: ServicesDep) -> JSONResponse:
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
    body = Readiness(ready=ready, checks=checks, **figures)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
