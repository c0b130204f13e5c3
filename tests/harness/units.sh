#!/usr/bin/env bash
# ansible-test units on the collection, for the Python of .venv, without ansible-test's download
# host or containers:
# - the tests run on .venv's packages through .venv-units, a venv layered over .venv (a .pth line
#   puts .venv's site-packages after its own) that adds only what .venv lacks from
#   tests/unit/requirements.txt: the pytest plugins ansible-test runs pytest with (pytest-xdist,
#   pytest-mock, mock). `make unit` (plain pytest on .venv) stays the fast way;
# - ansible-test must run from inside ansible_collections/<namespace>/<name> (collection_tree,
#   lib.sh); build/collections links the copy into itself as venv.sh links the checkout, for the
#   tests that run ansible-playbook or a module in a subprocess (tests/harness/ansible_run.py).
# Extra arguments go to `ansible-test units` (e.g. tests/unit/plugins/module_utils/test_flags.py,
# --num-workers 1, -v).
# shellcheck source=tests/harness/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$GR_ROOT" || exit 1
[ -x .venv/bin/ansible-test ] || die "run tests/harness/venv.sh (make venv) first"

pyver=$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
want=$( { echo "$site"; cat requirements.txt tests/unit/requirements.txt; } | sha256sum | cut -d' ' -f1)
if [ ! -x .venv-units/bin/python ] || [ "$(cat .venv-units/.stamp 2>/dev/null)" != "$want" ]; then
  say "building .venv-units (ansible-test's pytest plugins over .venv)"
  rm -rf .venv-units
  .venv/bin/python -m venv .venv-units
  echo "$site" > "$(.venv-units/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/gradual-venv.pth"
  # pip sees .venv's packages through the .pth: what .venv has at the pinned version stays there
  .venv-units/bin/pip install -q -r tests/unit/requirements.txt >"$GR_STATE/pip-units.log" 2>&1 \
    || { tail -n 5 "$GR_STATE/pip-units.log" >&2; die "cannot install tests/unit/requirements.txt"; }
  echo "$want" > .venv-units/.stamp
fi

collection_tree units
cd "$GR_TREE" || exit 1
mkdir -p build/collections/ansible_collections/gradual
ln -sfn ../../../.. build/collections/ansible_collections/gradual/rollout
# The tests run on .venv-units's Python; they find ansible-playbook and ansible-inventory on PATH.
PATH="$GR_ROOT/.venv/bin:$PATH" ANSIBLE_CONFIG="$GR_TREE/ansible.cfg" \
  ansible-test units --local --python "$pyver" --python-interpreter "$GR_ROOT/.venv-units/bin/python" \
  --color no --truncate 0 "$@"
