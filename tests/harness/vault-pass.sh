#!/usr/bin/env bash
# The lab's vault password, for ANSIBLE_VAULT_PASSWORD_FILE (an executable file: Ansible runs it
# and reads the password from its output). Makes .lab/vault-pass (random, 0600) on first use, so a
# run that starts before `lab.sh up` (molecule's create step) can already name it.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
pass="$root/.lab/vault-pass"
if [ ! -s "$pass" ]; then
  mkdir -p "$root/.lab"
  chmod 700 "$root/.lab"
  (umask 077 && head -c 32 /dev/urandom | base64 | tr -d '/+=' > "$pass")
fi
chmod 600 "$pass"
cat "$pass"
