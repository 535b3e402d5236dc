#!/usr/bin/env bash
# Batching gain: one `atlas model-endpoint --latency-ms 20 --per-item-ms 1` (an emulated
# accelerator that runs one call at a time), the gateway routing to it alone, distinct keys
# (no hits), closed-loop wrk at C connections: throughput and latency at BATCH_SIZE=32
# against BATCH_SIZE=1.
#
# Usage: bench/scripts/batching_gain.sh [SECONDS] [CONNECTIONS] [ROUNDS]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.."
SECS=${1:-10}; CONNS=${2:-64}; ROUNDS=${3:-3}
cargo build --release -p atlas >/dev/null 2>&1
A=target/release/atlas
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$out"' EXIT
$A model-endpoint --listen 127.0.0.1:0 --cores 1 --latency-ms 20 --per-item-ms 1 --concurrency 1 >"$out/m.out" 2>/dev/null &
model=$(wait_listening "$out/m.out")
run() { # batch_size → "rps p50 p95 p99"
  ATLAS_LOG=warn ATLAS_EMBEDDED=false ATLAS_ENDPOINTS="m=$model" BATCH_SIZE=$1 \
    $A serve --listen 127.0.0.1:0 --cores 1 >"$out/g$1.out" 2>/dev/null &
  local pid=$!
  local gw; gw=$(wait_listening "$out/g$1.out")
  wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -s bench/scripts/distinct_keys.lua "$gw" 2>/dev/null | wrk_summary
  kill $pid; wait $pid 2>/dev/null || true
}
echo "round batch rps p50_ms p90_ms p99_ms non2xx"
for r in $(seq "$ROUNDS"); do
  echo "$r 1 $(run 1)"
  echo "$r 32 $(run 32)"
done | tee "$out/results"
python3 - "$out/results" <<'PY'
import sys, statistics as st
rows=[l.split() for l in open(sys.argv[1]) if l[0].isdigit()]
med=lambda b,c: st.median(float(r[c]) for r in rows if r[1]==b)
print(f"median rps: batch1 {med('1',2):.0f}  batch32 {med('32',2):.0f}  gain {med('32',2)/med('1',2):.1f}x")
print(f"median p90: batch1 {med('1',4):.0f} ms  batch32 {med('32',4):.0f} ms")
PY
