#!/usr/bin/env bash
# Starts the local four-province devnet (Shanghai, Jiangsu, Zhejiang, Anhui) on loopback.
# Extra arguments go to `yrd devnet` (e.g. --nodes 8 --dir /tmp/yrd-devnet).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p yrd-node --bin yrd
exec target/release/yrd devnet "$@"
