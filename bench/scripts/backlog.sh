#!/usr/bin/env bash
# A burst of new connections against Atlas with the listen backlog at 1024 (glommio's
# hard-coded value, which Atlas's own sockets replace) and at net.core.somaxconn (Atlas's
# default), alternating run by run. Each run starts a fresh `atlas serve` (release build),
# opens N connections as fast as one client process can (bench/scripts/burst.py), sends
# GET /health on each and records connection and answer times.
#
#   bench/scripts/backlog.sh [RUNS] [N] [CORES]     (defaults 5, 20000, all)
#
# Prints one line per run and the medians per setting. Needs python3. The client is two
# processes of N/2 connections each (so each stays under a 20 000 open-file limit); the
# server holds at most its own RLIMIT_NOFILE at once, and its "accept failed" log lines
# (EMFILE) are counted per run.
set -euo pipefail
cd "$(dirname "$0")/../.."
source bench/scripts/lib.sh
runs=${1:-5}
n=${2:-20000}
cores=${3:-}
atlas=target/release/atlas
[ -x "$atlas" ] || { echo "build first: cargo build --release" >&2; exit 2; }
ulimit -n "$(ulimit -Hn)"
somaxconn=$(cat /proc/sys/net/core/somaxconn)
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$out"' EXIT
echo "# $(date -u +%FT%TZ) kernel $(uname -r), $(nproc) CPUs, somaxconn=$somaxconn, tcp_max_syn_backlog=$(cat /proc/sys/net/ipv4/tcp_max_syn_backlog), N=$n"
# TcpExtListenOverflows and TcpExtSyncookiesSent (system-wide counters, read around each run).
counters() {
  nstat -az TcpExtListenOverflows TcpExtSyncookiesSent | awk '$1 == "TcpExtListenOverflows" {o=$2} $1 == "TcpExtSyncookiesSent" {c=$2} END {print o+0, c+0}'
}
printf '%-10s %-4s %9s %8s %10s %8s %11s %11s %11s %7s\n' backlog run answered retried overflows cookies conn_p50ms conn_p99ms conn_maxms emfile
# A loopback /24 of this invocation's own for the client sockets (see burst.py --source).
net="127.$((RANDOM % 250 + 2)).$((RANDOM % 250))"
k=0
for r in $(seq "$runs"); do
  for backlog in 1024 "$somaxconn"; do
    k=$((k + 1))
    ATLAS_LISTEN_BACKLOG=$backlog ATLAS_MAX_CONNECTIONS=$((n * 2)) ATLAS_LOG=warn \
      "$atlas" serve --listen 127.0.0.1:0 ${cores:+--cores "$cores"} > "$out/stdout" 2> "$out/stderr" &
    pid=$!
    url=$(wait_listening "$out/stdout")
    port=${url##*:}
    before=$(counters)
    python3 bench/scripts/burst.py 127.0.0.1 "$port" "$n" --procs 2 --source "$net.$k" --json "$out/run-$backlog-$r.json" > /dev/null || true
    kill -TERM $pid; wait $pid || true
    after=$(counters)
    emfile=$(grep -c "accept failed" "$out/stderr" || true)
    python3 - "$out/run-$backlog-$r.json" "$backlog" "$r" "$emfile" "$before" "$after" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
b, a = (list(map(int, x.split())) for x in sys.argv[5:7])
overflows, cookies = a[0] - b[0], a[1] - b[1]
d["listen_overflows"], d["syncookies_sent"] = overflows, cookies
json.dump(d, open(sys.argv[1], "w"))
print(f"{sys.argv[2]:<10} {sys.argv[3]:<4} {d['answered']:>9} {d['retried_syn']:>8} {overflows:>10} {cookies:>8} {d['connect_ms']['50']:>11.1f} {d['connect_ms']['99']:>11.1f} {d['connect_ms']['100']:>11.1f} {sys.argv[4]:>7}")
PY
    sleep 1
  done
done
python3 - "$out" 1024 "$somaxconn" <<'PY'
import glob, json, statistics, sys
out, *backlogs = sys.argv[1:]
print("# medians over runs")
for b in backlogs:
    runs = [json.load(open(f)) for f in sorted(glob.glob(f"{out}/run-{b}-*.json"))]
    med = lambda f: statistics.median(f(d) for d in runs)
    print(f"backlog={b:<6} retried_syn={med(lambda d: d['retried_syn']):.0f} "
          f"listen_overflows={med(lambda d: d['listen_overflows']):.0f} "
          f"conn_p50_ms={med(lambda d: d['connect_ms']['50']):.1f} conn_p99_ms={med(lambda d: d['connect_ms']['99']):.1f} "
          f"conn_max_ms={med(lambda d: d['connect_ms']['100']):.1f} "
          f"answered={med(lambda d: d['answered']):.0f}/{runs[0]['n']}")
PY
