"""API keys: generated once, stored only as keyed hashes, checked on every request.

A key is 32 random bytes (`ak_<base64url>`), so a fast keyed hash (HMAC-SHA256 with the
service's `secret_key` as pepper) is the right tool: slow password hashes exist for guessable
secrets, and a leaked store without the pepper does not let anyone test candidate keys.
Each key owns its jobs, uploads and results; other keys get 404 for them (not 403, so ids
do not leak whether they exist).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from server.ids import new_id
from server.store import JobStore

__all__ = [
    "Principal",
    "api_key_header",
    "bearer_scheme",
    "create_api_key",
    "hash_api_key",
    "require_admin",
    "require_key",
    "sign_download",
    "verify_download",
]

KEY_PREFIX = "ak_"

api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="API key, e.g. `X-API-Key: ak_...` (or `Authorization: Bearer ak_...`)",
)
bearer_scheme = HTTPBearer(auto_error=False, description="The API key as a bearer token")


@dataclass(frozen=True)
class Principal:
    """The caller: the key id owns records; `admin` may rebuild indexes."""

    key_id: str
    name: str
    admin: bool


def hash_api_key(raw_key: str, pepper: str) -> str:
    return hmac.new(pepper.encode(), raw_key.encode(), hashlib.sha256).hexdigest()


def create_api_key(
    store: JobStore, pepper: str, *, name: str, admin: bool = False, raw_key: str | None = None
) -> tuple[str, str]:
    """Create (or, with `raw_key`, register) a key; returns (key_id, raw key). The raw key is not stored."""
    raw = raw_key or KEY_PREFIX + secrets.token_urlsafe(32)
    key_hash = hash_api_key(raw, pepper)
    existing = store.lookup_api_key(key_hash)
    if existing is not None:
        return existing["key_id"], raw
    key_id = new_id("key", nbytes=8)
    store.add_api_key(key_hash, key_id, name, admin)
    return key_id, raw


def _download_mac(pepper: str, path: str, expires: int, key_id: str) -> str:
    msg = f"download|{path}|{expires}|{key_id}".encode()
    return hmac.new(pepper.encode(), msg, hashlib.sha256).hexdigest()[:32]


def sign_download(pepper: str, path: str, ttl_s: int, key_id: str) -> str:
    """`path` plus a signature valid for `ttl_s`: a link a browser can use without the API key
    (a `<video src>` cannot send headers), bound to that one file, to the key that owns it (`key_id`: the
    link dies when that key is revoked, see `verify_download`) and expiring."""
    expires = int(time.time()) + ttl_s
    return f"{path}?expires={expires}&signature={_download_mac(pepper, path, expires, key_id)}"


def verify_download(
    pepper: str, path: str, expires: int | None, signature: str | None, key_id: str, key_alive: bool
) -> bool:
    """True for an unexpired signature of `path` made for `key_id`, while that key exists (`key_alive`)."""
    if expires is None or signature is None or expires < time.time() or not key_alive:
        return False
    return hmac.compare_digest(_download_mac(pepper, path, expires, key_id), signature)


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        detail={"code": "unauthorized", "message": message},
        headers={"WWW-Authenticate": 'Bearer realm="autocut", charset="UTF-8"'},
    )


def require_key(
    request: Request,
    api_key: str | None = Depends(api_key_header),
    bearer: HTTPAuthorizationCredentials | None = Depends(bearer_scheme),
) -> Principal:
    """FastAPI dependency: the caller's key, or 401."""
    raw = api_key or (bearer.credentials if bearer is not None else None)
    if not raw:
        raise _unauthorized("missing API key: send `X-API-Key: <key>` or `Authorization: Bearer <key>`")
    if len(raw) > 256:
        raise _unauthorized("invalid API key")
    services = request.app.state.services
    rec = services.store.lookup_api_key(hash_api_key(raw, services.settings.secret_key.get_secret_value()))
    if rec is None:
        raise _unauthorized("invalid API key")
    limit = services.settings.rate_limit_per_minute
    if limit > 0 and (wait_s := services.store.rate_hit(rec["key_id"], limit)) > 0:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail={"code": "rate_limited", "message": f"more than {limit} requests a minute from this key"},
            headers={"Retry-After": str(wait_s)},
        )
    return Principal(key_id=rec["key_id"], name=rec.get("name", ""), admin=rec.get("admin") == "1")


def require_admin(principal: Principal = Depends(require_key)) -> Principal:
    if not principal.admin:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, detail={"code": "forbidden", "message": "this operation needs an admin API key"}
        )
    return principal
