"""Notifications against the running service: webhooks and the job event stream (SSE).

Black-box: the API and a worker run as processes on a real redis-server, jobs really render with ffmpeg,
and the webhook receiver is a real HTTP server (`http.server`) on 127.0.0.1, which the service may reach only
because its operator allowlist (`webhook_allow_hosts`) names 127.0.0.1. A second API without the allowlist
shows what is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from test_server_harness import Service, copy_library, make_settings, tiny_edit, wait_for, wait_job

# Shared session fixtures (redis_server, seed_library): one instance for all server test modules.
pytest_plugins = ["test_server_harness"]

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

ALL_EVENTS = {"job.done", "job.failed", "job.cancelled", "batch.done", "batch.failed"}


class Receiver:
    """A webhook receiver: records every request (path, headers, raw body); `plan[path]` lists the statuses
    to answer in turn before answering 200."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.plan: dict[str, list[int]] = {}
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer.lock:
                    outer.requests.append(
                        {"path": self.path, "headers": dict(self.headers), "body": body, "t": time.monotonic()}
                    )
                    todo = outer.plan.get(self.path) or []
                    status = todo.pop(0) if todo else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def received(self, path: str) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory, redis_server, seed_library):
    """API + one worker; webhooks may target 127.0.0.1 (allowlist); fast retries; small caps."""
    tmp = tmp_path_factory.mktemp("hooksvc")
    lib = copy_library(seed_library, tmp / "library")
    settings = make_settings(
        tmp,
        redis_server,
        lib,
        webhook_allow_hosts="127.0.0.1",
        webhook_retry_base_s=0.3,
        webhook_max_per_key=3,
        sse_max_streams_per_key=2,
        sse_max_duration_s=120.0,
    )
    (tmp / "logs").mkdir()
    svc = Service(settings, tmp / "logs")
    try:
        svc.start_workers(1, supervised=False)
        svc.start_api()
        svc.wait_workers(1, timeout_s=90)
        yield svc
    finally:
        svc.stop()


def _signature_ok(secret: str, req: dict) -> bool:
    """The receiver's check, written out here (not the service's code): HMAC-SHA256 over "<ts>." + body."""
    ts = req["headers"]["X-AutoCut-Timestamp"]
    want = "sha256=" + hmac.new(secret.encode(), f"{ts}.".encode() + req["body"], hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, req["headers"]["X-AutoCut-Signature"])


def _register(c: httpx.Client, url: str, **body: object) -> dict:
    r = c.post("/v1/webhooks", json={"url": url, **body})
    assert r.status_code == 201, r.text
    return r.json()


def test_job_done_is_delivered_once_signed_and_a_failing_receiver_is_retried(service, receiver):
    key = service.new_key("hooks")
    receiver.plan["/flaky"] = [500, 500]
    with service.client(key) as c:
        ok = _register(c, receiver.url + "/ok")
        assert set(ok["events"]) == ALL_EVENTS and ok["secret"].startswith("whsec_")
        flaky = _register(c, receiver.url + "/flaky", events=["job.done"])
        listing = c.get("/v1/webhooks").json()
        assert {h["webhook_id"] for h in listing["items"]} == {ok["webhook_id"], flaky["webhook_id"]}
        assert "secret" not in json.dumps(listing) and ok["secret"] not in json.dumps(listing)
        r = c.post("/v1/edits", json=tiny_edit([1]))
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        job = wait_job(c, job_id)
        assert job["state"] == "done", (job, service.logs())

        wait_for(lambda: receiver.received("/ok"), 20, "the job.done delivery")
        wait_for(lambda: len(receiver.received("/flaky")) >= 3, 20, "three attempts at the flaky receiver")
        time.sleep(1.5)  # a duplicate or a fourth attempt would have arrived by now (the sender polls at 0.25 s)
        (got,) = receiver.received("/ok")
        assert got["headers"]["X-AutoCut-Event"] == "job.done"
        assert _signature_ok(ok["secret"], got), got["headers"]
        assert abs(int(got["headers"]["X-AutoCut-Timestamp"]) - time.time()) < 60
        # The check can fail: another secret, or a body changed in transit.
        assert not _signature_ok(flaky["secret"], got)
        assert not _signature_ok(ok["secret"], {**got, "body": got["body"].replace(b"done", b"dune")})
        body = json.loads(got["body"])
        assert body["event"] == "job.done" and body["job"]["job_id"] == job_id and body["job"]["state"] == "done"
        assert body["job"]["results"][0]["links"]["video"].startswith(f"/v1/jobs/{job_id}/")

        attempts = receiver.received("/flaky")
        assert len(attempts) == 3, attempts
        assert len({a["headers"]["X-AutoCut-Delivery"] for a in attempts}) == 1  # one delivery, tried 3 times
        assert all(_signature_ok(flaky["secret"], a) for a in attempts)
        gaps = [b["t"] - a["t"] for a, b in itertools.pairwise(attempts)]
        assert gaps[0] >= 0.25 and gaps[1] >= 0.5, gaps  # backoff 0.3 s, then 0.6 s (x2 each time)

        log = c.get(f"/v1/webhooks/{flaky['webhook_id']}/deliveries").json()["items"]
        assert [(e["attempt"], e["status_code"]) for e in reversed(log)] == [(1, 500), (2, 500), (3, 200)], log
        assert all(e["event"] == "job.done" and e["job_id"] == job_id for e in log)
        assert log[-1]["error"] == "HTTP 500" and log[-1]["next_attempt_at"] is not None
        assert log[0]["error"] is None and log[0]["next_attempt_at"] is None
        ok_log = c.get(f"/v1/webhooks/{ok['webhook_id']}/deliveries").json()["items"]
        assert [(e["attempt"], e["status_code"], e["event"]) for e in ok_log] == [(1, 200, "job.done")]


def test_a_failing_job_sends_job_failed(service, receiver):
    key = service.new_key("hooks-failed")
    broken = Path(service.settings.media_dir) / "broken.mp4"
    broken.write_bytes(b"this is not a video" * 100)
    with service.client(key) as c:
        hook = _register(c, receiver.url + "/failed", events=["job.failed"])
        req = tiny_edit([1])
        req["clips"] = [{"path": "broken.mp4"}]
        r = c.post("/v1/edits", json=req)
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        job = wait_job(c, job_id)
        assert job["state"] == "failed", job
        wait_for(lambda: receiver.received("/failed"), 20, "the job.failed delivery")
        (got,) = receiver.received("/failed")
        assert _signature_ok(hook["secret"], got)
        body = json.loads(got["body"])
        assert body["event"] == "job.failed" and body["job"]["job_id"] == job_id
        assert body["job"]["error"]["code"] == job["error"]["code"]


def test_a_batch_sends_batch_done_once(service, receiver):
    key = service.new_key("hooks-batch")
    with service.client(key) as c:
        hook = _register(c, receiver.url + "/batch", events=["batch.done", "batch.failed"])
        r = c.post("/v1/batches", json={"items": [tiny_edit([1]), tiny_edit([2])]})
        assert r.status_code == 202, r.text
        batch = r.json()
        for jid in batch["job_ids"]:
            assert wait_job(c, jid)["state"] == "done"
        wait_for(lambda: receiver.received("/batch"), 20, "the batch.done delivery")
        time.sleep(1.0)
        (got,) = receiver.received("/batch")  # one for the batch, none per job (not subscribed)
        assert _signature_ok(hook["secret"], got)
        body = json.loads(got["body"])
        assert body["event"] == "batch.done" and body["batch"]["batch_id"] == batch["batch_id"]
        assert body["batch"]["counts"] == {"done": 2} and sorted(body["batch"]["job_ids"]) == sorted(batch["job_ids"])


def test_webhook_urls_that_reach_inside_are_refused(service, redis_server, tmp_path):
    # The allowlisted service allows 127.0.0.1 and nothing else private.
    with service.client(service.new_key("ssrf-allow")) as c:
        assert c.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/x"}).status_code == 201
        r = c.post("/v1/webhooks", json={"url": "http://10.0.0.1/"})
        assert r.status_code == 422 and "private" in r.json()["error"]["message"], r.text
    # A service without the allowlist (its own namespace, an API only).
    settings = make_settings(tmp_path, redis_server, service.settings.library_dir)
    assert settings.webhook_allow_hosts == ""
    (tmp_path / "logs").mkdir()
    plain = Service(settings, tmp_path / "logs")
    try:
        plain.start_api()
        with plain.client(plain.new_key("ssrf")) as c:
            cases = {
                "http://127.0.0.1/": "not a public address (loopback)",
                "http://169.254.169.254/latest/meta-data/": "not a public address (link-local)",
                "http://[::1]/": "not a public address (loopback)",
                "http://10.0.0.1/": "not a public address (private)",
                "http://localhost:8080/hook": "localhost (resolves to ",
                "http://[::ffff:127.0.0.1]/": "loopback (embedded in the IPv6 address)",
                "http://0.0.0.0/": "unspecified",
                "http://224.0.0.1/": "multicast",
                "ftp://example.com/": "scheme must be http or https",
                "http://user:pw@127.0.0.1/": "must not contain credentials",
            }
            for url, reason in cases.items():
                r = c.post("/v1/webhooks", json={"url": url})
                assert r.status_code == 422, (url, r.text)
                err = r.json()["error"]
                assert err["code"] == "bad_webhook_url" and reason in err["message"], (url, err)
            assert c.get("/v1/webhooks").json()["items"] == []
    finally:
        plain.stop()


def _sse(lines: Iterator[str], limit_s: float = 90.0) -> Iterator[tuple[str, dict]]:
    """(event name, parsed data) of a text/event-stream; fails if it runs longer than `limit_s` (keep-alive
    comments arrive at least every 15 s, so a stream that never ends is noticed)."""
    deadline = time.monotonic() + limit_s
    name, data = "message", []
    for line in lines:
        assert time.monotonic() < deadline, f"the event stream did not end within {limit_s:.0f} s"
        if line == "":
            if data:
                yield name, json.loads("\n".join(data))
            name, data = "message", []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


def test_event_stream_follows_a_job_to_done(service):
    key, other = service.new_key("sse"), service.new_key("sse-other")
    # Big enough that the render runs for seconds (progress to watch).
    req = tiny_edit(
        [1, 2], script=["Fresh juice in seconds.", "Take it anywhere."], resolution=1080, max_duration_s=8.0
    )
    with service.client(key) as c, service.client(other) as o:
        r = c.post("/v1/edits", json=req)
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        url = f"/v1/jobs/{job_id}/events"
        assert o.get(url).status_code == 404  # another key's job: like a missing one
        assert httpx.get(service.base_url + url).status_code == 401
        with c.stream("GET", url, timeout=60) as s:  # read timeout: a stream that hangs fails the test
            assert s.status_code == 200 and s.headers["content-type"].startswith("text/event-stream")
            with c.stream("GET", url, timeout=60) as s2:
                assert s2.status_code == 200
                r3 = c.get(url)  # a third stream of this key: over the cap of 2
                assert r3.status_code == 429 and r3.json()["error"]["code"] == "too_many_streams", r3.text
            events = list(_sse(s.iter_lines()))
        names = [n for n, _ in events]
        assert names[-1] == "done" and set(names[:-1]) == {"progress"}, names
        progress = [d["progress_pct"] for _, d in events]
        assert progress == sorted(progress) and progress[-1] == 100.0, progress
        assert len(set(progress)) >= 3, progress  # it moved while we watched
        assert any(d["state"] == "running" for _, d in events[:-1])
        assert events[-1][1]["job_id"] == job_id and events[-1][1]["results"]
        # Both streams were released: a stream of the finished job answers at once with its end state.
        time.sleep(1.0)
        r = c.get(url, timeout=10)
        assert r.status_code == 200
        assert [n for n, _ in _sse(iter(r.text.splitlines()))] == ["done"]


def test_webhooks_are_per_key_bounded_and_deletable(service, receiver):
    a, b = service.new_key("hooks-a"), service.new_key("hooks-b")
    with service.client(a) as ca, service.client(b) as cb:
        hooks = [_register(ca, f"{receiver.url}/a{i}") for i in range(3)]
        r = ca.post("/v1/webhooks", json={"url": receiver.url + "/a3"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "too_many_webhooks", r.text
        assert "3 webhooks" in r.json()["error"]["message"]
        wid = hooks[0]["webhook_id"]
        # Another key sees none of them and cannot touch them (404, like a missing id).
        assert cb.get("/v1/webhooks").json()["items"] == []
        for method, path in (("GET", ""), ("GET", "/deliveries"), ("DELETE", "")):
            r = cb.request(method, f"/v1/webhooks/{wid}{path}")
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", (method, path, r.text)
        r = ca.post("/v1/webhooks", json={"url": receiver.url + "/x", "events": ["job.exploded"]})
        assert r.status_code == 422 and "events" in r.json()["error"]["message"], r.text
        assert ca.get("/v1/webhooks/whk_nothex").status_code == 422
        assert ca.delete(f"/v1/webhooks/{wid}").status_code == 204
        assert ca.get(f"/v1/webhooks/{wid}/deliveries").status_code == 404
        assert len(ca.get("/v1/webhooks").json()["items"]) == 2
        assert _register(ca, receiver.url + "/a3")["url"].endswith("/a3")  # room again


def test_the_target_is_checked_again_at_delivery_time(service, receiver, tmp_path):
    """A webhook registered while 127.0.0.1 was allowed; the operator then drops it from the allowlist (the
    API restarts without it, same store and worker): deliveries are refused before anything is sent."""
    key = service.new_key("hooks-recheck")
    with service.client(key) as c:
        hook = _register(c, receiver.url + "/recheck", events=["job.done"])
    service.kill_api()
    strict_settings = service.settings.model_copy(update={"webhook_allow_hosts": ""})
    (tmp_path / "logs").mkdir()
    strict = Service(strict_settings, tmp_path / "logs")
    try:
        strict.start_api()
        with strict.client(key) as c:
            r = c.post("/v1/edits", json=tiny_edit([2]))
            assert r.status_code == 202, r.text
            job_id = r.json()["job_id"]
            assert wait_job(c, job_id)["state"] == "done"
            url = f"/v1/webhooks/{hook['webhook_id']}/deliveries"
            log = wait_for(lambda: len(items := c.get(url).json()["items"]) >= 2 and items, 20, "two refused tries")
            for entry in log:  # type: ignore[union-attr]
                assert entry["status_code"] is None and entry["job_id"] == job_id, entry
                assert entry["error"].startswith("refused: ") and "(loopback)" in entry["error"], entry
        assert receiver.received("/recheck") == []
    finally:
        strict.stop()
        service.start_api()
