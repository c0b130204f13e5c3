#!/usr/bin/env bash
# make demo: the lab up, provisioned with site.yml, every stage of the lab plan run in order with
# the bake times scaled down (rollout_bake_scale, default 0 = no wait), then the report printed.
# The rollout state of the plan is reset first (DEMO_RESET=0 keeps it and resumes instead), and
# the app hosts go back to the plan's baseline with playbooks/rollback.yml.
# Durations: reports/demo-timings.json (total and per stage).
# shellcheck source=tests/harness/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$GR_ROOT" || exit 1
export PATH="$GR_ROOT/.venv/bin:$PATH" ANSIBLE_CONFIG="$GR_ROOT/ansible.cfg"
export ANSIBLE_VAULT_PASSWORD_FILE="$GR_ROOT/.lab/vault-pass"
INV=(-i inventories/lab ${DEMO_EXTRA_INVENTORY:+-i "$DEMO_EXTRA_INVENTORY"})
SCALE=${DEMO_BAKE_SCALE:-0}
mkdir -p reports
timings=reports/demo-timings.json
t0=$(date +%s)
stage_times=()

phase image tests/harness/build-image.sh
phase lab-up tests/harness/lab.sh up
phase site.yml ansible-playbook "${INV[@]}" site.yml
if [ "${DEMO_RESET:-1}" = 1 ]; then
  phase baseline ansible-playbook "${INV[@]}" playbooks/rollback.yml -e rollback_reason="make demo: start from the baseline"
  phase reset-state ansible-playbook "${INV[@]}" rollout.yml -e rollout_action=reset
fi

stages=$(ansible-inventory "${INV[@]}" --list | python3 -c 'import json, sys
inv = json.load(sys.stdin)
host = inv["app"]["hosts"][0]
print(" ".join(s["name"] for s in inv["_meta"]["hostvars"][host]["rollout_plan"]["stages"]))')
[ -n "$stages" ] || die "cannot read the stage names of rollout_plan from inventories/lab"
for s in $stages; do
  start=$(date +%s)
  phase "stage $s" ansible-playbook "${INV[@]}" rollout.yml -e stage="$s" -e rollout_bake_scale="$SCALE" \
    || { say "stage $s failed: the rescue rolled it back; see the report"; ansible-playbook "${INV[@]}" rollout.yml -e rollout_action=report >/dev/null; cat reports/rollout-*.md; exit 1; }
  stage_times+=("\"$s\": $(( $(date +%s) - start ))")
done
phase report ansible-playbook "${INV[@]}" rollout.yml -e rollout_action=report >/dev/null
total=$(( $(date +%s) - t0 ))
( IFS=,; printf '{"total_s": %s, "stages_s": {%s}}\n' "$total" "${stage_times[*]}" ) > "$timings"
cat reports/rollout-*.md
say "make demo took ${total}s (per stage: $timings)"
