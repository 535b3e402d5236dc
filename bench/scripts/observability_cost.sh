#!/usr/bin/env bash
# Cost of observability on the cache-hit path: POST /ai/portfolio_analysis (one body, so every
# request after the first is a hit) with ENABLE_PROMETHEUS=false (nothing recorded), with
# metrics on, and with metrics on while /metrics is scraped every second (by one keep-alive
# client, as Prometheus does). Alternating wrk
# rounds on one shard (no mesh hop, so the recording cost is not hidden behind it).
#
# Usage: bench/scripts/observability_cost.sh [ROUNDS] [SECONDS] [CONNECTIONS]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.."
ROUNDS=${1:-5}; SECS=${2:-8}; CONNS=${3:-64}
cargo build --release -p atlas >/dev/null 2>&1
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$out"' EXIT
ATLAS_LOG=warn ENABLE_PROMETHEUS=false target/release/atlas serve --listen 127.0.0.1:0 --cores 1 >"$out/off.out" 2>/dev/null &
off=$(wait_listening "$out/off.out")
ATLAS_LOG=warn target/release/atlas serve --listen 127.0.0.1:0 --cores 1 >"$out/on.out" 2>/dev/null &
on=$(wait_listening "$out/on.out")
rps() { wrk -t1 -c"$CONNS" -d"${SECS}s" -s bench/scripts/ai_hit.lua "$1" 2>/dev/null | awk '/Requests\/sec/ {print $2}'; }
rps "$off" >/dev/null; rps "$on" >/dev/null
echo "round off on on+scrape"
for r in $(seq "$ROUNDS"); do
  a=$(rps "$off"); b=$(rps "$on")
  # One scraper process on one keep-alive connection, as a Prometheus server would scrape
  # (a shell loop forking curl every second costs the 2-core machine more than the scrape).
  python3 - "$on" "$SECS" <<'PY' &
import http.client, sys, time
host = sys.argv[1].removeprefix("http://")
conn = http.client.HTTPConnection(host, timeout=5)
for _ in range(int(sys.argv[2])):
    conn.request("GET", "/metrics"); conn.getresponse().read(); time.sleep(1)
PY
  c=$(rps "$on"); wait
  echo "$r $a $b $c"
done | tee "$out/results"
python3 - "$out/results" <<'PY'
import sys, statistics as st
rows=[l.split() for l in open(sys.argv[1]) if l[0].isdigit()]
off=st.median(float(r[1]) for r in rows); on=st.median(float(r[2]) for r in rows); sc=st.median(float(r[3]) for r in rows)
print(f"median req/s: off {off:.0f}  on {on:.0f} ({100*(on/off-1):+.1f} %)  on+scrape {sc:.0f} ({100*(sc/off-1):+.1f} %)")
PY
