#!/usr/bin/env bash
# Fuzzes the safetensors loader (fuzz/fuzz_targets/safetensors_loader.rs) for
# a bounded time: FUZZ_SECONDS (default 60). Fails on any crash.
#
# cargo fuzz needs nightly features; offline, Debian's rustc-web (installed by
# tools/nostd-check.sh) provides them with RUSTC_BOOTSTRAP=1. Sanitizers are
# off (-s none): their runtimes are not shipped by that toolchain; libFuzzer
# still finds panics, aborts, hangs and out-of-memory.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN=${FUZZ_SECONDS:-60}

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
[ -x /usr/bin/rustc ] || ./tools/nostd-check.sh

# The committed seeds stay as they are; libFuzzer grows a working corpus.
corpus=target/fuzz/corpus/safetensors_loader
mkdir -p "$corpus"
cp fuzz/seeds/safetensors_loader/* "$corpus/"

export RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=target/fuzz
# 16 codegen units instead of cargo-fuzz's 1, and (fuzz/Cargo.toml) the
# dependencies of the loader unoptimised, to keep the instrumented build short.
/usr/bin/cargo fuzz run -s none --codegen-units 16 safetensors_loader "$corpus" -- \
    -max_total_time="$SECONDS_TO_RUN" -rss_limit_mb=2048 -max_len=65536 2>&1 | tail -n 25
echo "fuzz: ${SECONDS_TO_RUN}s without a crash"
