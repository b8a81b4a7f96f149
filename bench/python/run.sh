#!/usr/bin/env bash
# Side-by-side Python benchmark: bioxen_vm (ctypes and cffi backends) against lupa and the
# original pylua_bioxen_vm_lib 0.1.22. Builds the library, makes a venv under
# target/benchvenv with lupa, pylua-bioxen-vm-lib==0.1.22 and ./bindings/python, and runs
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
echo "==> installing lupa, pylua-bioxen-vm-lib==0.1.22, cffi and ./bindings/python" >&2
# The original prints nothing at install time; pip's own output goes to stderr.
"$VENV/bin/pip" install --quiet --disable-pip-version-check \
    lupa "pylua-bioxen-vm-lib==0.1.22" cffi >&2
# Reinstalled every time so that the benchmark measures the current tree.
"$VENV/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps \
    ./bindings/python >&2
"$VENV/bin/pip" install --quiet --disable-pip-version-check ./bindings/python >&2

# The original spawns `lua -e` per call. `lua` on PATH may be 5.1 (Debian's alternatives);
# bench.py gives it lua5.4 when that is installed, as the performance anchors did.
command -v lua5.4 >/dev/null 2>&1 || echo "note: lua5.4 not found; the original runs 'lua'" >&2

exec "$VENV/bin/python" bench/python/bench.py "$@"
