#!/usr/bin/env bash
# Checks that the C API, the header and the C tests agree:
#   - every bioxen_vm_* function the shared library exports is declared in the header,
#   - every function the header declares is exported,
#   - every exported function is called by at least one C test program.
#
#   tests/c/check_exports.sh LIBRARY.so HEADER TEST_SOURCE...
set -euo pipefail

if [ $# -lt 3 ]; then
    echo "usage: $0 LIBRARY.so HEADER TEST_SOURCE..." >&2
    exit 2
fi
lib=$1
header=$2
shift 2

exported=$(nm -D --defined-only "$lib" |
    awk '$2 == "T" && $3 ~ /^bioxen_vm_/ { print $3 }' | sort -u)
declared=$(grep -oE '\bbioxen_vm_[a-z0-9_]+\(' "$header" | tr -d '(' | sort -u)

status=0
checks=0
failures=0
for f in $exported; do
    checks=$((checks + 1))
    if ! grep -qx "$f" <<<"$declared"; then
        echo "exported but not declared in $header: $f"
        failures=$((failures + 1))
    fi
    checks=$((checks + 1))
    if ! grep -qE "\\b$f\\(" "$@"; then
        echo "exported but called by no C test: $f"
        failures=$((failures + 1))
    fi
done
for f in $declared; do
    checks=$((checks + 1))
    if ! grep -qx "$f" <<<"$exported"; then
        echo "declared in $header but not exported: $f"
        failures=$((failures + 1))
    fi
done
if [ -z "$exported" ]; then
    echo "no bioxen_vm_* function exported by $lib"
    failures=$((failures + 1))
fi
[ $failures -eq 0 ] || status=1
echo "exports: $(wc -w <<<"$exported") functions; $((checks - failures)) passed, $failures failed"
exit $status
