"""`GET /v1/usage`: what the calling key stores against its storage quota (`max_stored_bytes_per_key`;
docs/deploy.md, "Storage quota")."""

from __future__ import annotations

from fastapi import APIRouter

from server.routes.common import ERROR_RESPONSES, KeyDep, ServicesDep
from server.schemas import Usage

__all__ = ["router"]

router = APIRouter(tags=["uploads"])


@router.get(
    "/v1/usage",
    response_model=Usage,
    responses=ERROR_RESPONSES,
    summary="Bytes your key stores (uploads, results) and its storage quota",
)
def get_usage(principal: KeyDep, services: ServicesDep) -> Usage:
    u = services.store.storage_usage(principal.key_id)
    return Usage(
        stored_bytes=u.stored_bytes,
        upload_bytes=u.upload_bytes,
        result_bytes=u.result_bytes,
        reserved_bytes=u.reserved_bytes,
        max_stored_bytes=services.settings.max_stored_bytes_per_key,
    )
