#!/usr/bin/env bash
# The project's test command (the README's "Run the tests"). Installs what the tests need on a
# fresh Debian machine, then runs every unit, property and integration test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
# promtool (Debian package `prometheus`) checks the /metrics exposition in tests/metrics.rs.
command -v promtool >/dev/null || need_pkgs+=(prometheus)
# redis-server and redis-cli: the Redis L2 tests (tests/redis.rs) start their own servers and
# a three-master cluster on free ports.
command -v redis-server >/dev/null || need_pkgs+=(redis-server)
command -v redis-cli >/dev/null || need_pkgs+=(redis-tools)
# systemd-analyze (verify, security, syscall-filter) and strace: the unit checks in
# tests/systemd.rs (systemd need not run as PID 1).
command -v systemd-analyze >/dev/null || need_pkgs+=(systemd)
command -v strace >/dev/null || need_pkgs+=(strace)
if ((${#need_pkgs[@]})); then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  else
    echo "tests/run.sh: install ${need_pkgs[*]} first (needs root)" >&2
    exit 1
  fi
fi

# Python tools the tests drive (tests/requirements.txt, pinned: graphql-core checks the
# GraphQL schema, gql loads it by introspection like any GraphQL client, mlserver serves
# examples/mlserver over the Open Inference Protocol for tests/mlserver.rs), in a virtual
# environment under target/ that is rebuilt when the pins change, first on PATH for the tests.
venv=target/test-venv
if ! cmp -s tests/requirements.txt "$venv/requirements.txt"; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r tests/requirements.txt
  cp tests/requirements.txt "$venv/requirements.txt"
fi
export PATH="$PWD/$venv/bin:$PATH"

log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
passed=$(grep -oE '[0-9]+ passed' "$log" | awk '{s += $1} END {print s + 0}')
failed=$(grep -oE '[0-9]+ failed' "$log" | awk '{s += $1} END {print s + 0}')
echo "tests: $passed passed, $failed failed"
exit "$status"
