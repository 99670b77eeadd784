#!/usr/bin/env python3
"""Which crates the code of a binary comes from: sums the sizes of its text
symbols (`nm -S -C`, so the binary must not be stripped, e.g. the `release`
profile) by the crate that names them, like `cargo bloat --crates` does.

    tools/size-by-crate.py target/release/ember [N]

Generic functions are counted under the crate of their path (a Burn op
instantiated from Ember's code counts as Burn's); symbols without a crate
path (C library, compiler-generated) are `[other]`.
"""
import re
import subprocess
import sys
from collections import Counter


def crate_of(name: str) -> str:
    name = name.strip()
    # `<T as crate::Trait>::f` and `<crate::T>::f`: the implementing type's crate.
    while name.startswith("<"):
        name = name[1:]
    name = name.lstrip("&*").removeprefix("mut ").removeprefix("dyn ")
    m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)::", name)
    return m.group(1) if m else "[other]"


def main() -> None:
    path = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    out = subprocess.run(["nm", "-S", "-C", "--size-sort", path], capture_output=True, text=True, check=True).stdout
    sizes: Counter = Counter()
    for line in out.splitlines():
        parts = line.split(" ", 3)
        if len(parts) == 4 and parts[2] in "tTwW":
            sizes[crate_of(parts[3])] += int(parts[1], 16)
    total = sum(sizes.values())
    print(f"{path}: {total / 1e6:.2f} MB of code in symbols")
    for crate, size in sizes.most_common(top):
        print(f"{size / 1e6:8.2f} MB {100 * size / total:5.1f} %  {crate}")


if __name__ == "__main__":
    main()
