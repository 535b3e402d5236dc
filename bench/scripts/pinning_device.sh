#!/usr/bin/env bash
# Shards pinned vs unpinned on a many-core host, run from a directory holding the release
# binaries atlas and atlas-bench: Atlas with 8 shards on CPUs 0-7 (pinned one per CPU, or
# ATLAS_PIN_SHARDS=false: all 8 free to move across 0-7), atlas-bench's load on CPUs 8-15,
# alternating pinned/unpinned, ROUNDS rounds of `atlas-bench scale --cores 8` (cache hits
# and GET /health, 5 s each). Also prints `atlas tune --check` for that host.
#
# Usage: OUT=/some/dir bash pinning_device.sh [ROUNDS]   (default 2; about 25 s per run)
set -euo pipefail
OUT=${OUT:-.}
ROUNDS=${1:-2}
mkdir -p "$OUT"
for b in atlas atlas-bench; do
  [ -x "./$b" ] || { echo "pinning_device.sh: ./$b is missing" >&2; exit 2; }
done
{
  echo "nproc: $(nproc); kernel: $(uname -r); ulimit -l: $(ulimit -l); cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  ./atlas tune --check || true
} | tee "$OUT/pinning.txt"
for r in $(seq "$ROUNDS"); do
  for pin in true false; do
    echo "== round $r ATLAS_PIN_SHARDS=$pin" | tee -a "$OUT/pinning.txt"
    ATLAS_PIN_SHARDS=$pin ./atlas-bench scale --atlas ./atlas --server-cores 0-7 \
      --client-cores 8-15 --cores 8 --duration 5 --runs 1 \
      --json "$OUT/pin-$pin-$r.json" 2>&1 | tee -a "$OUT/pinning.txt"
  done
done
