#!/usr/bin/env bash
# Builds ember-runtime and ember-mcu without std for a bare-metal Cortex-M4F
# target (thumbv7em-none-eabihf): ember-mcu as a library (ember-runtime comes
# without its default `std` feature as its dependency; `-p ember-runtime` would
# turn `std` on) and the `ember-canary`
# #![no_std] #![no_main] binary that links both. If anything in the dependency tree needed std, this
# would fail to compile: the target has no std at all.
#
# rustup cannot add targets offline, so this uses Debian's rustc-web /
# cargo-web / rust-web-src (Rust 1.96 with the standard library's source) and
# builds core and alloc from source with -Zbuild-std. With a normal rustup
# setup, `rustup target add thumbv7em-none-eabihf` and
# `cargo build --profile firmware -p ember-canary --target thumbv7em-none-eabihf`
# do the same (the `firmware` profile: release at opt-level s).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=${TARGET:-thumbv7em-none-eabihf}
# rust-web-llvm's /usr/bin/rust-lld points at lld-22, a package of its own.
PKGS="rustc-web cargo-web rust-web-src lld-22"
if [ ! -x /usr/bin/cargo ] || [ ! -d /usr/lib/rustlib/src/rust/library ] || [ ! -x /usr/bin/lld-22 ]; then
    echo "nostd-check: installing $PKGS"
    if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q $PKGS
fi

echo "nostd-check: $(/usr/bin/rustc --version), target $TARGET"
RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=target/nostd \
    /usr/bin/cargo build --locked --profile firmware -p ember-mcu -p ember-canary -p ember-mcu-qemu \
    --target "$TARGET" -Zbuild-std=core,alloc

bin=target/nostd/$TARGET/firmware/ember-canary
size=$(stat -c %s "$bin")
echo "nostd-check: ok, $bin ($size bytes) links ember-runtime, ember-mcu, burn-flex, autodiff and optimizers without std"
