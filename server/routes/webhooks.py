"""Webhooks: `POST /v1/webhooks` registers a URL told when the key's jobs and batches finish, `GET` lists them,
`DELETE` removes one, `GET /v1/webhooks/{id}/deliveries` shows its recent delivery attempts.

The URL is checked now (public addresses only, unless the operator's `webhook_allow_hosts` allows it) and
again before every attempt (`server.webhooks`). The signing secret is returned once, at registration."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from server.routes.common import ERROR_RESPONSES, KeyDep, Services, ServicesDep, api_error
from server.webhooks import (
    EVENTS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WEBHOOK_ID_PATTERN,
    Allowlist,
    Webhook,
    WebhookEvent,
    WebhookStore,
    WebhookUrlError,
    check_url,
)

__all__ = ["router"]

router = APIRouter(tags=["webhooks"])

WebhookId = Annotated[str, Path(pattern=WEBHOOK_ID_PATTERN, examples=["whk_0123456789abcdef01234567"])]


class WebhookIn(BaseModel):
    """A URL to POST to when the key's jobs or batches finish."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"url": "https://hooks.example.com/autocut", "events": ["job.done"]}]},
    )

    url: str = Field(min_length=1, max_length=2048, description="http(s) URL on a public address")
    events: list[WebhookEvent] = Field(
        default_factory=lambda: list(EVENTS),
        min_length=1,
        max_length=len(EVENTS),
        description="Events to send (default: all): " + ", ".join(EVENTS),
    )


class WebhookOut(BaseModel):
    webhook_id: str
    url: str
    events: list[str]
    created_at: datetime


class WebhookCreated(WebhookOut):
    secret: str = Field(
        description=f"The signing secret, shown only now. Each delivery carries `{TIMESTAMP_HEADER}: <unix s>` and "
        f"`{SIGNATURE_HEADER}: sha256=<hex HMAC-SHA256(secret, '<timestamp>.' + body)>`; refuse old timestamps"
    )


class WebhookList(BaseModel):
    items: list[WebhookOut]
    limit: int = Field(description="How many webhooks one key may have")


class DeliveryAttempt(BaseModel):
    at: datetime
    delivery_id: str
    event: str
    job_id: str | None = None
    batch_id: str | None = None
    attempt: int = Field(description="1 for the first try of this delivery")
    status_code: int | None = Field(None, description="The receiver's HTTP status (none: no answer)")
    error: str | None = Field(None, description="Why the attempt failed (none: delivered, 2xx)")
    duration_ms: int
    next_attempt_at: datetime | None = Field(None, description="When it is tried again (none: no more tries)")


class DeliveryLog(BaseModel):
    items: list[DeliveryAttempt] = Field(description="Newest first")


def _out(hook: Webhook) -> WebhookOut:
    return WebhookOut(
        webhook_id=hook.webhook_id,
        url=hook.url,
        events=list(hook.events),
        created_at=datetime.fromtimestamp(hook.created_at, UTC),
    )


def _own(services: Services, owner: str, webhook_id: str) -> Webhook:
    hook = WebhookStore(services.store).get(webhook_id)
    if hook is None or hook.owner != owner:
        raise api_error(404, "not_found", f"webhook {webhook_id} does not exist")
    return hook


@router.post(
    "/v1/webhooks",
    response_model=WebhookCreated,
    status_code=201,
    responses=ERROR_RESPONSES,
    summary="Register a webhook (its signing secret is in this answer only)",
)
def create_webhook(body: WebhookIn, principal: KeyDep, services: ServicesDep, response: Response) -> WebhookCreated:
    s = services.settings
    try:
        check_url(body.url, Allowlist.parse(s.webhook_allow_hosts))
    except WebhookUrlError as exc:
        raise api_error(422, "bad_webhook_url", f"url: {exc}") from None
    events = list(dict.fromkeys(body.events))
    hook = WebhookStore(services.store).register(
        principal.key_id, body.url, events, max_per_owner=s.webhook_max_per_key
    )
    if hook is None:
        raise api_error(
            422,
            "too_many_webhooks",
            f"this key already has {s.webhook_max_per_key} webhooks (the limit); delete one first",
        )
    response.headers["Location"] = f"/v1/webhooks/{hook.webhook_id}"
    return WebhookCreated(**_out(hook).model_dump(), secret=hook.secret)


@router.get("/v1/webhooks", response_model=WebhookList, responses=ERROR_RESPONSES, summary="Your webhooks")
def list_webhooks(principal: KeyDep, services: ServicesDep) -> WebhookList:
    hooks = WebhookStore(services.store).of_owner(principal.key_id)
    return WebhookList(items=[_out(h) for h in hooks], limit=services.settings.webhook_max_per_key)


@router.get("/v1/webhooks/{webhook_id}", response_model=WebhookOut, responses=ERROR_RESPONSES, summary="One webhook")
def get_webhook(webhook_id: WebhookId, principal: KeyDep, services: ServicesDep) -> WebhookOut:
    return _out(_own(services, principal.key_id, webhook_id))


@router.delete(
    "/v1/webhooks/{webhook_id}",
    status_code=204,
    response_class=Response,
    responses=ERROR_RESPONSES,
    summary="Delete a webhook (pending deliveries to it are dropped)",
)
def delete_webhook(webhook_id: WebhookId, principal: KeyDep, services: ServicesDep) -> Response:
    _own(services, principal.key_id, webhook_id)
    WebhookStore(services.store).delete(webhook_id)
    return Response(status_code=204)


@router.get(
    "/v1/webhooks/{webhook_id}/deliveries",
    response_model=DeliveryLog,
    responses=ERROR_RESPONSES,
    summary="Recent delivery attempts of a webhook (time, event, job, status code or error, attempt)",
)
def webhook_deliveries(
    webhook_id: WebhookId,
    principal: KeyDep,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> DeliveryLog:
    _own(services, principal.key_id, webhook_id)
    rows = WebhookStore(services.store).deliveries(webhook_id, limit)
    return DeliveryLog(items=[DeliveryAttempt.model_validate(r) for r in rows])
