#!/usr/bin/env bash
# Cache-hit path: POST /ai/portfolio_analysis with one body (every request after the first is
# an L1 hit, answered by the owner shard, half of them after a hop) against the floor server
# answering GET /health, same cores, alternating wrk rounds.
#
# Usage: bench/scripts/ai_hit.sh [ROUNDS] [SECONDS] [CONNECTIONS] [CORES]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.."
ROUNDS=${1:-5}; SECS=${2:-8}; CONNS=${3:-64}; CORES=${4:-2}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
cargo build --release -p atlas -p atlas-bench >/dev/null 2>&1
out=$(mktemp -d)
trap 'kill $(jobs -p) $(cat "$out/pids" 2>/dev/null) 2>/dev/null || true; rm -rf "$out"' EXIT
start() { local name=$1; shift; "$@" >"$out/$name.out" 2>"$out/$name.err" & echo $! >>"$out/pids"; wait_listening "$out/$name.out"; }
wrk_run() { # url [script] → "rps p99_ms", failing on non-2xx answers
  local url=$1; shift
  local r; r=$(wrk -t1 -c"$CONNS" -d"${SECS}s" --latency "$@" "$url" 2>/dev/null | wrk_summary)
  set -- $r
  if [ "$5" != 0 ]; then echo "ERROR non-2xx $5"; return 1; fi
  echo "$1 $4"
}
atlas=$(ATLAS_LOG=warn start atlas target/release/atlas serve --listen 127.0.0.1:0 --cores "$CORES")
floor=$(start floor target/release/atlas-floor 127.0.0.1:0 "$CORES")
wrk -t1 -c"$CONNS" -d2s -s bench/scripts/ai_hit.lua "$atlas" >/dev/null 2>&1
wrk -t1 -c"$CONNS" -d2s "$floor/health" >/dev/null 2>&1
echo "round server rps p99_ms"
for r in $(seq "$ROUNDS"); do
  echo "$r floor $(wrk_run "$floor/health")"
  echo "$r atlas $(wrk_run "$atlas" -s bench/scripts/ai_hit.lua)"
done | tee "$out/results"
curl -s "$atlas/health/detailed" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("hits per shard:", [s["cache"]["hits"] for s in d["shards"]], "computations:", sum(s["model_computations"] for s in d["shards"]))'
python3 - "$out/results" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1]) if l.strip() and not l.startswith("round")]
med = lambda n, c: st.median(float(r[c]) for r in rows if r[1] == n)
ratios = [float(a[2]) / float(f[2]) for f, a in zip(rows[0::2], rows[1::2])]
print(f"median rps: floor {med('floor',2):.0f}  atlas {med('atlas',2):.0f}  ratio {med('atlas',2)/med('floor',2):.3f} (per round {', '.join(f'{x:.3f}' for x in ratios)})")
print(f"median p99: floor {med('floor',3):.3f} ms  atlas {med('atlas',3):.3f} ms")
PY
