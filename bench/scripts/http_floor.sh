#!/usr/bin/env bash
# GET /health throughput and p99 of `atlas serve` against the floor server (bench/src/bin/floor.rs),
# same cores, same wrk settings, alternating runs so both see the same machine noise.
#
# Usage: bench/scripts/http_floor.sh [ROUNDS] [SECONDS] [CONNECTIONS] [CORES]
# Needs: wrk (Debian package `wrk`), release binaries (built here if missing).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.."
ROUNDS=${1:-5}; SECS=${2:-8}; CONNS=${3:-64}; CORES=${4:-2}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
cargo build --release -p atlas -p atlas-bench >/dev/null
ATLAS=target/release/atlas; FLOOR=target/release/atlas-floor
out=$(mktemp -d)
trap 'kill $(jobs -p) $(cat "$out/pids" 2>/dev/null) 2>/dev/null || true; rm -rf "$out"' EXIT

start() { # name cmd... → prints the URL
  local name=$1; shift
  "$@" >"$out/$name.out" 2>"$out/$name.err" &
  echo $! >>"$out/pids"
  wait_listening "$out/$name.out"
}

run_wrk() { # url → "rps p99_ms"
  wrk -t1 -c"$CONNS" -d"${SECS}s" --latency "$1/health" 2>/dev/null | wrk_summary | awk '{print $1, $4}'
}

atlas_url=$(ATLAS_LOG=warn start atlas "$ATLAS" serve --listen 127.0.0.1:0 --cores "$CORES")
floor_url=$(start floor "$FLOOR" 127.0.0.1:0 "$CORES")
wrk -t1 -c"$CONNS" -d2s "$atlas_url/health" >/dev/null 2>&1   # warm-up
wrk -t1 -c"$CONNS" -d2s "$floor_url/health" >/dev/null 2>&1
echo "round server rps p99_ms"
for r in $(seq "$ROUNDS"); do
  echo "$r floor $(run_wrk "$floor_url")"
  echo "$r atlas $(run_wrk "$atlas_url")"
done | tee "$out/results"
python3 - "$out/results" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1]) if l.strip() and not l.startswith("round")]
def med(name, col): return st.median(float(r[col]) for r in rows if r[1] == name)
fr, ar = med("floor", 2), med("atlas", 2)
fp, ap = med("floor", 3), med("atlas", 3)
ratios = [float(a[2]) / float(f[2]) for f, a in zip(rows[0::2], rows[1::2])]
print(f"median rps: floor {fr:.0f}  atlas {ar:.0f}  ratio {ar/fr:.3f} (per-round ratios {', '.join(f'{x:.3f}' for x in ratios)})")
print(f"median p99: floor {fp:.3f} ms  atlas {ap:.3f} ms")
PY
