#!/usr/bin/env bash
# Every due stage of the rollout plan, one `ansible-playbook rollout.yml` run per stage (what an
# AWX schedule does, minus the waiting), until the plan is complete or a stage fails.
#   run-plan.sh [ansible-playbook options...]     e.g. run-plan.sh -i inventories/lab
# PLAN_BAKE_SCALE scales the bake times (default 0: no wait). PLAN_TIMINGS names a JSON file for
# the seconds per stage (and per watch). A stage held for a watch of the stage before it gets that
# watch first (what the AWX watch schedule does meanwhile); PLAN_BEFORE_WATCH names a command run
# before each watch (make demo: tests/harness/lab-jobs.sh, the app's jobs the watch's log gates
# read). Prints "stages run: N" last; exits with the failed run's status.
# shellcheck source=tests/harness/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$GR_ROOT" || exit 1
scale=${PLAN_BAKE_SCALE:-0}
timings=${PLAN_TIMINGS:-}
result=$(mktemp)
trap 'rm -f "$result"' EXIT
t0=$(date +%s)
ran=0
watched=0
stage_times=()
watch_times=()
result_field() {  # one field of the run's result file, empty when the run wrote none
  python3 -c 'import json, sys
try:
    print(json.load(open(sys.argv[1])).get(sys.argv[2]) or "")
except ValueError:
    print("")' "$result" "$1"
}
write_timings() {  # a pass that ran no stage keeps the figures of the last one that did
  [ -z "$timings" ] || [ "$ran" -eq 0 ] && return 0
  ( IFS=,; printf '{"total_s": %s, "stages_s": {%s}, "watches_s": {%s}}\n' "$(( $(date +%s) - t0 ))" \
      "${stage_times[*]}" "${watch_times[*]}" ) > "$timings"
}
# Every run either passes a stage or fails: the bound only guards against a plan that never ends.
max=${PLAN_MAX_RUNS:-100}
for _ in $(seq 1 "$max"); do
  start=$(date +%s)
  : > "$result"
  set +e
  ansible-playbook "$@" rollout.yml -e rollout_bake_scale="$scale" -e rollout_result_file="$result"
  rc=$?
  set -e
  # the run's machine-readable result (rollout_stage / rollout_report write it), not its log
  stage=$(result_field stage)
  outcome=$(result_field outcome)
  # held for a watch of the stage before it: the watch an AWX schedule would have run meanwhile
  if [ "$rc" -ne 0 ] && [ "$outcome" = refused ] && [[ "$(result_field reason)" == *"rollout_action=watch"* ]]; then
    say "stage ${stage:-?} waits for a watch of the stage before it: watching"
    [ -z "${PLAN_BEFORE_WATCH:-}" ] || $PLAN_BEFORE_WATCH || say "PLAN_BEFORE_WATCH ($PLAN_BEFORE_WATCH) failed"
    watch_start=$(date +%s)
    set +e
    ansible-playbook "$@" rollout.yml -e rollout_action=watch -e rollout_result_file="$result"
    rc=$?
    set -e
    if [ "$rc" -ne 0 ]; then
      write_timings
      say "the watch failed (ansible-playbook exit $rc): $(result_field reason)"
      exit "$rc"
    fi
    watch_times+=("\"$(result_field stage)\": $(( $(date +%s) - watch_start ))")
    watched=$((watched + 1))
    continue
  fi
  if [ "$rc" -ne 0 ]; then
    write_timings
    say "stage ${stage:-?} failed (ansible-playbook exit $rc); stages run: $ran"
    exit "$rc"
  fi
  if [ "$outcome" = complete ]; then
    write_timings
    say "the plan is complete; stages run: $ran, watches: $watched"
    echo "stages run: $ran"
    exit 0
  fi
  if [ "$outcome" != passed ] || [ -z "$stage" ]; then
    die "rollout.yml ran but its result names no passed stage (outcome: ${outcome:-none}); see the output above"
  fi
  stage_times+=("\"$stage\": $(( $(date +%s) - start ))")
  ran=$((ran + 1))
  say "stage $stage passed in $(( $(date +%s) - start ))s"
done
write_timings
die "the plan is not complete after $max runs"
