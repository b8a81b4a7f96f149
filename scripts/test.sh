#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine (with the Rust toolchain) and runs
# every test: style gates, Rust (unit, integration, header drift), C (plain and under
# valgrind, C99 and C++), and the installed-copy pkg-config build.
set -euo pipefail
cd "$(dirname "$0")/.."

# --- system packages -------------------------------------------------------------------
packages=(gcc g++ make binutils pkg-config valgrind)
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

# --- Rust --------------------------------------------------------------------------------
echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "==> cargo test"
cargo test --quiet 2>&1 | tee target/rust-tests.log
grep -q "test result: FAILED" target/rust-tests.log && exit 1

# --- C -----------------------------------------------------------------------------------
echo "==> C tests and examples (plain and under valgrind)"
make --no-print-directory test-c
echo "==> install and build against the installed copy with pkg-config"
make --no-print-directory test-install
echo "==> all tests passed"
