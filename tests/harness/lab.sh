#!/usr/bin/env bash
# The lab: six systemd containers on one docker network, reached by Ansible over SSH like real
# hosts. Usage: lab.sh up|down|status
source "$(dirname "$0")/lib.sh"
cd "$GR_ROOT"

NET=gradual-lab
SUBNET=${GR_LAB_SUBNET:-172.28.87.0/24}
declare -A HOSTS=([db1]=172.28.87.11 [db2]=172.28.87.12 [cache1]=172.28.87.21
                  [web1]=172.28.87.31 [app1]=172.28.87.41 [app2]=172.28.87.42)
KEY=.lab/id_ed25519
APT_CACHE="$GR_STATE/apt-archives"

run_opts=(--cap-add SYS_ADMIN --cap-add NET_ADMIN --security-opt seccomp=unconfined
          --security-opt apparmor=unconfined --cgroupns=host
          -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /run/lock
          -v "$APT_CACHE:/var/cache/apt/archives")

up() {
  mkdir -p .lab "$APT_CACHE"
  chmod 700 .lab
  [ -f "$KEY" ] || ssh-keygen -q -t ed25519 -N '' -C gradual-lab -f "$KEY"
  docker network inspect "$NET" >/dev/null 2>&1 \
    || docker network create --subnet "$SUBNET" "$NET" >/dev/null \
    || die "cannot create docker network $NET ($SUBNET); set GR_LAB_SUBNET to a free /24"
  local h
  for h in "${!HOSTS[@]}"; do
    if [ "$(docker inspect -f '{{.State.Running}}' "gr-lab-$h" 2>/dev/null)" != true ]; then
      docker rm -f "gr-lab-$h" >/dev/null 2>&1 || true
      docker run -d --name "gr-lab-$h" --hostname "$h" --network "$NET" --ip "${HOSTS[$h]}" \
        --label gradual.lab=1 "${run_opts[@]}" "$GR_IMAGE:latest" /lib/systemd/systemd >/dev/null \
        || { down; die "cannot start container gr-lab-$h"; }
    fi
    docker exec "gr-lab-$h" sh -c 'mkdir -p -m 700 /root/.ssh && cat > /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys' < "$KEY.pub"
  done
  for h in "${!HOSTS[@]}"; do
    for _ in $(seq 1 60); do
      ssh -q -i "$KEY" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
        -o ConnectTimeout=2 "root@${HOSTS[$h]}" true 2>/dev/null && continue 2
      sleep 0.5
    done
    die "lab host $h (${HOSTS[$h]}) does not answer over SSH"
  done
  say "lab up: ${!HOSTS[*]}"
}

down() {
  local ids
  ids=$(docker ps -aq --filter label=gradual.lab=1)
  [ -z "$ids" ] || docker rm -f $ids >/dev/null
  docker network rm "$NET" >/dev/null 2>&1 || true
  say "lab down"
}

status() { docker ps --filter label=gradual.lab=1 --format 'table {{.Names}}\t{{.Status}}'; }

case "${1:-}" in
  up) up ;; down) down ;; status) status ;;
  *) die "usage: lab.sh up|down|status" ;;
esac
