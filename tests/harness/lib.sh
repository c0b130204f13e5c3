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
