#!/usr/bin/env bash
# Cache-hit path: POST /ai/portfolio_analysis with one body (every request after the first is
# an L1 hit, answered by the owner shard, half of them after a hop) against the floor server
# answering GET /health, same cores, alternating wrk rounds.
#
# Usage: bench/scripts/ai_hit.sh [ROUNDS] [SECONDS] [CONNECTIONS] [CORES]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-5}; SECS=${2:-8}; CONNS=${3:-64}; CORES=${4:-2}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
cargo build --release -p atlas -p atlas-bench >/dev/null 2>&1
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$out"' EXIT
start() { local name=$1; shift; "$@" >"$out/$name.out" 2>"$out/$name.err" &
  for _ in $(seq 100); do grep -q "listening on" "$out/$name.out" 2>/dev/null && break; sleep 0.05; done
  grep -o 'http://[0-9.:]*' "$out/$name.out" | head -1; }
wrk_run() { # url [script] → "rps p99_ms"
  local url=$1; shift
  wrk -t1 -c"$CONNS" -d"${SECS}s" --latency "$@" "$url" 2>/dev/null | awk '
    /Requests\/sec/ {rps=$2}
    /Non-2xx/ {bad=$NF}
    $1=="99%" {v=$2; if (v ~ /us$/) {sub("us","",v); v=v/1000} else if (v ~ /ms$/) {sub("ms","",v)} else if (v ~ /s$/) {sub("s","",v); v=v*1000}; p99=v}
    END {if (bad) {print "ERROR non-2xx " bad; exit 1}; printf "%s %s\n", rps, p99}'
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
