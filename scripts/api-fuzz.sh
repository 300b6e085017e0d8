#!/usr/bin/env bash
# Fuzzes a running node's admin API from its own OpenAPI document with schemathesis: thousands of
# generated requests (valid and invalid) against Shanghai in a fresh devnet, checking that none
# gets a 5xx, that every status and content type is one the document declares, and that every
# answer matches its declared schema. Usage: scripts/api-fuzz.sh [MAX_EXAMPLES, default 25]
set -euo pipefail
cd "$(dirname "$0")/.."
examples="${1:-25}"
python3 -c 'import schemathesis' 2>/dev/null || python3 -m pip install --quiet schemathesis==4.32.5
cargo build --locked -q -p yrd-node --bin yrd
dir="$(mktemp -d)"
target/debug/yrd devnet --dir "$dir" >"$dir/devnet.log" 2>&1 &
devnet=$!
trap 'kill -INT $devnet 2>/dev/null; wait $devnet 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do
    addr="$(target/debug/yrd --data-dir "$dir/shanghai" --json node 2>/dev/null |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["api_address"])' 2>/dev/null)" && break
    sleep 0.2
done
[ -n "${addr:-}" ] || { echo "the devnet did not start: $dir/devnet.log" >&2; exit 1; }
st run docs/api/openapi.json --url "http://$addr" \
    -H "Authorization: Bearer $(cat "$dir/shanghai/api.token")" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples "$examples" --workers 1
target/debug/yrd --data-dir "$dir/shanghai" health
