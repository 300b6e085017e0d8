#!/usr/bin/env bash
# Runs the whole test suite: installs what the tests need, builds the `yrd` binary the black-box
# tests run, then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
# The DCAT-AP export test validates with pyshacl (SHACL shapes in ../shared/vectors/dcat-ap).
python3 -c 'import pyshacl' 2>/dev/null || python3 -m pip install --quiet pyshacl==0.40.1
cargo build --locked -p yrd-node --bin yrd
cargo test --locked --workspace -- --test-threads 2
