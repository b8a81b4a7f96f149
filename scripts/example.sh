#!/usr/bin/env bash
# Builds the library in release mode, then compiles and runs examples/c/quickstart.c.
# Needs only bash, cargo and a C compiler (CC, default cc); `make example` does the same.
# The quickstart binary goes to target/c/release/.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release
mkdir -p target/c/release
"${CC:-cc}" -std=c99 -Wall -Wextra -Werror -pedantic -O2 -g -Iinclude \
    examples/c/quickstart.c -o target/c/release/quickstart \
    -Ltarget/release -lbioxen_vm -Wl,-rpath,"$PWD/target/release"
exec target/c/release/quickstart
