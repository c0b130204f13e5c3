"""rollout.yml and rollback.yml refuse before anything changes: a bad plan (the argument spec and
the semantic checks name the bad value), a missing site setting (named), a stage that has passed
unless rollout_rerun_passed says so - and then the stages it overwrites are marked superseded."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from json_http import JsonHandler, serve

from ansible_collections.gradual.rollout.plugins.module_utils.flags import read_env_file

ROOT = Path(__file__).resolve().parents[2]


def plan(**stage_overrides):
    stage = {"name": "one", "bake_hours": 0, "serial": [1, "100%"], "actions": {"flags": {"USE_X": "true"}},
             "gates": [{"name": "slo", "type": "http_slo", "args": {"url": "http://127.0.0.1:1/", "max_p95_ms": 200}}]}
    stage.update(stage_overrides)
    return {"name": "t", "baseline": {"USE_X": "false"}, "stages": [stage, dict(stage, name="two")]}


def run(tmp_path, postgres, db, the_plan, *extra, drop=(), playbook="rollout.yml"):
    """PLAYBOOK on a local fake app host and state host; DROP: settings left out of the extra vars."""
    inv = tmp_path / "inv.yml"
    inv.write_text(yaml.safe_dump({"all": {"children": {
        "app": {"hosts": {"fake-app": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                                       "rollout_address": "127.0.0.1"}}},
        "postgresql_primary": {"hosts": {"fake-db": {"ansible_connection": "local",
                                                     "ansible_python_interpreter": sys.executable}}}}}}))
    extra_vars = {"rollout_plan": the_plan, "rollout_state_db": db,
                  "rollout_result_file": str(tmp_path / "rollout-result.json"),
                  "rollout_state_login": {"login_host": postgres.host, "login_port": postgres.port,
                                          "login_user": postgres.user, "login_password": postgres.password}}
    for key in drop:
        extra_vars.pop(key)
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    return subprocess.run([str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", str(inv), str(ROOT / playbook),
                           "-e", json.dumps(extra_vars), *extra], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300, check=False)


@pytest.mark.parametrize("the_plan, message", [
    (plan(gates=[{"name": "slo", "type": "latency_gate", "args": {}}]), "latency_gate"),
    (plan(gates=[{"name": "slo", "type": "pool_check", "args": {"max_utilization": -5}}]), "max_utilization=-5 is negative"),
    ({"name": "t", "baseline": {"USE_X": "false"}, "stages": [plan()["stages"][0], plan()["stages"][0]]},
     "stage name 'one' is used twice"),
    (plan(bake_hours="soon"), "bake_hours"),
])
def test_bad_plan_fails_clearly_and_changes_nothing(tmp_path, postgres, pg_db, the_plan, message):
    proc = run(tmp_path, postgres, pg_db, the_plan)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert message in out, out[-3000:]
    assert postgres.psql("SELECT count(*) FROM pg_namespace WHERE nspname = 'gradual'", pg_db) == "0"


def test_status_of_a_good_plan_prints_the_table(tmp_path, postgres, pg_db):
    proc = run(tmp_path, postgres, pg_db, plan(), "-e", "rollout_action=status")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "STAGE" in proc.stdout and "one" in proc.stdout and "pending" in proc.stdout


# --- a passed stage runs again only by its own override ----------------------------------------

class FakeApp(JsonHandler):
    """/health answers 200 and /api/flags serves what the flags file holds, as the app would after
    reading it (the flags of these tests never change, so no reload is needed)."""

    flags_path: Path
    job_log: Path | None = None   # when set, each read of the flags (a reload's check) logs a job run

    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path == "/api/flags" and self.job_log is not None:
            with self.job_log.open("a") as log:
                log.write("[DailyRewards] Query count: 2\n[DailyRewards] Completed in 40ms\n")
        if self.path == "/api/flags":
            values = read_env_file(str(self.flags_path))[1]
            self.reply(200, {"flags": {k: {"value": v, "source": "env"} for k, v in values.items()}})
        else:
            self.reply(200, {"status": "ok"})


def rerun_plan():
    # both stages set USE_X, so running "one" again overwrites what "two" set
    return {"name": "t", "baseline": {"USE_X": "false", "LIMIT": "999"}, "stages": [
        {"name": "one", "bake_hours": 0, "actions": {"flags": {"USE_X": "true"}}},
        {"name": "two", "bake_hours": 0, "actions": {"flags": {"USE_X": "true", "LIMIT": "10"}}}]}


@pytest.fixture
def app_host(tmp_path):
    flags = tmp_path / "flags.env"
    flags.write_text("USE_X=true\nLIMIT=10\n")
    FakeApp.flags_path = flags
    FakeApp.job_log = None
    app = serve(FakeApp)
    yield ["-e", json.dumps({"rollout_app_port": app.server_address[1], "rollout_flags_path": str(flags),
                             "rollout_audit_file": str(tmp_path / "audit" / "flags.jsonl"),
                             "rollout_report_dir": str(tmp_path / "reports"), "rollout_health_timeout": 4})], flags
    app.shutdown()
    app.server_close()


def statuses(postgres, db):
    return postgres.psql("SELECT string_agg(stage || '=' || status, ' ' ORDER BY id) FROM gradual.rollout_state", db)


def test_a_passed_stage_runs_again_only_with_rollout_rerun_passed(tmp_path, postgres, pg_db, app_host):
    # One state for both halves (each rollout.yml run costs seconds): refused first, then allowed.
    extra, flags = app_host
    for _attempt in range(2):
        proc = run(tmp_path, postgres, pg_db, rerun_plan(), *extra)
        assert proc.returncode == 0, proc.stdout[-3000:]
    assert statuses(postgres, pg_db) == "one=passed two=passed"
    before = flags.read_text()
    proc = run(tmp_path, postgres, pg_db, rerun_plan(), *extra, "-e", "stage=one", "-e", "rollout_ignore_bake=true")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "stage 'one' has already passed" in out and "-e rollout_rerun_passed=true" in out, out[-3000:]
    assert statuses(postgres, pg_db) == "one=passed two=passed" and flags.read_text() == before

    # with the override, the stages it overwrites are marked superseded
    proc = run(tmp_path, postgres, pg_db, rerun_plan(), *extra, "-e", "stage=one", "-e", "rollout_rerun_passed=true")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "runs again by request (rollout_rerun_passed)" in proc.stdout
    assert statuses(postgres, pg_db) == "one=passed two=superseded one=passed"
    status = run(tmp_path, postgres, pg_db, rerun_plan(), *extra, "-e", "rollout_action=status")
    assert re.search(r"two +superseded", status.stdout), status.stdout[-3000:]
    # the next plain run applies the superseded stage again; then the plan is complete
    again = run(tmp_path, postgres, pg_db, rerun_plan(), *extra)
    assert again.returncode == 0 and "rollout stage: two" in again.stdout, again.stdout[-3000:]
    assert statuses(postgres, pg_db) == "one=passed two=superseded one=passed two=passed"
    done = run(tmp_path, postgres, pg_db, rerun_plan(), *extra)
    assert done.returncode == 0 and "every stage of the plan has passed" in done.stdout


# --- site values have no default in the playbooks: a missing one is named ----------------------

@pytest.mark.parametrize("drop, extra, message", [
    (["rollout_state_login"], ["-e", "rollout_action=status"], "rollout_state_login is not set"),
    (["rollout_state_db"], ["-e", "rollout_action=status"], "rollout_state_db is not set (nor app_db_name)"),
    ([], [], "rollout_flags_path is not set (nor app_env_dir or app_name"),
])
def test_a_missing_site_setting_is_named_and_nothing_changes(tmp_path, postgres, pg_db, drop, extra, message):
    proc = run(tmp_path, postgres, pg_db, plan(), *extra, drop=drop)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert message in out, out[-3000:]
    assert postgres.psql("SELECT count(*) FROM pg_namespace WHERE nspname = 'gradual'", pg_db) == "0"


def test_the_app_role_inventory_gives_the_flags_file_and_the_state_database(tmp_path, postgres, pg_db):
    # app_name / app_db_name of the app role's inventory stand in for rollout_flags_path / rollout_state_db
    proc = run(tmp_path, postgres, pg_db, plan(), "-e", "app_name=myapp", "-e", "app_db_name=%s" % pg_db,
               "-e", "rollout_action=status", drop=["rollout_state_db"])
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_the_emergency_rollback_names_a_missing_flags_file_before_it_changes_anything(tmp_path, postgres, pg_db):
    proc = run(tmp_path, postgres, pg_db, plan(), playbook="playbooks/rollback.yml")
    assert proc.returncode != 0
    assert "rollout_flags_path is not set" in proc.stdout, proc.stdout[-3000:]
    assert "Put the baseline flags back" not in proc.stdout


# --- the path users take is a gate of every stage (issue #20 item 7) ----------------------------
def test_a_public_path_that_fails_rolls_the_stage_back(tmp_path, postgres, pg_db, app_host):
    extra, flags = app_host
    before = flags.read_text()
    dead = serve(FakeApp)   # a port that answers nothing once closed
    port = dead.server_address[1]
    dead.shutdown()
    dead.server_close()
    proc = run(tmp_path, postgres, pg_db, rerun_plan(), *extra,
               "-e", json.dumps({"rollout_public_url": "http://127.0.0.1:%d/health" % port}))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "ROLLED BACK" in out, out[-3000:]
    assert "public_path: http_slo: no request to http://127.0.0.1:%d/health got a response" % port in out, out[-3000:]
    assert statuses(postgres, pg_db) == "one=rolled_back"
    assert flags.read_text() == before


def test_a_public_path_that_answers_lets_the_stage_pass(tmp_path, postgres, pg_db, app_host):
    extra, _flags = app_host
    port = json.loads(extra[1])["rollout_app_port"]
    proc = run(tmp_path, postgres, pg_db, rerun_plan(), *extra,
               "-e", json.dumps({"rollout_public_url": "http://127.0.0.1:%d/health" % port}))
    assert proc.returncode == 0, proc.stdout[-3000:]
    recorded = postgres.psql("SELECT figures->'public_path'->>'passed' FROM gradual.rollout_state WHERE stage = 'one'", pg_db)
    assert recorded == "true", proc.stdout[-3000:]


def test_the_report_is_handed_over_with_set_stats(tmp_path, postgres, pg_db, app_host, monkeypatch):
    """AWX keeps a job's set_stats as its artifacts; ansible-playbook prints them as custom stats."""
    extra, _flags = app_host
    monkeypatch.setenv("ANSIBLE_SHOW_CUSTOM_STATS", "true")
    proc = run(tmp_path, postgres, pg_db, rerun_plan(), *extra, "-e", "rollout_action=report")
    assert proc.returncode == 0, proc.stdout[-3000:]
    stats = proc.stdout[proc.stdout.index("CUSTOM STATS"):]
    assert "gradual_rollout_report_markdown" in stats and "| Metric | Target | Actual | Status |" in stats, stats[-2000:]


# --- the watch: a passed stage re-measured through its bake (issue #23 item 1) -------------------

def watch_plan(*gates):
    """rerun_plan's two stages, the first watched by GATES."""
    the_plan = rerun_plan()
    the_plan["stages"][0]["watch"] = {"gates": list(gates), "max_age_hours": 2}
    return the_plan


HEALTH = {"name": "health", "type": "http_slo", "args": {"url": "/health", "requests": 5, "max_error_rate": 0}}


def watches(postgres, db):
    return postgres.psql("SELECT string_agg(stage || '=' || verdict, ' ' ORDER BY id) FROM gradual.rollout_watch", db)


def notified(audit: Path) -> list:
    return [json.loads(line)["summary"] for line in audit.read_text().splitlines()
            if json.loads(line).get("event") == "watch"]


def test_an_inconclusive_watch_holds_the_next_stage_until_a_watch_passes(tmp_path, postgres, pg_db, app_host,
                                                                         monkeypatch):
    extra, flags = app_host
    audit = tmp_path / "notify.jsonl"
    monkeypatch.setenv("GR_ROLLOUT_AUDIT_FILE", str(audit))
    silent = serve(FakeApp)   # a port nothing answers on once closed: Prometheus down
    port = silent.server_address[1]
    silent.shutdown()
    silent.server_close()
    down = {"name": "errors", "type": "prometheus_check",
            "args": {"url": "http://127.0.0.1:%d" % port, "query": "sum(rate(errors_total[5m]))", "max_value": 0}}

    proc = run(tmp_path, postgres, pg_db, watch_plan(HEALTH), *extra)
    assert proc.returncode == 0, proc.stdout[-3000:]
    # passed, but no watch yet: the next stage is not due (rollout_ignore_bake does not waive it)
    held = run(tmp_path, postgres, pg_db, watch_plan(HEALTH), *extra, "-e", "rollout_ignore_bake=true")
    assert held.returncode != 0
    assert "stage 'one' is watched and no watch of it has run since it passed" in held.stdout, held.stdout[-3000:]

    before = flags.read_text()
    proc = run(tmp_path, postgres, pg_db, watch_plan(HEALTH, down), *extra, "-e", "rollout_action=watch")
    assert proc.returncode != 0
    assert "WATCH INCONCLUSIVE for stage one: errors:" in proc.stdout, proc.stdout[-3000:]
    report = (tmp_path / "reports" / "rollout-t.md").read_text()
    assert "| inconclusive | errors FAILED, health ok |" in report, report
    assert "ROLLED BACK" not in proc.stdout and flags.read_text() == before
    assert statuses(postgres, pg_db) == "one=passed" and watches(postgres, pg_db) == "one=inconclusive"
    assert "INCONCLUSIVE" in notified(audit)[-1] and "the next stage is held" in notified(audit)[-1]
    held = run(tmp_path, postgres, pg_db, watch_plan(HEALTH), *extra)
    assert held.returncode != 0 and "was inconclusive" in held.stdout, held.stdout[-3000:]

    # the source is back (here: a watch without it): the watch passes, the next stage is due
    measured = watch_plan(HEALTH)
    measured["metrics"] = [{"name": "Health errors", "op": "<=", "threshold": 0, "stage": "one", "gate": "health",
                            "field": "figures.errors"}]
    proc = run(tmp_path, postgres, pg_db, measured, *extra, "-e", "rollout_action=watch")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert watches(postgres, pg_db) == "one=inconclusive one=passed"
    # the report reads the metric from the watch, and its HTML page charts the watched gates
    reports = tmp_path / "reports"
    metric = json.loads((reports / "rollout-t.json").read_text())["metrics"][0]
    assert metric["status"] == "PASS" and metric["source"].startswith("one / watch health / figures.errors"), metric
    page = (reports / "rollout-t.html").read_text()
    assert (reports / "rollout-t.html").stat().st_mode == (reports / "rollout-t.md").stat().st_mode
    assert "<svg" in page and "<figcaption>health: 2 reading(s)</figcaption>" in page, page[-3000:]
    assert postgres.psql("SELECT gates->'health'->>'passed' FROM gradual.rollout_watch ORDER BY id DESC LIMIT 1",
                         pg_db) == "true"
    result = json.loads((tmp_path / "rollout-result.json").read_text())
    assert result["outcome"] == "watched" and result["reason"].startswith("watch passed"), result
    proc = run(tmp_path, postgres, pg_db, watch_plan(HEALTH), *extra)
    assert proc.returncode == 0 and "rollout stage: two" in proc.stdout, proc.stdout[-3000:]
    assert statuses(postgres, pg_db) == "one=passed two=passed"
    # two is the stage in bake now, and it watches nothing
    proc = run(tmp_path, postgres, pg_db, watch_plan(HEALTH), *extra, "-e", "rollout_action=watch")
    assert proc.returncode == 0 and "has no watch gates: nothing to watch" in proc.stdout, proc.stdout[-3000:]


def test_a_failed_watch_rolls_the_stage_back(tmp_path, postgres, pg_db, app_host, monkeypatch):
    extra, flags = app_host
    audit = tmp_path / "notify.jsonl"
    monkeypatch.setenv("GR_ROLLOUT_AUDIT_FILE", str(audit))
    proc = run(tmp_path, postgres, pg_db, watch_plan(HEALTH), *extra)
    assert proc.returncode == 0, proc.stdout[-3000:]
    before = flags.read_text()
    slow = dict(HEALTH, name="latency", args={"url": "/health", "requests": 5, "max_p95_ms": 0})
    proc = run(tmp_path, postgres, pg_db, watch_plan(HEALTH, slow), *extra, "-e", "rollout_action=watch")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "stage one ROLLED BACK" in out and "watch of stage one failed: latency:" in out, out[-3000:]
    assert statuses(postgres, pg_db) == "one=rolled_back" and watches(postgres, pg_db) == "one=failed"
    assert flags.read_text() == before
    assert "FAILED: latency:" in notified(audit)[-1] and "the stage is rolled back" in notified(audit)[-1]
    # the rolled back stage is the next to run again; a watch finds nothing passed to watch
    proc = run(tmp_path, postgres, pg_db, watch_plan(HEALTH), *extra, "-e", "rollout_action=watch")
    assert proc.returncode == 0 and "no stage has passed: nothing to watch" in proc.stdout, proc.stdout[-3000:]


JOBS = {"name": "jobs", "type": "log_check", "args": {
    "path": "", "extract": [{"name": "query_count", "regex": "Query count: (\\d+)", "max_value": 3}]}}


def test_log_gates_read_each_host_from_the_stage_start_and_a_watch_from_the_last_reading(
        tmp_path, postgres, pg_db, app_host):
    """Seed 003's "query count stays <= 3" read from the job log: the stage's gate reads what was
    logged since the stage began (not the older 10001), each watch what was logged since the last
    reading; a regression logged after the stage passed rolls it back at the next watch."""
    extra, flags = app_host
    log = tmp_path / "jobs.log"
    log.write_text("[DailyRewards] Query count: 10001\n")   # before the stage: never judged
    FakeApp.job_log = log
    jobs = dict(JOBS, args=dict(JOBS["args"], path=str(log)))
    the_plan = rerun_plan()
    the_plan["stages"][0].update(gates=[jobs], watch={"gates": [jobs]})

    proc = run(tmp_path, postgres, pg_db, the_plan, *extra)
    assert proc.returncode == 0, proc.stdout[-3000:]
    reading = json.loads(postgres.psql("SELECT figures->'jobs' FROM gradual.rollout_state WHERE stage = 'one'", pg_db))
    assert reading["passed"] and reading["figures"]["fake-app"]["extractors"]["query_count"]["max"] == 2, reading
    start = json.loads(postgres.psql("SELECT figures->'_log_positions' FROM gradual.rollout_state", pg_db))
    assert start == {"fake-app": {str(log): {"offset": len("[DailyRewards] Query count: 10001\n"),
                                             "inode": log.stat().st_ino}}}

    size = log.stat().st_size
    with log.open("a") as out:
        out.write("[DailyRewards] Query count: 3\n")
    proc = run(tmp_path, postgres, pg_db, the_plan, *extra, "-e", "rollout_action=watch")
    assert proc.returncode == 0, proc.stdout[-3000:]
    watched = json.loads(postgres.psql("SELECT gates->'jobs' FROM gradual.rollout_watch", pg_db))
    assert watched["figures"]["fake-app"]["bytes_read"] == log.stat().st_size - size, watched

    with log.open("a") as out:
        out.write("[DailyRewards] Query count: 10001\n")
    before = flags.read_text()
    proc = run(tmp_path, postgres, pg_db, the_plan, *extra, "-e", "rollout_action=watch")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "stage one ROLLED BACK" in out, out[-3000:]
    assert "watch of stage one failed: jobs: fake-app: " in out and "10001" in out, out[-3000:]
    assert statuses(postgres, pg_db) == "one=rolled_back" and watches(postgres, pg_db) == "one=passed one=failed"
    assert flags.read_text() == before


def test_a_query_prometheus_refuses_stops_the_stage_before_anything_changes(tmp_path, postgres, pg_db, app_host):
    """Bad PromQL in a watch gate: the stage's pre-flight sends the query to a real Prometheus, which
    refuses it; the play stops naming the query, before the first batch (the flags file as it was)."""
    import shutil

    import services

    extra, flags = app_host
    base = services.tempbase("prom-preflight")
    server = services.Prometheus(base, "127.0.0.1:9").start()
    try:
        bad = {"name": "errors", "type": "prometheus_check", "args": {
            "url": server.url, "url_username": server.user, "url_password": server.password,
            "query": "sum(rate(http_requests_total[5m]", "max_value": 0}}
        before = flags.read_text()
        proc = run(tmp_path, postgres, pg_db, watch_plan(HEALTH, bad), *extra)
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    assert proc.returncode != 0
    assert "Prometheus refused the query 'sum(rate(http_requests_total[5m]'" in proc.stdout, proc.stdout[-3000:]
    assert "Pre-flight, Prometheus accepts the queries" in proc.stdout
    assert services.Prometheus.password not in proc.stdout   # the gate's url_password is never printed
    assert flags.read_text() == before
    assert "batch" not in statuses(postgres, pg_db)
