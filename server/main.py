"""The FastAPI application: `uvicorn server.main:app` or `python -m server api`.

`app` is built on first access (PEP 562 module `__getattr__`), so importing this module to call
`create_app(settings)` (tests, the CLI) does not read the environment or refuse placeholder
secrets; uvicorn's `server.main:app` builds it from `Settings()`.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, TypedDict

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from autocut.errors import AutoCutError
from server.auth import create_api_key
from server.queue import JobQueue, Reconciler
from server.retention import Sweeper
from server.routes import admin, clips, edits, events, health, jobs, library, renders, usage, webhooks
from server.routes.common import Services
from server.settings import Settings
from server.storage import Layout
from server.store import JobStore
from server.webhooks import WebhookSender

__all__ = ["create_app"]

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
# JSON bodies larger than this are refused before they are read (uploads have their own limits).
MAX_JSON_BODY_BYTES = 4 * 1024 * 1024
_UPLOAD_PATHS = ("/v1/clips", "/v1/images")

DESCRIPTION = """
AutoCut turns product information plus a pool of clips into finished short ads (MP4 with
voice-over, subtitles and music).

1. Upload footage with `POST /v1/clips` (or use videos of the material library, `GET /v1/library/videos`).
2. `POST /v1/edits` with the product, the clip pool and an optional script: `202` with a job id.
3. Poll `GET /v1/jobs/{job_id}` until `state` is `done`, then download the results it links to
   (`video` MP4, `subtitles` SRT, `timeline` OTIO, `plan` JSON; HTTP Range supported). The
   `signed_links` work without the key until they expire (for a `<video src>`).

Every request needs an API key (`X-API-Key: ak_...` or `Authorization: Bearer ak_...`); a key
sees only its own jobs, uploads and results. POSTs accept an `Idempotency-Key` header.
When the queue is full the answer is `429` with `Retry-After`; when the job store is unavailable or full
(Redis at its memory limit), `503` with `Retry-After`.

Nothing is kept forever: finished jobs (with their result files) and uploads are deleted after the
service's retention periods; `DELETE /v1/jobs/{job_id}?purge=true`, `DELETE /v1/clips/{clip_id}` and
`DELETE /v1/images/{image_id}` delete them earlier.
"""


def _status_code_name(status: int) -> str:
    from http import HTTPStatus

    try:
        return re.sub(r"\W+", "_", HTTPStatus(status).phrase.lower())
    except ValueError:
        return "error"


class _ErrorDetail(TypedDict):
    """One entry of a 400/422 answer's `details`: a request validation error."""

    loc: list[str]
    msg: str
    type: str


def _error(
    status: int,
    code: str,
    message: str,
    details: Sequence[_ErrorDetail] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


class BodyLimitMiddleware:
    """Refuse oversized non-upload bodies early (413), also for chunked requests without a length."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(_UPLOAD_PATHS):
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await _error(413, "too_large", f"request body exceeds {self.max_bytes} bytes")(scope, receive, send)
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    raise StarletteHTTPException(413, f"request body exceeds {self.max_bytes} bytes")
            return msg

        await self.app(scope, limited, send)


BOOTSTRAP_KEY_NAME = "bootstrap-admin"


class _Background:
    """API-side housekeeping: register the bootstrap admin key once Redis answers; reconcile; sweep
    expired jobs and uploads (`server.retention`) every `retention_sweep_interval_s`."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.reconciler = Reconciler(services.store, services.queue)
        self.sweeper = Sweeper(services.store, services.layout, services.settings)
        self._stop = threading.Event()
        self._key_done = services.settings.bootstrap_admin_key is None
        self._thread = threading.Thread(target=self._loop, name="autocut-api-background", daemon=True)

    def _tick(self) -> None:
        s = self.services.settings
        bootstrap_key = s.bootstrap_admin_key
        if not self._key_done and bootstrap_key is not None:  # _key_done starts True when there is no key
            store = self.services.store
            key_id, _ = create_api_key(
                store,
                s.secret_key.get_secret_value(),
                name=BOOTSTRAP_KEY_NAME,
                admin=True,
                raw_key=bootstrap_key.get_secret_value(),
            )
            # A rotated bootstrap key replaces the previous one: the old value stops working.
            for rec in store.list_api_keys():
                if rec.get("name") == BOOTSTRAP_KEY_NAME and rec.get("key_id") != key_id:
                    store.revoke_api_key(rec["key_id"])
                    log.info("bootstrap admin key rotated: the previous one (%s) is revoked", rec["key_id"])
            self._key_done = True
        self.reconciler.run_once()
        if self.sweeper.due():
            self.sweeper.run_once()

    def _loop(self) -> None:
        while True:
            try:
                self._tick()
            except Exception as exc:  # noqa: BLE001 - Redis not up yet: try again next round
                log.warning("background pass failed: %s", exc)
            if self._stop.wait(2.0 if not self._key_done else self.reconciler.interval_s):
                return

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.reconciler.release()  # the next API or worker reconciles at once, not after the lease expires


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for `settings` (default: from the environment)."""
    settings = settings or Settings()
    layout = Layout.create(settings.data_dir)
    store = JobStore.from_url(settings.broker_url, settings.redis_namespace, timeout_s=settings.redis_timeout_s)
    queue = JobQueue(settings)
    services = Services(settings=settings, store=store, queue=queue, layout=layout)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        bg = _Background(services)
        bg.start()
        sender = WebhookSender(store, settings)  # webhook deliveries (server.webhooks)
        sender.start()
        try:
            yield
        finally:
            bg.stop()
            sender.stop()
            queue.close()
            store.r.close()

    app = FastAPI(
        title="AutoCut API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_tags=[
            {"name": "edits", "description": "Submit edits and batches"},
            {"name": "jobs", "description": "Job status, cancellation, result downloads"},
            {"name": "uploads", "description": "Clip and product-photo uploads"},
            {"name": "library", "description": "Material library listing"},
            {"name": "webhooks", "description": "Webhooks told when jobs and batches finish"},
            {"name": "admin", "description": "Admin operations"},
            {"name": "health", "description": "Liveness and readiness"},
        ],
    )
    app.state.services = services
    for module in (edits, renders, jobs, events, clips, usage, library, webhooks, admin, health):
        app.include_router(module.router)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.detail, dict) and "code" in exc.detail:
            return _error(
                exc.status_code,
                exc.detail["code"],
                exc.detail.get("message", ""),
                headers=getattr(exc, "headers", None),
            )
        return _error(
            exc.status_code, _status_code_name(exc.status_code), str(exc.detail), headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        details: list[_ErrorDetail] = [
            {"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in errors
        ]
        if any(e.get("type") == "json_invalid" for e in errors):
            return _error(400, "malformed_json", "the request body is not valid JSON", details)
        if any(tuple(e.get("loc", ())) == ("body",) and e.get("type") == "model_attributes_type" for e in errors):
            return _error(
                400,
                "malformed_json",
                "the request body must be a JSON object (Content-Type: application/json)",
                details,
            )
        loc, msg = (details[0]["loc"], details[0]["msg"]) if details else ([], "invalid request")
        where = ".".join(x for x in loc if x != "body")
        return _error(422, "invalid_request", f"{where}: {msg}" if where else msg, details)

    @app.exception_handler(redis.RedisError)
    async def store_down(_request: Request, exc: redis.RedisError) -> JSONResponse:
        if _store_full(exc):
            # Redis at maxmemory (noeviction) refuses writes; reads and deletes still work, and the retention
            # sweep frees room, so this passes: 503, not a 500 from an unexpected reply.
            log.error("job store full (Redis maxmemory reached): %s", exc)
            wait = max(5, min(300, int(settings.retention_sweep_interval_s)))
            return _error(
                503,
                "store_full",
                "the job store is full (Redis reached its memory limit); retry later, or delete finished jobs "
                "and uploads you no longer need",
                headers={"Retry-After": str(wait)},
            )
        log.error("job store unavailable: %s", exc)
        return _error(503, "unavailable", "the job store is unavailable; retry shortly", headers={"Retry-After": "5"})

    @app.exception_handler(AutoCutError)
    async def domain_error(_request: Request, exc: AutoCutError) -> JSONResponse:
        code = re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()
        return _error(422, code, str(exc))

    app.add_middleware(BodyLimitMiddleware, max_bytes=MAX_JSON_BODY_BYTES)
    if (STATIC_DIR / "index.html").is_file():
        from fastapi.staticfiles import StaticFiles

        app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="static")
    return app


def _store_full(exc: BaseException) -> bool:
    """Redis refused a write at `maxmemory` (also when the refusal comes out of a Lua script)."""
    return isinstance(exc, redis.exceptions.OutOfMemoryError) or "OOM command not allowed" in str(exc)


_app: FastAPI | None = None


def __getattr__(name: str) -> Any:
    global _app
    if name == "app":
        if _app is None:
            _app = create_app()
        return _app
    raise AttributeError(name)
