#!/usr/bin/env bash
# The connection burst of backlog.sh on a many-core host, run from a directory holding the
# release `atlas` binary and bench/scripts/burst.py: Atlas with 8 shards on CPUs 0-7, the
# two client processes on CPUs 8-15, backlog 1024 vs net.core.somaxconn, alternating.
#
#   bash backlog_device.sh [N] [RUNS]     (20000 2)
set -u
N=${1:-20000}; R=${2:-2}
som=$(cat /proc/sys/net/core/somaxconn)
echo "somaxconn=$som tcp_max_syn_backlog=$(cat /proc/sys/net/ipv4/tcp_max_syn_backlog) N=$N"
net="127.$((RANDOM % 250 + 2)).$((RANDOM % 250))"; k=0
for r in $(seq "$R"); do for b in 1024 "$som"; do
  k=$((k + 1))
  ATLAS_LISTEN_BACKLOG=$b ATLAS_MAX_CONNECTIONS=40000 ATLAS_LOG=warn taskset -c 0-7 ./atlas serve --listen 127.0.0.1:0 > o.txt 2> e.txt &
  pid=$!; for _ in $(seq 100); do grep -q listening o.txt && break; sleep 0.05; done
  port=$(grep -o '127.0.0.1:[0-9]*' o.txt | cut -d: -f2)
  o0=$(nstat -az TcpExtListenOverflows | awk '/Overflows/ {print $2}')
  res=$(taskset -c 8-15 python3 burst.py 127.0.0.1 "$port" "$N" --procs 2 --source "$net.$k")
  o1=$(nstat -az TcpExtListenOverflows | awk '/Overflows/ {print $2}')
  kill -TERM $pid; wait $pid
  echo "backlog=$b run=$r overflows=$((o1 - o0)) $res"
done; done
