#!/usr/bin/env bash
# Cache-hit path through GraphQL next to REST: one Atlas, the same portfolio_analysis entry
# asked for by POST /ai/portfolio_analysis (ai_hit.lua) and by one /graphql field
# (graphql_hit.lua), alternating wrk rounds.
#
# Usage: bench/scripts/graphql_hit.sh [ROUNDS] [SECONDS] [CONNECTIONS] [CORES]
# PROFILE=release by default; ATLAS_BIN=path uses an already built binary.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.."
ROUNDS=${1:-5}; SECS=${2:-8}; CONNS=${3:-64}; CORES=${4:-2}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
if [ -z "${ATLAS_BIN:-}" ]; then
  cargo build --release -p atlas >/dev/null 2>&1
  ATLAS_BIN=${CARGO_TARGET_DIR:-target}/release/atlas
fi
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
atlas=$(ATLAS_LOG=warn start atlas "$ATLAS_BIN" serve --listen 127.0.0.1:0 --cores "$CORES")
# Fill the entry through REST, check GraphQL reads it as a hit, then warm both paths.
wrk -t1 -c"$CONNS" -d2s -s bench/scripts/ai_hit.lua "$atlas" >/dev/null 2>&1
body=$(cat <<'JSON'
{"query":"query($i: PortfolioAnalysisInput) { portfolioAnalysis(userId: \"bench-user\", input: $i) { meta { cache } } }","variables":{"i":{"holdings":[{"symbol":"AAPL","weight":0.6,"prices":[100,102,101,105,107,106,108,110]},{"symbol":"MSFT","weight":0.4,"prices":[200,198,202,204,203,207,209,208]}]}}}
JSON
)
curl -s -H 'Content-Type: application/json' -d "$body" "$atlas/graphql" | grep -q '"cache":"hit"' \
  || { echo "GraphQL did not read the REST entry as a hit" >&2; exit 1; }
wrk -t1 -c"$CONNS" -d2s -s bench/scripts/graphql_hit.lua "$atlas" >/dev/null 2>&1
echo "round path rps p99_ms"
for r in $(seq "$ROUNDS"); do
  echo "$r rest $(wrk_run "$atlas" -s bench/scripts/ai_hit.lua)"
  echo "$r graphql $(wrk_run "$atlas" -s bench/scripts/graphql_hit.lua)"
done | tee "$out/results"
curl -s "$atlas/health/detailed" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("hits per shard:", [s["cache"]["hits"] for s in d["shards"]], "computations:", sum(s["model_computations"] for s in d["shards"]))'
python3 - "$out/results" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1]) if l.strip() and not l.startswith("round")]
med = lambda n, c: st.median(float(r[c]) for r in rows if r[1] == n)
ratios = [float(g[2]) / float(r[2]) for r, g in zip(rows[0::2], rows[1::2])]
print(f"median rps: rest {med('rest',2):.0f}  graphql {med('graphql',2):.0f}  ratio {med('graphql',2)/med('rest',2):.3f} (per round {', '.join(f'{x:.3f}' for x in ratios)})")
print(f"median p99: rest {med('rest',3):.3f} ms  graphql {med('graphql',3):.3f} ms")
PY
