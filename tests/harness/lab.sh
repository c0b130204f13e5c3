#!/usr/bin/env bash
# The lab: seven systemd containers on one docker network, reached by Ansible over SSH like real
# hosts. Usage: lab.sh up|down|status
# shellcheck source=tests/harness/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$GR_ROOT" || exit 1

NET=gradual-lab
SUBNET=${GR_LAB_SUBNET:-172.28.87.0/24}
declare -A HOSTS=([db1]=172.28.87.11 [db2]=172.28.87.12 [cache1]=172.28.87.21
                  [web1]=172.28.87.31 [app1]=172.28.87.41 [app2]=172.28.87.42
                  [mon1]=172.28.87.51)
KEY=.lab/id_ed25519
APT_CACHE_BASE="$GR_STATE/apt-archives-lab"   # one package cache per host: apt locks it

run_opts=(--cap-add SYS_ADMIN --cap-add NET_ADMIN --security-opt seccomp=unconfined
          --security-opt apparmor=unconfined --cgroupns=host
          -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /run/lock
)

up() {
  mkdir -p .lab
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
        --label gradual.lab=1 "${run_opts[@]}" -v "$APT_CACHE_BASE-$h:/var/cache/apt/archives" \
        "$GR_IMAGE:latest" /lib/systemd/systemd >/dev/null \
        || { down; die "cannot start container gr-lab-$h"; }
    fi
    docker exec -i "gr-lab-$h" sh -c 'mkdir -p -m 700 /root/.ssh && cat > /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys' < "$KEY.pub"
  done
  for h in "${!HOSTS[@]}"; do
    for _ in $(seq 1 60); do
      ssh -q -i "$KEY" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
        -o ConnectTimeout=2 "root@${HOSTS[$h]}" true 2>/dev/null && continue 2
      sleep 0.5
    done
    die "lab host $h (${HOSTS[$h]}) does not answer over SSH"
  done
  secrets
  say "lab up: ${!HOSTS[*]}"
}

# Random values for every name in inventories/secrets.keys that has none yet, kept in a
# vault-encrypted group_vars file. Existing values are kept so a running lab stays consistent.
secrets() {
  # The password file is named here, so one from the environment would be a second "default" id.
  local pass=.lab/vault-pass vault=inventories/lab/group_vars/all/vault.yml plain
  "$GR_ROOT/tests/harness/vault-pass.sh" >/dev/null
  plain=$(umask 077 && mktemp)
  if [ -f "$vault" ]; then
    env -u ANSIBLE_VAULT_PASSWORD_FILE ansible-vault view --vault-password-file "$pass" "$vault" > "$plain" \
      || { rm -f "$plain"; die "cannot decrypt $vault with $pass (remove both to regenerate)"; }
  else
    echo "---" > "$plain"
  fi
  local key
  while read -r key; do
    case "$key" in ''|'#'*) continue ;; esac
    grep -q "^$key:" "$plain" || printf '%s: "%s"\n' "$key" "$(head -c 24 /dev/urandom | base64 | tr -d '/+=')" >> "$plain"
  done < inventories/secrets.keys
  (umask 077 && env -u ANSIBLE_VAULT_PASSWORD_FILE ansible-vault encrypt --vault-password-file "$pass" --output "$vault" "$plain" >/dev/null)
  rm -f "$plain"
  chmod 600 "$vault"
}

down() {
  local ids
  docker info >/dev/null 2>&1 || { say "no Docker engine answers: no lab to remove"; return 0; }
  ids=$(docker ps -aq --filter label=gradual.lab=1)
  [ -z "$ids" ] || echo "$ids" | xargs docker rm -f >/dev/null
  docker network rm "$NET" >/dev/null 2>&1 || true
  say "lab down"
}

status() { docker ps --filter label=gradual.lab=1 --format 'table {{.Names}}\t{{.Status}}'; }

case "${1:-}" in
  up) up ;; down) down ;; status) status ;;
  *) die "usage: lab.sh up|down|status" ;;
esac
