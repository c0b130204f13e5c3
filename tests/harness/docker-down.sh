#!/usr/bin/env bash
# Stop the Docker engine only if docker-up.sh started it for this same owner (GR_OWNER).
# shellcheck source=tests/harness/lib.sh
source "$(dirname "$0")/lib.sh"
pidfile="$GR_STATE/dockerd.pid"
[ -f "$pidfile" ] || exit 0
read -r pid owner < "$pidfile" || exit 0
[ -n "${GR_OWNER:-}" ] && [ "$owner" = "$GR_OWNER" ] || exit 0
if kill -0 "$pid" 2>/dev/null; then
  say "stopping the dockerd this harness started (pid $pid)"
  kill "$pid"
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
fi
rm -f "$pidfile"
