#!/usr/bin/env bash
# Runs each cargo-fuzz target (fuzz/fuzz_targets/) for SECONDS (default 60), one after the
# other, single process each, on stable Rust (libFuzzer without a sanitizer), and prints the
# executions and findings per target. Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
# CI runs a smoke of it (`scripts/fuzz.sh 10`). The corpus is seeded from the repository's own
# data (fuzz/seed.py) and kept in fuzz/corpus/TARGET between runs; every input in
# fuzz/regressions/TARGET (past crashes) is replayed first on each run. A finding is left in
# fuzz/artifacts/TARGET/ and makes the script fail; reproduce it with
# `cargo fuzz run TARGET --sanitizer none -a fuzz/artifacts/TARGET/crash-...` from fuzz/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-60}"
shift || true
# Flags shared by build and run, so `run` never rebuilds with other ones. Debug assertions and
# overflow checks on: an overflow is a finding. 16 codegen units: a quicker build in CI.
flags=(--sanitizer none --debug-assertions --codegen-units 16)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
python3 seed.py corpus
cargo fuzz build "${flags[@]}"
printf '%-16s %12s %10s %8s  %s\n' target executions exec/s corpus findings > results.txt
failed=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "regressions/$t" "artifacts/$t"
    before=$(find "artifacts/$t" -type f | wc -l)
    log="artifacts/$t.log"
    # -timeout: an input that takes 10 s is a finding (a peer could send it again and again);
    # -rss_limit_mb: so is one that needs 2 GiB.
    status=0
    cargo fuzz run "${flags[@]}" "$t" "corpus/$t" "regressions/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1 || status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    corpus=$(find "corpus/$t" -type f | wc -l)
    new=$(($(find "artifacts/$t" -type f | wc -l) - before))
    if [ "$status" -ne 0 ] || [ "$new" -gt 0 ]; then
        failed=1
        finding="$new new in fuzz/artifacts/$t (exit $status; log fuzz/$log)"
        grep -m3 -E "panicked|ERROR: libFuzzer|SUMMARY" "$log" >&2 || tail -20 "$log" >&2
    else
        finding=0
    fi
    printf '%-16s %12s %10s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "$corpus" "$finding" | tee -a results.txt
done
echo
cat results.txt
exit "$failed"
