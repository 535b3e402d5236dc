#!/usr/bin/env bash
# Warm restart (issue 8): the hit rate of the same workload right after a restart, with the
# L1 snapshot (ATLAS_STATE_DIR) and without (a cold start). One workload (atlas-bench load,
# every operation, KEYSPACE inputs each) warms an instance, SIGTERM writes the snapshots, a
# new instance starts, and the same workload runs again; the cold run uses a fresh instance.
#
# Usage: [KEYSPACE=1000] bench/scripts/restart.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.."
KEYSPACE=${KEYSPACE:-1000}
cargo build --release -p atlas -p atlas-bench >/dev/null 2>&1
out=$(mktemp -d); state="$out/state"
trap 'kill $(jobs -p) $(cat "$out/pids" 2>/dev/null) 2>/dev/null || true; rm -rf "$out"' EXIT
start() { local name=$1; shift; "$@" >"$out/$name.out" 2>"$out/$name.err" & echo $! >"$out/$name.pid"; echo $! >>"$out/pids"; wait_listening "$out/$name.out"; }
load() { target/release/atlas-bench load --url "$1" --distinct --keyspace "$KEYSPACE" --users 16 --user-ids 4 \
  --requests 500 --seed 7 --quiet --target-hit-rate 0 --json "$out/$2.json" >/dev/null 2>&1 || true
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(round(d['overall']['hit_rate'],4))" "$out/$2.json"; }
a=$(ATLAS_LOG=info ATLAS_STATE_DIR=$state start a target/release/atlas serve --listen 127.0.0.1:0 --cores 2)
echo "first run (cold): hit rate $(load "$a" first)"
kill -TERM "$(cat "$out/a.pid")"
for _ in $(seq 200); do grep -q "stopped" "$out/a.err" && break; sleep 0.05; done
grep -h 'snapshot: shard' "$out/a.err" | sed 's/.*snapshot: /  /'
b=$(ATLAS_LOG=info ATLAS_STATE_DIR=$state start b target/release/atlas serve --listen 127.0.0.1:0 --cores 2)
grep -h "restored" "$out/b.err" | sed 's/.*shard/  shard/'
echo "after a warm restart: hit rate $(load "$b" warm)"
c=$(ATLAS_LOG=warn start c target/release/atlas serve --listen 127.0.0.1:0 --cores 2)
echo "after a cold restart: hit rate $(load "$c" cold)"
