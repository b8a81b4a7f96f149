#!/usr/bin/env bash
# Builds the library in release mode, then compiles and runs examples/c/quickstart.c.
# Needs only bash, cargo and a C compiler (CC, default cc); `make example` does the same.
# The quickstart binary goes to target/c/release/.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release
# The library's SONAME is libbioxen_vm.so.<ABI>: programs linked here look for that name.
soname=$(readelf -d target/release/libbioxen_vm.so 2>/dev/null | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
if [ -n "$soname" ]; then
    ln -sf libbioxen_vm.so "target/release/$soname"
fi
mkdir -p target/c/release
"${CC:-cc}" -std=c99 -Wall -Wextra -Werror -pedantic -O2 -g -Iinclude \
    examples/c/quickstart.c -o target/c/release/quickstart \
    -Ltarget/release -lbioxen_vm -Wl,-rpath,"$PWD/target/release"
exec target/c/release/quickstart
