#!/usr/bin/env bash
# Builds the ember-mcu firmware (targets/mcu-qemu) for a Cortex-M4F
# (thumbv7em-none-eabihf) and runs it on QEMU's mps2-an386 board: it learns
# from a simulated I2C sensor, prints the error before/after and the peak heap
# over semihosting, and exits with a semihosting exit code. This script fails
# if the build fails, the firmware reports a failure, or it does not finish
# within QEMU_TIMEOUT seconds.
#
# Like tools/nostd-check.sh it uses Debian's Rust toolchain (rustc-web,
# cargo-web, rust-web-src: core and alloc are built from source with
# -Zbuild-std, since rustup cannot add targets offline) and lld-22 for
# rust-lld. With rustup: `rustup target add thumbv7em-none-eabihf` and
# `cargo build --profile firmware -p ember-mcu-qemu --target thumbv7em-none-eabihf`.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=thumbv7em-none-eabihf
QEMU_TIMEOUT=${QEMU_TIMEOUT:-600}
PKGS="rustc-web cargo-web rust-web-src lld-22 qemu-system-arm"
if [ ! -x /usr/bin/cargo ] || [ ! -d /usr/lib/rustlib/src/rust/library ] || [ ! -x /usr/bin/lld-22 ] \
    || ! command -v qemu-system-arm >/dev/null; then
    echo "mcu-qemu: installing $PKGS"
    if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q $PKGS
fi

echo "mcu-qemu: $(/usr/bin/rustc --version), $(qemu-system-arm --version | head -n1)"
RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=target/nostd \
    /usr/bin/cargo build --locked --profile firmware -p ember-mcu -p ember-canary -p ember-mcu-qemu \
    --target "$TARGET" -Zbuild-std=core,alloc

elf=target/nostd/$TARGET/firmware/ember-mcu-qemu
echo "mcu-qemu: running $elf ($(stat -c %s "$elf") bytes) on mps2-an386, timeout ${QEMU_TIMEOUT}s"
start=$(date +%s)
set +e
timeout "$QEMU_TIMEOUT" qemu-system-arm -M mps2-an386 -nographic \
    -semihosting-config enable=on,target=native -kernel "$elf" </dev/null
rc=$?
set -e
echo "mcu-qemu: firmware exited with $rc after $(( $(date +%s) - start )) s"
if [ "$rc" = 124 ]; then
    echo "mcu-qemu: FAILED, the firmware did not finish within ${QEMU_TIMEOUT}s" >&2
    exit 1
elif [ "$rc" != 0 ]; then
    echo "mcu-qemu: FAILED" >&2
    exit 1
fi
echo "mcu-qemu: ok"
