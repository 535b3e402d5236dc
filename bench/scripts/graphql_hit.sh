#!/usr/bin/env bash
# Cache hits through GraphQL next to the same hit through REST, measured the way
# ../shared/MEASURING.md asks: Atlas with one shard on CPU 0, wrk pinned to CPU 1, the paths
# alternating round by round (order rotated each round), and per run the throughput, p50/p99
# and the server's own CPU per request (utime + stime from /proc/PID/stat over the run).
#
# Paths (one Atlas; every answer a hit on entries filled through REST first):
#   rest      POST /ai/portfolio_analysis (ai_hit.lua)
#   gql_few   one portfolioAnalysis field: three result fields and meta.cache (graphql_few.lua)
#   gql_full  the same field with the whole typed result, confidence, meta (graphql_hit.lua)
#   gql_json  the same field with resultJson, confidence, meta.cache (graphql_json.lua)
#   gql_four  one document with the four operation fields (graphql_four.lua)
#   prev_*    the same paths on $PREV_BIN (a build of the previous version), when set
#
# Usage: bench/scripts/graphql_hit.sh [ROUNDS] [SECONDS] [CONNECTIONS] [CORES]
# ATLAS_BIN (default target/release/atlas), PREV_BIN, WRK_CPU (default 1); CORES=2 runs two
# shards on CPUs 0-1 (then wrk shares a CPU with a shard).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.."
ROUNDS=${1:-5}; SECS=${2:-8}; CONNS=${3:-64}; CORES=${4:-1}
ATLAS_BIN=${ATLAS_BIN:-target/release/atlas}
WRK_CPU=${WRK_CPU:-1}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
[ -x "$ATLAS_BIN" ] || { echo "build first: cargo build --release -p atlas" >&2; exit 1; }
CPUS=$([ "$CORES" = 1 ] && echo 0 || echo "0-$((CORES - 1))")
out=$(mktemp -d)
trap 'kill $(cat "$out"/*.pid 2>/dev/null) 2>/dev/null || true; rm -rf "$out"' EXIT
TICK=$(getconf CLK_TCK)
S=bench/scripts

start() { # name binary → URL
  taskset -c "$CPUS" env ATLAS_LOG=warn "$2" serve --listen 127.0.0.1:0 --cores "$CORES" \
    >"$out/$1.out" 2>"$out/$1.err" &
  echo $! >"$out/$1.pid"
  wait_listening "$out/$1.out"
}
post() { curl -s -H 'Content-Type: application/json' -d "$2" "$1"; }
fill() { # url: the four entries through REST, then each GraphQL path checked to be a hit
  local u=$1
  post "$u/ai/portfolio_analysis" '{"user_id":"bench-user","input":{"holdings":[{"symbol":"AAPL","weight":0.6,"prices":[100,102,101,105,107,106,108,110]},{"symbol":"MSFT","weight":0.4,"prices":[200,198,202,204,203,207,209,208]}]}}' >/dev/null
  post "$u/ai/budget_optimization" '{"user_id":"bench-user","input":{"monthly_income":5000,"expenses":[{"category":"rent","amount":1500,"essential":true}]}}' >/dev/null
  post "$u/ai/risk_assessment" '{"user_id":"bench-user","input":{"age":35,"horizon_years":20,"income_stability":4,"loss_tolerance":3,"experience":3}}' >/dev/null
  post "$u/ai/cashflow_forecast" '{"user_id":"bench-user","input":{"history":[100,110,120,130,140,150,160,170],"horizon":3}}' >/dev/null
  for lua in graphql_few graphql_hit graphql_json graphql_four; do
    local body; body=$(awk -F"'" '/^wrk.body/ {print $2}' "$S/$lua.lua" | sed 's/\\\\/\\/g')
    local hits; hits=$(post "$u/graphql" "$body" | grep -o '"cache":"hit"' | wc -l)
    [ "$hits" -ge 1 ] || { echo "$lua: GraphQL did not read the REST entries as hits" >&2; exit 1; }
  done
}
lua_of() { case $1 in *rest) echo ai_hit ;; *gql_few) echo graphql_few ;; *gql_full) echo graphql_hit ;;
  *gql_json) echo graphql_json ;; *gql_four) echo graphql_four ;; esac; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
run() { # path url pid → one result row
  local name=$1 url=$2 pid=$3 t0 t1 w n
  t0=$(cpu_ticks "$pid")
  w=$(taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -s "$S/$(lua_of "$name").lua" "$url" 2>/dev/null)
  t1=$(cpu_ticks "$pid")
  n=$(echo "$w" | awk '/requests in/ {print $1}')
  set -- $(echo "$w" | wrk_summary)
  if [ "$5" != 0 ]; then echo "ERROR $name: $5 non-2xx answers" >&2; exit 1; fi
  awk -v name="$name" -v rps="$1" -v p50="$2" -v p99="$4" -v n="$n" -v dt=$((t1 - t0)) -v tick="$TICK" \
    'BEGIN {printf "%s %.0f %.3f %.3f %.2f\n", name, rps, p50, p99, dt / tick * 1e6 / n}'
}

paths=(rest gql_few gql_full gql_json gql_four)
servers=(atlas)
[ -n "${PREV_BIN:-}" ] && servers+=(prev)
declare -A url pid
for s in "${servers[@]}"; do
  bin=$ATLAS_BIN; [ "$s" = prev ] && bin=$PREV_BIN
  url[$s]=$(start "$s" "$bin"); pid[$s]=$(cat "$out/$s.pid")
  fill "${url[$s]}"
  for p in "${paths[@]}"; do # warm-up (documents parsed and planned, memos filled)
    taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d1s -s "$S/$(lua_of "$p").lua" "${url[$s]}" >/dev/null 2>&1
  done
done
runs=()
for s in "${servers[@]}"; do for p in "${paths[@]}"; do runs+=("$s:$p"); done; done
echo "round path rps p50_ms p99_ms cpu_us_per_req"
for r in $(seq "$ROUNDS"); do
  for k in $(seq 0 $((${#runs[@]} - 1))); do
    item=${runs[$(( (k + r - 1) % ${#runs[@]} ))]}
    s=${item%%:*}; p=${item#*:}
    name=$p; [ "$s" = prev ] && name=prev_$p
    echo "$r $(run "$name" "${url[$s]}" "${pid[$s]}")"
  done
done | tee "$out/results"
for s in "${servers[@]}"; do
  curl -s "${url[$s]}/health/detailed" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("'"$s"' computations:", sum(s["model_computations"] for s in d["shards"]))'
done
python3 - "$out/results" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1]) if l.strip() and not l.startswith("round")]
by = {}
for r in rows:
    by.setdefault(r[1], []).append(r)
med = lambda s, c: st.median(float(r[c]) for r in by[s])
print("\nmedians: path rps p50_ms p99_ms cpu_us_per_req")
for s in by:
    print(f"  {s:14} {med(s,2):9.0f} {med(s,3):7.3f} {med(s,4):7.3f} {med(s,5):7.2f}")
def ratio(a, b, c, label, scale=1.0):
    if a in by and b in by:
        per = [float(x[c]) / (float(y[c]) * scale) for x, y in zip(by[a], by[b])]
        print(f"  {a}/{b}{'' if scale == 1 else f' x{scale:g}'} {label}: median {st.median(per):.3f} (rounds {', '.join(f'{p:.3f}' for p in per)})")
print("ratios (per round, same round's REST run):")
for pre in ["", "prev_"]:
    for p in ["gql_few", "gql_full", "gql_json"]:
        ratio(pre + p, pre + "rest", 2, "throughput")
        ratio(pre + p, pre + "rest", 4, "p99")
        ratio(pre + p, pre + "rest", 5, "CPU per request")
    ratio(pre + "gql_four", pre + "rest", 5, "CPU per request (four fields vs four REST hits)", 4.0)
for p in ["gql_few", "gql_full", "gql_json", "gql_four"]:
    ratio(p, "prev_" + p, 5, "CPU per request against the previous version")
PY
