#!/usr/bin/env bash
# Installs the bioxen_vm Python package into a venv under target/ and runs its test suite
# three times: on each native backend (ctypes, then cffi) with the compiled execution path
# off, then in the default configuration (cffi and bioxen_vm._fastcall); fails if any fails.
#
#   bash bindings/python/run_tests.sh [PYTEST ARGS...]
#
# - The venv is target/pyvenv (created if missing; never under $HOME). pip's cache goes to
#   target/pip-cache.
# - `pip install ./bindings/python` runs `cargo build --release` and bundles the library;
#   the suite then checks that the installed package loads exactly that freshly built
#   library (same SHA-256), from the installed location, and fails loudly otherwise.
# - Tests run from target/ with bytecode writing off and pytest's cache disabled: nothing
#   is written to the current directory or $HOME.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"

target_dir=${CARGO_TARGET_DIR:-$repo/target}
case "$target_dir" in /*) ;; *) target_dir=$repo/$target_dir ;; esac
venv=$repo/target/pyvenv
export PIP_CACHE_DIR=$repo/target/pip-cache
export PIP_DISABLE_PIP_VERSION_CHECK=1
export PYTHONDONTWRITEBYTECODE=1
unset BIOXEN_VM_LIB BIOXEN_VM_BACKEND BIOXEN_VM_FASTCALL PYLUA_DEBUG BIOXEN_VM_LOG PYTHONPATH || true

mkdir -p "$repo/target"
if [ ! -x "$venv/bin/python" ]; then
    echo "==> creating $venv"
    python3 -m venv "$venv"
fi
# The compiled fast path must build cleanly (setup.py builds it with warnings on, but a
# failed build there only leaves it out; here a warning fails the run).
echo "==> cc -std=c99 -Wall -Wextra -Werror bioxen_vm/_fastcall.c"
py_include=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
"${CC:-cc}" -std=c99 -Wall -Wextra -Werror -fsyntax-only -I"$py_include" -I"$repo/include" \
    "$here/bioxen_vm/_fastcall.c"
echo "==> pip install pytest cffi ./bindings/python (builds libbioxen_vm)"
"$venv/bin/pip" install --quiet pytest cffi
"$venv/bin/pip" install --quiet --force-reinstall --no-deps "$here"

case "$(uname -s)" in
    Darwin) libfile=libbioxen_vm.dylib ;;
    *) libfile=libbioxen_vm.so ;;
esac
fresh=$target_dir/release/$libfile
if [ ! -f "$fresh" ]; then
    echo "run_tests.sh: $fresh does not exist after the build" >&2
    exit 1
fi
fresh_sha=$(sha256sum "$fresh" | cut -d' ' -f1)

# The installed package must load the library that was just built, from its installation.
cd "$repo/target"
loaded=$("$venv/bin/python" - <<'PY'
import hashlib, bioxen_vm
with open(bioxen_vm.LIBRARY_PATH, "rb") as f:
    print(bioxen_vm.LIBRARY_PATH, hashlib.sha256(f.read()).hexdigest(), bioxen_vm.__file__)
PY
)
read -r loaded_path loaded_sha loaded_init <<<"$loaded"
if [ "$loaded_sha" != "$fresh_sha" ]; then
    echo "!!! run_tests.sh: the installed bioxen_vm loaded $loaded_path (sha256 $loaded_sha)," >&2
    echo "!!! not the freshly built $fresh (sha256 $fresh_sha)" >&2
    exit 1
fi
case "$loaded_init" in
    "$here"/*)
        echo "!!! run_tests.sh: bioxen_vm was imported from the source tree ($loaded_init)" >&2
        exit 1 ;;
esac
echo "==> installed package: $loaded_init, library $loaded_path (sha256 ${loaded_sha:0:12}...)"

# Three configurations: each backend on its own (the compiled fast path off), then the
# default one (cffi with executions through bioxen_vm._fastcall, which the install must
# have built: a silent fallback would make that run a copy of the second).
status=0
for config in ctypes:0 cffi:0 cffi:1; do
    backend=${config%:*}
    fastcall=${config#*:}
    echo "==> pytest with BIOXEN_VM_BACKEND=$backend BIOXEN_VM_FASTCALL=$fastcall"
    if ! BIOXEN_VM_BACKEND=$backend BIOXEN_VM_EXPECT_BACKEND=$backend \
        BIOXEN_VM_FASTCALL=$fastcall BIOXEN_VM_EXPECT_FASTCALL=$fastcall \
        BIOXEN_VM_EXPECT_FASTCALL_BUILT=1 \
        BIOXEN_VM_EXPECT_LIB_SHA256=$fresh_sha BIOXEN_VM_REQUIRE_INSTALLED=1 \
        "$venv/bin/python" -m pytest -q -p no:cacheprovider --rootdir "$here" \
        -c "$here/pyproject.toml" "$here/tests" "$@"; then
        echo "!!! run_tests.sh: the suite failed with $backend, fast path $fastcall" >&2
        status=1
    fi
done
if [ "$status" -eq 0 ]; then
    echo "==> Python tests passed with both backends, with and without the fast path"
fi
exit "$status"
