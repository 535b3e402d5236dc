# Shared helpers for the benchmark scripts (sourced, not run).

# wait_listening FILE: waits (up to 5 s) for a server's "listening on http://..." line in
# FILE and prints the URL.
wait_listening() {
  for _ in $(seq 100); do grep -q "listening on" "$1" 2>/dev/null && break; sleep 0.05; done
  grep -o 'http://[0-9.:]*' "$1" | head -1
}

# wrk_summary: reads `wrk --latency` output on stdin and prints
# "req/s p50_ms p90_ms p99_ms non2xx".
wrk_summary() {
  awk '
    function ms(v) { if (v ~ /us$/) {sub("us","",v); return v/1000} if (v ~ /ms$/) {sub("ms","",v); return v+0} if (v ~ /s$/) {sub("s","",v); return v*1000} return v }
    /Requests\/sec/ {rps=$2} /Non-2xx/ {bad=$NF}
    $1=="50%" {p50=ms($2)} $1=="90%" {p90=ms($2)} $1=="99%" {p99=ms($2)}
    END {printf "%s %s %s %s %s\n", rps, p50, p90, p99, (bad ? bad : 0)}'
}
