#!/usr/bin/env bash
# Make sure a Docker engine answers. Start dockerd in the background when none runs, and remember
# who did: the pid file carries GR_OWNER (run-tests.sh sets it to its own pid), and docker-down.sh
# stops the engine only for that same owner. An engine started by hand (`make docker`) or by
# anything else is never stopped by the harness.
# shellcheck source=tests/harness/lib.sh
source "$(dirname "$0")/lib.sh"
need_cmd docker "apt-get install docker.io"

if docker info >/dev/null 2>&1; then exit 0; fi
need_cmd dockerd "apt-get install docker.io"
[ "$(id -u)" -eq 0 ] || die "no Docker engine answers and starting one needs root"
need_disk 4000 /var/lib/docker

# An engine that is still shutting down (e.g. a harness run just stopped it) holds its pid file:
# wait for it, then clear a pid file whose process is gone, so the new dockerd does not refuse.
for _ in $(seq 1 40); do
  pid=$(cat /var/run/docker.pid 2>/dev/null) || break
  kill -0 "$pid" 2>/dev/null || { rm -f /var/run/docker.pid; break; }
  sleep 0.5
done

log="$GR_STATE/dockerd.log"
say "starting dockerd (log: $log)"
# In a session of its own: Ansible ends a task by killing its worker's process group (make demo
# runs as a molecule create task), and a daemon in that group died with it.
setsid nohup dockerd >"$log" 2>&1 </dev/null &
printf '%s %s\n' "$!" "${GR_OWNER:-manual}" > "$GR_STATE/dockerd.pid"
for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && exit 0
  kill -0 "$(cut -d' ' -f1 "$GR_STATE/dockerd.pid")" 2>/dev/null || break
  sleep 0.5
done
tail -n 5 "$log" >&2 || true
rm -f "$GR_STATE/dockerd.pid"
die "dockerd did not start within 30 s (see $log)"
