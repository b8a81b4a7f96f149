#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine (with the Rust toolchain and
# Python 3) and runs every test: style gates, Rust (unit, integration, header drift; the
# shared behaviour suites once per VM kind), C (plain and under valgrind, C99 and C++),
# the installed-copy pkg-config build, the agent's protocol tests on lua5.1 and lua5.4,
# and the Python package on both of its backends.
set -euo pipefail
cd "$(dirname "$0")/.."

# --- system packages -------------------------------------------------------------------
# luarocks and Debian's lua-* modules: the package tests build local rocks servers from
# tests/rocks and from these (nothing is fetched from a rocks server).
packages=(gcc g++ make binutils pkg-config valgrind lua5.1 lua5.4 liblua5.1-0-dev liblua5.4-dev lua-socket libssl-dev zlib1g-dev openssh-server openssh-client openssl python3 python3-venv python3-dev nodejs luarocks lua-cjson lua-filesystem lua-inspect lua-penlight lua-lpeg)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "==> installing ${missing[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# npm ships with some builds of nodejs, and is a package of its own in Debian's.
if ! command -v npm >/dev/null 2>&1; then
    [ "$(id -u)" -eq 0 ] && sudo="" || sudo="sudo"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq npm >/dev/null
fi

# --- Rust --------------------------------------------------------------------------------
echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "==> cargo test"
cargo test --quiet 2>&1 | tee target/rust-tests.log
grep -q "test result: FAILED" target/rust-tests.log && exit 1
# The behaviour suites again on process VMs (a child lua5.4, then lua5.1, behind the agent),
# on ssh VMs (the same interpreters behind a private sshd on 127.0.0.1 that the suites
# start and stop themselves) and on xcpng VMs (deployed on the fake XAPI, whose guests are
# private sshd on 127.0.0.N).
for kind in process ssh xcpng; do
    for lua in lua5.4 lua5.1; do
        echo "==> cargo test (sessions, clusters, kinds) on $kind VMs running $lua"
        BIOXEN_TEST_VM_TYPE=$kind BIOXEN_TEST_LUA=$lua \
            cargo test --quiet --test sessions --test clusters --test kinds 2>&1 | tee target/rust-tests-$kind-$lua.log
        grep -q "test result: FAILED" target/rust-tests-$kind-$lua.log && exit 1
    done
done

# --- C -----------------------------------------------------------------------------------
echo "==> C tests and examples (plain and under valgrind)"
make --no-print-directory test-c
echo "==> install and build against the installed copy with pkg-config"
make --no-print-directory test-install

# --- Python ------------------------------------------------------------------------------
echo "==> Python venv (target/pyvenv: pytest, cffi)"
python3 -m venv target/pyvenv
target/pyvenv/bin/pip install --quiet --disable-pip-version-check pytest cffi XenAPI
echo "==> npm xen-api (target/npm), the independent JSON-RPC client of the fake XAPI"
mkdir -p target/npm
npm install --prefix target/npm --no-audit --no-fund --silent xen-api@4.7.6 >/dev/null
echo "==> the fake XAPI checked by the published clients (Python XenAPI, npm xen-api)"
python3 tests/rig/fake_xapi.py run -- target/pyvenv/bin/python tests/xapi_clients/xenapi_check.py
XEN_API_MODULE_DIR="$PWD/target/npm" python3 tests/rig/fake_xapi.py run -- node tests/xapi_clients/xen_api_check.mjs
echo "==> agent protocol tests (every lua5.x installed)"
PYTHONDONTWRITEBYTECODE=1 target/pyvenv/bin/python -m pytest -q -p no:cacheprovider tests/agent
echo "==> Python package (ctypes and cffi backends)"
bash bindings/python/run_tests.sh
echo "==> all tests passed"
