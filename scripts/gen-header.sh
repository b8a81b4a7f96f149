#!/usr/bin/env bash
# Regenerates include/bioxen_vm.h with the cbindgen version pinned in Cargo.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
BIOXEN_VM_BLESS=1 cargo test --quiet --test header -- header_is_current
echo "include/bioxen_vm.h regenerated"
