#!/usr/bin/env bash
# The cache-hit path and the cross-core hop against the floor server, measured the way
# ../shared/MEASURING.md asks: every server gets the same prebuilt POST requests over 4096
# distinct cached bodies (bench/scripts/hit_bodies.lua), wrk runs pinned to CPU 1, servers
# alternate round by round, and each run reports throughput, p50/p99 and the server's own CPU
# per request (utime + stime from /proc/PID/stat over the run, divided by requests served).
#
# Servers (each started once, measured in every round, in this order rotated by one each
# round):
#   floor1      atlas-floor, 1 core on CPU 0
#   atlas1      atlas serve, 1 shard on CPU 0
#   floor2      atlas-floor, 2 cores on CPUs 0-1, every request answered where it arrived
#   floorhop    atlas-floor --hop, 2 cores: each request forwarded to a rotating core over
#               glommio's channel mesh and answered back (one message and one reply per
#               request that leaves its core: the naive hop)
#   atlas2      atlas serve, 2 shards on CPUs 0-1 (half the hits hop to the owner shard)
#   prev1/prev2 as atlas1/atlas2 with $PREV_BIN (a build of the previous version)
#   alt1/alt2   as atlas1/atlas2 with $ALT_BIN (a variant under trial)
#
# Usage: bench/scripts/hit_path.sh [ROUNDS] [SECONDS] [CONNECTIONS] [SERVERS]
#   SERVERS: a comma list of the names above (default: all). Env ATLAS_BIN / FLOOR_BIN pick
#   other binaries (for example a build of the previous commit), ATLAS_ENV adds settings
#   (`ATLAS_ENV="ATLAS_SPIN_US=50"`), WRK_CPU the client's CPU (default 1).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.."
ROUNDS=${1:-5}; SECS=${2:-8}; CONNS=${3:-64}
SERVERS=${4:-floor1,atlas1,floor2,floorhop,atlas2}
ATLAS_BIN=${ATLAS_BIN:-target/release/atlas}
FLOOR_BIN=${FLOOR_BIN:-target/release/atlas-floor}
WRK_CPU=${WRK_CPU:-1}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
[ -x "$ATLAS_BIN" ] && [ -x "$FLOOR_BIN" ] || {
  echo "build first: cargo build --release -p atlas -p atlas-bench" >&2; exit 1; }
LUA=bench/scripts/hit_bodies.lua
out=$(mktemp -d)
trap 'kill $(cat "$out"/*.pid 2>/dev/null) 2>/dev/null || true; rm -rf "$out"' EXIT
TICK=$(getconf CLK_TCK)

start() { # name → URL; the pid goes to $out/name.pid
  local name=$1 cmd
  case $name in
    floor1) cmd=(taskset -c 0 "$FLOOR_BIN" 127.0.0.1:0 1) ;;
    floor2) cmd=(taskset -c 0,1 "$FLOOR_BIN" 127.0.0.1:0 2) ;;
    floorhop) cmd=(taskset -c 0,1 "$FLOOR_BIN" 127.0.0.1:0 2 --hop) ;;
    atlas1) cmd=(taskset -c 0 env ATLAS_LOG=warn ${ATLAS_ENV:-} "$ATLAS_BIN" serve --listen 127.0.0.1:0 --cores 1) ;;
    atlas2) cmd=(taskset -c 0,1 env ATLAS_LOG=warn ${ATLAS_ENV:-} "$ATLAS_BIN" serve --listen 127.0.0.1:0 --cores 2) ;;
    prev1) cmd=(taskset -c 0 env ATLAS_LOG=warn "${PREV_BIN:?set PREV_BIN}" serve --listen 127.0.0.1:0 --cores 1) ;;
    prev2) cmd=(taskset -c 0,1 env ATLAS_LOG=warn "${PREV_BIN:?set PREV_BIN}" serve --listen 127.0.0.1:0 --cores 2) ;;
    alt1) cmd=(taskset -c 0 env ATLAS_LOG=warn "${ALT_BIN:?set ALT_BIN}" serve --listen 127.0.0.1:0 --cores 1) ;;
    alt2) cmd=(taskset -c 0,1 env ATLAS_LOG=warn "${ALT_BIN:?set ALT_BIN}" serve --listen 127.0.0.1:0 --cores 2) ;;
    *) echo "unknown server $name" >&2; exit 2 ;;
  esac
  "${cmd[@]}" >"$out/$name.out" 2>"$out/$name.err" &
  echo $! >"$out/$name.pid"
  wait_listening "$out/$name.out"
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
cache_counts() { # url → "hits misses" over every shard
  curl -s "$1/health/detailed" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(s["cache"]["hits"] for s in d["shards"]), sum(s["cache"]["misses"] for s in d["shards"]))'
}
run() { # name url → one result row
  local name=$1 url=$2 pid t0 t1 w before after
  pid=$(cat "$out/$name.pid")
  case $name in atlas*|prev*|alt*) before=$(cache_counts "$url") ;; esac
  t0=$(cpu_ticks "$pid")
  w=$(taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -s "$LUA" "$url" 2>/dev/null)
  t1=$(cpu_ticks "$pid")
  local n; n=$(echo "$w" | awk '/requests in/ {print $1}')
  set -- $(echo "$w" | wrk_summary)
  if [ "$5" != 0 ]; then echo "ERROR $name: $5 non-2xx answers" >&2; exit 1; fi
  local misses=-
  if [ -n "${before:-}" ]; then
    after=$(cache_counts "$url")
    misses=$(( $(echo "$after" | cut -d' ' -f2) - $(echo "$before" | cut -d' ' -f2) ))
  fi
  awk -v name="$name" -v rps="$1" -v p50="$2" -v p99="$4" -v n="$n" -v dt=$((t1 - t0)) -v tick="$TICK" -v m="$misses" \
    'BEGIN {printf "%s %.0f %.3f %.3f %.2f %s\n", name, rps, p50, p99, dt / tick * 1e6 / n, m}'
}

IFS=, read -r -a names <<<"$SERVERS"
declare -A url
for s in "${names[@]}"; do
  url[$s]=$(start "$s")
  # Warm-up: fills Atlas's cache with all 4096 results (and wakes the floor's executors).
  taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d3s -s "$LUA" "${url[$s]}" >/dev/null 2>&1
done
echo "round server rps p50_ms p99_ms cpu_us_per_req misses"
for r in $(seq "$ROUNDS"); do
  # The order rotates by one server each round: on this VM the server measured first in a
  # round fares measurably differently (bench/RESULTS.md, "Hit path after issues 17 and 18").
  for k in $(seq 0 $((${#names[@]} - 1))); do
    s=${names[$(( (k + r - 1) % ${#names[@]} ))]}
    echo "$r $(run "$s" "${url[$s]}")"
  done
done | tee "$out/results"
python3 - "$out/results" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1]) if l.strip() and not l.startswith("round")]
by = {}
for r in rows:
    by.setdefault(r[1], []).append(r)
med = lambda s, c: st.median(float(r[c]) for r in by[s])
print("\nmedians: server rps p50_ms p99_ms cpu_us_per_req")
for s in by:
    print(f"  {s:9} {med(s,2):9.0f} {med(s,3):7.3f} {med(s,4):7.3f} {med(s,5):7.2f}")
def ratio(a, b, c, label):
    if a in by and b in by:
        per = [float(x[c]) / float(y[c]) for x, y in zip(by[a], by[b])]
        print(f"  {a}/{b} {label}: median of rounds {st.median(per):.3f} (rounds {', '.join(f'{p:.3f}' for p in per)})")
print("ratios:")
ratio("atlas1", "floor1", 2, "throughput")
ratio("atlas1", "floor1", 5, "CPU per request")
ratio("atlas2", "atlas1", 5, "CPU per hit (the hop)")
ratio("floorhop", "floor1", 5, "CPU per request")
ratio("floorhop", "floor2", 5, "CPU per request")
ratio("atlas2", "floorhop", 2, "throughput")
ratio("atlas1", "prev1", 5, "CPU per request")
ratio("atlas2", "prev2", 5, "CPU per request")
ratio("prev2", "prev1", 5, "CPU per hit (the hop, previous version)")
ratio("atlas2", "floorhop", 5, "CPU per request")
ratio("alt1", "atlas1", 5, "CPU per request")
ratio("alt2", "atlas2", 5, "CPU per request")
ratio("alt2", "alt1", 5, "CPU per hit (the hop, variant)")
PY
