#!/usr/bin/env bash
# Runs every benchmark of the project on one release build, prints each one's figures as it goes,
# then one table of them all (scripts/bench_report.py), and writes that table with the machine's
# description into docs/benchmarks.md (between its `bench.sh summary` markers).
# Figures are medians of several runs (or p50/p99 over many samples), measured side by side in
# this one run. Run it on an otherwise idle machine: it needs about 50 minutes on 2 cores.
#
# Environment: TRANSFER_MIB (1024), TRANSFER_RUNS (3), WAN_MIB (1024), WAN_RUNS (3), PROV_RECORDS (1000000), SIM_SIZES
# ("16 100"), NODES/CHANGES (bench-catalogue: 16/50), OUT (figures dir, default a temp dir),
# NO_WRITE=1 (print the table, leave docs/benchmarks.md alone), SOAK_SECS (300), QUERY_RECORDS
# (1000000), QUERY_SECS (20: each 64-caller run of bench_query.py).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/yrd-bench.XXXXXX")}
mkdir -p "$OUT"
cargo build --release --locked -p yrd-node --bin yrd \
  -p yrd-tests --bin bench-catalogue --bin bench-provenance --bin bench-validate \
  --bin bench-query-index --bin bench-query --bin wan-link

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs || true)
echo "Machine: $(nproc) cores ($cpu), $(free -g | awk '/Mem:/{print $2}') GiB RAM, $(uname -sr);" \
  "$(target/release/yrd --version); run $(date -u +%Y-%m-%dT%H:%MZ)." >"$OUT/machine.txt"
echo "== machine"
cat "$OUT/machine.txt"

echo "== node: cold start and idle RSS (median of 5)"
python3 scripts/bench_node.py target/release/yrd 5 "$OUT/node.json"

echo "== schema validation rate (one core)"
target/release/bench-validate --records 200000 --runs 5 --json-out "$OUT/validate.json"

echo "== query services: key index of 1,000,000 records (build, size, keyed lookups)"
target/release/bench-query-index --records 1000000 --lookups 10000 \
  --json-out "$OUT/query-index.json"

echo "== query services: keyed lookups end to end between two nodes (${QUERY_RECORDS:-1000000} records), 1 and 64 callers, vs plain HTTPS"
python3 scripts/bench_query.py target/release/yrd --records "${QUERY_RECORDS:-1000000}" \
  --secs "${QUERY_SECS:-20}" --json-out "$OUT/query.json" ||
  echo "query benchmark failed (exit $?)"

echo "== catalogue: propagation (${NODES:-16} nodes, ${CHANGES:-50} changes) and search (10,000 offers)"
target/release/bench-catalogue all --nodes "${NODES:-16}" --changes "${CHANGES:-50}" \
  --json-out "$OUT/catalogue.json"

echo "== transfer: yrd fetch vs scp vs raw TCP (${TRANSFER_MIB:-1024} MiB, ${TRANSFER_RUNS:-3} runs)"
python3 scripts/bench_transfer.py target/release/yrd --size-mib "${TRANSFER_MIB:-1024}" \
  --runs "${TRANSFER_RUNS:-3}" --json-out "$OUT/transfer.json"

echo "== transfer over an emulated WAN (wan40: 40 ms RTT; wan80-loss: 80 ms, 0.1 % loss; 1 Gbit/s): yrd fetch vs scp vs raw TCP (${WAN_MIB:-1024} MiB, ${WAN_RUNS:-3} runs)"
# Needs root (namespaces, TUN devices); prints SKIP otherwise and the summary shows "not run".
python3 scripts/bench_wan.py target/release/yrd --size-mib "${WAN_MIB:-1024}" \
  --runs "${WAN_RUNS:-3}" --json-out "$OUT/wan.json" || echo "WAN benchmark failed (exit $?)"

echo "== provenance: durable appends, proofs and queries in a ${PROV_RECORDS:-1000000}-record log, full verification"
target/release/bench-provenance all --records "${PROV_RECORDS:-1000000}" \
  --json-out "$OUT/provenance.json"

for n in ${SIM_SIZES:-16 100 200}; do
  echo "== simulation: catalogue convergence at $n nodes (yrd sim, scripts/scenarios/delta-100.toml)"
  # A failed assertion is a figure too (the table shows it): the suite goes on.
  target/release/yrd sim --scenario scripts/scenarios/delta-100.toml --nodes "$n" \
    --report "$OUT/sim-$n.json" >"$OUT/sim-$n.txt" 2>"$OUT/sim-$n.log" ||
    echo "yrd sim at $n nodes failed (exit $?); its log: $OUT/sim-$n.log"
  grep -vE '^([0-9]|node )' "$OUT/sim-$n.txt" | head -n 20 || true  # the per-node rows are in the JSON
done

echo "== simulation: charter propagation at 100 members (yrd sim, scripts/scenarios/charter-100.toml)"
target/release/yrd sim --scenario scripts/scenarios/charter-100.toml \
  --report "$OUT/sim-charter-100.json" >"$OUT/sim-charter-100.txt" 2>"$OUT/sim-charter-100.log" ||
  echo "yrd sim charter-100 failed (exit $?); its log: $OUT/sim-charter-100.log"
grep -vE '^([0-9]|node )' "$OUT/sim-charter-100.txt" | head -n 12 || true

echo "== memory: devnet soak (${SOAK_SECS:-300} s: a version every 2 s, 3 subscribers, 8 API clients)"
# Its figures (RSS curve, slope after warm-up) are in $OUT/soak.json; docs/benchmarks.md,
# "Memory over time", reads them. A failed soak (errors, undelivered versions) is a figure too.
python3 scripts/soak.py target/release/yrd --secs "${SOAK_SECS:-300}" --json-out "$OUT/soak.json" |
  tail -n 25 || echo "soak failed (exit $?); see $OUT/soak.json"

if [ "${NO_WRITE:-0}" = 1 ]; then
  python3 scripts/bench_report.py "$OUT"
else
  python3 scripts/bench_report.py "$OUT" --write docs/benchmarks.md
fi
echo "figures: $OUT"
