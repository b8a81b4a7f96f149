#!/usr/bin/env bash
# Side-by-side Python benchmark: bioxen_vm (ctypes and cffi backends) against lupa and the
# original pylua_bioxen_vm_lib 0.1.22. Builds the library, makes a venv under
# target/benchvenv with lupa, pylua-bioxen-vm-lib==0.1.22 (in target/benchvenv/original: it
# is also named pylua_bioxen_vm_lib) and ./bindings/python, and runs
# bench/python/bench.py, which prints a Markdown table. Arguments go to bench.py
# (--runs N, --quick, --no-wait, --json PATH, --original-lua PATH).
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV=target/benchvenv
PY="${PYTHON:-python3}"

echo "==> cargo build --release" >&2
cargo build --release --quiet

if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating $VENV" >&2
    "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/pip" install --quiet --disable-pip-version-check)
echo "==> installing lupa and cffi" >&2
"${PIP[@]}" lupa cffi >&2
# The original and bioxen_vm's compatibility package are both the import package
# `pylua_bioxen_vm_lib`, so the original goes into a directory of its own, which only the
# original's worker puts on its path. (A copy of it in the venv itself is removed first:
# installing ./bindings/python over it would mix the two packages' files.)
if "$VENV/bin/pip" show --disable-pip-version-check pylua-bioxen-vm-lib >/dev/null 2>&1; then
    "$VENV/bin/pip" uninstall --quiet --disable-pip-version-check -y pylua-bioxen-vm-lib >&2
fi
ORIGINAL="$VENV/original"
if [ ! -f "$ORIGINAL/pylua_bioxen_vm_lib/lua_process.py" ] ||
   ! ls "$ORIGINAL"/pylua_bioxen_vm_lib-0.1.22.dist-info >/dev/null 2>&1; then
    echo "==> installing pylua-bioxen-vm-lib==0.1.22 into $ORIGINAL" >&2
    rm -rf "$ORIGINAL"
    "${PIP[@]}" --target "$ORIGINAL" "pylua-bioxen-vm-lib==0.1.22" >&2
fi
echo "==> installing ./bindings/python" >&2
# Reinstalled every time so that the benchmark measures the current tree.
"${PIP[@]}" --force-reinstall --no-deps ./bindings/python >&2

# The original spawns `lua -e` per call. `lua` on PATH may be 5.1 (Debian's alternatives);
# bench.py gives it lua5.4 when that is installed, as the performance anchors did.
command -v lua5.4 >/dev/null 2>&1 || echo "note: lua5.4 not found; the original runs 'lua'" >&2

exec "$VENV/bin/python" bench/python/bench.py --original-path "$ORIGINAL" "$@"
