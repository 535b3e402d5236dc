#!/usr/bin/env bash
# The brief's headline against the default settings: 10 000 keep-alive connections sending
# cached hits (POST /ai/portfolio_analysis over the 4096 bodies of hit_bodies.lua) to a
# 2-shard Atlas with MAX_CONCURRENT_REQUESTS at its default (10 000). Every request must be
# answered 200: the instance is at its cap, never over it, however the kernel spreads the
# connections over the shards. Reports per server: req/s, p50/p99, non-2xx answers, socket
# errors, peak RSS (VmHWM) and server CPU per request. Servers alternate round by round.
#
# Usage: bench/scripts/connections_10k.sh [ROUNDS] [SECONDS]
#   Env: ATLAS_BIN (default target/release/atlas), PREV_BIN (a previous build, measured in
#   the same rounds as `prev`), CONNS (default 10000).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.."
ROUNDS=${1:-3}; SECS=${2:-20}; CONNS=${CONNS:-10000}
ATLAS_BIN=${ATLAS_BIN:-target/release/atlas}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"
(( $(ulimit -n) > CONNS + 1000 )) || { echo "open-file limit $(ulimit -n) too low for $CONNS connections" >&2; exit 1; }
LUA=bench/scripts/hit_bodies.lua
out=$(mktemp -d)
trap 'kill $(cat "$out"/*.pid 2>/dev/null) 2>/dev/null || true; rm -rf "$out"' EXIT
TICK=$(getconf CLK_TCK)
names=(atlas); [ -n "${PREV_BIN:-}" ] && names+=(prev)
declare -A url
for s in "${names[@]}"; do
  bin=$ATLAS_BIN; [ "$s" = prev ] && bin=$PREV_BIN
  ATLAS_LOG=warn "$bin" serve --listen 127.0.0.1:0 --cores 2 >"$out/$s.out" 2>"$out/$s.err" &
  echo $! >"$out/$s.pid"
  url[$s]=$(wait_listening "$out/$s.out")
  wrk -t2 -c64 -d3s -s "$LUA" "${url[$s]}" >/dev/null 2>&1   # fills the cache
done
echo "round server rps p50_ms p99_ms non2xx socket_errors rss_peak_mib cpu_us_per_req"
for r in $(seq "$ROUNDS"); do
  for s in "${names[@]}"; do
    pid=$(cat "$out/$s.pid")
    t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    w=$(wrk -t2 -c"$CONNS" -d"${SECS}s" --timeout 10s --latency -s "$LUA" "${url[$s]}" 2>&1)
    t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    n=$(echo "$w" | awk '/requests in/ {print $1}')
    errs=$(echo "$w" | awk '/Socket errors/ {gsub(",", ""); print $4 + $6 + $8 + $10; f=1} END {if (!f) print 0}')
    rss=$(awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status")
    set -- $(echo "$w" | wrk_summary)
    awk -v r="$r" -v s="$s" -v rps="$1" -v p50="$2" -v p99="$4" -v bad="$5" -v e="$errs" -v rss="$rss" \
      -v dt=$((t1 - t0)) -v tick="$TICK" -v n="$n" \
      'BEGIN {printf "%s %s %.0f %.3f %.3f %s %s %s %.2f\n", r, s, rps, p50, p99, bad, e, rss, dt / tick * 1e6 / n}'
  done
done
