#!/usr/bin/env bash
# Gateway overhead on the miss path: latency of calling `atlas model-endpoint` directly
# (POST /v1/batch, one input) against calling it through `atlas serve` (POST /ai/... with
# Cache-Control: no-store, so every request is computed by that endpoint), at a fixed
# request rate from `hey` (Debian package `hey`; -q per worker × -c workers = rate).
#
# Usage: bench/scripts/gateway_overhead.sh [RATE] [SECONDS] [ROUNDS]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.."
RATE=${1:-2000}; SECS=${2:-8}; ROUNDS=${3:-3}
WORKERS=50; PER=$((RATE / WORKERS))
cargo build --release -p atlas >/dev/null 2>&1
A=target/release/atlas
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$out"' EXIT
$A model-endpoint --listen 127.0.0.1:0 --cores 1 --concurrency 64 >"$out/m.out" 2>/dev/null &
model=$(wait_listening "$out/m.out")
ATLAS_LOG=warn ATLAS_EMBEDDED=false ATLAS_ENDPOINTS="m=$model;concurrency=64" $A serve --listen 127.0.0.1:0 --cores 1 >"$out/g.out" 2>/dev/null &
gw=$(wait_listening "$out/g.out")
INPUT='{"age":35,"horizon_years":20,"income_stability":4,"loss_tolerance":3,"experience":3}'
hey_run() { # url body [header] → "rps p50 p99"
  local url=$1 body=$2; shift 2
  hey -z "${SECS}s" -c $WORKERS -q $PER -m POST -T application/json "$@" -d "$body" "$url" 2>/dev/null | awk '
    /Requests\/sec/ {rps=$2}
    /50%+ in/ {p50=$3*1000} /99%+ in/ {p99=$3*1000}
    /\[200\]/ {ok=$2}
    END {printf "%s %.3f %.3f %s\n", rps, p50, p99, ok}'
}
echo "round path rps p50_ms p99_ms ok"
for r in $(seq "$ROUNDS"); do
  echo "$r direct $(hey_run "$model/v1/batch" "{\"operation\":\"risk_assessment\",\"inputs\":[$INPUT]}")"
  echo "$r gateway $(hey_run "$gw/ai/risk_assessment" "{\"user_id\":\"u\",\"input\":$INPUT}" -H "Cache-Control: no-store")"
done | tee "$out/results"
python3 - "$out/results" <<'PY'
import sys, statistics as st
rows=[l.split() for l in open(sys.argv[1]) if l[0].isdigit()]
med=lambda n,c: st.median(float(r[c]) for r in rows if r[1]==n)
print(f"median rps: direct {med('direct',2):.0f} gateway {med('gateway',2):.0f}")
print(f"median p50: direct {med('direct',3):.3f} ms gateway {med('gateway',3):.3f} ms added {med('gateway',3)-med('direct',3):.3f} ms")
print(f"median p99: direct {med('direct',4):.3f} ms gateway {med('gateway',4):.3f} ms added {med('gateway',4)-med('direct',4):.3f} ms")
PY
