#!/usr/bin/env bash
# Runs the whole test suite: installs what the tests need, builds the `yrd` binary the black-box
# tests run, then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
# The DCAT-AP export test validates with pyshacl (SHACL shapes in ../shared/vectors/dcat-ap).
python3 -c 'import pyshacl' 2>/dev/null || python3 -m pip install --quiet pyshacl==0.40.1
# The independent evidence verifier (scripts/verify_evidence.py) needs ed25519 and BLAKE3.
python3 -c 'import cryptography, blake3' 2>/dev/null || python3 -m pip install --quiet cryptography blake3
cargo build --locked -p yrd-node --bin yrd
cargo test --locked --workspace -- --test-threads 2
# docs/evidence.md is precise enough to verify a bundle without our code: the Python verifier,
# written from it alone, must accept the published bundle and print the same account.
diff <(target/debug/yrd verify schemas/vectors/evidence-bundle.json) \
     <(python3 scripts/verify_evidence.py schemas/vectors/evidence-bundle.json)
echo "evidence vector: yrd verify and scripts/verify_evidence.py agree"
