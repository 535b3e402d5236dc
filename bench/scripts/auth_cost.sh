#!/usr/bin/env bash
# Cost of authentication on the cache-hit path (issue 9): one shard each, alternating wrk
# rounds against Atlas with auth off, auth required with one hot HS256 token (the verified
# token cache on), and auth required with the cache off (ATLAS_JWT_CACHE_ENTRIES=0, every
# request verified in full).
#
# Usage: bench/scripts/auth_cost.sh [ROUNDS] [SECONDS] [CONNECTIONS]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.."
ROUNDS=${1:-5}; SECS=${2:-6}; CONNS=${3:-64}
cargo build --release -p atlas >/dev/null 2>&1
out=$(mktemp -d)
trap 'kill $(jobs -p) $(cat "$out/pids" 2>/dev/null) 2>/dev/null || true; rm -rf "$out"' EXIT
start() { local name=$1; shift; "$@" >"$out/$name.out" 2>"$out/$name.err" & echo $! >>"$out/pids"; wait_listening "$out/$name.out"; }
SECRET=bench-secret-of-at-least-thirty-two-bytes
export TOKEN=$(python3 - "$SECRET" <<'PY'
import base64, hmac, hashlib, json, sys, time
b = lambda x: base64.urlsafe_b64encode(x).rstrip(b"=")
head = b(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b(json.dumps({"sub": "bench-user", "exp": int(time.time()) + 3600}).encode())
sig = b(hmac.new(sys.argv[1].encode(), head + b"." + body, hashlib.sha256).digest())
print((head + b"." + body + b"." + sig).decode())
PY
)
off=$(ATLAS_LOG=warn start off target/release/atlas serve --listen 127.0.0.1:0 --cores 1)
on=$(ATLAS_LOG=warn ATLAS_JWT_SECRET=$SECRET start on target/release/atlas serve --listen 127.0.0.1:0 --cores 1)
nocache=$(ATLAS_LOG=warn ATLAS_JWT_SECRET=$SECRET ATLAS_JWT_CACHE_ENTRIES=0 start nocache target/release/atlas serve --listen 127.0.0.1:0 --cores 1)
rps() { wrk -t1 -c"$CONNS" -d"${SECS}s" -s "$2" "$1" 2>/dev/null | awk '/Non-2xx/ {bad=1} /Requests\/sec/ {r=$2} END {print (bad ? "ERROR" : r)}'; }
for u in "$off" "$on" "$nocache"; do wrk -t1 -c"$CONNS" -d2s -s bench/scripts/ai_hit_auth.lua "$u" >/dev/null 2>&1; done
echo "round off on(cache) on(no-cache)"
for r in $(seq "$ROUNDS"); do
  echo "$r $(rps "$off" bench/scripts/ai_hit.lua) $(rps "$on" bench/scripts/ai_hit_auth.lua) $(rps "$nocache" bench/scripts/ai_hit_auth.lua)"
done | tee "$out/results"
python3 - "$out/results" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1]) if l[0].isdigit()]
off, on, nc = (st.median(float(r[i]) for r in rows) for i in (1, 2, 3))
print(f"median req/s: off {off:.0f}  on {on:.0f} ({100*(on/off-1):+.1f} %)  no cache {nc:.0f} ({100*(nc/off-1):+.1f} %)")
PY
curl -s "$on/metrics" | grep '^ai_auth_token_cache_total'
