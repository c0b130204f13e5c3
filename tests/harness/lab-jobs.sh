#!/usr/bin/env bash
# The example app's two scheduled jobs (daily reward reminders, badge auto-unlock), run once now on
# lab app hosts, as their daily timers would run them in production: the plan's watches read what
# they log (app.log, error.log). make demo runs this before each watch (PLAN_BEFORE_WATCH).
#   lab-jobs.sh [host...]      default: app1 app2; prints each run's JSON answer
# The jobs answer only loopback callers, so each is called from inside its host. A failed run is
# printed, not fatal: judging it is the watch's business. A job whose flag is off would take the
# legacy path (badge unlock: 27002 queries, about a minute on a loaded lab): it is skipped unless
# LAB_JOBS_LEGACY=1, since no watch before the flag's stage reads that job (the fault switch's
# forced legacy runs are not affected: their flag is on).
# shellcheck source=tests/harness/lib.sh
source "$(dirname "$0")/lib.sh"
[ $# -gt 0 ] || set -- app1 app2
run_jobs() {
  docker exec -e LAB_JOBS_LEGACY="${LAB_JOBS_LEGACY:-0}" "gr-lab-$1" python3 -c '
import json, os, sys, urllib.error, urllib.request
FLAGS = {"daily-rewards": "USE_OPTIMIZED_DAILY_REWARDS", "badge-unlock": "USE_OPTIMIZED_BADGE_UNLOCK"}
try:
    with urllib.request.urlopen("http://127.0.0.1:3000/api/flags", timeout=10) as resp:
        flags = json.load(resp)["flags"]
except (OSError, ValueError, KeyError):
    flags = {}
for job in ("daily-rewards", "badge-unlock"):
    on = str((flags.get(FLAGS[job]) or {}).get("value")).lower() == "true"
    if not on and os.environ.get("LAB_JOBS_LEGACY") != "1":
        print("%s %s: skipped (%s is off: the legacy path; LAB_JOBS_LEGACY=1 runs it)" % (sys.argv[1], job, FLAGS[job]))
        continue
    req = urllib.request.Request("http://127.0.0.1:3000/api/jobs/" + job, data=b"", method="POST")
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            body = resp.read().decode()
    except urllib.error.HTTPError as err:
        body = err.read().decode()
    except OSError as err:
        body = "no answer: %s" % err
    print("%s %s: %s" % (sys.argv[1], job, body[:300]))
' "$1"
}
pids=()
for host in "$@"; do
  run_jobs "$host" & pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || true; done
