"""The staged rollout on the lab, after converge ran every stage: the state and the report tell the
truth, and each fault of the issue ends with the app serving and the state saying what happened.

Every step is the operator's command (tests/harness/lab-run.sh ansible-playbook ...) against
inventories/lab; faults are injected from outside (systemctl, docker network, SIGKILL, wrk), and
the tests run in file order, each leaving the lab serving for the next.
"""
from __future__ import annotations

import json
import os
import re
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
LAB_RUN = str(ROOT / "tests" / "harness" / "lab-run.sh")
PLAN = "post-p1"
APPS = {"app1": "172.28.87.41", "app2": "172.28.87.42"}
NGINX = "https://172.28.87.31"
LAB_NET = "gradual-lab"
STAGES = ["w1d1_migration_safety", "w1d4_daily_rewards", "w1d5_all_p1b", "w2d10_conservative_limits",
          "w2d11_optimised_limits", "w3d15_hot_path_indexes", "w3d17_standings_cache", "w3d18_all_caching",
          "w4_stabilisation"]
TLS = ssl.create_default_context()
TLS.check_hostname = False
TLS.verify_mode = ssl.CERT_NONE


# ---- helpers ----------------------------------------------------------------------------------
def playbook(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """ansible-playbook against the lab, output kept for the assertions (and shown on failure)."""
    proc = subprocess.run([LAB_RUN, "ansible-playbook", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, check=False)
    print("$ ansible-playbook %s -> rc %s\n%s" % (" ".join(args), proc.returncode, proc.stdout[-6000:]))
    return proc


def docker(*args: str, check: bool = True) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=120).stdout


def rows() -> list:
    """Every state row of the plan, oldest first, read on db1 as postgres."""
    out = docker("exec", "gr-lab-db1", "runuser", "-u", "postgres", "--", "psql", "-d", "goalgpt", "-AtXc",
                 "SELECT coalesce(json_agg(r ORDER BY id), '[]') FROM gradual.rollout_state r "
                 "WHERE plan = '%s'" % PLAN)
    return json.loads(out)


def latest(stage: str) -> dict:
    found = [r for r in rows() if r["stage"] == stage]
    return found[-1] if found else {}


def get(url: str, timeout: float = 5.0) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=TLS if url.startswith("https") else None) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def served_flags(host: str) -> dict:
    status, body = get("http://%s:3000/api/flags" % APPS[host])
    assert status == 200, "%s /api/flags answered %s" % (host, status)
    return {k: str(v.get("value")).lower() for k, v in body["flags"].items()}


def flags_sum(host: str) -> str:
    return docker("exec", "gr-lab-%s" % host, "sha256sum", "/etc/goalgpt-api/flags.env")


def nginx_serves() -> None:
    """The public path answers 200 for health and for a standings page."""
    for path in ("/health", "/api/standings/39"):
        status = get(NGINX + path)[0]
        assert status == 200, "nginx %s answered %s" % (path, status)


def drained() -> list:
    return json.loads(docker("exec", "gr-lab-web1", "cat", "/etc/nginx/gradual/goalgpt.drained.json") or "[]")


def wait_for(predicate, what: str, timeout: float = 600, interval: float = 0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))


def start_playbook(*args: str) -> subprocess.Popen:
    return subprocess.Popen([LAB_RUN, "ansible-playbook", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def batch_done(stage: str, before_id: int):
    row = latest(stage)
    return row if row.get("id", 0) > before_id and row["status"] == "running" and row["batches_done"] >= 1 else None


# ---- after converge ---------------------------------------------------------------------------
def test_every_stage_passed_and_the_report_is_filled():
    for stage in STAGES:
        assert latest(stage).get("status") == "passed", "%s: %s" % (stage, latest(stage))
    for stage in ("w1d1_migration_safety", "w3d15_hot_path_indexes"):
        migrate = latest(stage)["figures"]["migrate"]
        waits = [migrate.get(key) for key in ("lock_wait_s", "blocker_wait_s")]
        assert all(isinstance(w, (int, float)) and w >= 0 for w in waits), migrate
    assert playbook("rollout.yml", "-e", "rollout_action=report").returncode == 0
    report = json.loads((ROOT / "reports" / ("rollout-%s.json" % PLAN)).read_text(encoding="utf-8"))
    assert report["overall"] == "COMPLETE"
    metrics = {m["metric"]: m for m in report["metrics"]}
    # seed 003's eight success metrics, each from a gate or a watch of the lab plan
    assert len(metrics) == 8 and all(m["status"] == "PASS" for m in metrics.values()), metrics
    assert "watch daily_rewards_job" in metrics["Daily rewards queries"]["source"], metrics
    markdown = (ROOT / "reports" / ("rollout-%s.md" % PLAN)).read_text(encoding="utf-8")
    assert "| Metric | Target | Actual | Status |" in markdown
    page = (ROOT / "reports" / ("rollout-%s.html" % PLAN)).read_text(encoding="utf-8")
    assert page.count("<svg") >= len(STAGES) and "<script" not in page


def test_the_demo_saw_no_failed_request_through_nginx():
    """make demo (create) ran the plan under a request loop through nginx on web1."""
    timings = json.loads((ROOT / "reports" / "demo-timings.json").read_text(encoding="utf-8"))
    print("make demo: %s" % timings)
    loop = timings["requests"]
    assert loop["failed"] == 0 and loop["sent"] > 50, loop
    assert set(timings["stages_s"]) == set(STAGES), timings["stages_s"]


def test_the_next_stage_waited_for_a_passed_watch_of_the_watched_stage():
    """The lab plan watches w1d4_daily_rewards: make demo's next stage was held until a watch of it
    passed (run-plan.sh runs the watch the AWX schedule would), kept in the state with its gates."""
    timings = json.loads((ROOT / "reports" / "demo-timings.json").read_text(encoding="utf-8"))
    assert set(timings["watches_s"]) == {"w1d4_daily_rewards", "w1d5_all_p1b"}, timings
    out = docker("exec", "gr-lab-db1", "runuser", "-u", "postgres", "--", "psql", "-d", "goalgpt", "-AtXc",
                 "SELECT coalesce(json_agg(w ORDER BY w.id), '[]') FROM gradual.rollout_watch w "
                 "JOIN gradual.rollout_state s ON s.id = w.state_id WHERE w.plan = '%s'" % PLAN)
    watches = json.loads(out)
    seen = [(w["stage"], w["verdict"]) for w in watches]
    assert seen == [("w1d4_daily_rewards", "passed"), ("w1d5_all_p1b", "passed")], watches
    gates = watches[0]["gates"]
    for name in ("api_slo", "public_path", "daily_rewards_job", "error_log", "error_rate", "alerts"):
        assert gates[name]["passed"], gates[name]
    # the job ran on both app hosts and logged the seed's optimised query count
    assert {h: f["extractors"]["query_count"]["max"] for h, f in gates["daily_rewards_job"]["figures"].items()} \
        == {"app1": 2, "app2": 2}, gates["daily_rewards_job"]
    assert watches[0]["state_id"] == latest("w1d4_daily_rewards")["id"]
    assert watches[0]["at"] < latest("w1d5_all_p1b")["started_at"]


def test_both_process_managers_served_the_demo_and_none_is_left_drained():
    """app1 runs under PM2 and app2 under systemd (inventories/lab/host_vars/app2.yml): the demo's
    0 failed requests cover a drain, reload and undrain of both managers in every stage."""
    app = "goalgpt-api"
    assert docker("exec", "gr-lab-app2", "systemctl", "is-active", app).strip() == "active"
    assert docker("exec", "gr-lab-app1", "systemctl", "is-active", "pm2-%s" % app).strip() == "active"
    assert int(docker("exec", "gr-lab-app1", "sh", "-c", "pgrep -u %s -f server.js | wc -l" % app)) >= 2
    upstream = docker("exec", "gr-lab-web1", "cat", "/etc/nginx/conf.d/goalgpt-upstream.conf")
    assert " down;" not in upstream, upstream
    drained = docker("exec", "gr-lab-web1", "cat", "/etc/nginx/gradual/goalgpt.drained.json")
    assert json.loads(drained) == [], drained


def test_status_prints_every_stage():
    proc = playbook("rollout.yml", "-e", "rollout_action=status")
    assert proc.returncode == 0
    for stage in STAGES:
        assert stage in proc.stdout


# ---- the watch on production signals (a plan of its own, so the demo's state stays as it is) ----
FAULT_FILE = "/var/log/goalgpt-api/job-fault"   # app_job_fault_file of inventories/lab
LAB_JOBS = str(ROOT / "tests" / "harness" / "lab-jobs.sh")
WATCH_GATES = [
    {"name": "daily_rewards_job", "type": "log_check", "args": "{{ rollout_gate_daily_rewards_log }}"},
    {"name": "error_log", "type": "log_check", "args": "{{ rollout_gate_error_log }}"},
    {"name": "error_rate", "type": "prometheus_check", "args": "{{ rollout_gate_error_rate }}"},
    {"name": "alerts", "type": "prometheus_check", "args": "{{ rollout_gate_alerts }}"},
]
SLO = {"name": "api_slo", "type": "http_slo", "args": "{{ rollout_gate_slo }}"}


def plan_file(tmp_path, name: str, stages: list) -> str:
    path = tmp_path / ("%s.json" % name)
    path.write_text(json.dumps({"rollout_plan": {
        "name": name, "baseline": {"BADGE_AUTO_UNLOCK_BATCH_SIZE": "100", "USE_OPTIMIZED_DAILY_REWARDS": "false"},
        "stages": stages}}), encoding="utf-8")
    return "@%s" % path


def watch_plan(tmp_path) -> str:
    """Seed 003's "check every 4 hours" on a flag of its own (and the daily job's optimisation, on
    whatever the lab's flags were): the first stage is watched on the app's job log, its error log
    and Prometheus; the second is due only after a passed watch."""
    return plan_file(tmp_path, "lab-watch", [
        {"name": "batch_size", "bake_hours": 0, "serial": ["100%"],
         "actions": {"flags": {"BADGE_AUTO_UNLOCK_BATCH_SIZE": "200", "USE_OPTIMIZED_DAILY_REWARDS": "true"}},
         "gates": [SLO],
         "watch": {"max_age_hours": 6, "gates": WATCH_GATES}},
        {"name": "batch_size_back", "bake_hours": 0, "serial": ["100%"],
         "actions": {"flags": {"BADGE_AUTO_UNLOCK_BATCH_SIZE": "100"}}, "gates": [SLO]},
    ])


def watches(plan: str) -> list:
    out = docker("exec", "gr-lab-db1", "runuser", "-u", "postgres", "--", "psql", "-d", "goalgpt", "-AtXc",
                 "SELECT coalesce(json_agg(w ORDER BY w.id), '[]') FROM gradual.rollout_watch w "
                 "WHERE w.plan = '%s'" % plan)
    return json.loads(out)


def plan_rows(plan: str, stage: str) -> list:
    out = docker("exec", "gr-lab-db1", "runuser", "-u", "postgres", "--", "psql", "-d", "goalgpt", "-AtXc",
                 "SELECT coalesce(json_agg(r ORDER BY id), '[]') FROM gradual.rollout_state r "
                 "WHERE plan = '%s' AND stage = '%s'" % (plan, stage))
    return json.loads(out)


def notifications(plan: str) -> list:
    lines = (ROOT / "reports" / "notify.jsonl").read_text(encoding="utf-8").splitlines()
    return [e for e in map(json.loads, lines) if e.get("plan") == plan]


def run_jobs(*hosts: str) -> str:
    proc = subprocess.run([LAB_JOBS, *hosts], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    print(proc.stdout, proc.stderr)
    return proc.stdout


def set_fault(host: str, text: str | None) -> None:
    if text is None:
        docker("exec", "gr-lab-%s" % host, "rm", "-f", FAULT_FILE)
    else:
        docker("exec", "gr-lab-%s" % host, "sh", "-c", "printf '%%s\\n' '%s' > %s && chmod 0644 %s"
               % (text, FAULT_FILE, FAULT_FILE))


def test_a_regression_on_one_host_is_rolled_back_by_the_next_watch(tmp_path):
    """Fault (a): the stage passed; then app2's daily job regresses (the fault switch forces the
    legacy path: "Query count: 10001"). The next watch reads it in app2's log, rolls the stage back
    on every host, and the state, the notification and the report say which gate and why."""
    plan = watch_plan(tmp_path)
    assert playbook("rollout.yml", "-e", plan, "-e", "rollout_action=reset").returncode == 0
    flags_before = {h: served_flags(h) for h in APPS}
    proc = playbook("rollout.yml", "-e", plan)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert all(served_flags(h)["BADGE_AUTO_UNLOCK_BATCH_SIZE"] == "200" for h in APPS)
    set_fault("app2", "daily-rewards legacy")
    try:
        out = run_jobs("app1", "app2")
        assert '"queries":10001' in out.replace(" ", ""), out
        watch = playbook("rollout.yml", "-e", plan, "-e", "rollout_action=watch")
    finally:
        set_fault("app2", None)
    assert watch.returncode != 0 and "ROLLED BACK" in watch.stdout, watch.stdout[-3000:]
    row = plan_rows("lab-watch", "batch_size")[-1]
    assert row["status"] == "rolled_back", row
    assert "daily_rewards_job" in row["reason"] and "app2" in row["reason"] and "10001" in row["reason"], row
    last = watches("lab-watch")[-1]
    assert last["verdict"] == "failed" and last["state_id"] == row["id"], last
    judged = last["gates"]["daily_rewards_job"]["figures"]
    assert judged["app2"]["extractors"]["query_count"]["max"] == 10001, judged
    assert judged["app1"]["extractors"]["query_count"]["max"] <= 3, judged
    for host in APPS:
        assert served_flags(host) == flags_before[host]   # the snapshot taken when the stage began
    nginx_serves()
    assert drained() == []
    events = notifications("lab-watch")
    assert any(e.get("event") == "watch" and e.get("verdict") == "failed" for e in events), events
    assert any(e.get("event") == "rolled_back" and "daily_rewards_job" in (e.get("reason") or "") for e in events), events
    assert playbook("rollout.yml", "-e", plan, "-e", "rollout_action=report").returncode == 0
    report = (ROOT / "reports" / "rollout-lab-watch.md").read_text(encoding="utf-8")
    assert "daily_rewards_job" in report and "10001" in report, report


def test_prometheus_down_during_a_watch_holds_the_next_stage_until_a_watch_passes(tmp_path):
    """Fault (b): Prometheus stopped on mon1 during a watch: inconclusive, nothing rolled back, a
    notification, and the next stage refused; once Prometheus is back a watch passes and the next
    stage runs."""
    plan = watch_plan(tmp_path)
    assert playbook("rollout.yml", "-e", plan, "-e", "rollout_action=reset").returncode == 0
    assert playbook("rollout.yml", "-e", plan).returncode == 0
    run_jobs("app1", "app2")
    docker("exec", "gr-lab-mon1", "systemctl", "stop", "prometheus")
    try:
        watch = playbook("rollout.yml", "-e", plan, "-e", "rollout_action=watch")
    finally:
        docker("exec", "gr-lab-mon1", "systemctl", "start", "prometheus")
    assert watch.returncode != 0 and "WATCH INCONCLUSIVE" in watch.stdout, watch.stdout[-3000:]
    row = plan_rows("lab-watch", "batch_size")[-1]
    assert row["status"] == "passed", row
    last = watches("lab-watch")[-1]
    assert last["verdict"] == "inconclusive", last
    assert not last["gates"]["error_rate"]["passed"] and last["gates"]["error_rate"]["inconclusive"], last
    assert last["gates"]["daily_rewards_job"]["passed"], last
    assert all(served_flags(h)["BADGE_AUTO_UNLOCK_BATCH_SIZE"] == "200" for h in APPS)
    assert any(e.get("event") == "watch" and e.get("verdict") == "inconclusive" for e in notifications("lab-watch"))
    result = tmp_path / "result.json"
    held = playbook("rollout.yml", "-e", plan, "-e", "rollout_result_file=%s" % result)
    assert held.returncode != 0 and json.loads(result.read_text())["outcome"] == "refused", held.stdout[-3000:]
    assert plan_rows("lab-watch", "batch_size_back") == []

    wait_for(lambda: get("http://172.28.87.51:9090/-/ready")[0] in (200, 401), "Prometheus back on mon1", timeout=120)
    time.sleep(15)  # a few scrapes (5 s) after the restart
    run_jobs("app1", "app2")
    again = playbook("rollout.yml", "-e", plan, "-e", "rollout_action=watch")
    assert again.returncode == 0, again.stdout[-3000:]
    assert watches("lab-watch")[-1]["verdict"] == "passed"
    after = playbook("rollout.yml", "-e", plan)
    assert after.returncode == 0, after.stdout[-3000:]
    assert plan_rows("lab-watch", "batch_size_back")[-1]["status"] == "passed"
    assert all(served_flags(h)["BADGE_AUTO_UNLOCK_BATCH_SIZE"] == "100" for h in APPS)


def median_ms(url: str, n: int = 30) -> float:
    times = []
    for _request in range(n):
        start = time.perf_counter()
        get(url)
        times.append((time.perf_counter() - start) * 1000)
    return sorted(times)[n // 2]


def test_a_canary_three_times_slower_than_its_baseline_fails_under_the_absolute_threshold(tmp_path):
    """Fault (c): app1 (the canary batch) answers after a delay that makes it ~3x app2 (its baseline),
    still far under the plan's absolute p95 bound: the canary gate fails and the stage rolls back."""
    base = median_ms("http://%s:3000/health" % APPS["app2"])
    delay = max(2, round(2 * base))
    gate = {"name": "canary", "type": "canary_compare",
            "args": {"url": "/health", "requests": 60, "concurrency": 1, "max_median_increase_ms": base / 2}}
    plan = plan_file(tmp_path, "lab-canary", [
        {"name": "canary_batch_size", "bake_hours": 0, "serial": [1, "100%"],
         "actions": {"flags": {"BADGE_AUTO_UNLOCK_BATCH_SIZE": "300"}},
         "gates": [dict(SLO, args={"url": "/health", "requests": 60, "concurrency": 2, "max_p95_ms": 500}), gate]}])
    assert playbook("rollout.yml", "-e", plan, "-e", "rollout_action=reset").returncode == 0
    flags_before = {h: served_flags(h) for h in APPS}
    set_fault("app1", "http delay %d" % delay)
    try:
        time.sleep(1.5)  # the app re-reads the switch once a second
        proc = playbook("rollout.yml", "-e", plan)
    finally:
        set_fault("app1", None)
    assert proc.returncode != 0 and "ROLLED BACK" in proc.stdout, proc.stdout[-3000:]
    row = plan_rows("lab-canary", "canary_batch_size")[-1]
    assert row["status"] == "rolled_back" and "canary" in row["reason"], row
    record = row["figures"]["canary"]
    assert record["passed"] is False and not record.get("inconclusive"), record
    figures = record["figures"]
    print("canary: baseline median %.2f ms, delay %d ms: %s" % (base, delay, figures))
    assert figures["median_ratio"] >= 1.5 and figures["canary_median_ms"] < 500, figures
    assert row["figures"]["api_slo"]["passed"], row["figures"]["api_slo"]   # under the absolute bound
    assert {h: served_flags(h) for h in APPS} == flags_before
    nginx_serves()


# ---- a bad plan -------------------------------------------------------------------------------
def _plan(stages: list) -> dict:
    return {"rollout_plan": {"name": PLAN, "baseline": {"USE_OPTIMIZED_DAILY_REWARDS": "false"}, "stages": stages}}


GATE = {"name": "slo", "type": "http_slo", "args": {"url": "http://127.0.0.1:3000/health", "max_p95_ms": 200}}
FLAG = {"flags": {"USE_OPTIMIZED_DAILY_REWARDS": "true"}}


@pytest.mark.parametrize("stages, expected", [
    ([{"name": "a", "actions": FLAG, "gates": [GATE]}, {"name": "a", "actions": FLAG, "gates": [GATE]}],
     "stage name 'a' is used twice"),
    ([{"name": "a", "actions": FLAG, "gates": [dict(GATE, type="latency_check")]}], "latency_check"),
    ([{"name": "a", "actions": FLAG, "gates": [dict(GATE, args={"url": "http://x", "max_p95_ms": -5})]}],
     "is negative"),
    ([{"name": "a", "actions": {"migrate": {"target": "003", "lock_timout_ms": 500}}}], "lock_timout_ms"),
    ([{"name": "a", "actions": {"migrate": {"target": "003", "lock_retries": 0}}}],
     "actions.migrate.lock_retries=0: expected a positive integer"),
], ids=["duplicate-stage", "unknown-gate", "negative-threshold", "migrate-option-typo", "migrate-bad-ladder"])
def test_a_bad_plan_is_refused_and_changes_nothing(tmp_path, stages, expected):
    before = (rows(), flags_sum("app1"), flags_sum("app2"))
    bad = tmp_path / "bad-plan.json"
    bad.write_text(json.dumps(_plan(stages)), encoding="utf-8")
    proc = playbook("rollout.yml", "-e", "@%s" % bad, "-e", "stage=a")
    assert proc.returncode != 0
    assert expected in proc.stdout
    assert (rows(), flags_sum("app1"), flags_sum("app2")) == before


# ---- Redis stopped before the cache stage -----------------------------------------------------
def test_redis_down_before_the_cache_stage_rolls_back_and_the_app_still_serves():
    flags_before = {h: served_flags(h) for h in APPS}
    docker("exec", "gr-lab-cache1", "systemctl", "stop", "redis-server")
    try:
        proc = playbook("rollout.yml", "-e", "rollout_ignore_bake=true", "-e", "rollout_rerun_passed=true", "-e", "stage=w3d17_standings_cache")
        assert proc.returncode != 0
        assert "ROLLED BACK" in proc.stdout
        row = latest("w3d17_standings_cache")
        assert row["status"] == "rolled_back" and "cache" in row["reason"], row
        assert row["figures"]["cache"]["passed"] is False
        for host in APPS:
            assert served_flags(host) == flags_before[host]
        nginx_serves()
        assert drained() == []
    finally:
        docker("exec", "gr-lab-cache1", "systemctl", "start", "redis-server")


# ---- an app host unreachable mid-batch --------------------------------------------------------
def test_an_unreachable_app_host_stops_the_stage_and_a_rerun_resumes():
    stage = "w3d17_standings_cache"
    before_id = latest(stage)["id"]
    run = start_playbook("rollout.yml", "-e", "rollout_ignore_bake=true", "-e", "rollout_rerun_passed=true", "-e", "stage=%s" % stage)
    cut = False
    try:
        running = wait_for(lambda: batch_done(stage, before_id), "the first batch (app1) of %s" % stage)
        docker("network", "disconnect", LAB_NET, "gr-lab-app2")
        cut = True
        out = run.communicate(timeout=600)[0]
        print(out[-6000:])
        assert run.returncode != 0
        assert "UNREACHABLE" in out
        row = latest(stage)
        assert row["status"] == "running" and row["batches_done"] == 1 and row["hosts_done"] == ["app1"], row
        assert served_flags("app1")["CACHE_H2H"] == "false"  # batch 1 applied the stage to app1
        nginx_serves()
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        if cut:
            docker("network", "connect", "--ip", APPS["app2"], LAB_NET, "gr-lab-app2")
    wait_for(lambda: get("http://%s:3000/health" % APPS["app2"])[0] == 200, "app2 back on the network", 60)
    proc = playbook("rollout.yml", "-e", "rollout_ignore_bake=true")
    assert proc.returncode == 0
    assert "rollout stage: %s" % stage in proc.stdout
    row = latest(stage)
    assert row["id"] == running["id"], "the rerun resumed the interrupted row"
    assert row["status"] == "passed" and sorted(row["hosts_done"]) == ["app1", "app2"], row
    for host in APPS:
        assert served_flags(host)["CACHE_H2H"] == "false"
    assert drained() == []


# ---- the controller killed mid-stage ----------------------------------------------------------
def test_a_controller_killed_mid_stage_is_resumed_by_the_next_run():
    stage = "w3d18_all_caching"
    before_id = latest(stage)["id"]
    run = start_playbook("rollout.yml", "-e", "rollout_ignore_bake=true", "-e", "rollout_rerun_passed=true", "-e", "stage=%s" % stage)
    try:
        running = wait_for(lambda: batch_done(stage, before_id), "the first batch (app1) of %s" % stage)
    finally:
        os.killpg(run.pid, signal.SIGKILL)  # the controller dies: no rescue, no cleanup
        run.communicate(timeout=60)
    row = latest(stage)
    assert row["status"] == "running"
    # The snapshot was recorded before the first change: what the rescue would restore.
    assert row["figures"]["_snapshot"]["app2"]["present"]["CACHE_H2H"] == "false", row["figures"]
    nginx_serves()
    proc = playbook("rollout.yml", "-e", "rollout_ignore_bake=true")
    assert proc.returncode == 0
    row = latest(stage)
    assert row["id"] == running["id"] and row["status"] == "passed", row
    for host in APPS:
        assert served_flags(host)["CACHE_H2H"] == "true"
    assert drained() == []
    nginx_serves()


# ---- nginx crashes while an app host is drained ----------------------------------------------
def test_an_nginx_crash_mid_stage_rolls_the_stage_back():
    """Issue #20 item 7: nginx's master killed while a host is drained. systemd brings it back within
    seconds (Restart=on-failure), but users saw errors meanwhile: the stage must not pass.
    The crash comes in the second batch (app2, systemd), so the rescue that runs there also puts
    back app1 (PM2), changed by the first batch, with app1's own process manager."""
    stage = "w3d18_all_caching"
    flags_before = {h: served_flags(h) for h in APPS}
    run = start_playbook("rollout.yml", "-e", "rollout_ignore_bake=true", "-e", "rollout_rerun_passed=true",
                         "-e", "stage=%s" % stage)
    try:
        wait_for(lambda: drained() == ["app2"], "app2 drained by the second batch of %s" % stage, 300, 0.1)
        pid = docker("exec", "gr-lab-web1", "systemctl", "show", "-p", "MainPID", "--value", "nginx").strip()
        docker("exec", "gr-lab-web1", "kill", "-9", pid)
        out = run.communicate(timeout=600)[0]
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    print(out[-6000:])
    assert run.returncode != 0 and "ROLLED BACK" in out
    row = latest(stage)
    # whichever step meets the crash names it: the public path gate (nginx back by then) or the
    # undrain (systemd still restarting nginx)
    crash = ("nginx was down and came back", "it stopped or crashed during a rollout")
    assert row["status"] == "rolled_back" and any(why in row["reason"] for why in crash), row
    for host in APPS:
        assert served_flags(host) == flags_before[host]
    wait_for(lambda: get(NGINX + "/health")[0] == 200, "nginx serving again", 60)
    nginx_serves()
    assert drained() == []


# ---- the emergency rollback -------------------------------------------------------------------
def test_emergency_rollback_puts_the_baseline_back_with_no_failed_request():
    docker("cp", str(ROOT / "bench" / "reload" / "loop.py"), "gr-lab-web1:/opt/gr-loop.py")
    docker("exec", "gr-lab-web1", "sh", "-c",
           "rm -f /tmp/gr-rb.stop /tmp/gr-rb.json; nohup python3 /opt/gr-loop.py --url https://127.0.0.1/health "
           "--workers 2 --pause 0.05 --duration 300 --out /tmp/gr-rb.json --stop-file /tmp/gr-rb.stop "
           ">/tmp/gr-rb.log 2>&1 &")
    started = time.monotonic()
    try:
        proc = playbook("playbooks/rollback.yml", "-e", "rollback_reason='molecule: emergency rollback drill'")
        seconds = time.monotonic() - started
    finally:
        docker("exec", "gr-lab-web1", "touch", "/tmp/gr-rb.stop")
    loop = json.loads(wait_for(lambda: docker("exec", "gr-lab-web1", "cat", "/tmp/gr-rb.json", check=False),
                               "the request loop's figures", 60))
    print("rollback.yml took %.1f s; request loop: %s" % (seconds, loop))
    assert proc.returncode == 0
    assert loop["failed"] == 0 and loop["sent"] > 20, loop
    base = {"USE_OPTIMIZED_DAILY_REWARDS": "false", "MATCH_ENRICHER_CONCURRENCY": "999", "USE_REDIS_CACHE": "false",
            "CACHE_STANDINGS": "false", "CACHE_H2H": "false"}
    for host in APPS:
        served = served_flags(host)
        assert {k: served[k] for k in base} == base


# ---- a gate fails: the pool saturated by a load generator -------------------------------------
def test_a_saturated_pool_fails_the_gate_and_the_stage_rolls_back():
    stage = "w2d11_optimised_limits"
    flags_before = {h: served_flags(h) for h in APPS}
    assert flags_before["app1"]["MATCH_ENRICHER_CONCURRENCY"] == "999"  # the baseline, from the rollback
    load = subprocess.Popen(["wrk", "-t", "2", "-c", "64", "-d", "240s", "http://%s:3000/api/standings/39" % APPS["app1"]],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        proc = playbook("rollout.yml", "-e", "rollout_ignore_bake=true", "-e", "rollout_rerun_passed=true", "-e", "stage=%s" % stage)
    finally:
        os.killpg(load.pid, signal.SIGINT)
        print(load.communicate(timeout=30)[0])
    assert proc.returncode != 0 and "ROLLED BACK" in proc.stdout
    row = latest(stage)
    assert row["status"] == "rolled_back" and "pool" in row["reason"], row
    assert row["figures"]["pool"]["passed"] is False
    assert row["hosts_done"] == [], "no batch may pass with a failed gate"
    for host in APPS:
        assert served_flags(host) == flags_before[host]
    nginx_serves()
    assert drained() == []


def test_the_report_and_the_audit_trail_tell_what_happened():
    assert playbook("rollout.yml", "-e", "rollout_action=report").returncode == 0
    report = json.loads((ROOT / "reports" / ("rollout-%s.json" % PLAN)).read_text(encoding="utf-8"))
    by_stage = {s["name"]: s for s in report["stages"]}
    assert by_stage["w2d11_optimised_limits"]["status"] == "rolled_back"
    assert report["overall"] == "ROLLED BACK"
    events = [json.loads(line) for line in (ROOT / "reports" / "notify.jsonl").read_text(encoding="utf-8").splitlines()]
    assert any(e.get("event") == "rolled_back" and e.get("stage") == "w2d11_optimised_limits" for e in events)
    assert any(e.get("event") == "resume" and e.get("stage") == "w3d18_all_caching" for e in events)


# ---- last: the dry run of a fresh plan --------------------------------------------------------
def test_check_diff_on_a_fresh_plan_measures_and_changes_nothing():
    """rollout.yml --check --diff shows the due stage, its changes and live gate readings, and
    changes neither the state nor the flags."""
    assert playbook("playbooks/rollback.yml", "-e", "rollback_reason='molecule: dry run from the baseline'").returncode == 0
    assert playbook("rollout.yml", "-e", "rollout_action=reset").returncode == 0
    before = flags_sum("app1")
    dry = playbook("rollout.yml", "--check", "--diff")
    status = playbook("rollout.yml", "-e", "rollout_action=status")
    assert dry.returncode == 0
    assert "rollout stage: w1d1_migration_safety" in dry.stdout
    assert "api_slo" in dry.stdout and '"gate_type": "http_slo"' in dry.stdout
    assert "p95_ms" in dry.stdout
    assert re.search(r"w1d1_migration_safety +pending", status.stdout), status.stdout[-3000:]
    assert not re.search(r" (running|passed|rolled_back|failed) ", status.stdout), status.stdout[-3000:]
    assert rows() == []
    assert flags_sum("app1") == before
