#!/usr/bin/env bash
# Installs Atlas as systemd services: the binary, the `atlas` system user, both units, the
# configuration directory (environment and TOML files, never overwritten), the sysctl drop-in,
# the tuning scripts and the docs. Idempotent: a second run changes nothing and says so.
#
#   systemd/install.sh [--binary PATH] [--prefix DIR] [--root DIR] [--dry-run]
#
#   --binary PATH  the atlas binary (default: target/release/atlas of this checkout)
#   --prefix DIR   where bin/, share/ go (default /usr/local); units point ExecStart there
#   --root DIR     stage everything under DIR instead of / (an image, a package, a test);
#                  nothing is reloaded or started then
#   --dry-run      print what would be done, change nothing
#
# It does not start anything. Afterwards: `systemctl enable --now atlas` (and
# atlas-model-endpoint on model-tier hosts); `tuning/apply.sh` loads the sysctls now.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
binary="$repo/target/release/atlas"
prefix=/usr/local
root=/
dry=0

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }

while (($#)); do
  case $1 in
    --binary) binary=${2:?--binary needs a path}; shift 2 ;;
    --prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
    --root) root=${2:?--root needs a directory}; shift 2 ;;
    --dry-run) dry=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "install.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done

case $prefix in /*) ;; *) echo "install.sh: --prefix must be absolute" >&2; exit 2 ;; esac
case $root in /*) ;; *) root="$PWD/$root" ;; esac
root=${root%/}
if [ ! -x "$binary" ]; then
  echo "install.sh: no executable at $binary (cargo build --release, or --binary PATH)" >&2
  exit 2
fi

changed=0
say() { printf '%-10s %s\n' "$1" "$2"; }
run() {
  if ((dry)); then say would "$*"; else "$@"; fi
}

# install_file SRC DEST MODE: copies SRC to $root/DEST unless identical.
install_file() {
  local src=$1 dest=$root$2 mode=$3
  if [ -f "$dest" ] && cmp -s "$src" "$dest" && [ "$(stat -c %a "$dest")" = "${mode#0}" ]; then
    say unchanged "$2"
    return
  fi
  changed=1
  if ((dry)); then say would "install -D -m $mode $src $dest"; return; fi
  install -D -m "$mode" "$src" "$dest"
  say installed "$2"
}

# install_config SRC DEST MODE: a configuration file the operator edits. Created when
# missing; when present and different from the shipped one, the shipped one goes next to it
# as DEST.dist and the operator's file is kept.
install_config() {
  local src=$1 dest=$root$2 mode=$3
  if [ ! -e "$dest" ]; then
    install_file "$src" "$2" "$mode"
  elif cmp -s "$src" "$dest"; then
    say unchanged "$2"
  else
    say kept "$2 (yours; the shipped version is $2.dist)"
    install_file "$src" "$2.dist" "$mode"
  fi
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The units point at the binary and docs under the prefix.
for unit in atlas.service atlas-model-endpoint.service; do
  sed -e "s|/usr/local/bin/atlas|$prefix/bin/atlas|g" \
      -e "s|/usr/local/share/doc/atlas|$prefix/share/doc/atlas|g" \
      "$here/$unit" > "$tmp/$unit"
done
printf '%s\n' '# Settings for atlas.service that SIGHUP (systemctl reload atlas) re-reads; keys are the' \
  '# variable names in lower case without ATLAS_ (README: Configuration, Reload). Example:' \
  '# alert_response_time_ms = 400' > "$tmp/atlas.toml"
printf '%s\n' '# Settings for atlas-model-endpoint.service that SIGHUP re-reads (log, shutdown_grace_s).' > "$tmp/model-endpoint.toml"
printf '%s\n' '# Environment of atlas-model-endpoint.service. Its command line:' \
  '#ATLAS_MODEL_ENDPOINT_ARGS=--listen 127.0.0.1:9000 --cores 4' \
  '# Common settings (see atlas.env for all of them), for example:' \
  '#ATLAS_LOG=info' > "$tmp/model-endpoint.env"
echo 'u atlas - "Atlas inference gateway" /var/lib/atlas' > "$tmp/sysusers.conf"

say target "root=${root:-/} prefix=$prefix binary=$binary$( ((dry)) && echo ' (dry run)')"
install_file "$binary" "$prefix/bin/atlas" 0755
install_file "$tmp/atlas.service" /etc/systemd/system/atlas.service 0644
install_file "$tmp/atlas-model-endpoint.service" /etc/systemd/system/atlas-model-endpoint.service 0644
install_file "$tmp/sysusers.conf" /etc/sysusers.d/atlas.conf 0644
install_file "$repo/tuning/99-atlas.conf" /etc/sysctl.d/99-atlas.conf 0644
for f in README.md 99-atlas.conf apply.sh redis.conf; do
  mode=0644; [ "$f" = apply.sh ] && mode=0755
  install_file "$repo/tuning/$f" "$prefix/share/atlas/tuning/$f" "$mode"
done
install_file "$repo/README.md" "$prefix/share/doc/atlas/README.md" 0644

# The system user and group (systemd-sysusers where present: it understands --root).
if grep -q '^atlas:' "$root/etc/passwd" 2>/dev/null; then
  say unchanged "user atlas"
else
  changed=1
  if command -v systemd-sysusers >/dev/null; then
    run systemd-sysusers --root="${root:-/}" "$root/etc/sysusers.d/atlas.conf"
  else
    run useradd --system --user-group --root "${root:-/}" --home-dir /var/lib/atlas \
      --no-create-home --shell /usr/sbin/nologin --comment "Atlas inference gateway" atlas
  fi
  ((dry)) || say created "user atlas"
fi

# Configuration: readable by the service's group only (an env file may hold secrets).
install_config "$here/atlas.env" /etc/atlas/atlas.env 0640
install_config "$tmp/atlas.toml" /etc/atlas/atlas.toml 0640
install_config "$tmp/model-endpoint.env" /etc/atlas/model-endpoint.env 0640
install_config "$tmp/model-endpoint.toml" /etc/atlas/model-endpoint.toml 0640
gid=$(awk -F: '$1 == "atlas" { print $3 }' "$root/etc/group" 2>/dev/null || true)
for f in /etc/atlas /etc/atlas/atlas.env /etc/atlas/atlas.toml /etc/atlas/model-endpoint.env /etc/atlas/model-endpoint.toml; do
  [ -e "$root$f" ] || continue
  if [ -n "$gid" ] && [ "$(stat -c %u:%g "$root$f")" != "0:$gid" ]; then
    changed=1
    run chown "0:$gid" "$root$f"
  fi
done
if [ -d "$root/etc/atlas" ] && [ "$(stat -c %a "$root/etc/atlas")" != 750 ]; then
  changed=1
  run chmod 0750 "$root/etc/atlas"
fi

# On the live system, make systemd see the new units.
if [ -z "$root" ] && ((changed)) && [ -d /run/systemd/system ]; then
  run systemctl daemon-reload
fi

if ((dry)); then
  say done "dry run: nothing was changed"
elif ((changed)); then
  say done "installed. Next: systemctl enable --now atlas; tuning/apply.sh loads the sysctls now"
else
  say done "nothing to do: already installed"
fi
