"""Webhooks: per-key URLs told (HTTP POST, signed) when a job or a batch finishes.

Flow: when a job reaches a terminal state, the store's `finish` step (one Lua script with the state change,
`server.store`) appends `{job_id, owner, state, at}` to the outbox list `webhooks:outbox` if that owner has
any webhook. The API's `WebhookSender` thread drains the outbox (compare-and-pop: at least once, never
lost), fans each entry out into one delivery per subscribed webhook (plus a batch event once every job of
the batch has finished) and sends them from a small thread pool, so a slow receiver never blocks a worker or
a request. A delivery is retried with exponential backoff up to `webhook_max_attempts`; every attempt is
logged per webhook (bounded list).

Security:
- Signature: `X-AutoCut-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>` with
  `X-AutoCut-Timestamp: <unix seconds>`; the receiver recomputes it with the webhook's secret (returned once
  at registration) and refuses old timestamps (replay). `verify_signature` is the reference check.
- SSRF: the host is resolved and every address must be public (not private, loopback, link-local,
  multicast, reserved, unspecified or otherwise not globally routable; IPv4-mapped, 6to4, Teredo and NAT64
  IPv6 addresses are judged by the IPv4 address inside) at registration *and* before every attempt (DNS can
  change), and the connection goes to the address that was checked (no second lookup). Redirects are never
  followed, timeouts are short and the response body is not read. `webhook_allow_hosts` (hostnames, IPs,
  CIDRs) lets an operator allow private targets.

Key layout (prefix `<ns>:`)::

    webhook:<id>              hash   id, owner, url, events (JSON), secret, created_at
    webhooks:owner:<owner>    zset   the owner's webhook ids by creation time (its existence gates the outbox)
    webhook:log:<id>          list   delivery attempts, newest first (trimmed to `webhook_log_size`)
    webhooks:outbox           list   finished jobs of owners with webhooks, oldest first
    webhooks:pending          zset   delivery id -> when its next attempt is due (claimed = pushed to a lease)
    webhooks:delivery:<did>   string one delivery (JSON: webhook, event, body, attempts); expires
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

import redis

from server.settings import Settings
from server.store import TERMINAL_STATES, JobStore

__all__ = [
    "EVENTS",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WEBHOOK_ID_PATTERN",
    "Allowlist",
    "Target",
    "WebhookEvent",
    "WebhookSender",
    "WebhookStore",
    "WebhookUrlError",
    "check_url",
    "sign",
    "verify_signature",
]

log = logging.getLogger(__name__)

WebhookEvent = Literal["job.done", "job.failed", "job.cancelled", "batch.done", "batch.failed"]
EVENTS: tuple[WebhookEvent, ...] = get_args(WebhookEvent)
WEBHOOK_ID_PATTERN = r"^whk_[0-9a-f]{24}$"
SIGNATURE_HEADER = "X-AutoCut-Signature"
TIMESTAMP_HEADER = "X-AutoCut-Timestamp"
EVENT_HEADER = "X-AutoCut-Event"
DELIVERY_HEADER = "X-AutoCut-Delivery"
USER_AGENT = "AutoCut-Webhooks/1"
MAX_URL_CHARS = 2048
_OUTBOX_BATCH = 50
_IDLE_S = 0.25
_SENDER_THREADS = 4
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


# ---------------------------------------------------------------------------------------------- signing
def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-AutoCut-Signature` value of `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={mac}"


def verify_signature(secret: str, timestamp: str, body: bytes, signature: str, *, tolerance_s: float = 300.0) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent (a replayed request is refused)."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs(time.time() - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)


# ---------------------------------------------------------------------------------------------- SSRF checks
class WebhookUrlError(ValueError):
    """A webhook URL that may not be used; the message says why (shown to the client)."""


@dataclass(frozen=True)
class Allowlist:
    """The operator's `webhook_allow_hosts`: hostnames (exact, case-insensitive) and IP networks."""

    hosts: frozenset[str]
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    @classmethod
    def parse(cls, text: str) -> Allowlist:
        hosts: set[str] = set()
        nets = []
        for raw in text.split(","):
            entry = raw.strip().lower().strip("[]")
            if not entry:
                continue
            try:
                nets.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            if "/" in entry or ":" in entry or not all(part for part in entry.rstrip(".").split(".")):
                raise ValueError(
                    f"AUTOCUT_WEBHOOK_ALLOW_HOSTS: {raw.strip()!r} is neither a hostname, an IP nor a CIDR"
                )
            hosts.add(entry.rstrip("."))
        return cls(frozenset(hosts), tuple(nets))

    def allows_host(self, host: str) -> bool:
        return host in self.hosts

    def allows_address(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(ip.version == net.version and ip in net for net in self.networks)


@dataclass(frozen=True)
class Target:
    """A checked URL: connect to `address` (already vetted), send `Host: host`."""

    url: str
    scheme: Literal["http", "https"]
    host: str
    port: int
    path: str
    address: str


def _refusal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why `ip` is not a public address (None when it is)."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner: list[ipaddress.IPv4Address] = []
        if ip.ipv4_mapped is not None:
            inner.append(ip.ipv4_mapped)
        if ip.sixtofour is not None:
            inner.append(ip.sixtofour)
        if ip.teredo is not None:
            inner.extend(ip.teredo)
        if ip in _NAT64:
            inner.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        for v4 in inner:
            why = _refusal(v4)
            if why is not None:
                return f"{why} (embedded in the IPv6 address)"
    checks = (
        ("loopback", ip.is_loopback),
        ("unspecified", ip.is_unspecified),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
        ("not globally routable", not ip.is_global),
    )
    for name, hit in checks:
        if hit:
            return name
    return None


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise WebhookUrlError(f"the host {host!r} cannot be resolved ({exc})") from None
    out: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        addr = str(sockaddr[0]).split("%", 1)[0]
        if addr not in out:
            out.append(addr)
    if not out:
        raise WebhookUrlError(f"the host {host!r} has no address")
    return out


def check_url(url: str, allow: Allowlist) -> Target:
    """Parse and vet a webhook URL (resolving its host now); `WebhookUrlError` names what is wrong."""
    if len(url) > MAX_URL_CHARS:
        raise WebhookUrlError(f"the URL is longer than {MAX_URL_CHARS} characters")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise WebhookUrlError("the URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebhookUrlError(f"the URL is malformed ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise WebhookUrlError(f"the URL scheme must be http or https, not {parts.scheme or 'missing'!r}")
    if parts.username is not None or parts.password is not None:
        raise WebhookUrlError("the URL must not contain credentials (user:password@)")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise WebhookUrlError("the URL has no host")
    port = port or (443 if scheme == "https" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    addresses = _resolve(host, port)
    if not allow.allows_host(host):
        for addr in addresses:
            ip = ipaddress.ip_address(addr)
            if allow.allows_address(ip):
                continue
            why = _refusal(ip)
            if why is not None:
                shown = host if host == addr else f"{host} (resolves to {addr})"
                raise WebhookUrlError(
                    f"the URL's host {shown} is not a public address ({why}); webhooks may only target public "
                    "addresses (an operator can allow private targets with AUTOCUT_WEBHOOK_ALLOW_HOSTS)"
                )
    kind: Literal["http", "https"] = "https" if scheme == "https" else "http"
    return Target(url=url, scheme=kind, host=host, port=port, path=path, address=addresses[0])


# ---------------------------------------------------------------------------------------------- sending
@dataclass(frozen=True)
class Attempt:
    """One delivery attempt's outcome: an HTTP status, or an error (refused, unreachable, timed out)."""

    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def post(target: Target, body: bytes, headers: dict[str, str], timeout_s: float) -> Attempt:
    """POST `body` to the vetted address of `target`; no redirects, the whole exchange within `timeout_s`
    (a watchdog closes the socket of a receiver that trickles), the response body is never read."""
    t0 = time.monotonic()
    sock: socket.socket | None = None
    done = threading.Event()

    def ms() -> int:
        return int((time.monotonic() - t0) * 1000)

    def abort() -> None:
        if not done.is_set() and sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    watchdog = threading.Timer(timeout_s, abort)
    watchdog.daemon = True
    try:
        sock = socket.create_connection((target.address, target.port), timeout=min(timeout_s, 3.0))
        watchdog.start()
        sock.settimeout(timeout_s)
        conn: http.client.HTTPConnection
        if target.scheme == "https":
            ctx = ssl.create_default_context()
            sock = ctx.wrap_socket(sock, server_hostname=target.host)
            conn = http.client.HTTPSConnection(target.host, target.port, timeout=timeout_s, context=ctx)
        else:
            conn = http.client.HTTPConnection(target.host, target.port, timeout=timeout_s)
        conn.sock = sock  # already connected to the checked address: http.client must not resolve again
        conn.request("POST", target.path, body=body, headers=headers)
        resp = conn.getresponse()
        status = resp.status
        conn.close()
        if 300 <= status < 400:
            return Attempt(status, f"HTTP {status}: redirects are not followed", ms())
        return Attempt(status, None if 200 <= status < 300 else f"HTTP {status}", ms())
    except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
        timed_out = isinstance(exc, TimeoutError) or ms() >= timeout_s * 1000
        what = f"timed out after {timeout_s:g} s" if timed_out else f"{type(exc).__name__}: {exc}"
        return Attempt(None, what[:300], ms())
    finally:
        done.set()
        watchdog.cancel()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()


# ---------------------------------------------------------------------------------------------- records
# KEYS: owner zset, webhook hash; ARGV: max, id, now, fields JSON
_LUA_REGISTER = """
if redis.call("ZCARD", KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
local fields = cjson.decode(ARGV[4])
local flat = {}
for k, v in pairs(fields) do
  flat[#flat + 1] = k
  flat[#flat + 1] = v
end
redis.call("HSET", KEYS[2], unpack(flat))
redis.call("ZADD", KEYS[1], ARGV[3], ARGV[2])
return 1
"""

# A new delivery, once (its id is derived from what it announces, so a fan-out run twice makes it once).
# KEYS: delivery key, pending zset; ARGV: JSON, ttl, due, delivery id
_LUA_CREATE = """
if redis.call("SET", KEYS[1], ARGV[1], "NX", "EX", ARGV[2]) then
  redis.call("ZADD", KEYS[2], ARGV[3], ARGV[4])
  return 1
end
return 0
"""

# Claim up to n due deliveries: their due time moves to the lease's end (a sender that dies mid-attempt
# leaves them to be claimed again then). KEYS: pending zset; ARGV: now, lease end, n
_LUA_CLAIM = """
local ids = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[1], "LIMIT", 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do redis.call("ZADD", KEYS[1], ARGV[2], id) end
return ids
"""

# Pop the outbox head if it is still `entry` (several senders may run). KEYS: outbox; ARGV: entry
_LUA_POP_HEAD = """
if redis.call("LINDEX", KEYS[1], 0) == ARGV[1] then redis.call("LPOP", KEYS[1]) return 1 end
return 0
"""


@dataclass(frozen=True)
class Webhook:
    webhook_id: str
    owner: str
    url: str
    events: tuple[str, ...]
    secret: str
    created_at: float

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> Webhook:
        return cls(
            webhook_id=h["id"],
            owner=h["owner"],
            url=h["url"],
            events=tuple(json.loads(h.get("events") or "[]")),
            secret=h["secret"],
            created_at=float(h.get("created_at") or 0.0),
        )


class WebhookStore:
    """Webhook records, the outbox, pending deliveries and the delivery logs, in the job store's Redis."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.r = store.r
        self._register = self.r.register_script(_LUA_REGISTER)
        self._create = self.r.register_script(_LUA_CREATE)
        self._claim = self.r.register_script(_LUA_CLAIM)
        self._pop_head = self.r.register_script(_LUA_POP_HEAD)

    def k(self, *parts: str) -> str:
        return self.store.k(*parts)

    # -------------------------------------------------------------------------- webhooks
    def register(self, owner: str, url: str, events: Sequence[str], *, max_per_owner: int) -> Webhook | None:
        """A new webhook with a fresh secret, or None when the owner already has `max_per_owner`."""
        hook = Webhook(
            webhook_id="whk_" + secrets.token_hex(12),
            owner=owner,
            url=url,
            events=tuple(events),
            secret="whsec_" + secrets.token_urlsafe(32),
            created_at=time.time(),
        )
        fields = {
            "id": hook.webhook_id,
            "owner": owner,
            "url": url,
            "events": json.dumps(list(hook.events)),
            "secret": hook.secret,
            "created_at": repr(hook.created_at),
        }
        keys = [self.k("webhooks", "owner", owner), self.k("webhook", hook.webhook_id)]
        ok = self._register(
            keys=keys, args=[str(max_per_owner), hook.webhook_id, repr(hook.created_at), json.dumps(fields)]
        )
        return hook if ok else None

    def get(self, webhook_id: str) -> Webhook | None:
        h = self.r.hgetall(self.k("webhook", webhook_id))
        return Webhook.from_hash(_text(h)) if h else None

    def of_owner(self, owner: str) -> list[Webhook]:
        ids = [str(x) for x in self.r.zrange(self.k("webhooks", "owner", owner), 0, -1)]
        with self.r.pipeline(transaction=False) as p:
            for wid in ids:
                p.hgetall(self.k("webhook", wid))
            rows = p.execute()
        return [Webhook.from_hash(_text(h)) for h in rows if h]

    def delete(self, webhook_id: str) -> None:
        hook = self.get(webhook_id)
        with self.r.pipeline(transaction=True) as p:
            p.delete(self.k("webhook", webhook_id), self.k("webhook", "log", webhook_id))
            if hook is not None:
                p.zrem(self.k("webhooks", "owner", hook.owner), webhook_id)
            p.execute()

    # -------------------------------------------------------------------------- delivery log
    def log_attempt(self, webhook_id: str, entry: dict[str, Any], *, keep: int, ttl_s: int) -> None:
        key = self.k("webhook", "log", webhook_id)
        if not self.r.exists(self.k("webhook", webhook_id)):
            return  # deleted meanwhile: no orphan log
        with self.r.pipeline(transaction=False) as p:
            p.lpush(key, json.dumps(entry))
            p.ltrim(key, 0, keep - 1)
            p.expire(key, ttl_s)
            p.execute()

    def deliveries(self, webhook_id: str, limit: int) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.r.lrange(self.k("webhook", "log", webhook_id), 0, limit - 1)]

    # -------------------------------------------------------------------------- outbox and pending
    def outbox_head(self, n: int) -> list[str]:
        return [str(x) for x in self.r.lrange(self.k("webhooks", "outbox"), 0, n - 1)]

    def pop_outbox(self, entry: str) -> bool:
        return bool(self._pop_head(keys=[self.k("webhooks", "outbox")], args=[entry]))

    def create_delivery(self, delivery: dict[str, Any], ttl_s: int) -> bool:
        did = delivery["id"]
        keys = [self.k("webhooks", "delivery", did), self.k("webhooks", "pending")]
        return bool(self._create(keys=keys, args=[json.dumps(delivery), str(ttl_s), repr(time.time()), did]))

    def claim(self, n: int, lease_s: float) -> list[dict[str, Any]]:
        now = time.time()
        ids = [
            str(x)
            for x in self._claim(keys=[self.k("webhooks", "pending")], args=[repr(now), repr(now + lease_s), str(n)])
        ]
        out = []
        for did, raw in zip(ids, self.r.mget([self.k("webhooks", "delivery", d) for d in ids]) if ids else []):
            if raw is None:  # expired: nothing left to send
                self.r.zrem(self.k("webhooks", "pending"), did)
            else:
                out.append(json.loads(raw))
        return out

    def reschedule(self, delivery: dict[str, Any], due: float) -> None:
        with self.r.pipeline(transaction=False) as p:
            p.set(self.k("webhooks", "delivery", delivery["id"]), json.dumps(delivery), xx=True, keepttl=True)
            p.zadd(self.k("webhooks", "pending"), {delivery["id"]: due})
            p.execute()

    def settle(self, delivery_id: str) -> None:
        """No more attempts (delivered, given up or moot); the record stays until it expires (dedupe)."""
        self.r.zrem(self.k("webhooks", "pending"), delivery_id)

    def pending_count(self) -> int:
        return int(self.r.zcard(self.k("webhooks", "pending")))


def _text(h: Any) -> dict[str, str]:
    """A hash reply as `str`s (the client decodes responses; redis-py types them as bytes or str)."""
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v) for k, v in h.items()
    }


def _delivery_id(*parts: str) -> str:
    return "dlv_" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def _iso(t: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


class WebhookSender:
    """The API process's sender thread (and its small pool of sending threads)."""

    def __init__(self, store: JobStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.hooks = WebhookStore(store)
        self.allow = Allowlist.parse(settings.webhook_allow_hosts)
        s = settings
        backoff = sum(self.backoff_s(n) for n in range(1, s.webhook_max_attempts))
        self.delivery_ttl_s = int(max(86400.0, 2 * backoff + 3600))
        self.lease_s = 3 * s.webhook_timeout_s + 30.0
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(_SENDER_THREADS, thread_name_prefix="autocut-webhook")
        self._inflight: set[Future[None]] = set()
        self._thread = threading.Thread(target=self._loop, name="autocut-webhook-sender", daemon=True)

    def backoff_s(self, attempt: int) -> float:
        """Wait after failed attempt `attempt` (1-based) before the next one."""
        s = self.settings
        return float(min(s.webhook_retry_max_s, s.webhook_retry_base_s * 2 ** (attempt - 1)))

    # -------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            busy = False
            try:
                busy = self.run_once()
            except Exception as exc:  # noqa: BLE001 - Redis down: try again shortly
                log.warning("webhook sender pass failed: %s", exc)
                self._stop.wait(2.0)
            if not busy:
                self._stop.wait(_IDLE_S)

    def run_once(self) -> bool:
        """Fan out the outbox, start due deliveries; True if anything was done."""
        did = False
        for entry in self.hooks.outbox_head(_OUTBOX_BATCH):
            try:
                self._fan_out(entry)
            except redis.RedisError:
                raise  # the entry stays at the head: fanned out again once Redis answers
            except Exception:  # one bad entry must not block the outbox for everyone
                log.exception("webhook outbox: entry %r could not be fanned out; dropped", entry[:200])
            if not self.hooks.pop_outbox(entry):
                break  # another sender took it: read the head again next pass
            did = True
        self._inflight = {f for f in self._inflight if not f.done()}
        room = _SENDER_THREADS - len(self._inflight)
        if room > 0:
            for delivery in self.hooks.claim(room, self.lease_s):
                self._inflight.add(self._pool.submit(self._attempt, delivery))
                did = True
        return did

    # -------------------------------------------------------------------------- fan-out
    def _fan_out(self, entry: str) -> None:
        try:
            item = json.loads(entry)
            job_id, owner, state = str(item["job_id"]), str(item["owner"]), str(item["state"])
        except (ValueError, KeyError, TypeError):
            log.warning("webhook outbox: unreadable entry %r dropped", entry[:200])
            return
        hooks = self.hooks.of_owner(owner)
        if not hooks:
            return
        job = self.store.get_job(job_id)
        event = f"job.{state}"
        if event in EVENTS:
            if job is not None:
                from server.routes.common import job_status

                job_body: dict[str, Any] = job_status(job, self.settings).model_dump(mode="json")
            else:  # deleted already (purged): what the outbox entry says
                job_body = {"job_id": job_id, "state": state}
            self._create(hooks, event, entry, {"job": job_body}, job_id=job_id, batch_id=job.batch_id if job else "")
        if job is not None and job.batch_id:
            self._batch_event(hooks, job.batch_id)

    def _batch_event(self, hooks: list[Webhook], batch_id: str) -> None:
        found = self.store.get_batch(batch_id)
        if found is None:
            return
        _owner, _created, job_ids = found
        jobs = [j for j in self.store.get_jobs(job_ids) if j is not None]
        if not jobs or any(j.state not in TERMINAL_STATES for j in jobs):
            return
        counts: dict[str, int] = {}
        for j in jobs:
            counts[j.state.value] = counts.get(j.state.value, 0) + 1
        all_done = counts.get("done") == len(jobs)
        state = "done" if all_done else next((s for s, n in counts.items() if n == len(jobs)), "partial")
        event = "batch.done" if all_done else "batch.failed"
        body = {"batch": {"batch_id": batch_id, "state": state, "counts": counts, "job_ids": job_ids}}
        self._create(hooks, event, f"batch|{batch_id}", body, job_id="", batch_id=batch_id)

    def _create(
        self, hooks: list[Webhook], event: str, source: str, payload: dict[str, Any], *, job_id: str, batch_id: str
    ) -> None:
        now = time.time()
        for hook in hooks:
            if event not in hook.events:
                continue
            did = _delivery_id(source, event, hook.webhook_id)
            body = {"id": did, "event": event, "created_at": _iso(now), **payload}
            delivery = {
                "id": did,
                "webhook_id": hook.webhook_id,
                "event": event,
                "job_id": job_id,
                "batch_id": batch_id,
                "body": json.dumps(body, separators=(",", ":")),
                "attempts": 0,
            }
            self.hooks.create_delivery(delivery, self.delivery_ttl_s)

    # -------------------------------------------------------------------------- one attempt
    def _attempt(self, delivery: dict[str, Any]) -> None:
        try:
            self._attempt_once(delivery)
        except Exception:  # the lease brings it back
            log.warning("webhook delivery %s failed unexpectedly", delivery.get("id"), exc_info=True)

    def _attempt_once(self, delivery: dict[str, Any]) -> None:
        s = self.settings
        did = delivery["id"]
        hook = self.hooks.get(delivery["webhook_id"])
        if hook is None or not self.store.api_key_exists(hook.owner):
            self.hooks.settle(did)  # the webhook (or its key) is gone
            return
        attempt = int(delivery.get("attempts", 0)) + 1
        delivery["attempts"] = attempt
        body = delivery["body"].encode()
        try:
            target = check_url(hook.url, self.allow)  # again: DNS may have changed since registration
        except WebhookUrlError as exc:
            result = Attempt(None, f"refused: {exc}", 0)
        else:
            ts = int(time.time())
            headers = {
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                EVENT_HEADER: delivery["event"],
                DELIVERY_HEADER: did,
                TIMESTAMP_HEADER: str(ts),
                SIGNATURE_HEADER: sign(hook.secret, ts, body),
            }
            result = post(target, body, headers, s.webhook_timeout_s)
        retry_at = None
        if not result.ok and attempt < s.webhook_max_attempts:
            retry_at = time.time() + self.backoff_s(attempt)
        entry = {
            "at": time.time(),
            "delivery_id": did,
            "event": delivery["event"],
            "job_id": delivery.get("job_id") or None,
            "batch_id": delivery.get("batch_id") or None,
            "attempt": attempt,
            "status_code": result.status_code,
            "error": result.error,
            "duration_ms": result.duration_ms,
            "next_attempt_at": retry_at,
        }
        log_ttl_s = max(self.delivery_ttl_s, 30 * 86400)  # an idle webhook keeps its log a month
        self.hooks.log_attempt(hook.webhook_id, entry, keep=s.webhook_log_size, ttl_s=log_ttl_s)
        if retry_at is not None:
            self.hooks.reschedule(delivery, retry_at)
        else:
            self.hooks.settle(did)
            if not result.ok:
                log.warning("webhook %s: gave up on delivery %s after %d attempts", hook.webhook_id, did, attempt)
