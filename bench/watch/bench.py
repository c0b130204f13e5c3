#!/usr/bin/env python
"""bench/watch: the watch of a stage on the lab's production signals (the app's job and error logs
on every app host, Prometheus on mon1, the public path), on a plan of its own ("bench-watch": one
watched stage, the demo's state untouched).

1. One watch: wall time of `rollout.yml -e rollout_action=watch` (WATCH_RUNS runs, after the app's
   jobs ran as their timers would), the Prometheus queries it made (prometheus_http_requests_total
   of /api/v1/query on mon1) and the transactions on the state database (pg_stat_database on db1;
   the uptime probes' /health adds ~0.4 per second in the background).
2. Regression -> rolled back: a watch every INTERVAL seconds (start to start) and, apart from it,
   the app's jobs every JOBS_EVERY seconds (their timers); at a chosen phase of the watch interval
   app2's daily job regresses (the lab fault switch: "Query count: 10001" in its log). Measured
   from the regressed line in the log: to the failed watch in the state (detected) and to the
   stage's state saying rolled_back (the snapshot restored on every host, health verified).
   Goal: rolled back <= INTERVAL + 30 s.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request
from base64 import b64encode
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAB_RUN = str(ROOT / "tests" / "harness" / "lab-run.sh")
LAB_JOBS = str(ROOT / "tests" / "harness" / "lab-jobs.sh")
PLAN = "bench-watch"
INTERVAL = float(os.environ.get("BENCH_WATCH_INTERVAL", "60"))
WATCH_RUNS = int(os.environ.get("BENCH_WATCH_RUNS", "3"))
PHASES = [float(x) for x in os.environ.get("BENCH_WATCH_PHASES", "5,30,55").split(",")]
JOBS_EVERY = float(os.environ.get("BENCH_WATCH_JOBS_EVERY", "20"))
FAULT_FILE = "/var/log/goalgpt-api/job-fault"
PROMETHEUS = "http://172.28.87.51:9090"


def plan_file(directory: Path) -> str:
    gates = [{"name": "daily_rewards_job", "type": "log_check", "args": "{{ rollout_gate_daily_rewards_log }}"},
             {"name": "error_log", "type": "log_check", "args": "{{ rollout_gate_error_log }}"},
             {"name": "error_rate", "type": "prometheus_check", "args": "{{ rollout_gate_error_rate }}"},
             {"name": "alerts", "type": "prometheus_check", "args": "{{ rollout_gate_alerts }}"}]
    slo = {"name": "api_slo", "type": "http_slo", "args": "{{ rollout_gate_slo }}"}
    plan = {"rollout_plan": {"name": PLAN, "stages": [
        {"name": "watched", "bake_hours": 0, "serial": ["100%"],
         "actions": {"flags": {"BADGE_AUTO_UNLOCK_BATCH_SIZE": "200", "USE_OPTIMIZED_DAILY_REWARDS": "true"}},
         "gates": [slo],
         "watch": {"max_age_hours": 6, "gates": gates}},
        {"name": "after", "bake_hours": 0, "serial": ["100%"],
         "actions": {"flags": {"BADGE_AUTO_UNLOCK_BATCH_SIZE": "100"}}, "gates": [slo]}],
        "baseline": {"BADGE_AUTO_UNLOCK_BATCH_SIZE": "100", "USE_OPTIMIZED_DAILY_REWARDS": "false"}}}
    path = directory / "plan.json"
    path.write_text(json.dumps(plan), encoding="utf-8")
    return "@%s" % path


def playbook(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([LAB_RUN, "ansible-playbook", "rollout.yml", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=900, check=False)


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True, timeout=120).stdout


def psql(sql: str) -> str:
    return docker("exec", "gr-lab-db1", "runuser", "-u", "postgres", "--", "psql", "-d", "goalgpt", "-AtXc", sql).strip()


def failed_watches() -> int:
    return int(psql("SELECT count(*) FROM gradual.rollout_watch WHERE plan = '%s' AND verdict = 'failed'" % PLAN))


def state_status() -> str:
    return psql("SELECT status FROM gradual.rollout_state WHERE plan = '%s' AND stage = 'watched' "
                "ORDER BY id DESC LIMIT 1" % PLAN)


def prometheus_queries(password: str) -> float:
    query = 'sum(prometheus_http_requests_total{handler=~"/api/v1/query(_range)?"})'
    req = urllib.request.Request("%s/api/v1/query?query=%s" % (PROMETHEUS, urllib.request.quote(query)))
    req.add_header("Authorization", "Basic " + b64encode(("admin:%s" % password).encode()).decode())
    with urllib.request.urlopen(req, timeout=10) as resp:
        return float(json.load(resp)["data"]["result"][0]["value"][1]) - 1  # minus this query itself


def vault_value(name: str) -> str:
    out = subprocess.run([str(ROOT / ".venv" / "bin" / "ansible-vault"), "view", "--vault-password-file",
                          str(ROOT / ".lab" / "vault-pass"), str(ROOT / "inventories/lab/group_vars/all/vault.yml")],
                         capture_output=True, text=True, check=True,
                         env={k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")})
    for line in out.stdout.splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip().strip('"')
    raise SystemExit("no %s in the lab vault" % name)


def xacts() -> int:
    return int(psql("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = 'goalgpt'"))


def set_fault(text: str | None) -> None:
    if text is None:
        docker("exec", "gr-lab-app2", "rm", "-f", FAULT_FILE)
    else:
        docker("exec", "gr-lab-app2", "sh", "-c", "echo '%s' > %s && chmod 0644 %s" % (text, FAULT_FILE, FAULT_FILE))


def run_jobs(*hosts: str) -> None:
    subprocess.run([LAB_JOBS, *hosts], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


def regressed_run() -> None:
    """app2's daily job once with the fault on; a run already going (409, the watcher's jobs) is
    waited for, and a run that started before the fault was written does not count."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        out = subprocess.run([LAB_JOBS, "app2"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                             check=False).stdout.replace(" ", "")
        if "daily-rewards:" in out and '"queries":10001' in out.split("daily-rewards:", 1)[1].split("\n", 1)[0]:
            return
        time.sleep(1)
    raise SystemExit("app2's daily job never ran with the fault on")


def one_watch(plan: str, password: str) -> dict:
    run_jobs()
    q0, x0 = prometheus_queries(password), xacts()
    start = time.monotonic()
    proc = playbook("-e", plan, "-e", "rollout_action=watch")
    wall = time.monotonic() - start
    q1, x1 = prometheus_queries(password), xacts()
    if proc.returncode != 0:
        raise SystemExit("the watch failed:\n" + proc.stdout[-3000:])
    return {"wall_s": round(wall, 2), "prometheus_queries": int(q1 - q0), "state_db_transactions": x1 - x0}


def every(seconds: float, stop: threading.Event, action, ticks: list) -> None:
    """ACTION every SECONDS, start to start, until STOP is set or ACTION returns True."""
    while not stop.is_set():
        tick = time.monotonic()
        ticks.append(tick)
        if action():
            return
        stop.wait(max(0.0, tick + seconds - time.monotonic()))


def regression_trial(plan: str, phase: float) -> dict:
    """A watch every INTERVAL s and the jobs every JOBS_EVERY s; the regression lands PHASE s after
    a watch tick starts."""
    assert playbook("-e", plan, "-e", "rollout_action=reset").returncode == 0
    assert playbook("-e", plan).returncode == 0, "the watched stage did not pass"
    stop = threading.Event()
    ticks, job_ticks = [], []

    def jobs_once() -> bool:
        run_jobs()
        return False

    def watch_once() -> bool:
        playbook("-e", plan, "-e", "rollout_action=watch")
        return state_status() == "rolled_back"

    threads = [threading.Thread(target=every, args=(JOBS_EVERY, stop, jobs_once, job_ticks),
                                daemon=True),
               threading.Thread(target=every, args=(INTERVAL, stop, watch_once, ticks), daemon=True)]
    for thread in threads:
        thread.start()
    while not ticks:
        time.sleep(0.1)
    failed_before = failed_watches()
    time.sleep(max(0.0, ticks[0] + phase - time.monotonic()))
    set_fault("daily-rewards legacy")
    injected = time.monotonic()
    detected = None
    try:
        regressed_run()               # "Query count: 10001" is in app2's log now
        in_log = time.monotonic()
        while state_status() != "rolled_back":
            if detected is None and failed_watches() > failed_before:
                detected = time.monotonic()
            if time.monotonic() - in_log > INTERVAL * 3 + 120:
                raise SystemExit("no rollback %.0f s after the regression" % (time.monotonic() - in_log))
            time.sleep(0.5)
        rolled = time.monotonic()
    finally:
        stop.set()
        set_fault(None)
        for thread in threads:
            thread.join(timeout=600)
    return {"phase_s": phase, "fault_to_log_s": round(in_log - injected, 2),
            "log_to_failed_watch_s": round(detected - in_log, 2) if detected else None,
            "log_to_rolled_back_s": round(rolled - in_log, 2), "fault_to_rolled_back_s": round(rolled - injected, 2)}


def main() -> None:
    password = vault_value("vault_monitoring_admin_password")
    with tempfile.TemporaryDirectory() as tmp:
        plan = plan_file(Path(tmp))
        assert playbook("-e", plan, "-e", "rollout_action=reset").returncode == 0
        first = playbook("-e", plan)
        if first.returncode != 0:
            raise SystemExit("the watched stage did not pass:\n" + first.stdout[-3000:])
        watches = [one_watch(plan, password) for _run in range(WATCH_RUNS)]
        trials = [regression_trial(plan, phase) for phase in PHASES]
        playbook("-e", plan, "-e", "rollout_action=reset")
    walls = [w["wall_s"] for w in watches]
    times = [t["log_to_rolled_back_s"] for t in trials]
    result = {
        "benchmark": "watch", "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average": os.getloadavg(),
        "one_watch": {"runs": watches, "wall_s_median": statistics.median(walls), "wall_s_max": max(walls),
                      "goal_s": 20, "met": max(walls) <= 20},
        "regression_to_rollback": {"interval_s": INTERVAL, "jobs_every_s": JOBS_EVERY, "trials": trials,
                                   "max_s": max(times),
                                   "median_s": statistics.median(times), "goal_s": INTERVAL + 30,
                                   "met": max(times) <= INTERVAL + 30},
    }
    out = ROOT / "bench" / "results" / "watch.json"
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
