#!/usr/bin/env bash
# make demo: the lab up, provisioned with site.yml, every stage of the lab plan run in order with
# the bake times scaled down (DEMO_BAKE_SCALE, default 0 = no wait), then the report printed.
# The rollout state of the plan is reset first (DEMO_RESET=0 keeps it and resumes instead), and
# the app hosts go back to the plan's baseline with playbooks/rollback.yml.
# Durations: reports/demo-timings.json (total and per stage).
# shellcheck source=tests/harness/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$GR_ROOT" || exit 1
export PATH="$GR_ROOT/.venv/bin:$PATH" ANSIBLE_CONFIG="$GR_ROOT/ansible.cfg"
export ANSIBLE_VAULT_PASSWORD_FILE="$GR_ROOT/tests/harness/vault-pass.sh"
INV=(-i inventories/lab ${DEMO_EXTRA_INVENTORY:+-i "$DEMO_EXTRA_INVENTORY"})
export PLAN_BAKE_SCALE=${DEMO_BAKE_SCALE:-0} PLAN_TIMINGS=reports/demo-stages.json
mkdir -p reports
timings=reports/demo-timings.json
t0=$(date +%s)

phase image tests/harness/build-image.sh
phase lab-up tests/harness/lab.sh up
phase site.yml ansible-playbook "${INV[@]}" site.yml
if [ "${DEMO_RESET:-1}" = 1 ]; then
  phase baseline ansible-playbook "${INV[@]}" playbooks/rollback.yml -e rollback_reason="make demo: start from the baseline"
  phase reset-state ansible-playbook "${INV[@]}" rollout.yml -e rollout_action=reset
fi

phase "every stage of the plan" \
  tests/harness/run-plan.sh "${INV[@]}" \
  || { say "a stage failed: its rescue rolled it back; the report says which and why";
       ansible-playbook "${INV[@]}" rollout.yml -e rollout_action=report >/dev/null; cat reports/rollout-*.md; exit 1; }
phase report ansible-playbook "${INV[@]}" rollout.yml -e rollout_action=report >/dev/null
total=$(( $(date +%s) - t0 ))
python3 -c 'import json, sys; stages = json.load(open(sys.argv[1])); print(json.dumps({"total_s": int(sys.argv[2]), "stages_s": stages["stages_s"]}))' \
  reports/demo-stages.json "$total" > "$timings"
cat reports/rollout-*.md
say "make demo took ${total}s (per stage: $timings)"
