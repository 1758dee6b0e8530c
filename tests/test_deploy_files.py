"""The deployment files against the code they deploy (no Docker engine runs here).

`docker-compose.yml` and the `Dockerfile` must use the commands the Makefile and `python -m server`
accept and the settings names `server/settings.py` reads; their health checks are run for real
against a live API and a live Redis.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import yaml

from server.cli import build_parser
from server.settings import Settings
from test_server_harness import Service, free_port, make_settings, settings_env

# Shared session fixture redis_server: one instance for all server test modules.
pytest_plugins = ["test_server_harness"]

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_PATH = ROOT / "docker-compose.yml"
DOCKERFILE_PATH = ROOT / "Dockerfile"
# What `make venv` creates (Makefile `PY := .venv/bin/python`); the image's commands run it.
VENV_PY = ".venv/bin/python"
SERVER_PREFIX = [VENV_PY, "-m", "server"]
AUTOCUT_NAME = re.compile(r"\bAUTOCUT_[A-Z0-9_]+\b")
# Values for the variables compose interpolates from .env (docs/deploy.md).
DOTENV = {"AUTOCUT_SECRET_KEY": "s" * 40, "REDIS_PASSWORD": "0123abcd" * 4}


# --------------------------------------------------------------------------- parsing helpers


def compose() -> dict:
    return yaml.safe_load(COMPOSE_PATH.read_text())


def autocut_services(doc: dict) -> dict[str, dict]:
    """Services that run this project's image (built from this directory)."""
    return {
        n: s
        for n, s in doc["services"].items()
        if isinstance(s.get("build"), dict) and s["build"].get("context") == "."
    }


_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's variable substitution: $$, ${X}, ${X:-default}, ${X-default}, ${X:?error}, ${X?error}."""

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, arg = m.group(2), m.group(3)
        have = name in env and (env[name] != "" or op in (None, "-", "?"))
        if have:
            return env[name]
        if op in (":-", "-"):
            return arg
        if op in (":?", "?"):
            raise KeyError(f"{name}: {arg}")
        return ""

    return _VAR.sub(sub, value)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out, buf = [], ""
    for line in DOCKERFILE_PATH.read_text().splitlines():
        s = line.strip()
        if not buf and (not s or s.startswith("#")):
            continue
        if s.startswith("#"):
            continue
        buf += (" " if buf else "") + s.rstrip("\\").strip()
        if s.endswith("\\"):
            continue
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def dockerfile_stages() -> dict[str, list[tuple[str, str]]]:
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for ins, arg in dockerfile_instructions():
        if ins == "FROM":
            m = re.search(r"\bAS\s+(\S+)", arg, re.IGNORECASE)
            assert m, f"every stage is named (FROM ... AS name): {arg}"
            current = stages.setdefault(m.group(1), [])
        current.append((ins, arg))
    return stages


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for ins, arg in dockerfile_instructions():
        if ins == "ENV":
            for item in shlex.split(arg):
                k, _, v = item.partition("=")
                env[k] = v
    return env


def exec_form(arg: str) -> list[str]:
    value = json.loads(arg)
    assert isinstance(value, list) and all(isinstance(x, str) for x in value), arg
    return value


def settings_env_names() -> set[str]:
    """Every environment name `Settings` reads: AUTOCUT_<FIELD> plus declared aliases."""
    names = set()
    for field, info in Settings.model_fields.items():
        names.add(f"AUTOCUT_{field.upper()}")
        alias = info.validation_alias
        for choice in getattr(alias, "choices", [alias] if isinstance(alias, str) else []):
            names.add(str(choice).upper())
    return names


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for k in list(os.environ):
        if k.startswith("AUTOCUT_"):
            monkeypatch.delenv(k)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return Settings(_env_file=None)


def service_env(svc: dict, dotenv: dict[str, str]) -> dict[str, str]:
    env = svc.get("environment") or {}
    assert isinstance(env, dict), "environment is written as a map"
    return {k: interpolate(str(v), dotenv) for k, v in env.items()}


# --------------------------------------------------------------------------- compose


def test_compose_parses_and_names_every_service():
    doc = compose()
    services = doc["services"]
    assert set(services) == {"api", "worker", "broker", "worker-gpu", "vllm"}
    default = {n for n, s in services.items() if not s.get("profiles")}
    assert default == {"api", "worker", "broker"}
    assert {n for n, s in services.items() if s.get("profiles") == ["gpu"]} == {"worker-gpu", "vllm"}
    assert services["broker"]["image"].startswith("redis:")
    built = autocut_services(doc)
    assert set(built) == {"api", "worker", "worker-gpu"}
    assert {n: s["build"]["target"] for n, s in built.items()} == {"api": "cpu", "worker": "cpu", "worker-gpu": "gpu"}
    assert set(doc["volumes"]) == {"server-data", "library", "broker-data"}
    for name, svc in built.items():
        assert svc["depends_on"]["broker"]["condition"] == "service_healthy", name
        env = service_env(svc, DOTENV)
        mounts = dict(reversed(v.split(":")[:2]) for v in svc["volumes"])
        # Outputs and uploads live in the data dir, the catalog in the library: both on volumes.
        assert mounts[env["AUTOCUT_DATA_DIR"]] == "server-data", name
        assert mounts[env["AUTOCUT_LIBRARY_DIR"]] == "library", name
        assert env["AUTOCUT_REDIS_URL"].endswith("@broker:6379/0"), name
    assert services["api"]["ports"] == ["${PUBLISH_PORT:-8000}:8000"]
    assert "gpu" in json.dumps(services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"])
    # vLLM serves a model directory from the local disk (no hub download).
    assert any(v.endswith(":/models/qwen3-8b:ro") for v in services["vllm"]["volumes"])
    assert services["vllm"]["command"][:2] == ["--model", "/models/qwen3-8b"]


def test_every_autocut_name_is_a_setting():
    known = settings_env_names()
    for path in (COMPOSE_PATH, DOCKERFILE_PATH, ROOT / "docs" / "deploy.md"):
        used = set(AUTOCUT_NAME.findall(path.read_text()))
        assert used, path
        assert used <= known, f"{path.name} names settings that server/settings.py lacks: {sorted(used - known)}"
    for name, svc in autocut_services(compose()).items():
        extra = {k for k in (svc.get("environment") or {}) if not k.startswith("AUTOCUT_")}
        assert not extra, f"{name}: only AUTOCUT_* settings configure the service, not {extra}"


def test_compose_environment_makes_valid_settings(monkeypatch):
    doc = compose()
    for _name, svc in autocut_services(doc).items():
        s = settings_from(service_env(svc, DOTENV), monkeypatch)
        assert s.data_dir == Path("/data/server") and s.library_dir == Path("/data/library")
        assert not s.local_redis and s.broker_url == f"redis://:{DOTENV['REDIS_PASSWORD']}@broker:6379/0"
        assert s.secret_key.get_secret_value() == DOTENV["AUTOCUT_SECRET_KEY"] and not s.dev_mode
    api = settings_from(service_env(doc["services"]["api"], DOTENV), monkeypatch)
    assert (api.api_host, api.api_port) == ("0.0.0.0", 8000)
    # Without a secret in .env compose refuses to start rather than run with a placeholder.
    with pytest.raises(KeyError, match="AUTOCUT_SECRET_KEY"):
        service_env(doc["services"]["api"], {"REDIS_PASSWORD": DOTENV["REDIS_PASSWORD"]})
    broker = doc["services"]["broker"]
    with pytest.raises(KeyError, match="REDIS_PASSWORD"):
        service_env(broker, {})
    assert service_env(broker, DOTENV) == {"REDIS_PASSWORD": DOTENV["REDIS_PASSWORD"]}
    # `$$` reaches the container's shell as `$`, which expands the broker's own REDIS_PASSWORD.
    assert '--requirepass "$REDIS_PASSWORD"' in interpolate(" ".join(broker["command"]), DOTENV)


def test_compose_commands_are_server_cli_commands():
    help_text = subprocess.run(
        [sys.executable, "-m", "server", "--help"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    for name, svc in autocut_services(compose()).items():
        argv = svc["command"]
        assert argv[:3] == SERVER_PREFIX, name
        sub = argv[3]
        assert re.search(rf"\b{sub}\b", help_text), f"{name}: `python -m server` has no {sub!r} command"
        args = build_parser().parse_args(argv[3:])  # exits (SystemExit) on an argument the CLI refuses
        assert args.command == sub
        if sub == "worker":
            # One process per container, restarted by the orchestrator (server/cli.py).
            assert args.processes == 0
        subprocess.run([sys.executable, "-m", "server", sub, "--help"], cwd=ROOT, capture_output=True, check=True)


# --------------------------------------------------------------------------- Dockerfile


def test_dockerfile_builds_with_the_makefile_and_copies_every_package():
    stages = dockerfile_stages()
    # system (base + Debian packages) -> build (+ make, npm; `make venv`) -> cpu (system + /app) -> gpu
    assert set(stages) == {"system", "build", "cpu", "gpu"}
    froms = {n: st[0][1].split()[0] for n, st in stages.items()}
    assert froms == {"system": "${BASE_IMAGE}", "build": "system", "cpu": "system", "gpu": "cpu"}
    # The base is a build argument whose default is the official Python image (docker-check passes
    # a debootstrap-made one where no registry can be reached).
    base_arg = next(a for i, a in dockerfile_instructions() if i == "ARG" and a.startswith("BASE_IMAGE="))
    assert base_arg.split("=", 1)[1].startswith("python:3.11-")
    runs = {n: [arg for ins, arg in st if ins == "RUN"] for n, st in stages.items()}
    assert any(re.search(r"(^|&& )make venv\b", r) for r in runs["build"]), "the image's venv is the Makefile's"
    assert any("scripts/install-system-deps.sh" in r for r in runs["system"])
    # The run-time image carries no build tools: make and npm come in only in the build stage, and
    # the cpu stage takes just /app from it.
    assert not any("apt-get install" in r for r in runs["cpu"])
    assert [a for i, a in stages["cpu"] if i == "COPY"] == ["--from=build /app /app"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^PY := \.venv/bin/python$", makefile, re.M)
    assert re.search(r"^venv:", makefile, re.M)
    # `make -n` only prints: the target exists and its recipe parses on this machine.
    subprocess.run(["make", "-n", "venv"], cwd=ROOT, capture_output=True, check=True)
    copied = set()
    for name in ("system", "build"):
        for ins, arg in stages[name]:
            if ins == "COPY":
                *srcs, _dest = shlex.split(arg)
                for src in srcs:
                    assert (ROOT / src).exists(), f"COPY {src}: no such path"
                    copied.add(src.rstrip("/"))
    py = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in py["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages <= copied, f"packages not copied into the image: {packages - copied}"
    assert {"pyproject.toml", "Makefile"} <= copied
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert not (copied & ignored), "the build context must contain what the Dockerfile copies"
    assert {".venv", "var", "build"} <= ignored
    for name in ("cpu", "gpu"):
        users = [arg for ins, arg in stages[name] if ins == "USER"]
        assert users and users[-1] not in ("root", "0"), f"stage {name} runs as root"
    assert "faiss-cpu" in " ".join(a for i, a in stages["gpu"] if i == "RUN")
    assert "'.[gpu]'" in " ".join(a for i, a in stages["gpu"] if i == "RUN")


class _ComposeLoader(yaml.SafeLoader):
    """SafeLoader that also reads compose's merge tags `!reset` and `!override` (as plain values)."""


def _compose_tag(loader: yaml.SafeLoader, node: yaml.Node) -> object:
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node)
    assert isinstance(node, yaml.ScalarNode)
    return loader.construct_scalar(node)


_ComposeLoader.add_constructor("!reset", _compose_tag)
_ComposeLoader.add_constructor("!override", _compose_tag)


def test_check_compose_override_uses_host_networking_on_loopback():
    """docker-compose.check.yml (`make docker-check`): host network, 127.0.0.1, nothing published."""
    doc = yaml.load((ROOT / "docker-compose.check.yml").read_text(), Loader=_ComposeLoader)
    services = doc["services"]
    assert set(services) == {"broker", "api", "worker"}
    assert all(s["network_mode"] == "host" for s in services.values())
    assert "networks" not in doc and not any("networks" in s for s in services.values())
    assert services["broker"]["image"] == "autocut:cpu"  # no registry image is pulled in the check
    assert "--bind 127.0.0.1" in services["broker"]["command"][-1]
    assert services["api"]["environment"]["AUTOCUT_API_HOST"] == "127.0.0.1"
    for name in ("api", "worker"):
        assert "@127.0.0.1:${CHECK_BROKER_PORT:?}/0" in services[name]["environment"]["AUTOCUT_REDIS_URL"]
    assert services["worker"]["deploy"]["replicas"] == 1
    # The API and the broker listen on distinct ports, chosen by the script.
    assert services["api"]["environment"]["AUTOCUT_API_PORT"] == "${CHECK_API_PORT:?}"
    assert "CHECK_BROKER_PORT" in services["broker"]["command"][-1]


def test_dockerfile_settings_and_command(monkeypatch):
    env = dockerfile_env()
    names = {k for k in env if k.startswith("AUTOCUT_")}
    assert names <= settings_env_names()
    assert "AUTOCUT_SECRET_KEY" not in env, "no secret is baked into the image"
    s = settings_from({**{k: env[k] for k in names}, "AUTOCUT_SECRET_KEY": DOTENV["AUTOCUT_SECRET_KEY"]}, monkeypatch)
    instructions = dockerfile_instructions()
    volumes = set(next(exec_form(a) for i, a in instructions if i == "VOLUME"))
    assert volumes == {str(s.data_dir), str(s.library_dir)}
    assert next(a for i, a in instructions if i == "EXPOSE") == str(s.api_port)
    assert s.api_host == "0.0.0.0"
    cmd = exec_form(next(a for i, a in dockerfile_stages()["cpu"] if i == "CMD"))
    assert cmd[:3] == SERVER_PREFIX
    args = build_parser().parse_args(cmd[3:])
    assert args.command == "all"  # one container = the supervised single-machine default


def _healthcheck_argv_dockerfile() -> list[str]:
    arg = next(a for i, a in dockerfile_instructions() if i == "HEALTHCHECK")
    return exec_form(arg[arg.index("CMD") + 3 :].strip())


def _run_check(argv: list[str], env: dict[str, str]) -> int:
    assert argv[0] == VENV_PY
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, timeout=60).returncode


def test_healthchecks_against_a_live_api_and_redis(tmp_path, redis_server):
    """The image's and the compose file's health checks, run as written against real processes."""
    settings = make_settings(tmp_path, redis_server, tmp_path / "library")
    (tmp_path / "logs").mkdir()
    svc = Service(settings, tmp_path / "logs")
    doc = compose()
    # Compose runs a list only when it starts with CMD (exec) or CMD-SHELL; anything else is refused.
    for name, service in doc["services"].items():
        if "healthcheck" in service:
            assert service["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
    api_check = doc["services"]["api"]["healthcheck"]["test"][1:]
    worker_check = doc["services"]["worker"]["healthcheck"]["test"][1:]
    image_check = _healthcheck_argv_dockerfile()
    try:
        svc.start_api()
        env = {**settings_env(settings), "AUTOCUT_API_PORT": str(svc.port)}
        assert _run_check(image_check, env) == 0
        assert _run_check(api_check, env) == 0
        dead = {**env, "AUTOCUT_API_PORT": str(free_port())}
        assert _run_check(image_check, dead) != 0
        assert _run_check(api_check, dead) != 0
        # The worker check looks for this host's worker heartbeat in the job store.
        assert _run_check(worker_check, env) == 1
        svc.store.worker_heartbeat(f"{socket.gethostname()}-other:1")
        assert _run_check(worker_check, env) == 1
        svc.store.worker_heartbeat(f"{socket.gethostname()}:4242")
        assert _run_check(worker_check, env) == 0
        svc.store.r.zadd(svc.store.k("workers"), {f"{socket.gethostname()}:4242": time.time() - 3600})
        assert _run_check(worker_check, env) == 1  # a stale heartbeat is a dead worker
    finally:
        svc.stop()
