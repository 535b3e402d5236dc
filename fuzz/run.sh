#!/usr/bin/env bash
# Runs every fuzz target in turn for SECONDS each (default 600) and appends one line per
# target to LOGDIR/summary.tsv: target, seconds, executions, exec/s, corpus entries, peak RSS,
# and the artifacts written (crashes, timeouts, leaks, OOMs). Needs a nightly toolchain and
# cargo-fuzz. Each run reads fuzz/seeds/TARGET and keeps what it finds in fuzz/corpus/TARGET
# (ignored by git); crashes land in fuzz/artifacts/TARGET.
#
# Usage: [FUZZ_SECONDS=600] [NICE=19] [LOGDIR=/tmp/atlas-fuzz] fuzz/run.sh [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_EACH=${FUZZ_SECONDS:-600}
NICE=${NICE:-19}
LOGDIR=${LOGDIR:-/tmp/atlas-fuzz}
mkdir -p "$LOGDIR"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(http_head chunked http_request ai_request batch_response v2_response l2_record snapshot config)
fi
cargo +nightly fuzz build -O -a >"$LOGDIR/build.log" 2>&1
[ -f "$LOGDIR/summary.tsv" ] ||
  printf 'target\tseconds\texecs\texec_per_s\tcorpus\tpeak_rss_mb\tartifacts\tstarted\n' >"$LOGDIR/summary.tsv"
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  seeds=()
  [ -d "seeds/$t" ] && seeds+=("seeds/$t")
  [ -d "regressions/$t" ] && seeds+=("regressions/$t")
  dict=()
  case $t in http_head | http_request | chunked | batch_response) dict=(-dict=http.dict) ;; esac
  before=$(ls "artifacts/$t" | wc -l)
  started=$(date -u +%FT%TZ)
  nice -n "$NICE" cargo +nightly fuzz run -O -a "$t" "corpus/$t" "${seeds[@]}" -- \
    -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 \
    -print_final_stats=1 "${dict[@]}" >"$LOGDIR/$t.log" 2>&1 || true
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$LOGDIR/$t.log" | grep -o '[0-9]*$' || echo 0)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$LOGDIR/$t.log" | grep -o '[0-9]*$' || echo 0)
  rss=$(grep -o 'stat::peak_rss_mb: *[0-9]*' "$LOGDIR/$t.log" | grep -o '[0-9]*$' || echo 0)
  corpus=$(ls "corpus/$t" | wc -l)
  after=$(ls "artifacts/$t" | wc -l)
  found=$(ls -t "artifacts/$t" | head -n $((after - before)) | tr '\n' ' ')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$SECONDS_EACH" "$execs" "$rate" "$corpus" "$rss" \
    "${found:-none}" "$started" >>"$LOGDIR/summary.tsv"
done
cat "$LOGDIR/summary.tsv"
