#!/usr/bin/env bash
# Cross-compiles Ember for ARM and runs what can run here under QEMU:
#
#   aarch64    the `ember` CLI and the test suites of ember-ops, ember-runtime and the
#              facade's training-core parity and Trainer tests, built for
#              aarch64-unknown-linux-gnu and run under qemu-aarch64-static;
#              then `ember finetune --task digits` under emulation
#   armv7      the `ember` CLI for armv7-unknown-linux-gnueabihf (compiled,
#              linked, and `ember --version` run under qemu-arm-static)
#   thumbv7em  ember-runtime + ember-mcu + the no_std canary for a bare-metal
#              Cortex-M4F (tools/nostd-check.sh)
#
#   ci         what .ci/run checks within its time: both ARM Linux targets
#              built unoptimised (a fraction of the release build's time);
#              under QEMU, ember-ops' and ember-runtime's tests on aarch64, and `ember
#              inspect` of a safetensors file on aarch64 and armv7
#
# Usage: tools/cross.sh [aarch64|armv7|thumbv7em|ci|all] [install|build|run]
#
# The target defaults to all. The optional second argument runs one phase of
# the aarch64 part (without it, all three in order): `install` the packages,
# `build` the CLI and the test binaries, `run` the tests and the fine-tune
# under QEMU (e.g. to build in the background, at low priority, while
# something else runs, and test later).
#
# rustup cannot add targets without a network, so this uses Debian's
# rustc-web / cargo-web / rust-web-src (Rust 1.96 with the standard library's
# source) and builds std from source with -Zbuild-std. With a normal rustup
# setup, see docs/cross.md: `rustup target add T` and a plain
# `cargo build --target T` do the same, with the linkers and runners of
# .cargo/config.toml.
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-all}
phase=${2:-all}
usage() { echo "usage: $0 [aarch64|armv7|thumbv7em|ci|all] [install|build|run]" >&2; exit 2; }
case "$what" in aarch64|armv7|thumbv7em|ci|all) ;; *) usage ;; esac
case "$phase" in install|build|run|all) ;; *) usage ;; esac
if [ "$phase" != all ] && [ "$what" != aarch64 ]; then usage; fi

need() {
    local missing=()
    for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "cross: installing ${missing[*]}"
        if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
        $SUDO apt-get update -q
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
    fi
}

# Debian's toolchain, std built from source; one target directory per target.
xcargo() {
    # -Z before the subcommand's own arguments, so a trailing `-- …` stays last.
    RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=${CROSS_TARGET_DIR:-target/cross} /usr/bin/cargo -Zbuild-std=std,panic_unwind "$@"
}

if [ "$what" = aarch64 ] || [ "$what" = all ]; then
    T=aarch64-unknown-linux-gnu
    # The test binaries and the CLI come from invocations with the same
    # packages, so Cargo resolves the same features and Burn is compiled
    # once (the CLI is built as the binary of ember-cli's integration test).
    # Release: the tests run under emulation. Doc tests run natively in
    # `cargo test`.
    pkgs=(-p ember-ops -p ember-runtime -p ember -p ember-cli)
    # No GPU under QEMU: `--cfg ember_no_gpu_tests` leaves the wgpu backend
    # (a dev-dependency of the host test build) and its tests out.
    export RUSTFLAGS="${RUSTFLAGS:-} --cfg ember_no_gpu_tests"
    if [ "$phase" = install ] || [ "$phase" = all ]; then
        need rustc-web cargo-web rust-web-src gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static
    fi
    if [ "$phase" = build ] || [ "$phase" = all ]; then
        echo "cross: $(/usr/bin/rustc --version), target $T"
        xcargo test --locked --release --target $T "${pkgs[@]}" --no-run --lib --test parity --test trainer --test cli
    fi
    if [ "$phase" = run ] || [ "$phase" = all ]; then
        # survives_sigkill_during_writes re-executes its own test binary, which
        # user-mode QEMU can only do where binfmt_misc is registered (not in
        # containers); it runs natively in `cargo test`. ember-cli's tests spawn
        # the CLI for the same reason and run natively too.
        xcargo test --locked --release --target $T "${pkgs[@]}" --lib --test parity --test trainer \
            -- --skip survives_sigkill_during_writes
        exe=target/cross/$T/release/ember
        file "$exe" | sed 's/^/cross: /'
        out=$(mktemp -d)
        qemu-aarch64-static -L /usr/aarch64-linux-gnu "$exe" finetune --task digits --quiet --out "$out" | tee "$out/summary.txt"
        rm -rf "$out"
    fi
fi

if [ "$what" = armv7 ] || [ "$what" = all ]; then
    need rustc-web cargo-web rust-web-src gcc-arm-linux-gnueabihf libc6-dev-armhf-cross qemu-user-static
    T=armv7-unknown-linux-gnueabihf
    echo "cross: $(/usr/bin/rustc --version), target $T"
    xcargo build --locked --release --target $T -p ember-cli
    exe=target/cross/$T/release/ember
    file "$exe" | sed 's/^/cross: /'
    qemu-arm-static -L /usr/arm-linux-gnueabihf "$exe" --version
fi

if [ "$what" = ci ]; then
    need rustc-web cargo-web rust-web-src gcc-aarch64-linux-gnu libc6-dev-arm64-cross \
        gcc-arm-linux-gnueabihf libc6-dev-armhf-cross qemu-user-static
    # Everything at opt-level 0 and without debug info, dependencies
    # included (the dev profile optimises them): these builds check that
    # Ember compiles, links and runs on ARM — with debug assertions and
    # overflow checks on — not how fast. Their own target directory, so a
    # release cross build is not rebuilt.
    # gemm's f16 kernels for aarch64 are inline assembly that only
    # assembles once inlined into their `fp16` target-feature functions,
    # which needs optimisation.
    ci_cargo() {
        CROSS_TARGET_DIR=target/cross-ci xcargo \
            --config 'profile.dev.package."*".opt-level=0' --config 'profile.dev.debug=false' \
            --config 'profile.dev.package.gemm-common.opt-level=3' --config 'profile.dev.package.gemm-f16.opt-level=3' "$@"
    }
    export RUSTFLAGS="${RUSTFLAGS:-} --cfg ember_no_gpu_tests"
    st=tests/fixtures/schedules.safetensors
    T=aarch64-unknown-linux-gnu
    echo "cross: $(/usr/bin/rustc --version), $T, unoptimised"
    ci_cargo test --locked --target $T -p ember-ops -p ember-runtime -p ember-cli --lib --test cli --no-run
    ci_cargo test --locked --target $T -p ember-ops -p ember-runtime -p ember-cli --lib -- --skip survives_sigkill_during_writes
    qemu-aarch64-static -L /usr/aarch64-linux-gnu target/cross-ci/$T/debug/ember inspect "$st"
    T=armv7-unknown-linux-gnueabihf
    echo "cross: $(/usr/bin/rustc --version), $T, unoptimised"
    ci_cargo build --locked --target $T -p ember-cli
    file target/cross-ci/$T/debug/ember | sed 's/^/cross: /'
    qemu-arm-static -L /usr/arm-linux-gnueabihf target/cross-ci/$T/debug/ember inspect "$st"
fi

if [ "$what" = thumbv7em ] || [ "$what" = all ]; then
    ./tools/nostd-check.sh
fi
echo "cross: ok ($what${2:+, $phase})"
