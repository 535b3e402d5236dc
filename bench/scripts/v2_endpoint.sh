#!/usr/bin/env bash
# Atlas in front of an Open Inference Protocol server against clients calling it directly
# (issue 17): MLServer running examples/mlserver (one process, `parallel_workers: 0`, so it
# runs one request at a time), pinned to CPU 1; Atlas (1 shard) and wrk on CPU 0. Same
# risk_assessment inputs for every path (bench/scripts/risk_inputs.lua), alternating rounds:
#
#   miss  atlas     Atlas, ;max_batch=64: every request a new key (a new user id), batched
#   miss  atlas-b1  Atlas, ;max_batch=1: the same, one input per V2 request (no batching)
#   miss  direct    V2 requests of one input straight to MLServer
#   hit   atlas     Atlas, 4096 keys cached before the rounds
#   hit   direct    the same 4096 inputs straight to MLServer (it has no cache)
#
# Prints req/s, p50, p99 and the CPU per request of Atlas and of MLServer (from /proc).
# Usage: bench/scripts/v2_endpoint.sh [ROUNDS] [SECONDS] [CONNECTIONS]
# MLSERVER=path (default target/test-venv/bin/mlserver, which tests/run.sh installs);
# ATLAS_BIN=path uses an already built binary (default: cargo build --release).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.."
ROUNDS=${1:-5}; SECS=${2:-8}; CONNS=${3:-64}
MLSERVER=${MLSERVER:-target/test-venv/bin/mlserver}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
[ -x "$MLSERVER" ] || { echo "needs mlserver: run tests/run.sh once, or set MLSERVER" >&2; exit 1; }
if [ -z "${ATLAS_BIN:-}" ]; then
  cargo build --release -p atlas >/dev/null 2>&1
  ATLAS_BIN=${CARGO_TARGET_DIR:-target}/release/atlas
fi
out=$(mktemp -d)
trap 'kill $(jobs -p) $(cat "$out/pids" 2>/dev/null) 2>/dev/null || true; rm -rf "$out"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port); grpc=$(free_port)
mkdir -p "$out/repo/risk"
cp examples/mlserver/risk/model-settings.json "$out/repo/risk/"
printf '{"parallel_workers": 0, "metrics_endpoint": null, "host": "127.0.0.1", "http_port": %s, "grpc_port": %s}\n' "$port" "$grpc" >"$out/repo/settings.json"
PYTHONPATH=$PWD/examples/mlserver taskset -c 1 "$MLSERVER" start "$out/repo" >"$out/mlserver.log" 2>&1 &
ml_pid=$!; echo $ml_pid >>"$out/pids"
ml=http://127.0.0.1:$port
for _ in $(seq 300); do curl -sf "$ml/v2/models/risk/ready" >/dev/null && break; sleep 0.1; done
curl -sf "$ml/v2/models/risk/ready" >/dev/null || { tail "$out/mlserver.log" >&2; exit 1; }
start_atlas() { # name max_batch → url
  local name=$1
  ATLAS_LOG=warn ATLAS_EMBEDDED=false ATLAS_HEALTH_INTERVAL_S=1 \
    ATLAS_ENDPOINTS="risk=v2+$ml/risk;ops=risk_assessment;max_batch=$2" \
    taskset -c 0 "$ATLAS_BIN" serve --listen 127.0.0.1:0 --cores 1 >"$out/$name.out" 2>"$out/$name.err" &
  echo $! >"$out/$name.pid"; echo $! >>"$out/pids"
  wait_listening "$out/$name.out"
}
atlas=$(start_atlas atlas 64); atlas_b1=$(start_atlas atlas_b1 1)
sleep 2 # the first readiness checks
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
run() { # label pid url env... → "rps p50 p99 atlas_us ml_us"
  local pid=$1 url=$2; shift 2
  local a0 m0 a1 m1 r
  a0=$( [ "$pid" = - ] && echo 0 || ticks "$pid"); m0=$(ticks "$ml_pid")
  r=$(env "$@" taskset -c 0 wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -s bench/scripts/risk_inputs.lua "$url" 2>/dev/null | wrk_summary)
  a1=$( [ "$pid" = - ] && echo 0 || ticks "$pid"); m1=$(ticks "$ml_pid")
  set -- $r
  [ "$5" = 0 ] || { echo "ERROR non-2xx $5"; return 1; }
  awk -v rps="$1" -v p50="$2" -v p99="$4" -v a=$((a1 - a0)) -v m=$((m1 - m0)) -v s="$SECS" \
    'BEGIN { n = rps * s; printf "%s %s %s %.0f %.0f\n", rps, p50, p99, a * 1e4 / n, m * 1e4 / n }'
}
# Fill the 4096 hit keys and warm every path.
KEYS=4096 TAG=hit wrk -t1 -c"$CONNS" -d4s -s bench/scripts/risk_inputs.lua "$atlas" >/dev/null 2>&1
KEYS=4096 TAG=hit wrk -t1 -c"$CONNS" -d2s -s bench/scripts/risk_inputs.lua "$atlas" >/dev/null 2>&1
MODE=v2 wrk -t1 -c"$CONNS" -d2s -s bench/scripts/risk_inputs.lua "$ml" >/dev/null 2>&1
echo "round phase path rps p50_ms p99_ms atlas_us_per_req mlserver_us_per_req"
for r in $(seq "$ROUNDS"); do
  echo "$r miss atlas $(run "$(cat "$out/atlas.pid")" "$atlas" MODE=atlas-miss TAG="m$r")"
  echo "$r miss atlas-b1 $(run "$(cat "$out/atlas_b1.pid")" "$atlas_b1" MODE=atlas-miss TAG="m$r")"
  echo "$r miss direct $(run - "$ml" MODE=v2)"
  echo "$r hit atlas $(run "$(cat "$out/atlas.pid")" "$atlas" KEYS=4096 TAG=hit)"
  echo "$r hit direct $(run - "$ml" MODE=v2 KEYS=4096)"
done | tee "$out/results"
for a in atlas atlas_b1; do
  echo "$a: $(curl -s "$(cat "$out/$a.out" | grep -o 'http://[0-9.:]*' | head -1)/metrics" | grep -E '^ai_batch_size_(sum|count)|^ai_endpoint_(calls|errors)_total|^ai_cache_operations_total\{operation="all"' | tr '\n' ' ')"
done
python3 - "$out/results" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1]) if l.strip() and not l.startswith("round")]
def med(phase, path, col):
    return st.median(float(r[col]) for r in rows if r[1] == phase and r[2] == path)
for phase, path in [("miss", "atlas"), ("miss", "atlas-b1"), ("miss", "direct"), ("hit", "atlas"), ("hit", "direct")]:
    print(f"{phase:4} {path:8} median rps {med(phase, path, 3):8.0f}  p50 {med(phase, path, 4):7.2f} ms  p99 {med(phase, path, 5):7.2f} ms  "
          f"atlas {med(phase, path, 6):5.0f} us/req  mlserver {med(phase, path, 7):6.0f} us/req")
print(f"miss: atlas / direct {med('miss','atlas',3)/med('miss','direct',3):.2f}x, batching gain (atlas / atlas-b1) {med('miss','atlas',3)/med('miss','atlas-b1',3):.2f}x")
print(f"hit:  atlas / direct {med('hit','atlas',3)/med('hit','direct',3):.1f}x")
PY
