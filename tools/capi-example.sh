#!/usr/bin/env bash
# Builds the C library (crate ember-capi), compiles the C programs of
# examples/c against targets/capi/include/ember.h with the system C compiler
# (-Wall -Wextra -Werror), links one statically and one dynamically, and runs
# them: `digits` fine-tunes the digits MLP and fails below 95 % test accuracy;
# `bad_input` passes bad pointers, lengths, paths and files and fails unless
# each gets its error code and message.
#
#   tools/capi-example.sh                          # release profile
#   PROFILE=release-small tools/capi-example.sh    # any cargo profile
#   PROFILE=test tools/capi-example.sh             # the library `cargo test` built
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE=${PROFILE:-release}
CC=${CC:-cc}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
if [ "$PROFILE" = test ]; then
    # The library exactly as `cargo test` (the workspace's test command)
    # built it: the same command resolves the same features, so nothing is
    # compiled again after it. Its files are in the deps/ folder.
    # The reader consumes all of cargo's output: stopping at the library
    # would leave cargo writing into a closed pipe (exit 101) whenever it
    # still compiles something after it.
    a=$(cargo test --locked --no-run --message-format=json 2>/dev/null | python3 -c '
import json, sys
found = []
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "ember_capi":
        found += [f for f in m["filenames"] if f.endswith(".a")]
if found:
    print(found[0])
')
    [ -n "$a" ] || { echo "capi-example: cargo test built no libember_capi.a" >&2; exit 1; }
    lib=$(dirname "$a")
else
    cargo build --locked --profile "$PROFILE" -p ember-capi
    # Cargo puts the `dev` profile's output in debug/.
    lib="$TARGET_DIR/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")"
fi
lib=$(cd "$lib" && pwd)
out="$TARGET_DIR/capi-example"
mkdir -p "$out"

CFLAGS=(-std=c11 -O2 -Wall -Wextra -Werror -pedantic -I targets/capi/include)
# A Rust static library needs the system libraries its standard library uses.
SYSLIBS=(-lpthread -ldl -lm)
"$CC" "${CFLAGS[@]}" examples/c/digits.c "$lib/libember_capi.a" "${SYSLIBS[@]}" -o "$out/digits"
"$CC" "${CFLAGS[@]}" examples/c/bad_input.c -L"$lib" -lember_capi -Wl,-rpath,"$lib" -lm -o "$out/bad_input"
# The header is also valid C++.
if command -v c++ >/dev/null; then
    echo '#include "ember.h"' | c++ -x c++ -std=c++11 -fsyntax-only -Wall -Wextra -Werror -I targets/capi/include -
fi
echo "capi-example: libember_capi.a $(du -k "$lib/libember_capi.a" | cut -f1) KiB, libember_capi.so $(du -k "$lib/libember_capi.so" | cut -f1) KiB ($PROFILE)"

"$out/bad_input" "$out"
"$out/digits" data/digits "$out"
