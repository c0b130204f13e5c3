#!/usr/bin/env bash
# Run a command against the lab as an operator would from this checkout: the repo's ansible.cfg
# (inventory inventories/lab), the lab's vault password, the venv's tools, and no ANSIBLE_*
# setting inherited from the caller (molecule exports its own, e.g. its ansible.cfg).
#   lab-run.sh ansible-playbook rollout.yml -e stage=w1d4_daily_rewards
# shellcheck source=tests/harness/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$GR_ROOT" || exit 1
for name in $(compgen -e); do
  case "$name" in ANSIBLE_*|MOLECULE_*) unset "$name" ;; esac
done
export PATH="$GR_ROOT/.venv/bin:$PATH" ANSIBLE_CONFIG="$GR_ROOT/ansible.cfg" ANSIBLE_FORCE_COLOR=false
export ANSIBLE_VAULT_PASSWORD_FILE="$GR_ROOT/tests/harness/vault-pass.sh"
[ "$#" -gt 0 ] || die "usage: lab-run.sh COMMAND [ARG...]"
exec "$@"
