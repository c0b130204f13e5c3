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
lanes_failed=()
step() { phase "$@" || failed+=("$1"); }

phase host-deps "$H/host-deps.sh" || exit 1
phase venv "$H/venv.sh" || exit 1
export PATH="$GR_ROOT/.venv/bin:$PATH" ANSIBLE_CONFIG="$GR_ROOT/ansible.cfg"

pytest_dir() {
  # pytest exits 5 when a folder holds no test yet; that is not a pass, say so.
  local rc=0
  python -m pytest -q -p no:cacheprovider --durations=15 "$@" || rc=$?
  [ "$rc" -eq 5 ] && { say "no tests collected in $*"; return 1; }
  return "$rc"
}

# Scenarios in the order the lanes take them: smoke first (it proves the harness), then the
# longest first so the two lanes end close together (fresh-clone CI at 69dad2b, seconds:
# app 966, pgbouncer 457, backup 316, postgresql 236, nginx 223, redis 168, smoke 83; a fixed
# round-robin left one lane 13 min behind the other; monitoring 422 alone on a shared machine).
# A scenario missing from the list goes before the others so a new one is never forgotten;
# rollout is not queued: the first lane starts with it (see run_lanes).
MOLECULE_ORDER=(smoke app pgbouncer monitoring backup postgresql nginx redis)
scenarios() {
  local all s
  all=$(find molecule -mindepth 2 -maxdepth 2 -name molecule.yml -printf '%h\n' | xargs -n1 basename | sort)
  echo "$all" | grep -x smoke || true
  for s in $all; do
    [[ " ${MOLECULE_ORDER[*]} rollout " == *" $s "* ]] || echo "$s"
  done
  for s in "${MOLECULE_ORDER[@]}"; do
    [ "$s" = smoke ] || echo "$all" | grep -x "$s" || true
  done
  echo "$all" | grep -x rollout || true
}

# One scenario, its output in tests/output/molecule-NAME.log; the log's tail when it fails.
molecule_one() {
  local s=$1 log="tests/output/molecule-$1.log"
  if molecule test -s "$s" >"$log" 2>&1; then return 0; fi
  grep -E "fatal:|FAILED|ERROR|failed=[1-9]|AssertionError|^E " "$log" | tail -n 25 >&2 || true
  printf '(full log: %s)\n' "$log" >&2
  return 1
}

# tests/integration, its output in tests/output/pytest-integration.log (it runs beside a molecule
# lane, whose progress lines would mix with pytest's); the failures and the summary when it fails.
integration_tests() {
  local log=tests/output/pytest-integration.log
  if pytest_dir tests/integration >"$log" 2>&1; then return 0; fi
  grep -E "^(FAILED|ERROR) |^E  |passed|failed|no tests collected" "$log" | tail -n 30 >&2 || true
  printf '(full log: %s)\n' "$log" >&2
  return 1
}

# logged NAME CMD...: a lane item's output goes to tests/output/NAME.log (two lanes would mix it
# on the terminal); its last 40 lines are printed when it fails.
logged() {
  local log="tests/output/$1.log"; shift
  if "$@" >"$log" 2>&1; then return 0; fi
  tail -n 40 "$log" >&2
  printf '(full log: %s)\n' "$log" >&2
  return 1
}

# Pop the first line of a queue file, under a lock (the lanes share it).
next_in_queue() {
  local queue=$1
  (
    flock 9
    head -n 1 "$queue"
    sed -i 1d "$queue"
  ) 9>"$queue.lock"
}

# Lanes: GR_MOLECULE_JOBS (default 2) workers take the next item from one shared queue when
# they are free. Much of a converge waits on apt, systemd and sleeps, and the integration tests
# wait on their playbooks, so two lanes finish sooner on two cores than one after the other. An
# item is `integration` (tests/integration), `docs` (the plugins' documentation lint),
# `ansible-lint`, `sanity`, `units` (ansible-test units) or a molecule scenario. The names of the
# failed items are written to the queue's .failed file.
lane_item() {
  case "$1" in
    integration) needs_containers && phase pytest-integration integration_tests ;;
    docs) phase docs-lint "$H/docs-lint.sh" ;;
    ansible-lint) phase ansible-lint logged ansible-lint ansible-lint -q ;;
    sanity) phase sanity logged sanity "$H/sanity.sh" ;;
    units) phase ansible-test-units logged ansible-test-units "$H/units.sh" ;;
    rollout) phase molecule:rollout molecule_one rollout ;;
    *) needs_containers && phase "molecule:$1" molecule_one "$1" ;;
  esac
}

# The engine and the base image, once for all lanes (a lock file in the state folder; the first
# lane that needs them starts them). When the rollout scenario runs, its create step (`make
# demo`, the README's first command) must be what starts the engine, as on a newcomer's machine:
# wait for it to answer first (its create begins with it), and start one only if it never does.
needs_containers() {
  (
    flock 8
    [ -e "$CONTAINERS_READY" ] && exit 0
    if [ -n "${ROLLOUT_STARTS_ENGINE:-}" ]; then
      for _ in $(seq 1 150); do docker info >/dev/null 2>&1 && break; sleep 2; done
    fi
    containers && touch "$CONTAINERS_READY"
  ) 8>"$CONTAINERS_READY.lock"
}

# rollout (on the lab, ~30 min) is not queued: the first lane starts with it, so it overlaps the
# other items instead of running alone after them (fresh-clone CI at bee8f83: 2,000 s alone after
# 2,200 s of lanes; its make demo left a third of the two cores idle). The other lane starts with
# the items that need no engine (the linters, sanity, unit tests), by which time make demo has
# started the engine and builds or reuses the image (build-image.sh holds a lock meanwhile).
run_lanes() {
  mkdir -p tests/output
  local list=("$@") jobs=${GR_MOLECULE_JOBS:-2} s lane first=""
  local main=()
  for s in "${list[@]}"; do
    if [ "$s" = rollout ]; then first=rollout; else main+=("$s"); fi
  done
  local queue; queue=$(mktemp "$GR_STATE/lanes.XXXXXX")
  CONTAINERS_READY="$queue.containers"
  [ -n "$first" ] && ROLLOUT_STARTS_ENGINE=1 || ROLLOUT_STARTS_ENGINE=""
  export CONTAINERS_READY ROLLOUT_STARTS_ENGINE
  printf '%s\n' "${main[@]}" > "$queue"
  : > "$queue.failed"
  local pids=()
  for ((lane = 0; lane < jobs; lane++)); do
    (
      if [ "$lane" -eq 0 ] && [ -n "$first" ]; then
        lane_item "$first" || echo "$first" >> "$queue.failed"
      fi
      while s=$(next_in_queue "$queue") && [ -n "$s" ]; do
        lane_item "$s" || echo "$s" >> "$queue.failed"
      done
    ) &
    pids+=($!)
  done
  local pid
  for pid in "${pids[@]}"; do wait "$pid"; done
  mapfile -t lanes_failed < "$queue.failed"
  rm -f "$queue" "$queue.lock" "$queue.failed" "$CONTAINERS_READY" "$CONTAINERS_READY.lock"
  [ "${#lanes_failed[@]}" -eq 0 ]
}

containers() {
  phase docker-engine "$H/docker-up.sh" && phase base-image "$H/build-image.sh"
}

case "$mode" in
  all|fast)
    step yamllint yamllint -s .
    step changelog antsibull-changelog lint
    if [ "$mode" = all ]; then
      # Everything else is a lane item; the ones that need no engine go first (fresh-clone CI at
      # 7d27557 ran them before the lanes, one after the other: ansible-lint 57 s, sanity 109 s,
      # units 49 s). The engine and the image are started when an item first needs them.
      mapfile -t items < <(scenarios)
      run_lanes sanity ansible-lint units docs integration "${items[@]}" || failed+=("${lanes_failed[@]}")
    else
      step ansible-lint ansible-lint -q
      step sanity "$H/sanity.sh"
      step pytest-unit pytest_dir tests/unit
      step docs-lint "$H/docs-lint.sh"
    fi ;;
  molecule)
    if [ "$#" -gt 0 ]; then items=("$@"); else mapfile -t items < <(scenarios); fi
    run_lanes "${items[@]}" || failed+=("${lanes_failed[@]}") ;;
  *) die "usage: run-tests.sh all|fast|molecule [SCENARIO...]" ;;
esac

if [ "${#failed[@]}" -gt 0 ]; then
  printf '==> FAILED phases: %s\n' "${failed[*]}"
  exit 1
fi
printf '==> all phases passed\n'
