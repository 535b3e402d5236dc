#!/usr/bin/env bash
# The brief's load test, on Atlas: a model tier with 200 ms inference (`atlas model-endpoint
# --latency-ms 200 --per-item-ms 1 --concurrency 8`), the gateway routing to it on 2 shards,
# and `atlas-bench load` as 1000 users (100 distinct user ids, 3 inputs per operation each,
# Zipf 1.1: a realistic repeat rate) at the brief's sustained 1500 req/s, open loop.
#
# Usage: bench/scripts/brief_load.sh [ROUNDS] [SECONDS] [RATE]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.."
ROUNDS=${1:-3}; SECS=${2:-20}; RATE=${3:-1500}
cargo build --release -p atlas -p atlas-bench >/dev/null 2>&1
A=target/release/atlas; L=target/release/atlas-bench
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$out"' EXIT
for r in $(seq "$ROUNDS"); do
  $A model-endpoint --listen 127.0.0.1:0 --cores 1 --latency-ms 200 --per-item-ms 1 --concurrency 8 >"$out/m.out" 2>/dev/null &
  mpid=$!; model=$(wait_listening "$out/m.out")
  ATLAS_LOG=warn ATLAS_EMBEDDED=false ATLAS_ENDPOINTS="m=$model;concurrency=8" $A serve --listen 127.0.0.1:0 --cores 2 >"$out/g.out" 2>/dev/null &
  gpid=$!; gw=$(wait_listening "$out/g.out")
  $L load --url "$gw" --distinct --rate "$RATE" --duration "$SECS" --connections 1000 --users 1000 --user-ids 100 \
    --keyspace 3 --zipf 1.1 --target-p95 400 --json "$out/r$r.json" --server-pid $gpid --quiet >/dev/null 2>&1 || true
  kill $gpid $mpid; wait $gpid $mpid 2>/dev/null || true
  python3 - "$out/r$r.json" "$r" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
o = d["overall"]
l = o["latency_ms"]
print(f"round {sys.argv[2]}: {o['throughput_rps']:.0f} req/s  p50 {l['p50']:.2f} ms  p95 {l['p95']:.1f} ms  p99 {l['p99']:.1f} ms  "
      f"success {100*o['success_rate']:.2f} %  hit {100*o['hit_rate']:.1f} %  batch {o['mean_batch_size']:.1f}  "
      f"gen {d['cpu']['generator_us_per_request']:.0f} us/req  server {d['cpu']['server_us_per_request']:.0f} us/req")
PY
done
