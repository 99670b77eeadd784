#!/usr/bin/env bash
# On a machine with a GPU (or only lavapipe): the wgpu parity tests against
# the CPU backend, then the device benchmark, recorded with the adapter's
# name. One command:
#
#   tools/gpu-check.sh            # wgpu (the API and shaders wgpu picks)
#   BACKEND=vulkan tools/gpu-check.sh   # pinned to Vulkan/SPIR-V (real GPUs;
#                                       # lavapipe crashes on SPIR-V kernels)
#
# Writes bench/device-<backend>-<adapter>.json and prints the table.
set -euo pipefail
cd "$(dirname "$0")/.."
BACKEND=${BACKEND:-wgpu}
features=wgpu
[ "$BACKEND" = wgpu ] || features="wgpu,$BACKEND"

./tools/fetch-models.sh >/dev/null
echo "gpu-check: parity of $BACKEND with the CPU backend (tests/gpu.rs, tests/cli.rs)"
# With `vulkan` compiled in, wgpu's automatic choice on Vulkan is SPIR-V.
EMBER_DEVICE= cargo test --locked --features "$features" --test gpu --test cli
echo "gpu-check: release build with --features $features"
cargo build --locked --release -p ember-cli -p ember-bench --features "$features"
target/release/ember devices
adapter=$(target/release/ember devices --format json | python3 -c '
import json, re, sys
d = {x["device"]: x for x in json.load(sys.stdin)["devices"]}
print(re.sub(r"[^A-Za-z0-9]+", "-", d[sys.argv[1]].get("description", "none").split(" (")[0]).strip("-").lower())' "$BACKEND")
mkdir -p bench
target/release/ember-bench device --device "$BACKEND" --json "bench/device-$BACKEND-$adapter.json"
echo "gpu-check: wrote bench/device-$BACKEND-$adapter.json"
