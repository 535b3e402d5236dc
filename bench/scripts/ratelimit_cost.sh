#!/usr/bin/env bash
# Cost of the rate-limit check on the cache-hit path: POST /ai/portfolio_analysis with one body
# (every request an L1 hit, one user) against three instances on the same cores, alternating
# wrk rounds: limits off; a per-user limit too generous to refuse anything (the check runs on
# the user's owner shard: a mesh hop for connections accepted by the other shard); the same
# plus a global limit (one atomic compare-and-swap per request).
#
# Usage: bench/scripts/ratelimit_cost.sh [ROUNDS] [SECONDS] [CONNECTIONS] [CORES]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.."
ROUNDS=${1:-5}; SECS=${2:-8}; CONNS=${3:-64}; CORES=${4:-2}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
cargo build --release -p atlas >/dev/null 2>&1
bin=${CARGO_TARGET_DIR:-target}/release/atlas
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$out"' EXIT
start() { local name=$1; shift; env "$@" ATLAS_LOG=warn "$bin" serve --listen 127.0.0.1:0 --cores "$CORES" >"$out/$name.out" 2>"$out/$name.err" & wait_listening "$out/$name.out"; }
wrk_run() { # url → "rps p99_ms", failing on non-2xx answers
  local r; r=$(wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -s bench/scripts/ai_hit.lua "$1" 2>/dev/null | wrk_summary)
  set -- $r
  if [ "$5" != 0 ]; then echo "ERROR non-2xx $5"; return 1; fi
  echo "$1 $4"
}
off=$(start off X=1)
user=$(start user ATLAS_RATE_LIMIT_USER_RPS=1000000 ATLAS_RATE_LIMIT_USER_BURST=1000000)
both=$(start both ATLAS_RATE_LIMIT_USER_RPS=1000000 ATLAS_RATE_LIMIT_USER_BURST=1000000 \
  ATLAS_RATE_LIMIT_GLOBAL_RPS=1000000 ATLAS_RATE_LIMIT_GLOBAL_BURST=1000000)
for u in "$off" "$user" "$both"; do wrk -t1 -c"$CONNS" -d2s -s bench/scripts/ai_hit.lua "$u" >/dev/null 2>&1; done
echo "round config rps p99_ms"
for r in $(seq "$ROUNDS"); do
  echo "$r off $(wrk_run "$off")"
  echo "$r user $(wrk_run "$user")"
  echo "$r user+global $(wrk_run "$both")"
done | tee "$out/results"
curl -s "$user/metrics" | grep -E '^ai_rate_limited_total' || true
python3 - "$out/results" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1]) if l.strip() and not l.startswith("round")]
med = lambda n, c: st.median(float(r[c]) for r in rows if r[1] == n)
for name in ("user", "user+global"):
    ratios = [float(b[2]) / float(a[2]) for a, b in zip([r for r in rows if r[1] == "off"], [r for r in rows if r[1] == name])]
    print(f"{name}: median rps {med(name,2):.0f} vs off {med('off',2):.0f}: {med(name,2)/med('off',2):.3f} (per round {', '.join(f'{x:.3f}' for x in ratios)}); p99 {med(name,3):.3f} vs {med('off',3):.3f} ms")
PY
