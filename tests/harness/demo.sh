#!/usr/bin/env bash
# make demo: from nothing (no Docker engine running, no image, no venv: `make demo` installs the
# packages and the venv first) to the report. The engine is started when none answers, the base
# image built or reused, the lab up and provisioned with site.yml, every stage of the lab plan
# run in order with the bake times scaled down (DEMO_BAKE_SCALE, default 0 = no wait) while a
# bounded request loop on web1 goes through nginx, then the report printed.
# The rollout state of the plan is reset first (DEMO_RESET=0 keeps it and resumes instead), and
# the app hosts go back to the plan's baseline with playbooks/rollback.yml.
# Leaves running: the lab's seven containers and the Docker engine (`make lab-down` removes the
# lab; the engine stays, as `make docker` would leave it).
# Durations and the request loop's figures: reports/demo-timings.json.
# shellcheck source=tests/harness/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$GR_ROOT" || exit 1
export PATH="$GR_ROOT/.venv/bin:$PATH" ANSIBLE_CONFIG="$GR_ROOT/ansible.cfg"
export ANSIBLE_VAULT_PASSWORD_FILE="$GR_ROOT/tests/harness/vault-pass.sh"
INV=(-i inventories/lab ${DEMO_EXTRA_INVENTORY:+-i "$DEMO_EXTRA_INVENTORY"})
export PLAN_BAKE_SCALE=${DEMO_BAKE_SCALE:-0} PLAN_TIMINGS=reports/demo-stages.json
# before each watch, the app's two jobs run once on every app host, as their timers would
export PLAN_BEFORE_WATCH=tests/harness/lab-jobs.sh
mkdir -p reports
timings=reports/demo-timings.json
loop_out=reports/demo-requests.json
rm -f "$timings" "$loop_out"
t0=$(date +%s)

# The request loop through nginx on web1 (bench/reload/loop.py): bounded in time, under nginx's
# per-client rate limit; what it saw goes to reports/demo-requests.json.
loop_start() {
  docker cp bench/reload/loop.py gr-lab-web1:/opt/gr-loop.py >/dev/null &&
  docker exec gr-lab-web1 sh -c 'rm -f /tmp/gr-loop.stop /tmp/gr-loop.json;
    nohup python3 /opt/gr-loop.py --url https://127.0.0.1/health --workers 2 --pause 0.05 \
      --duration 2400 --out /tmp/gr-loop.json --stop-file /tmp/gr-loop.stop >/tmp/gr-loop.log 2>&1 &'
}
loop_stop() {
  docker exec gr-lab-web1 touch /tmp/gr-loop.stop >/dev/null 2>&1 || return 0
  local _
  for _ in $(seq 1 30); do
    docker exec gr-lab-web1 cat /tmp/gr-loop.json > "$loop_out" 2>/dev/null && return 0
    sleep 1
  done
  say "the request loop on web1 wrote no result"
}
loop_summary() {
  [ -s "$loop_out" ] || return 0
  python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print("requests through nginx during the plan: %d sent, %d failed" % (r["sent"], r["failed"]))' "$loop_out" >&2
}

phase docker-engine tests/harness/docker-up.sh
phase image tests/harness/build-image.sh
phase lab-up tests/harness/lab.sh up
phase site.yml ansible-playbook "${INV[@]}" site.yml
if [ "${DEMO_RESET:-1}" = 1 ]; then
  phase baseline ansible-playbook "${INV[@]}" playbooks/rollback.yml -e rollback_reason="make demo: start from the baseline"
  phase reset-state ansible-playbook "${INV[@]}" rollout.yml -e rollout_action=reset
fi

loop_start || die "cannot start the request loop on web1"
trap loop_stop EXIT
if ! phase "every stage of the plan" tests/harness/run-plan.sh "${INV[@]}"; then
  loop_stop; trap - EXIT; loop_summary
  say "a stage failed: its rescue rolled it back; the report says which and why"
  ansible-playbook "${INV[@]}" rollout.yml -e rollout_action=report >/dev/null
  cat reports/rollout-*.md
  exit 1
fi
loop_stop; trap - EXIT
phase report ansible-playbook "${INV[@]}" rollout.yml -e rollout_action=report >/dev/null
total=$(( $(date +%s) - t0 ))
python3 - "$PLAN_TIMINGS" "$total" "$loop_out" > "$timings" <<'PY'
import json, os, sys
stages = json.load(open(sys.argv[1]))
requests = json.load(open(sys.argv[3])) if os.path.exists(sys.argv[3]) and os.path.getsize(sys.argv[3]) else None
print(json.dumps({"total_s": int(sys.argv[2]), "stages_s": stages["stages_s"],
                  "watches_s": stages.get("watches_s", {}), "requests": requests}))
PY
cat reports/rollout-*.md
loop_summary
say "make demo took ${total}s (per stage: $timings)"
say "left running: the lab (seven containers; \`make lab-down\` removes them) and the Docker engine"
say "the lab's nginx: https://172.28.87.31/ (self-signed certificate)"
say "the lab's Prometheus: http://172.28.87.51:9090/ and Alertmanager: http://172.28.87.51:9093/ (user admin; password: \`ansible-vault view --vault-password-file .lab/vault-pass inventories/lab/group_vars/all/vault.yml\`, vault_monitoring_admin_password)"
