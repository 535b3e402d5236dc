#!/usr/bin/env bash
# Applies the safe subset of tuning/README.md to this host, idempotently:
#
#   - installs tuning/99-atlas.conf as /etc/sysctl.d/99-atlas.conf (loaded at every boot) and
#     sets each of its parameters now, only where the current value falls short (a higher
#     somaxconn, say, is left alone);
#   - transparent huge pages: `always` becomes `madvise`, synchronous defrag becomes
#     `defer+madvise` (until reboot: add transparent_hugepage=madvise to the kernel command
#     line to keep it).
#
# Opt-in, because they trade power or change the NIC's receive path:
#   --governor   the `performance` frequency governor on every CPU that has one
#   --rps        Receive Packet Steering over every CPU for interfaces with fewer receive
#                queues than CPUs
#
# Not touched (see the guide): IRQ affinity (irqbalance or manual), isolcpus/nohz_full (boot
# parameters), NIC queue counts and coalescing (ethtool), limits (the systemd unit sets them).
#
#   tuning/apply.sh [--dry-run] [--governor] [--rps] [--root DIR]
#
#   --dry-run    print what would change, change nothing
#   --root DIR   operate on /proc, /sys and /etc under DIR (a test tree)
#
# `atlas tune --check` audits the result.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=
dry=0
governor=0
rps=0
while (($#)); do
  case $1 in
    --dry-run) dry=1; shift ;;
    --governor) governor=1; shift ;;
    --rps) rps=1; shift ;;
    --root) root=${2:?--root needs a directory}; root=${root%/}; shift 2 ;;
    -h | --help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "apply.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$root" ] && ((!dry)) && [ "$(id -u)" != 0 ]; then
  echo "apply.sh: needs root (or --dry-run)" >&2
  exit 1
fi

changes=0
say() { printf '%-10s %s\n' "$1" "$2"; }

# put FILE VALUE WHAT: writes VALUE into FILE (a /proc or /sys knob) unless dry.
put() {
  changes=$((changes + 1))
  if ((dry)); then
    say would "echo '$2' > $1   # $3"
  else
    printf '%s\n' "$2" > "$root$1"
    say set "$3"
  fi
}

# How each parameter of 99-atlas.conf compares: min (raise to at least) or max (lower to at
# most). Kept equal to the audit's table (src/tune/sysctl.rs) by tests/tune.rs.
direction() {
  case $1 in
    net.core.somaxconn | net.ipv4.tcp_max_syn_backlog | net.core.netdev_max_backlog | net.ipv4.tcp_tw_reuse) echo min ;;
    net.ipv4.tcp_fin_timeout | vm.swappiness) echo max ;;
    *) echo exact ;;
  esac
}

# 1. The sysctl drop-in, installed and applied.
dropin=/etc/sysctl.d/99-atlas.conf
if [ -f "$root$dropin" ] && cmp -s "$here/99-atlas.conf" "$root$dropin"; then
  say unchanged "$dropin"
else
  changes=$((changes + 1))
  if ((dry)); then
    say would "install -D -m 0644 $here/99-atlas.conf $root$dropin"
  else
    install -D -m 0644 "$here/99-atlas.conf" "$root$dropin"
    say installed "$dropin"
  fi
fi
while IFS='=' read -r key value; do
  key=$(echo "$key" | tr -d '[:space:]')
  value=$(echo "$value" | xargs)
  case $key in '' | '#'*) continue ;; esac
  file="/proc/sys/${key//.//}"
  if [ ! -e "$root$file" ]; then
    say skipped "$key (not on this kernel)"
    continue
  fi
  current=$(xargs < "$root$file")
  case $(direction "$key") in
    min) short=$((current < value)) ;;
    max) short=$((current > value)) ;;
    *) [ "$current" = "$value" ] && short=0 || short=1 ;;
  esac
  if ((short)); then
    put "$file" "$value" "$key = $value (was $current)"
  else
    say unchanged "$key = $current"
  fi
done < "$here/99-atlas.conf"

# 2. Transparent huge pages.
thp=/sys/kernel/mm/transparent_hugepage
for pair in enabled:always:madvise defrag:always:defer+madvise; do
  IFS=: read -r knob bad good <<< "$pair"
  [ -e "$root$thp/$knob" ] || continue
  current=$(sed -E 's/.*\[([^]]+)\].*/\1/' "$root$thp/$knob")
  if [ "$current" = "$bad" ]; then
    put "$thp/$knob" "$good" "transparent_hugepage/$knob = $good (was $current)"
  else
    say unchanged "transparent_hugepage/$knob = $current"
  fi
done

# 3. Frequency governor (opt-in).
if ((governor)); then
  for f in "$root"/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor; do
    [ -e "$f" ] || { say skipped "governor (no cpufreq: fixed frequency or a VM)"; break; }
    rel=${f#"$root"}
    if [ "$(cat "$f")" = performance ]; then
      say unchanged "$rel = performance"
    else
      put "$rel" performance "$rel = performance (was $(cat "$f"))"
    fi
  done
fi

# 4. RPS (opt-in): every CPU for interfaces with fewer receive queues than CPUs.
if ((rps)); then
  ncpu=$(getconf _NPROCESSORS_ONLN)
  mask=$(printf '%x' $(((1 << ncpu) - 1)))
  for dev in "$root"/sys/class/net/*; do
    name=${dev##*/}
    [ "$name" = lo ] || [ ! -e "$dev/device" ] && continue
    queues=("$dev"/queues/rx-*)
    [ -e "${queues[0]}" ] || continue
    if ((${#queues[@]} >= ncpu)); then
      say unchanged "$name: ${#queues[@]} rx queues for $ncpu CPUs, RPS not needed"
      continue
    fi
    for q in "${queues[@]}"; do
      rel=${q#"$root"}/rps_cpus
      if [ "$(sed 's/^0*//; s/,//g' "$q/rps_cpus")" = "$mask" ]; then
        say unchanged "$rel = $mask"
      else
        put "$rel" "$mask" "$rel = $mask"
      fi
    done
  done
fi

if ((dry)); then
  say done "$changes change(s) would be made"
else
  say done "$changes change(s) made"
fi
