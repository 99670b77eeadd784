#!/usr/bin/env bash
# The checks that keep the tree tidy, as CI runs them: formatting by
# rustfmt.toml; clippy with warnings denied on every target of every host
# crate; the no_std crates checked for the host without their default
# features; rustdoc with warnings denied, private items included (broken
# intra-doc links are warnings). The bare-metal binaries (ember-canary,
# ember-mcu-qemu) only build for their own target: tools/nostd-check.sh and
# tools/mcu-qemu.sh build them.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { echo "lint: $*"; }
bare=(--exclude ember-canary --exclude ember-mcu-qemu)

step rustfmt
cargo fmt --all --check
(cd fuzz && cargo fmt --check)

step clippy
cargo clippy --locked --workspace "${bare[@]}" --all-targets -- -D warnings

step "no_std crates without default features"
cargo clippy --locked -p ember-ops -p ember-runtime -p ember-models -p ember-mcu --no-default-features -- -D warnings

step rustdoc
export RUSTDOCFLAGS="--document-private-items -D warnings"
# The CLI's binary and the facade's library are both `ember`: one run each,
# so that their pages do not collide.
cargo doc --locked --no-deps --workspace "${bare[@]}" --exclude ember-cli
cargo doc --locked --no-deps -p ember-cli
step ok
