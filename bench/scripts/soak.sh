#!/usr/bin/env bash
# Soak (issue 11; a benchmark, not part of CI): CONNECTIONS keep-alive connections sending a
# mixed operation load at RATE req/s for DURATION seconds, MISS_SHARE of the requests with a
# never-repeated user id (cache misses that reach the model tier), against an Atlas whose
# only model tier is two `atlas model-endpoint` processes. One endpoint is SIGKILLed at 1/3
# and at 2/3 of the run and restarted on its port RESTART_AFTER seconds later.
#
# Recorded in OUT: timeline.csv (per second, from atlas-bench: responses, 2xx, failures by
# kind, p50/p99), samples.csv (per second, from /proc: Atlas RSS and open descriptors),
# events.csv (kills and restarts), load.json and load.txt (the generator's report), and
# summary.txt: success rate outside the 10 s after each kill, p99 baseline and the seconds
# until p99 is back after each restart, RSS and descriptors after warm-up vs at the end,
# errors by kind. Targets (the issue's): RSS and fds flat after warm-up, success >= 99.9 %
# outside the seconds after each kill, p99 back to baseline within 10 s of each restart.
#
# The L1 budget is CACHE_BYTES (default 64 MiB, not the 512 MiB default): every miss stores a
# result under a new user id, so the cache grows until its budget, and "flat after warm-up"
# can only be judged once it is full. At 400 misses/s a 64 MiB budget fills in about two
# minutes, hence WARMUP=150. (tests/exhaustion.rs checks the budget itself holds.)
#
# Usage: [DURATION=600] [CONNECTIONS=10000] [RATE=2000] [MISS_SHARE=0.2] [CORES=N]
#        [MODEL_LATENCY_MS=5] [RESTART_AFTER=5] [WARMUP=150] [CACHE_BYTES=67108864]
#        [OUT=dir] [BIN=target/release] [BUILD=1] bench/scripts/soak.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-600}
CONNECTIONS=${CONNECTIONS:-10000}
RATE=${RATE:-2000}
MISS_SHARE=${MISS_SHARE:-0.2}
CORES=${CORES:-$(nproc)}
MODEL_LATENCY_MS=${MODEL_LATENCY_MS:-5}
RESTART_AFTER=${RESTART_AFTER:-5}
WARMUP=${WARMUP:-150}
CACHE_BYTES=${CACHE_BYTES:-67108864}
BIN=${BIN:-target/release}
OUT=${OUT:-$(mktemp -d /tmp/atlas-soak.XXXXXX)}
mkdir -p "$OUT"
if [ "${BUILD:-1}" = 1 ]; then
  cargo build --release -p atlas -p atlas-bench >/dev/null 2>&1
fi
ulimit -n "$(ulimit -Hn)"
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

start() { # NAME CMD...: starts CMD in the background, prints its URL once it listens
  local name=$1; shift
  "$@" >"$OUT/$name.out" 2>"$OUT/$name.err" &
  echo $! >"$OUT/$name.pid"
  wait_listening "$OUT/$name.out"
}
model() { # NAME ADDR
  ATLAS_LOG=warn start "$1" "$BIN/atlas" model-endpoint --listen "$2" --cores 1 \
    --latency-ms "$MODEL_LATENCY_MS" --concurrency 8
}
now() { date +%s.%N; }

m1=$(model m1 127.0.0.1:0)
m2=$(model m2 127.0.0.1:0)
m1_addr=${m1#http://}
atlas=$(ATLAS_LOG=warn ATLAS_EMBEDDED=false ATLAS_HEALTH_INTERVAL_S=1 \
  ATLAS_ENDPOINTS="m1=$m1;timeout_ms=1000;concurrency=8,m2=$m2;timeout_ms=1000;concurrency=8" \
  ATLAS_KEEPALIVE_TIMEOUT_S=300 ATLAS_MAX_CONNECTIONS=$((CONNECTIONS + 1000)) \
  ATLAS_CACHE_MAX_BYTES=$CACHE_BYTES \
  start atlas "$BIN/atlas" serve --listen 127.0.0.1:0 --cores "$CORES")
pid=$(cat "$OUT/atlas.pid")
echo "soak: atlas $atlas (pid $pid, $CORES shards), endpoints $m1 $m2; $CONNECTIONS connections," \
  "$RATE req/s, ${DURATION}s, miss share $MISS_SHARE, cache $CACHE_BYTES B; results in $OUT"

# /proc sampler: one line a second while Atlas runs.
echo "unix_s,rss_kib,fds,threads,cache_bytes" >"$OUT/samples.csv"
(
  while kill -0 "$pid" 2>/dev/null; do
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo)
    thr=$(awk '/^Threads:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo)
    fds=$(ls "/proc/$pid/fd" 2>/dev/null | wc -l)
    cache=$(curl -s -m 2 "$atlas/metrics" | awk '/^ai_cache_bytes / {printf "%d", $2}' || true)
    echo "$(now),$rss,$fds,$thr,$cache" >>"$OUT/samples.csv"
    sleep 1
  done
) &

echo "unix_s,event" >"$OUT/events.csv"
echo "$(now),load_start" >>"$OUT/events.csv"
"$BIN/atlas-bench" load --url "$atlas" --distinct --rate "$RATE" --duration "$DURATION" \
  --connections "$CONNECTIONS" --threads 2 --miss-share "$MISS_SHARE" \
  --operations portfolio_analysis=2,budget_optimization=2,risk_assessment=4,cashflow_forecast=2 \
  --keyspace 100 --zipf 1.0 --user-ids 10 --timeout 10 --quiet \
  --target-success 99.9 --target-hit-rate 0 --target-p95 1000 \
  --server-pid "$pid" --json "$OUT/load.json" --timeline "$OUT/timeline.csv" \
  >"$OUT/load.txt" 2>&1 &
load=$!

for frac in 1 2; do
  sleep "$(python3 -c "print(max(0, $DURATION * $frac / 3 - ($(now) - $(awk -F, '/load_start/ {print $1}' "$OUT/events.csv"))))")"
  kill -KILL "$(cat "$OUT/m1.pid")"
  echo "$(now),kill_m1" >>"$OUT/events.csv"
  sleep "$RESTART_AFTER"
  model m1 "$m1_addr" >/dev/null
  echo "$(now),restart_m1" >>"$OUT/events.csv"
done
wait "$load" || true
echo "$(now),load_end" >>"$OUT/events.csv"

python3 - "$OUT" "$WARMUP" <<'EOF' | tee "$OUT/summary.txt"
import csv, json, statistics, sys
out, warmup = sys.argv[1], float(sys.argv[2])
events = [(float(r["unix_s"]), r["event"]) for r in csv.DictReader(open(f"{out}/events.csv"))]
t0 = next(t for t, e in events if e == "load_start")
kills = [t - t0 for t, e in events if e == "kill_m1"]
restarts = [t - t0 for t, e in events if e == "restart_m1"]
rows = list(csv.DictReader(open(f"{out}/timeline.csv")))
err_cols = [c for c in rows[0] if c.startswith("err_")] if rows else []
def attempted(r): return int(r["responses"]) + sum(int(r[c]) for c in err_cols)
def window(s): return any(k <= s < k + 10 for k in kills) or any(k <= s < r + 10 for k, r in zip(kills, restarts))
outside = [r for r in rows if not window(int(r["second"]))]
inside = [r for r in rows if window(int(r["second"]))]
def rate(rs):
    a = sum(attempted(r) for r in rs)
    return (sum(int(r["ok"]) for r in rs) / a * 100) if a else float("nan")
base = [float(r["p99_ms"]) for r in rows if r["p99_ms"] and warmup <= int(r["second"]) < (kills[0] if kills else 1e9)]
p99_base = statistics.median(base) if base else float("nan")
print(f"seconds measured {len(rows)}; kills at {[round(k, 1) for k in kills]} s, restarts at {[round(r, 1) for r in restarts]} s")
print(f"success outside kill windows (kill .. restart + 10 s): {rate(outside):.4f} % of {sum(attempted(r) for r in outside)} requests")
print(f"success inside kill windows: {rate(inside):.4f} % of {sum(attempted(r) for r in inside)} requests")
print(f"p99 baseline (median per-second p99, {warmup:.0f} s .. first kill): {p99_base:.2f} ms")
for k, rs in zip(kills, restarts):
    back = None
    for r in rows:
        s = int(r["second"])
        if s < rs or not r["p99_ms"]:
            continue
        nxt = [x for x in rows if s <= int(x["second"]) < s + 3 and x["p99_ms"]]
        if len(nxt) == 3 and all(float(x["p99_ms"]) <= max(1.5 * p99_base, p99_base + 5) for x in nxt):
            back = s - rs
            break
    worst = max((float(r["p99_ms"]) for r in rows if k <= int(r["second"]) < rs + 10 and r["p99_ms"]), default=float("nan"))
    back = "never" if back is None else f"{back:.1f} s"
    print(f"kill at {k:.0f} s: worst p99 {worst:.1f} ms until restart + 10 s; p99 back within 1.5x baseline (3 s running) {back} after the restart")
samples = [(float(r["unix_s"]) - t0, int(r["rss_kib"] or 0), int(r["fds"] or 0)) for r in csv.DictReader(open(f"{out}/samples.csv")) if r["rss_kib"]]
after = [s for s in samples if s[0] >= warmup]
if after:
    first = [s for s in after if s[0] < warmup + 30] or after[:1]
    last = [s for s in after if s[0] >= after[-1][0] - 30]
    cache = [(float(r["unix_s"]) - t0, int(r.get("cache_bytes") or 0)) for r in csv.DictReader(open(f"{out}/samples.csv")) if r.get("cache_bytes")]
    if cache:
        print(f"L1 cache bytes: max {max(c for _, c in cache)}, at the end {cache[-1][1]}")
    for name, i in (("RSS KiB", 1), ("open fds", 2)):
        f, l = statistics.mean(x[i] for x in first), statistics.mean(x[i] for x in last)
        print(f"{name}: {f:.0f} after warm-up (mean of 30 s) -> {l:.0f} at the end (mean of last 30 s), max {max(x[i] for x in after)}, change {100 * (l - f) / f:+.1f} %")
d = json.load(open(f"{out}/load.json"))
o = d["overall"]
print("overall:", json.dumps({k: o.get(k) for k in ("attempted", "ok", "success_rate", "hit_rate", "latency_ms", "errors", "statuses", "unsent")}))
EOF
