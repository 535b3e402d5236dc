#!/usr/bin/env bash
# Core scaling on a many-core host, run from a directory holding the three release binaries
# (atlas, atlas-bench, atlas-floor) and nothing else: no toolchain, no network, no taskset.
# Atlas and the floor server run on CPUs 0-7 at 1, 2, 4 and 8 cores; the load generator runs
# on CPUs 8-15. Three 8 s runs per workload and size: about 5 minutes in all.
#
# Usage: OUT=/some/dir bash scale_device.sh   (OUT defaults to the current directory;
# writes scale.json, scale.svg and scale.txt there)
set -euo pipefail
OUT=${OUT:-.}
mkdir -p "$OUT"
for b in atlas atlas-bench atlas-floor; do
  [ -x "./$b" ] || { echo "scale_device.sh: ./$b is missing; run me from the directory holding atlas, atlas-bench and atlas-floor" >&2; exit 2; }
done
{
  echo "nproc: $(nproc) (online: $(cat /sys/devices/system/cpu/online 2>/dev/null || echo ?))"
  echo "kernel: $(uname -r)"
  echo "ulimit -l: $(ulimit -l)   ulimit -n: $(ulimit -n) (hard $(ulimit -Hn))   user: $(id -un 2>/dev/null || id -u)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ //' || echo ?)"
  echo "io_uring_disabled: $(cat /proc/sys/kernel/io_uring_disabled 2>/dev/null || echo absent)"
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
} | tee "$OUT/scale.txt"
./atlas-bench scale --atlas ./atlas --floor --floor-bin ./atlas-floor \
  --server-cores 0-7 --client-cores 8-15 --cores 1,2,4,8 --duration 8 --runs 3 \
  --json "$OUT/scale.json" --svg "$OUT/scale.svg" | tee -a "$OUT/scale.txt"
