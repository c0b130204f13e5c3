#!/usr/bin/env bash
# Create .venv from requirements.txt, reinstalling only when requirements.txt changed, and link the
# checkout into build/collections so `gradual.rollout.*` resolves to the working tree.
# shellcheck source=tests/harness/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$GR_ROOT" || exit 1
need_cmd python3 "apt-get install python3 python3-venv"

stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  need_disk 1500 "$GR_ROOT"
  say "installing Python requirements into .venv (first time: a few minutes)"
  python3 -m venv .venv || die "python3 -m venv failed (apt-get install python3-venv)"
  .venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
  .venv/bin/pip install -q -r requirements.txt >"$GR_STATE/pip.log" 2>&1 \
    || { tail -n 5 "$GR_STATE/pip.log" >&2; die "pip install -r requirements.txt failed"; }
  echo "$want" > "$stamp"
fi

mkdir -p build/collections/ansible_collections/gradual
ln -sfn ../../../.. build/collections/ansible_collections/gradual/rollout
