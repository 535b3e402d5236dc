#!/usr/bin/env bash
# Cost of the rate-limit check on the cache-hit path: POST /ai/portfolio_analysis with one body
# (every request an L1 hit, one user) against three instances on the same cores, alternating
# wrk rounds: limits off; a per-user limit too generous to refuse anything (the check runs on
# the user's owner shard: a mesh hop for connections accepted by the other shard); the same
# plus a global limit (one atomic compare-and-swap per request). Besides req/s it reports the
# server's CPU time per request (utime + stime of the process over the round, from
# /proc/PID/stat), which a machine shared with other work disturbs far less than throughput.
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
# The servers start inside $(...) subshells, so `jobs` does not see them: kill them by pid.
trap 'for f in "$out"/*.pid; do kill "$(cat "$f")" 2>/dev/null || true; done; rm -rf "$out"' EXIT
start() { local name=$1; shift; env "$@" ATLAS_LOG=warn "$bin" serve --listen 127.0.0.1:0 --cores "$CORES" >"$out/$name.out" 2>"$out/$name.err" & echo $! >"$out/$name.pid"; wait_listening "$out/$name.out"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$(cat "$out/$1.pid")/stat"; }
wrk_run() { # name url → "rps p99_ms cpu_us_per_request", failing on non-2xx answers
  local before after r; before=$(cpu_ticks "$1")
  r=$(wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -s bench/scripts/ai_hit.lua "$2" 2>/dev/null | wrk_summary)
  after=$(cpu_ticks "$1")
  set -- $r
  if [ "$5" != 0 ]; then echo "ERROR non-2xx $5"; return 1; fi
  echo "$1 $4 $(python3 -c "print(f'{($after - $before) * 1e6 / $(getconf CLK_TCK) / ($1 * $SECS):.2f}')")"
}
off=$(start off X=1)
user=$(start user ATLAS_RATE_LIMIT_USER_RPS=1000000 ATLAS_RATE_LIMIT_USER_BURST=1000000)
both=$(start both ATLAS_RATE_LIMIT_USER_RPS=1000000 ATLAS_RATE_LIMIT_USER_BURST=1000000 \
  ATLAS_RATE_LIMIT_GLOBAL_RPS=1000000 ATLAS_RATE_LIMIT_GLOBAL_BURST=1000000)
for u in "$off" "$user" "$both"; do wrk -t1 -c"$CONNS" -d2s -s bench/scripts/ai_hit.lua "$u" >/dev/null 2>&1; done
echo "round config rps p99_ms cpu_us_per_req"
for r in $(seq "$ROUNDS"); do
  echo "$r off $(wrk_run off "$off")"
  echo "$r user $(wrk_run user "$user")"
  echo "$r user+global $(wrk_run both "$both")"
done | tee "$out/results"
curl -s "$user/metrics" | grep -E '^ai_rate_limited_total' || true
python3 - "$out/results" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1]) if l.strip() and not l.startswith("round")]
med = lambda n, c: st.median(float(r[c]) for r in rows if r[1] == n)
by = lambda n: [r for r in rows if r[1] == n]
for name in ("user", "user+global"):
    ratios = [float(b[2]) / float(a[2]) for a, b in zip(by("off"), by(name))]
    extra = [float(b[4]) - float(a[4]) for a, b in zip(by("off"), by(name))]
    print(f"{name}: median rps {med(name,2):.0f} vs off {med('off',2):.0f}: {med(name,2)/med('off',2):.3f} (per round {', '.join(f'{x:.3f}' for x in ratios)}); p99 {med(name,3):.3f} vs {med('off',3):.3f} ms")
    print(f"{name}: CPU per request {med(name,4):.2f} vs off {med('off',4):.2f} us: {med(name,4)-med('off',4):+.2f} us (per round {', '.join(f'{x:+.2f}' for x in extra)})")
PY
