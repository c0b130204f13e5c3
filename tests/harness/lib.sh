# shellcheck shell=bash
# Common helpers for the harness scripts: one clear line on failure, timed phases.
set -euo pipefail

GR_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
GR_STATE="${GR_STATE:-/var/tmp/gradual-rollout}"   # pid files, caches, keys (outside the clone)
GR_IMAGE="${GR_IMAGE:-gradual/debian12-systemd}"
export GR_ROOT GR_STATE GR_IMAGE
mkdir -p "$GR_STATE"

die() { printf 'gradual-harness: ERROR: %s\n' "$*" >&2; exit 1; }
say() { printf 'gradual-harness: %s\n' "$*" >&2; }

need_cmd() { command -v "$1" >/dev/null 2>&1 || die "required tool '$1' is missing (${2:-install it first})"; }

# need_disk MIB PATH: fail early when PATH has less than MIB mebibytes free.
need_disk() {
  local want=$1 path=$2 have
  mkdir -p "$path"
  have=$(df -Pm "$path" | awk 'NR==2 {print $4}')
  [ "$have" -ge "$want" ] || die "only ${have} MiB free under $path, need ${want} MiB (free some disk)"
}

# phase NAME CMD...: run CMD, then print one progress line with the duration.
phase() {
  local name=$1; shift
  local start end rc=0
  start=$(date +%s)
  printf '==> %-22s started\n' "$name"
  "$@" || rc=$?
  end=$(date +%s)
  if [ "$rc" -eq 0 ]; then
    printf '==> %-22s ok      %4ss\n' "$name" "$((end - start))"
  else
    printf '==> %-22s FAILED  %4ss (exit %s)\n' "$name" "$((end - start))" "$rc"
  fi
  return "$rc"
}

# collection_tree NAME: ansible-test must run from inside ansible_collections/<namespace>/<name>.
# Copies the files git knows (tracked, and untracked but not ignored) into a private folder
# build/NAME.XXXXXX/ansible_collections/gradual/rollout, removed at exit, beside links to the
# collections our plugins import from (module_utils, doc fragments), taken from the ansible bundle
# in .venv. Sets GR_TREE to the collection's folder there.
collection_tree() {
  local work bundle dep
  mkdir -p "$GR_ROOT/build"
  work=$(mktemp -d "$GR_ROOT/build/$1.XXXXXX")
  # shellcheck disable=SC2064  # the folder is known now; expand it now
  trap "rm -rf '$work'" EXIT
  GR_TREE="$work/ansible_collections/gradual/rollout"
  mkdir -p "$GR_TREE"
  (cd "$GR_ROOT" && git ls-files -co --exclude-standard -z | rsync -a --from0 --files-from=- ./ "$GR_TREE/")
  bundle=$("$GR_ROOT/.venv/bin/python" -c 'import ansible_collections, os; print(os.path.dirname(ansible_collections.__file__))' 2>/dev/null \
           || "$GR_ROOT/.venv/bin/python" -c 'import ansible_collections; print(list(ansible_collections.__path__)[0])')
  for dep in community/postgresql community/general ansible/posix; do
    mkdir -p "$work/ansible_collections/${dep%/*}"
    ln -s "$bundle/$dep" "$work/ansible_collections/$dep"
  done
  # ansible-test lists the files through git when there is a repository
  (cd "$GR_TREE" && git init -q . && git add -A >/dev/null)
  export GR_TREE
}
