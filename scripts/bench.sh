#!/usr/bin/env bash
# Runs the project's benchmarks on one release build and prints their figures.
# Figures are medians (or p50/p99) of several runs, measured side by side in this one run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p yrd-node --bin yrd -p yrd-tests --bin bench-catalogue --bin bench-provenance
echo "== machine"
echo "$(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "== node: cold start and idle RSS"
python3 scripts/bench_node.py target/release/yrd 5
echo "== catalogue: propagation (16 nodes, 50 changes) and search (10,000 offers)"
target/release/bench-catalogue all --nodes "${NODES:-16}" --changes "${CHANGES:-50}"
echo "== transfer: yrd fetch vs scp vs raw TCP (${TRANSFER_MIB:-1024} MiB)"
python3 scripts/bench_transfer.py target/release/yrd --size-mib "${TRANSFER_MIB:-1024}"
echo "== provenance: durable appends, proofs and queries in a ${PROV_RECORDS:-1000000}-record log, full verification"
target/release/bench-provenance all --records "${PROV_RECORDS:-1000000}"
echo "== simulation: catalogue convergence at 16 and 100 nodes (yrd sim)"
for n in 16 100; do
  target/release/yrd sim --scenario scripts/scenarios/delta-100.toml --nodes "$n" --report "/tmp/yrd-sim-$n.json" | head -2
done
