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

# graphql-core (PyPI; Debian's python3-graphql-core is the old 2.x API) checks the GraphQL
# schema in tests/graphql.rs through tests/graphql_schema.py.
if ! python3 -c 'import graphql, sys; sys.exit(int(graphql.__version__.split(".")[0]) < 3)' 2>/dev/null; then
  python3 -m pip install -q 'graphql-core>=3.2,<4' || pip3 install -q --break-system-packages 'graphql-core>=3.2,<4'
fi

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
