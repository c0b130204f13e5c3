#!/usr/bin/env bash
# Stop the Docker engine only if docker-up.sh started it.
# shellcheck source=tests/harness/lib.sh
source "$(dirname "$0")/lib.sh"
pidfile="$GR_STATE/dockerd.pid"
[ -f "$pidfile" ] || exit 0
pid=$(cat "$pidfile")
if kill -0 "$pid" 2>/dev/null; then
  say "stopping the dockerd this harness started (pid $pid)"
  kill "$pid"
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
fi
rm -f "$pidfile"
