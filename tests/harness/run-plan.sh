#!/usr/bin/env bash
# Every due stage of the rollout plan, one `ansible-playbook rollout.yml` run per stage (what an
# AWX schedule does, minus the waiting), until the plan is complete or a stage fails.
#   run-plan.sh [ansible-playbook options...]     e.g. run-plan.sh -i inventories/lab
# PLAN_BAKE_SCALE scales the bake times (default 0: no wait). PLAN_TIMINGS names a JSON file for
# the seconds per stage. Prints "stages run: N" last; exits with the failed run's status.
# shellcheck source=tests/harness/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$GR_ROOT" || exit 1
scale=${PLAN_BAKE_SCALE:-0}
timings=${PLAN_TIMINGS:-}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
t0=$(date +%s)
ran=0
stage_times=()
write_timings() {  # a pass that ran no stage keeps the figures of the last one that did
  [ -z "$timings" ] || [ "$ran" -eq 0 ] && return 0
  ( IFS=,; printf '{"total_s": %s, "stages_s": {%s}}\n' "$(( $(date +%s) - t0 ))" "${stage_times[*]}" ) > "$timings"
}
# Every run either passes a stage or fails: the bound only guards against a plan that never ends.
max=${PLAN_MAX_RUNS:-100}
for _ in $(seq 1 "$max"); do
  start=$(date +%s)
  set +e
  ansible-playbook "$@" rollout.yml -e rollout_bake_scale="$scale" | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
  stage=$(grep -oE 'rollout stage: [a-z0-9_]+' "$log" | head -1 | cut -d' ' -f3 || true)
  if [ "$rc" -ne 0 ]; then
    write_timings
    say "stage ${stage:-?} failed (ansible-playbook exit $rc); stages run: $ran"
    exit "$rc"
  fi
  if grep -q 'every stage of the plan has passed' "$log"; then
    write_timings
    say "the plan is complete; stages run: $ran"
    echo "stages run: $ran"
    exit 0
  fi
  [ -n "$stage" ] || die "rollout.yml ran but named no stage; see the output above"
  stage_times+=("\"$stage\": $(( $(date +%s) - start ))")
  ran=$((ran + 1))
  say "stage $stage passed in $(( $(date +%s) - start ))s"
done
write_timings
die "the plan is not complete after $max runs"
