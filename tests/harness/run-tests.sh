#!/usr/bin/env bash
# Everything CI runs, one progress line per phase with its duration.
#   run-tests.sh all        lint, sanity, unit, integration, every molecule scenario
#   run-tests.sh fast       lint, sanity, unit
#   run-tests.sh molecule [SCENARIO...]
# shellcheck source=tests/harness/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$GR_ROOT" || exit 1
H=tests/harness
mode=${1:-all}; shift || true

export GR_OWNER="harness-$$"   # docker-down.sh stops only an engine started under this owner
trap '"$GR_ROOT/$H/docker-down.sh" || true' EXIT
failed=()
step() { phase "$@" || failed+=("$1"); }

phase host-deps "$H/host-deps.sh" || exit 1
phase venv "$H/venv.sh" || exit 1
export PATH="$GR_ROOT/.venv/bin:$PATH" ANSIBLE_CONFIG="$GR_ROOT/ansible.cfg"

pytest_dir() {
  # pytest exits 5 when a folder holds no test yet; that is not a pass, say so.
  local rc=0
  python -m pytest -q -p no:cacheprovider "$@" || rc=$?
  [ "$rc" -eq 5 ] && { say "no tests collected in $*"; return 1; }
  return "$rc"
}

scenarios() {
  # smoke first (it proves the harness), rollout last (it stands on every role).
  local all s
  all=$(find molecule -mindepth 2 -maxdepth 2 -name molecule.yml -printf '%h\n' | xargs -n1 basename | sort)
  { echo "$all" | grep -x smoke; echo "$all" | grep -vxE 'smoke|rollout'; echo "$all" | grep -x rollout; } || true
}

# One scenario, its output in tests/output/molecule-NAME.log; the log's tail when it fails.
molecule_one() {
  local s=$1 log="tests/output/molecule-$1.log"
  if molecule test -s "$s" >"$log" 2>&1; then return 0; fi
  grep -E "fatal:|FAILED|ERROR|failed=[1-9]|AssertionError|^E " "$log" | tail -n 25 >&2 || true
  printf '(full log: %s)\n' "$log" >&2
  return 1
}

# Scenarios run in GR_MOLECULE_JOBS lanes (default 2): much of a converge waits on apt, systemd
# and sleeps, so two lanes finish sooner on two cores. rollout runs alone, after the others.
run_molecule() {
  mkdir -p tests/output
  local list=("$@") jobs=${GR_MOLECULE_JOBS:-2} s i lane
  [ "${#list[@]}" -gt 0 ] || mapfile -t list < <(scenarios)
  local main=() last=()
  for s in "${list[@]}"; do
    if [ "$s" = rollout ]; then last+=("$s"); else main+=("$s"); fi
  done
  local pids=()
  for ((lane = 0; lane < jobs; lane++)); do
    (
      rc=0
      for ((i = lane; i < ${#main[@]}; i += jobs)); do
        phase "molecule:${main[$i]}" molecule_one "${main[$i]}" || rc=1
      done
      exit "$rc"
    ) &
    pids+=($!)
  done
  local rc=0 pid
  for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
  # rollout's create is `make demo`, the README's first command, which must work with no engine
  # running: stop the one this harness started (one started by hand is left alone, see
  # docker-down.sh); make demo starts it again under the same owner, so the exit trap stops it.
  if [ "${#last[@]}" -gt 0 ]; then "$GR_ROOT/$H/docker-down.sh" || true; fi
  for s in "${last[@]}"; do phase "molecule:$s" molecule_one "$s" || rc=1; done
  return "$rc"
}

containers() {
  phase docker-engine "$H/docker-up.sh" && phase base-image "$H/build-image.sh"
}

case "$mode" in
  all|fast)
    # The engine and the base image first: integration tests and molecule both need them.
    if [ "$mode" = all ]; then containers || exit 1; fi
    step yamllint yamllint -s .
    step ansible-lint ansible-lint -q
    step changelog antsibull-changelog lint
    step sanity "$H/sanity.sh"
    step pytest-unit pytest_dir tests/unit
    if [ "$mode" = all ]; then
      step pytest-integration pytest_dir tests/integration
      run_molecule || failed+=(molecule)
    fi ;;
  molecule) containers || exit 1; run_molecule "$@" || failed+=(molecule) ;;
  *) die "usage: run-tests.sh all|fast|molecule [SCENARIO...]" ;;
esac

if [ "${#failed[@]}" -gt 0 ]; then
  printf '==> FAILED phases: %s\n' "${failed[*]}"
  exit 1
fi
printf '==> all phases passed\n'
