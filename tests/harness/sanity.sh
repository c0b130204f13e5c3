#!/usr/bin/env bash
# ansible-test sanity, runnable without reaching ansible-test's own download host:
# - the sanity tools live in .venv-sanity, pinned from ansible-test's own requirement files
#   (they agree with each other, so one venv serves every test), and run there locally;
# - ansible-test must run from inside ansible_collections/<namespace>/<name>: the files git knows
#   are copied into a private folder, beside the collections we depend on (collection_tree, lib.sh).
# Extra arguments go to `ansible-test sanity` (e.g. --test validate-modules plugins/modules/x.py).
# shellcheck source=tests/harness/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$GR_ROOT" || exit 1
[ -x .venv/bin/ansible-test ] || die "run tests/harness/venv.sh (make venv) first"

core=$(.venv/bin/python -c 'import ansible; print(ansible.__version__)')
reqdir=$(.venv/bin/python -c 'import ansible_test, os; print(os.path.join(os.path.dirname(ansible_test.__file__), "_data", "requirements"))')
want=$( { echo "$core"; cat "$reqdir"/sanity.*.txt; } | sha256sum | cut -d' ' -f1)
if [ "$(cat .venv-sanity/.stamp 2>/dev/null)" != "$want" ]; then
  say "building .venv-sanity (ansible-core $core and the sanity tools)"
  rm -rf .venv-sanity
  python3 -m venv .venv-sanity
  mapfile -t tools < <(grep -hv '^#' "$reqdir"/sanity.*.txt | sort -u)
  .venv-sanity/bin/pip install -q "ansible-core==$core" "${tools[@]}" \
    >"$GR_STATE/pip-sanity.log" 2>&1 || { tail -n 5 "$GR_STATE/pip-sanity.log" >&2; die "cannot install the sanity tools"; }
  echo "$want" > .venv-sanity/.stamp
fi

# ansible-test bootstraps pip into its import-test venv with a script it downloads from a host
# we cannot reach; give it a local equivalent in the cache folder it reads first.
pipver=$(grep -ho "pip='[0-9.]*'" "$(dirname "$reqdir")/../_internal/python_requirements.py" | head -n1 | tr -dc '0-9.')
shim="$HOME/.ansible/test/cache/get_pip_${pipver//./_}.py"
if ! cmp -s tests/harness/get_pip_shim.py "$shim"; then
  mkdir -p "$(dirname "$shim")" && cp tests/harness/get_pip_shim.py "$shim"
fi

collection_tree sanity
pyver=$(.venv-sanity/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
cd "$GR_TREE" || exit 1
PATH="$GR_ROOT/.venv-sanity/bin:$PATH" ansible-test sanity --local --python "$pyver" --color no --truncate 0 "$@"
