#!/usr/bin/env bash
# Throughput with shards pinned (ATLAS_PIN_SHARDS=true, the default: one CPU per shard) vs
# unpinned (every shard may run on any allowed CPU; the kernel places them). Two Atlas
# servers with the same shard count run side by side; wrk drives one at a time, alternating
# round by round, on GET /health (the HTTP layer) and on the cache-hit path
# (POST /ai/portfolio_analysis, one body, half the requests hop to the owner shard).
#
#   bench/scripts/pinning.sh [ROUNDS] [SECONDS] [CONNECTIONS] [CORES]   (7 8 64 2)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.."
ROUNDS=${1:-7}; SECS=${2:-8}; CONNS=${3:-64}; CORES=${4:-2}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
[ -x target/release/atlas ] || { echo "build first: cargo build --release" >&2; exit 2; }
out=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$out"' EXIT
# Started in this shell (not in a command substitution, whose background jobs the trap
# would not see), then waited for.
start() { local name=$1; shift; "$@" >"$out/$name.out" 2>"$out/$name.err" & pids+=($!); }
wrk_run() { # url [args] -> "rps p99_ms"
  local url=$1; shift
  local r; r=$(wrk -t1 -c"$CONNS" -d"${SECS}s" --latency "$@" "$url" 2>/dev/null | wrk_summary)
  set -- $r
  if [ "$5" != 0 ]; then echo "ERROR non-2xx $5"; return 1; fi
  echo "$1 $4"
}
ATLAS_LOG=warn start pinned target/release/atlas serve --listen 127.0.0.1:0 --cores "$CORES"
ATLAS_LOG=warn ATLAS_PIN_SHARDS=false start unpinned target/release/atlas serve --listen 127.0.0.1:0 --cores "$CORES"
pinned=$(wait_listening "$out/pinned.out")
unpinned=$(wait_listening "$out/unpinned.out")
for u in "$pinned" "$unpinned"; do
  wrk -t1 -c"$CONNS" -d2s -s bench/scripts/ai_hit.lua "$u" >/dev/null 2>&1
done
echo "# $(date -u +%FT%TZ) kernel $(uname -r), $(nproc) CPUs, $CORES shards, wrk -t1 -c$CONNS ${SECS}s, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "round workload server rps p99_ms"
for r in $(seq "$ROUNDS"); do
  for w in health hit; do
    for s in pinned unpinned; do
      url=$pinned; [ $s = unpinned ] && url=$unpinned
      if [ $w = health ]; then res=$(wrk_run "$url/health"); else res=$(wrk_run "$url" -s bench/scripts/ai_hit.lua); fi
      echo "$r $w $s $res"
    done
  done
done | tee "$out/results"
python3 - "$out/results" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1]) if l.strip() and not l.startswith(("round", "#"))]
for w in ("health", "hit"):
    p = [float(r[3]) for r in rows if r[1] == w and r[2] == "pinned"]
    u = [float(r[3]) for r in rows if r[1] == w and r[2] == "unpinned"]
    p99p = st.median(float(r[4]) for r in rows if r[1] == w and r[2] == "pinned")
    p99u = st.median(float(r[4]) for r in rows if r[1] == w and r[2] == "unpinned")
    ratios = [b / a for a, b in zip(p, u)]
    print(f"{w}: median rps pinned {st.median(p):.0f}, unpinned {st.median(u):.0f}, "
          f"unpinned/pinned {st.median(u)/st.median(p):.3f} (per round {', '.join(f'{x:.2f}' for x in ratios)}); "
          f"median p99 pinned {p99p:.2f} ms, unpinned {p99u:.2f} ms")
PY
