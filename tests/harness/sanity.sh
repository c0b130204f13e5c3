#!/usr/bin/env bash
# ansible-test must run from inside ansible_collections/<namespace>/<name>: copy the files git
# knows (tracked, and new ones not ignored) into a private folder, then run the sanity tests there.
# Extra arguments go to `ansible-test sanity` (e.g. --test validate-modules plugins/modules/x.py).
source "$(dirname "$0")/lib.sh"
cd "$GR_ROOT"
mkdir -p build
work=$(mktemp -d "$GR_ROOT/build/sanity.XXXXXX")
trap 'rm -rf "$work"' EXIT
dest="$work/ansible_collections/gradual/rollout"
mkdir -p "$dest"
git ls-files -co --exclude-standard -z | rsync -a --from0 --files-from=- ./ "$dest/"
cd "$dest"
git init -q . && git add -A >/dev/null   # ansible-test lists files through git when present
pyver=$(python -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
ansible-test sanity --venv --python "$pyver" --color no --truncate 0 "$@"
