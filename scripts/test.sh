#!/usr/bin/env bash
# Runs the whole test suite: installs what the tests need, builds the `yrd` binary the black-box
# tests run, then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
# The DCAT-AP export test validates with pyshacl (SHACL shapes in schemas/vectors/dcat-ap).
python3 -c 'import pyshacl' 2>/dev/null || python3 -m pip install --quiet pyshacl==0.40.1
# The independent evidence verifier (scripts/verify_evidence.py) needs ed25519 and BLAKE3.
python3 -c 'import cryptography, blake3' 2>/dev/null || python3 -m pip install --quiet cryptography blake3
# The console's browser test drives Debian's Chromium through chromedriver.
if ! command -v chromedriver >/dev/null || ! command -v chromium >/dev/null; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
    else
        echo "console browser test: chromium and chromium-driver are missing (apt-get install chromium chromium-driver as root); it will be skipped" >&2
    fi
fi
if command -v chromedriver >/dev/null && command -v chromium >/dev/null; then
    export YRD_REQUIRE_BROWSER=1
fi
# The checked-in OpenAPI document must be valid OpenAPI 3.1 (the Rust tests check it is current).
python3 -c 'import openapi_spec_validator' 2>/dev/null || python3 -m pip install --quiet openapi-spec-validator==0.9.0
python3 -c 'import json, openapi_spec_validator as v; v.validate(json.load(open("docs/api/openapi.json"))); print("docs/api/openapi.json: valid OpenAPI 3.1")'
cargo build --locked -p yrd-node --bin yrd
cargo test --locked --workspace -- --test-threads 2
# docs/evidence.md is precise enough to verify a bundle without our code: the Python verifier,
# written from it alone, must accept the published bundle and print the same account.
for vector in schemas/vectors/evidence-bundle.json schemas/vectors/evidence-bundle-linked.json \
    schemas/vectors/evidence-bundle-charter.json; do
    diff <(target/debug/yrd verify "$vector") <(python3 scripts/verify_evidence.py "$vector")
done
# Bundles on a federation charter (schemas/vectors/README.md): both verifiers accept the same
# ones with the same output, and refuse the others (sock-puppet witness, region mismatch, broken
# chain) with the same message.
for vector in schemas/vectors/evidence-charter/*.json; do
    rust_status=0; python_status=0
    rust=$(target/debug/yrd verify "$vector" 2>&1) || rust_status=$?
    python=$(python3 scripts/verify_evidence.py "$vector" 2>&1) || python_status=$?
    if [ "$rust" != "$python" ] || [ "$rust_status" != "$python_status" ]; then
        echo "$vector: the verifiers disagree (yrd exit $rust_status, python exit $python_status)" >&2
        diff <(echo "$rust") <(echo "$python") >&2 || true
        exit 1
    fi
    case "$(basename "$vector")" in
        ok.json | before-genesis.json | refused-non-member.json) expected=0 ;;
        *) expected=1 ;;
    esac
    if [ "$rust_status" != "$expected" ]; then
        echo "$vector: exit $rust_status, expected $expected" >&2
        exit 1
    fi
done
# Pinned to a genesis (--genesis): the right one verifies, a bundle without a charter does not.
genesis=$(target/debug/yrd --json verify schemas/vectors/evidence-charter/ok.json | python3 -c 'import json, sys; print(json.load(sys.stdin)["genesis"])')
for vector in schemas/vectors/evidence-charter/ok.json schemas/vectors/evidence-bundle-linked.json; do
    diff <(target/debug/yrd verify --genesis "$genesis" "$vector" 2>&1) \
        <(python3 scripts/verify_evidence.py --genesis "$genesis" "$vector" 2>&1)
done
echo "evidence vectors: yrd verify and scripts/verify_evidence.py agree"
