#!/usr/bin/env bash
# The Redis L2 (issue 8), three comparisons in one run, one shard per Atlas instance:
#  1. L2 hit vs L1 hit: KEYS distinct results computed on instance A (stored to Redis); then
#     the same cycle of keys on A (all L1 hits) and on B, whose 1 MiB L1 holds a few percent
#     of them (so nearly every request is an L2 hit). Alternating wrk rounds. B's lookup budget
#     is 50 ms (B_TIMEOUT_MS): on this 2-core machine wrk, Redis and both servers share the
#     cores, and the default 5 ms would let scheduling delays open B's breaker, mixing model
#     computations into what is meant to measure L2 hits.
#  2. Hit path with Redis healthy vs stopped: one body (L1 hits) on A, Redis up, then killed.
#  3. Two instances sharing one Redis vs two without: hit rate of a random workload split
#     over two instances (atlas-bench load, KEYSPACE keys, each instance half the users).
#
# Usage: [KEYS=20000] [B_TIMEOUT_MS=50] bench/scripts/l2.sh [ROUNDS] [SECONDS] [CONNECTIONS]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.."
ROUNDS=${1:-3}; SECS=${2:-5}; CONNS=${3:-32}
export KEYS=${KEYS:-20000}
for t in wrk redis-server redis-cli; do command -v $t >/dev/null || { echo "needs $t" >&2; exit 1; }; done
cargo build --release -p atlas -p atlas-bench >/dev/null 2>&1
out=$(mktemp -d)
trap 'kill $(jobs -p) $(cat "$out/pids" 2>/dev/null) 2>/dev/null || true; redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$out"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis_up() { redis-server --port "$port" --save "" --appendonly no --daemonize yes --logfile "$out/redis.log" >/dev/null;
  for _ in $(seq 50); do redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && return; sleep 0.1; done; }
redis_up
start() { local name=$1; shift; "$@" >"$out/$name.out" 2>"$out/$name.err" & echo $! >>"$out/pids"; wait_listening "$out/$name.out"; }
R=redis://127.0.0.1:$port
a=$(ATLAS_LOG=warn ATLAS_REDIS_URL=$R start a target/release/atlas serve --listen 127.0.0.1:0 --cores 1)
b=$(ATLAS_LOG=warn ATLAS_REDIS_URL=$R ATLAS_REDIS_TIMEOUT_MS=${B_TIMEOUT_MS:-50} ATLAS_CACHE_MAX_BYTES=1048576 start b target/release/atlas serve --listen 127.0.0.1:0 --cores 1)
wrk_run() { local url=$1; shift
  local r; r=$(wrk -t1 -c"$CONNS" -d"${SECS}s" --latency "$@" "$url" 2>/dev/null | wrk_summary); set -- $r
  [ "$5" = 0 ] || { echo "ERROR non-2xx $5"; return 1; }; echo "$1 $2 $4"; }
metric() { curl -s "$1/metrics" | awk -v s="$2" 'index($0, s" ")==1 {print $2}'; }

echo "== 1. L2 hit vs L1 hit ($KEYS keys)"
# Populate: enough requests on A that every key was computed and stored.
while [ "$(redis-cli -p "$port" dbsize)" -lt "$KEYS" ]; do
  wrk -t1 -c"$CONNS" -d3s -s bench/scripts/cycle_keys.lua "$a" >/dev/null 2>&1
done
echo "redis keys: $(redis-cli -p "$port" dbsize) (results + index sets)"
wrk -t1 -c"$CONNS" -d2s -s bench/scripts/cycle_keys.lua "$b" >/dev/null 2>&1
echo "round server rps p50_ms p99_ms"
for r in $(seq "$ROUNDS"); do
  echo "$r l1(A) $(wrk_run "$a" -s bench/scripts/cycle_keys.lua)"
  echo "$r l2(B) $(wrk_run "$b" -s bench/scripts/cycle_keys.lua)"
done | tee "$out/one"
echo "B: l2 hits $(metric "$b" 'ai_l2_operations_total{result="hit"}') misses $(metric "$b" 'ai_l2_operations_total{result="miss"}') timeouts $(metric "$b" 'ai_l2_operations_total{result="timeout"}') skipped $(metric "$b" 'ai_l2_operations_total{result="skipped"}') model computations $(metric "$b" ai_model_computations_total)"

echo "== 2. hit path, Redis healthy vs stopped"
echo "round redis rps p50_ms p99_ms"
for r in $(seq "$ROUNDS"); do
  echo "$r up $(wrk_run "$a" -s bench/scripts/ai_hit.lua)"
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; sleep 0.3
  echo "$r down $(wrk_run "$a" -s bench/scripts/ai_hit.lua)"
  redis_up
done | tee "$out/two"

echo "== 3. two instances, shared Redis vs none (hit rate of one random workload split in two)"
load() { target/release/atlas-bench load --url "$1" --distinct --operations risk_assessment=1 --keyspace 2000 \
  --users 16 --user-ids 1 --requests 250 --seed "$2" --quiet --json "$out/$3.json" --target-hit-rate 0 >/dev/null 2>&1 || true
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['overall']['hit_rate'])" "$out/$3.json" 2>/dev/null || echo "?"; }
for mode in shared none; do
  redis-cli -p "$port" flushall >/dev/null
  url=""; [ $mode = shared ] && url=$R
  x=$(ATLAS_LOG=warn ATLAS_REDIS_URL=$url ATLAS_REDIS_TIMEOUT_MS=50 start x-$mode target/release/atlas serve --listen 127.0.0.1:0 --cores 1)
  y=$(ATLAS_LOG=warn ATLAS_REDIS_URL=$url ATLAS_REDIS_TIMEOUT_MS=50 start y-$mode target/release/atlas serve --listen 127.0.0.1:0 --cores 1)
  hx=$(load "$x" 1 x-$mode); sleep 0.5; hy=$(load "$y" 1 y-$mode)
  echo "$mode: hit rate instance 1 $hx, instance 2 (the same workload after it) $hy"
done
