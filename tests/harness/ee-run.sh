#!/usr/bin/env bash
# Run a playbook the way an AWX job runs it: `ansible-runner run` inside the execution environment
# (tests/harness/ee.sh, `make ee`), on a private data dir made for this run, then print the result.
#   ee-run.sh [-i INVENTORY] PLAYBOOK [ansible-playbook options...]
#   ee-run.sh rollout.yml -e rollout_action=status
#   ee-run.sh -i inventories/lab rollout.yml -e rollout_ignore_bake=true
# The private data dir (removed afterwards):
#   project/         this checkout's tracked files, as a project sync checks them out, plus the
#                    inventory's untracked files (the lab's vault.yml) and the SSH key the
#                    inventory names (.lab/id_ed25519 for inventories/lab)
#   env/extravars    every `-e key=value` (survey answers); other options go to env/cmdline
#   env/passwords    the vault password answering --ask-vault-pass (a vault credential)
#   env/envvars      ANSIBLE_COLLECTIONS_PATH: the collections of the image, as AWX sets it (the
#                    project's ansible.cfg would look in ./build/collections, which is not there)
# The playbooks come from the project, gradual.rollout and the community collections from the image.
# Settings: EE_IMAGE (default gradual/rollout-ee:latest), EE_NETWORK (the container's network,
# default gradual-lab: the lab's 172.28.87.0/24), EE_SSH_KEY (default .lab/id_ed25519),
# EE_VAULT_PASSWORD_FILE (default .lab/vault-pass when it exists), EE_ARTIFACTS (a folder that
# receives the run's artifacts: status, rc, stdout, job_events).
# Prints the playbook's output, then one line "ee-run: <status> rc=<rc> in <s>s"; exits with rc.
# shellcheck source=tests/harness/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$GR_ROOT" || exit 1

IMAGE=${EE_IMAGE:-gradual/rollout-ee:latest}
NETWORK=${EE_NETWORK:-gradual-lab}
KEY=${EE_SSH_KEY:-.lab/id_ed25519}
VAULT=${EE_VAULT_PASSWORD_FILE:-.lab/vault-pass}
INVENTORY=inventories/lab

usage() { die "usage: ee-run.sh [-i INVENTORY] PLAYBOOK [ansible-playbook options...]"; }
while [ "$#" -gt 0 ]; do
  case "$1" in
    -i|--inventory) [ "$#" -ge 2 ] || usage; INVENTORY=$2; shift 2 ;;
    -*) usage ;;
    *) break ;;
  esac
done
[ "$#" -ge 1 ] || usage
PLAYBOOK=$1; shift
INVENTORY=${INVENTORY%/}
case "$INVENTORY" in /*|../*) die "the inventory must be a path inside this checkout (got $INVENTORY)" ;; esac
[ -e "$INVENTORY" ] || die "no inventory $INVENTORY"
[ -f "$PLAYBOOK" ] || die "no playbook $PLAYBOOK in this checkout"

need_cmd docker "apt-get install docker.io"
docker info >/dev/null 2>&1 || die "no Docker engine answers: run make docker"
docker image inspect "$IMAGE" >/dev/null 2>&1 || die "no execution environment image $IMAGE: run make ee"
docker network inspect "$NETWORK" >/dev/null 2>&1 || die "no docker network $NETWORK (make lab-up makes gradual-lab; set EE_NETWORK)"
runner_user=$(docker image inspect -f '{{.Config.User}}' "$IMAGE")
runner_user=${runner_user:-0}

pdd=$(mktemp -d /var/tmp/gradual-ee-run.XXXXXX)
trap 'rm -rf --one-file-system "$pdd"' EXIT
mkdir -p "$pdd/project" "$pdd/env"

# project/: what a project sync checks out, plus the inventory's files git does not track.
git ls-files -z | rsync -a --from0 --files-from=- ./ "$pdd/project/"
if [ -d "$INVENTORY" ]; then
  rsync -a --exclude '*.pyc' "$INVENTORY/" "$pdd/project/$INVENTORY/"
else
  install -D -m 0644 "$INVENTORY" "$pdd/project/$INVENTORY"
fi
if [ -f "$KEY" ]; then
  case "$KEY" in /*) die "EE_SSH_KEY must be a path inside this checkout (the inventory names it relative to it)" ;; esac
  install -D -m 0600 "$KEY" "$pdd/project/$KEY"
fi

# env/: survey answers as extravars, everything else on the command line.
python3 - "$pdd/env" "$@" <<'PY'
import json, shlex, sys
env, args = sys.argv[1], sys.argv[2:]
extravars, cmdline = {}, []
i = 0
while i < len(args):
    a = args[i]
    if a in ("-e", "--extra-vars") and i + 1 < len(args):
        value = args[i + 1]
        key, sep, val = value.partition("=")
        if sep and key.isidentifier() and not value.startswith(("@", "{")):
            extravars[key] = val
        else:
            cmdline += [a, value]
        i += 2
        continue
    cmdline.append(a)
    i += 1
with open(env + "/extravars", "w") as f:
    json.dump(extravars, f)
with open(env + "/cmdline", "w") as f:
    f.write(" ".join(shlex.quote(c) for c in cmdline))
with open(env + "/envvars", "w") as f:
    json.dump({"ANSIBLE_COLLECTIONS_PATH": "/usr/share/ansible/collections", "ANSIBLE_FORCE_COLOR": "false"}, f)
PY
if [ -s "$VAULT" ]; then
  # --ask-vault-pass answered from env/passwords, as AWX does with a vault credential.
  printf ' --ask-vault-pass' >> "$pdd/env/cmdline"
  python3 -c 'import json, sys; print(json.dumps({r"^Vault password:\s*?$": open(sys.argv[1]).read().strip()}))' \
    "$VAULT" > "$pdd/env/passwords"
fi
chmod -R go-rwx "$pdd"
chown -R "$runner_user:0" "$pdd"

start=$(date +%s)
rc=0
docker run --rm --network "$NETWORK" -v "$pdd:/runner" "$IMAGE" \
  ansible-runner run /runner -p "$PLAYBOOK" --inventory "/runner/project/$INVENTORY" --ident ee-run || rc=$?
seconds=$(( $(date +%s) - start ))
art="$pdd/artifacts/ee-run"
status=$(cat "$art/status" 2>/dev/null || echo "no-status")
runner_rc=$(cat "$art/rc" 2>/dev/null || echo "$rc")
if [ -n "${EE_ARTIFACTS:-}" ]; then
  mkdir -p "$EE_ARTIFACTS"
  cp -r "$art/." "$EE_ARTIFACTS/" 2>/dev/null || true
fi
echo "ee-run: $status rc=$runner_rc in ${seconds}s ($PLAYBOOK in $IMAGE)"
[ "$rc" -eq 0 ] || exit "$rc"
exit "$runner_rc"
