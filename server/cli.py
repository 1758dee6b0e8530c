"""`python -m server api|worker|all|redis|keys`: the service's entry points (thin; logic lives elsewhere).

- `api`: the HTTP API (uvicorn, one process).
- `worker [--processes N]`: N worker processes under a supervisor that restarts a dead one
  (and kills what it left behind, e.g. an orphaned ffmpeg). `--processes 0` runs one worker in
  this process, unsupervised (containers, where the orchestrator restarts).
- `all`: the single-machine default: a local persistent redis-server (unless AUTOCUT_REDIS_URL
  names a shared one), the API and the workers, all supervised.
- `redis`: only the supervised local redis-server.
- `keys create|list|revoke`: API keys (the raw key is printed once and never stored).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time

from pydantic import ValidationError

__all__ = ["main"]

log = logging.getLogger("server")


def _settings():
    from server.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        msgs = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        print(f"server: invalid settings: {msgs}", file=sys.stderr)
        raise SystemExit(2) from None


def _logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level), format="%(asctime)s %(process)d %(name)s %(levelname)s: %(message)s"
    )


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from server.main import create_app

    s = _settings()
    _logging(s.log_level)
    app = create_app(s)
    config = uvicorn.Config(
        app,
        host=args.host or s.api_host,
        port=args.port or s.api_port,
        log_level=s.log_level.lower(),
        proxy_headers=False,
        timeout_graceful_shutdown=10,
    )
    # After uvicorn configured its loggers: signed links never reach the access log with their signature.
    logging.getLogger("uvicorn.access").addFilter(RedactSignatures())
    uvicorn.Server(config).run()
    return 0


class RedactSignatures(logging.Filter):
    """Replace the `signature=` value of any request line in a log record by `<redacted>` (a signed link
    is a bearer credential for its file until it expires)."""

    _RE = re.compile(r"(signature=)[^&\s\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self._RE.sub(r"\1<redacted>", a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str) and "signature=" in record.msg:
            record.msg = self._RE.sub(r"\1<redacted>", record.msg)
        return True


def cmd_worker_process(_args: argparse.Namespace) -> int:
    from server.worker import run_worker_process

    s = _settings()
    _logging(s.log_level)
    return run_worker_process(s)


def cmd_worker(args: argparse.Namespace) -> int:
    from server.supervisor import ChildSpec, Supervisor, child_argv

    s = _settings()
    _logging(s.log_level)
    n = s.worker_processes if args.processes is None else args.processes
    if n == 0:
        return cmd_worker_process(args)
    children = [ChildSpec(f"worker-{i + 1}", child_argv("worker", "--processes", "0")) for i in range(n)]
    return Supervisor(children, stop_timeout_s=s.shutdown_grace_s + 30).run()


def _local_redis(s):
    from server.supervisor import redis_for_settings

    srv = redis_for_settings(s)
    srv.start()
    return srv


def cmd_redis(_args: argparse.Namespace) -> int:
    import signal

    s = _settings()
    _logging(s.log_level)
    if not s.local_redis:
        print("server: AUTOCUT_REDIS_URL is set; there is no local redis-server to run", file=sys.stderr)
        return 2
    srv = _local_redis(s)
    stop = False

    def on_signal(_signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stop:
        if srv.proc is not None and not srv.alive():
            log.warning("redis-server died; restarting it")
            srv.proc = None
            srv.start()
        time.sleep(0.5)
    srv.stop()
    return 0


def cmd_all(args: argparse.Namespace) -> int:
    from server.supervisor import ChildSpec, Supervisor, child_argv

    s = _settings()
    _logging(s.log_level)
    srv = _local_redis(s) if s.local_redis else None
    n = s.worker_processes if args.processes is None else args.processes
    api = ["api"] + (["--host", args.host] if args.host else []) + (["--port", str(args.port)] if args.port else [])
    children = [ChildSpec("api", child_argv(*api))]
    children += [ChildSpec(f"worker-{i + 1}", child_argv("worker", "--processes", "0")) for i in range(n)]

    def check_redis() -> None:
        if srv is not None and srv.proc is not None and not srv.alive():
            log.warning("redis-server died; restarting it")
            srv.proc = None
            srv.start()

    try:
        return Supervisor(children, on_tick=check_redis, stop_timeout_s=s.shutdown_grace_s + 30).run()
    finally:
        if srv is not None:
            srv.stop()


def cmd_keys(args: argparse.Namespace) -> int:
    from server.auth import create_api_key
    from server.store import JobStore

    s = _settings()
    store = JobStore.from_url(s.broker_url, s.redis_namespace, timeout_s=s.redis_timeout_s)
    if args.keys_command == "create":
        key_id, raw = create_api_key(store, s.secret_key.get_secret_value(), name=args.name, admin=args.admin)
        print(f"{key_id} {raw}")
        print("store this key now: it is not kept and cannot be shown again", file=sys.stderr)
    elif args.keys_command == "list":
        for k in store.list_api_keys():
            print(f"{k['key_id']}\t{'admin' if k.get('admin') == '1' else 'user'}\t{k.get('name', '')}")
    else:
        if not store.revoke_api_key(args.key_id):
            print(f"server: no key {args.key_id}", file=sys.stderr)
            return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m server", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("api", help="run the HTTP API")
    a.add_argument("--host")
    a.add_argument("--port", type=int)
    a.set_defaults(func=cmd_api)
    w = sub.add_parser("worker", help="run worker processes (supervised)")
    w.add_argument("--processes", type=int, default=None, help="0 = one unsupervised worker in this process")
    w.set_defaults(func=cmd_worker)
    al = sub.add_parser("all", help="redis-server (local default) + API + workers, supervised")
    al.add_argument("--processes", type=int, default=None)
    al.add_argument("--host")
    al.add_argument("--port", type=int)
    al.set_defaults(func=cmd_all)
    r = sub.add_parser("redis", help="only the supervised local redis-server")
    r.set_defaults(func=cmd_redis)
    k = sub.add_parser("keys", help="manage API keys")
    ks = k.add_subparsers(dest="keys_command", required=True)
    kc = ks.add_parser("create")
    kc.add_argument("--name", required=True)
    kc.add_argument("--admin", action="store_true")
    ks.add_parser("list")
    kr = ks.add_parser("revoke")
    kr.add_argument("key_id")
    k.set_defaults(func=cmd_keys)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return int(args.func(args) or 0)
