#!/usr/bin/env bash
# ansible-test must run from inside ansible_collections/<namespace>/<name>: copy the files git
# knows (tracked, and new ones not ignored) there, then run the sanity tests.
source "$(dirname "$0")/lib.sh"
cd "$GR_ROOT"
dest=build/sanity/ansible_collections/gradual/rollout
rm -rf build/sanity
mkdir -p "$dest"
git ls-files -co --exclude-standard -z | rsync -a --from0 --files-from=- ./ "$dest/"
cd "$dest"
git init -q . && git add -A >/dev/null   # ansible-test lists files through git when present
ansible-test sanity --venv --python "$(python -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')" \
  --color no --truncate 0 "$@"
