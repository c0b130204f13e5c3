"""The example app's two jobs (seed 003: daily reward reminders, badge auto-unlock) run for real:
node examples/app/server.js against the harness's PostgreSQL (its migrations) and Redis.
Flag off: the legacy path, one query per user; flag on: <= 3 / <= 10 queries. The seed's log lines
land in the app's log, failures in error.log, the counts in /metrics; the lab's fault switch
(JOB_FAULT_FILE) turns a run legacy or failing without a restart, and gradual.rollout.log_check
reading the real logs passes before the fault and fails on it."""
from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request

import example_app
import pytest
import services

from ansible_run import ansible_adhoc, run_module

DAILY_TAG = "[Daily Reward Reminders]"
BADGE_TAG = "[Badge Auto Unlock]"
# The watch's rules for the daily-rewards stage (seed 003: query count <= 3, < 5 s, no errors).
JOB_RULES = dict(extract=[
    {"name": "query_count", "regex": r"\[Daily Reward Reminders\] Query count: (\d+)", "max_value": 3},
    {"name": "completed_ms", "regex": r"\[Daily Reward Reminders\] Completed in (\d+)ms", "max_p95": 5000}])
ERROR_RULES = dict(patterns=[{"name": "errors", "regex": r"^\S+ ERROR ", "max_count": 0}])
SMALL_USERS = 40


@pytest.fixture(scope="module")
def app_dir():
    app, why = example_app.prepare("test-example-app")
    if app is None:
        pytest.skip("example app not runnable: " + why)
    return app


@pytest.fixture(scope="module")
def small_db(postgres):
    """Migration 001 with the demo users cut to SMALL_USERS, so legacy runs stay short."""
    name = "t_example_app_jobs_small"
    example_app.create_database(postgres, name, upto="001")
    postgres.psql(f"DELETE FROM daily_reward_claims WHERE user_id > {SMALL_USERS}; "
                  f"DELETE FROM app_users WHERE id > {SMALL_USERS}", dbname=name)
    yield name
    postgres.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def full_db(postgres):
    """Migration 001 as they are: the seed's 10000 users."""
    name = "t_example_app_jobs_full"
    example_app.create_database(postgres, name, upto="001")
    yield name
    postgres.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def run_app(app_dir, postgres, redis_server, tmp_path):
    procs = []

    def start(dbname, **env):
        logs = tmp_path / "log"
        logs.mkdir(exist_ok=True)
        proc, url = example_app.start(app_dir, postgres, redis_server, dbname, log_path=logs / "app.log",
                                      APP_ERROR_LOG=str(logs / "error.log"), **env)
        procs.append(proc)
        return url, logs / "app.log", logs / "error.log"

    yield start
    for proc in procs:
        services.terminate(proc)


def call(url, method="POST"):
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def msgs(log_path, tag):
    out = []
    for line in log_path.read_text().splitlines():
        with_json = line.startswith("{") and json.loads(line)
        if with_json and with_json["msg"].startswith(tag):
            out.append(with_json["msg"])
    return out


def metric(url, name, **labels):
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    m = re.search(r"^%s\{%s\} (\S+)$" % (re.escape(name), re.escape(want)), text, re.M)
    return float(m.group(1)) if m else None


def expected_badge_legacy_queries(postgres, dbname):
    """2 (badges, users) + one count per user + one insert per badge a user qualifies for."""
    rows = postgres.query("SELECT count(*) FROM app_users", dbname=dbname)
    users = rows[0][0]
    pairs = postgres.query("""SELECT count(*) FROM (SELECT u.id, count(c.user_id) AS n FROM app_users u
                              LEFT JOIN daily_reward_claims c ON c.user_id = u.id GROUP BY u.id) s
                              JOIN badges b ON s.n >= b.min_claims""", dbname=dbname)[0][0]
    return 2 + users + pairs


def test_flag_off_takes_the_legacy_path_one_query_per_user(run_app, small_db, postgres):
    url, log, error_log = run_app(small_db, USE_OPTIMIZED_DAILY_REWARDS="false", USE_OPTIMIZED_BADGE_UNLOCK="false")
    status, daily = call(url + "/api/jobs/daily-rewards")
    assert status == 200, daily
    assert daily["path"] == "legacy" and daily["users"] == SMALL_USERS
    assert daily["queries"] == SMALL_USERS + 1 > 3  # N+1
    assert daily["reminders"] == SMALL_USERS  # nobody claimed today
    status, badge = call(url + "/api/jobs/badge-unlock")
    assert status == 200, badge
    assert badge["path"] == "legacy" and badge["queries"] == expected_badge_legacy_queries(postgres, small_db) > 10
    lines = msgs(log, DAILY_TAG)
    assert lines[0] == f"{DAILY_TAG} Legacy: one query per user"
    assert f"{DAILY_TAG} Query count: {SMALL_USERS + 1} ({SMALL_USERS} users)" in lines
    assert any(re.fullmatch(re.escape(DAILY_TAG) + r" Completed in \d+ms", m) for m in lines), lines
    assert f"{BADGE_TAG} Query count: {badge['queries']} ({SMALL_USERS} users)" in msgs(log, BADGE_TAG)
    assert metric(url, "app_job_last_run_queries", job="daily_rewards") == SMALL_USERS + 1
    assert metric(url, "app_db_queries_per_job_count", job="daily_rewards", path="legacy") == 1
    assert metric(url, "app_job_runs_total", job="badge_unlock", path="legacy", status="ok") == 1
    assert not error_log.exists()


def test_flag_on_takes_the_optimised_path_within_the_seed_targets(run_app, small_db, postgres):
    url, log, error_log = run_app(small_db, USE_OPTIMIZED_DAILY_REWARDS="true", USE_OPTIMIZED_BADGE_UNLOCK="true")
    postgres.psql("TRUNCATE reward_reminders, user_badges", dbname=small_db)
    status, daily = call(url + "/api/jobs/daily-rewards")
    assert status == 200 and daily["path"] == "optimized" and daily["queries"] == 2 <= 3, daily
    assert daily["reminders"] == SMALL_USERS
    status, badge = call(url + "/api/jobs/badge-unlock")
    assert status == 200 and badge["path"] == "optimized" and badge["queries"] <= 10, badge
    # The optimised badge path unlocks exactly what the legacy one would.
    unlocked = postgres.query("SELECT count(*), count(DISTINCT user_id) FROM user_badges", dbname=small_db)[0]
    assert unlocked[0] == expected_badge_legacy_queries(postgres, small_db) - 2 - SMALL_USERS
    assert badge["unlocked_users"] == unlocked[1]
    lines = msgs(log, DAILY_TAG)
    assert lines[:2] == [f"{DAILY_TAG} ✅ Optimized: Using window function query",
                         f"{DAILY_TAG} Query count: 2 ({SMALL_USERS} users)"]
    assert f"{BADGE_TAG} ✅ Batch unlocked: {unlocked[1]} users" in msgs(log, BADGE_TAG)
    assert metric(url, "app_job_last_run_queries", job="badge_unlock") == badge["queries"]
    assert metric(url, "app_job_duration_seconds_count", job="daily_rewards", path="optimized") == 1
    # Unknown job, wrong method; the app's other routes are unchanged.
    assert call(url + "/api/jobs/nope")[0] == 404
    assert call(url + "/api/jobs/daily-rewards", method="GET")[0] == 405
    status, health = call(url + "/health", method="GET")
    assert status == 200 and health["status"] == "ok", health
    assert not error_log.exists()


def test_fault_switch_regresses_one_host_and_log_check_sees_it(run_app, full_db, tmp_path):
    fault = tmp_path / "job-fault"
    url, log, error_log = run_app(full_db, USE_OPTIMIZED_DAILY_REWARDS="true", JOB_FAULT_FILE=str(fault))
    start = run_module("log_check", dict(path=str(log), since_offset=0, position_only=True))
    assert start["rc"] == 0, start

    def watch(since, path=log, rules=None):
        return run_module("log_check", dict(rules or JOB_RULES, path=str(path), since_offset=since["offset"],
                                            since_inode=since["inode"]))

    status, ok = call(url + "/api/jobs/daily-rewards")
    assert status == 200 and ok["queries"] == 2 and ok["users"] == 10000, ok
    passed = watch(start)
    assert passed["rc"] == 0 and passed["gate"]["passed"] is True, passed.get("msg")
    assert passed["extractors"]["query_count"]["max"] == 2.0

    # Lab-only switch, read at the next run: the flag stays on, the job goes legacy (the seed's 10001).
    fault.write_text("# lab fault switch\ndaily-rewards legacy\n")
    status, bad = call(url + "/api/jobs/daily-rewards")
    assert status == 200 and bad["path"] == "legacy" and bad["fault"] == "legacy" and bad["queries"] == 10001, bad
    assert f"{DAILY_TAG} Query count: 10001 (10000 users)" in msgs(log, DAILY_TAG)
    # log_check run through `ansible localhost` (the full stack the watch uses) fails on it.
    regressed = ansible_adhoc("log_check", dict(JOB_RULES, path=str(log), since_offset=passed["offset"],
                                                since_inode=passed["inode"]))
    assert regressed["rc"] != 0 and regressed.get("failed") is True
    assert "query_count max 10001 exceeds max_value 3" in regressed["msg"]

    # `error`: the run fails, one line in error.log (ISO time, ERROR second), a 500.
    err_start = {"offset": 0, "inode": 0}
    fault.write_text("* error\n")
    status, failed = call(url + "/api/jobs/daily-rewards")
    assert status == 500 and failed["status"] == "error" and "injected fault" in failed["error"], failed
    lines = error_log.read_text().splitlines()
    assert len(lines) == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ERROR goalgpt-api\[\d+\] "
                        r"\[Daily Reward Reminders\] Job failed: injected fault .*", lines[0]), lines[0]
    errors = watch(dict(err_start, inode=error_log.stat().st_ino), path=error_log, rules=ERROR_RULES)
    assert errors.get("failed") is True and "errors count 1 exceeds max_count 0" in errors["msg"]

    # Switch removed: the next run is optimised again and a watch from here passes.
    fault.unlink()
    since = run_module("log_check", dict(path=str(log), since_offset=0, position_only=True))
    status, back = call(url + "/api/jobs/daily-rewards")
    assert status == 200 and back["path"] == "optimized" and back["queries"] == 2, back
    recovered = watch(since)
    assert recovered["rc"] == 0 and recovered["gate"]["passed"] is True, recovered.get("msg")


def test_timer_runs_only_the_job_whose_interval_is_set(run_app, small_db):
    url, log, _error_log = run_app(small_db, USE_OPTIMIZED_DAILY_REWARDS="true", JOB_DAILY_REWARDS_INTERVAL_MS="300")
    deadline = time.monotonic() + 15
    timed = []
    while time.monotonic() < deadline and len(timed) < 2:
        time.sleep(0.2)
        timed = [json.loads(line) for line in log.read_text().splitlines()
                 if line.startswith("{") and '"trigger":"timer"' in line and "Query count: 2 " in line]
    assert len(timed) >= 2, log.read_text()[-2000:]
    assert not msgs(log, BADGE_TAG)  # no interval set: off
    assert metric(url, "app_job_runs_total", job="daily_rewards", path="optimized", status="ok") >= 2


def test_fault_switch_http_delay_slows_every_request_then_lets_go(run_app, small_db, tmp_path):
    """`http delay <ms>` (the lab's slow canary): each request waits that long before it is handled;
    the switch is re-read at most once a second, so removing it ends the delay."""
    fault = tmp_path / "job-fault"
    url, _log, _error_log = run_app(small_db, JOB_FAULT_FILE=str(fault))

    def health_ms():
        start = time.monotonic()
        assert call(url + "/health", method="GET")[0] == 200
        return (time.monotonic() - start) * 1000

    fault.write_text("http delay 300\n")
    time.sleep(1.2)
    assert min(health_ms() for _request in range(3)) >= 300
    fault.unlink()
    time.sleep(1.2)
    assert min(health_ms() for _request in range(3)) < 300
