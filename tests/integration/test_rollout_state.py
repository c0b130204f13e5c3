"""rollout_state against a real PostgreSQL: state survives between runs, check mode writes nothing."""
from __future__ import annotations

import json

from ansible_run import run_module


def args(postgres, db, **extra):
    base = dict(login_host=postgres.host, login_port=postgres.port, login_user=postgres.user,
                login_password=postgres.password, db=db, plan="post-p1")
    base.update(extra)
    return base


def test_read_on_empty_database_returns_nothing_and_creates_nothing(postgres, pg_db):
    res = run_module("rollout_state", args(postgres, pg_db))
    assert res["rc"] == 0, res
    assert res["rows"] == [] and res["changed"] is False
    assert postgres.psql("SELECT count(*) FROM pg_namespace WHERE nspname = 'gradual'", pg_db) == "0"


def test_start_progress_finish_round_trip(postgres, pg_db):
    start = run_module("rollout_state", args(postgres, pg_db, operation="start", stage="w1d4_daily_rewards",
                                             actor="ops", awx_job_id="42"))
    assert start["rc"] == 0, start
    run_id = start["run"]["id"]
    assert start["run"]["status"] == "running" and start["resumed"] is False
    assert start["rollout_event"]["event"] == "start"
    prog = run_module("rollout_state", args(postgres, pg_db, operation="progress", run_id=run_id, batch=1,
                                            hosts=["app1"], figures={"slo": {"p95_ms": 12.5}}))
    assert prog["run"]["batches_done"] == 1 and prog["run"]["hosts_done"] == ["app1"]
    fin = run_module("rollout_state", args(postgres, pg_db, operation="finish", run_id=run_id, status="passed",
                                           figures={"pool": {"utilization": {"max": 40}}}))
    assert fin["rc"] == 0, fin
    assert fin["run"]["status"] == "passed" and fin["run"]["finished_at"]
    assert fin["run"]["figures"] == {"slo": {"p95_ms": 12.5}, "pool": {"utilization": {"max": 40}}}
    assert fin["rollout_event"]["event"] == "passed"
    stored = json.loads(postgres.psql(
        "SELECT row_to_json(r) FROM gradual.rollout_state r WHERE id = %d" % run_id, pg_db))
    assert stored["actor"] == "ops" and stored["awx_job_id"] == "42" and stored["status"] == "passed"
    read = run_module("rollout_state", args(postgres, pg_db))
    assert read["latest"]["w1d4_daily_rewards"]["status"] == "passed"


def test_interrupted_stage_is_resumed_not_duplicated(postgres, pg_db):
    first = run_module("rollout_state", args(postgres, pg_db, operation="start", stage="w1d5_all_p1b"))
    run_module("rollout_state", args(postgres, pg_db, operation="progress", run_id=first["run"]["id"],
                                     batch=1, hosts=["app1"]))
    again = run_module("rollout_state", args(postgres, pg_db, operation="start", stage="w1d5_all_p1b"))
    assert again["resumed"] is True
    assert again["run"]["id"] == first["run"]["id"]
    assert again["run"]["hosts_done"] == ["app1"]
    assert postgres.psql("SELECT count(*) FROM gradual.rollout_state", pg_db) == "1"


def test_rolled_back_keeps_reason_and_a_new_start_is_a_new_row(postgres, pg_db):
    first = run_module("rollout_state", args(postgres, pg_db, operation="start", stage="w3d17_standings_cache"))
    fin = run_module("rollout_state", args(postgres, pg_db, operation="finish", run_id=first["run"]["id"],
                                           status="rolled_back", reason="gate cache: hit rate 12% < 80%"))
    assert fin["run"]["reason"] == "gate cache: hit rate 12% < 80%"
    second = run_module("rollout_state", args(postgres, pg_db, operation="start", stage="w3d17_standings_cache"))
    assert second["resumed"] is False and second["run"]["id"] != first["run"]["id"]


def test_check_mode_writes_nothing(postgres, pg_db):
    res = run_module("rollout_state", args(postgres, pg_db, operation="start", stage="w1d1_migration_safety"),
                     check=True)
    assert res["rc"] == 0, res
    assert res["changed"] is True and res["run"]["id"] is None
    assert postgres.psql("SELECT count(*) FROM pg_namespace WHERE nspname = 'gradual'", pg_db) == "0"


def test_unknown_run_id_fails_clearly(postgres, pg_db):
    run_module("rollout_state", args(postgres, pg_db, operation="ensure_schema"))
    res = run_module("rollout_state", args(postgres, pg_db, operation="finish", run_id=999, status="passed"))
    assert res.get("failed") and "run_id 999" in res["msg"]


def test_finish_without_status_is_refused_by_the_argument_spec(postgres, pg_db):
    res = run_module("rollout_state", args(postgres, pg_db, operation="finish", run_id=1))
    assert res.get("failed") and "status" in res["msg"]


def test_unreachable_database_fails_naming_the_target(postgres):
    res = run_module("rollout_state", dict(login_host="127.0.0.1", login_port=1, login_user="x",
                                           login_password="y", db="nope", plan="p", connect_timeout=2))
    assert res.get("failed") and "127.0.0.1" in res["msg"] and "x@" in res["msg"]


def test_reset_removes_only_this_plans_rows(postgres, pg_db):
    run_module("rollout_state", args(postgres, pg_db, operation="start", stage="a"))
    run_module("rollout_state", args(postgres, pg_db, operation="start", stage="a", plan="other"))
    checked = run_module("rollout_state", args(postgres, pg_db, operation="reset"), check=True)
    assert checked["changed"] is True and len(checked["removed"]) == 1
    assert postgres.psql("SELECT count(*) FROM gradual.rollout_state", pg_db) == "2"
    res = run_module("rollout_state", args(postgres, pg_db, operation="reset"))
    assert res["changed"] is True and res["rows"] == []
    assert postgres.psql("SELECT plan FROM gradual.rollout_state", pg_db) == "other"
    again = run_module("rollout_state", args(postgres, pg_db, operation="reset"))
    assert again["changed"] is False


def passed(postgres, db, stage, **extra):
    start = run_module("rollout_state", args(postgres, db, operation="start", stage=stage, **extra))
    return run_module("rollout_state", args(postgres, db, operation="finish", run_id=start["run"]["id"],
                                            status="passed", **extra))


def test_start_with_supersede_marks_the_later_passed_stages_in_the_same_write(postgres, pg_db):
    for stage in ("a", "b", "c"):
        passed(postgres, pg_db, stage)
    first = run_module("rollout_state", args(postgres, pg_db, operation="start", stage="d"))
    assert first["rc"] == 0
    checked = run_module("rollout_state", args(postgres, pg_db, operation="start", stage="a",
                                               supersede=["b", "c", "d", "zz"]), check=True)
    assert [r["stage"] for r in checked["superseded"]] == ["b", "c"]
    assert postgres.psql("SELECT count(*) FROM gradual.rollout_state WHERE status = 'superseded'", pg_db) == "0"
    res = run_module("rollout_state", args(postgres, pg_db, operation="start", stage="a", actor="ops",
                                           supersede=["b", "c", "d", "zz"]))
    assert res["rc"] == 0, res
    # d is running (not passed), zz has no row: both left as they are
    assert [(r["stage"], r["status"]) for r in res["superseded"]] == [("b", "superseded"), ("c", "superseded")]
    assert "stage a was run again by ops" in res["superseded"][0]["reason"]
    assert res["rollout_event"]["superseded"] == ["b", "c"]
    latest = {s: r["status"] for s, r in res["latest"].items()}
    assert latest == {"a": "running", "b": "superseded", "c": "superseded", "d": "running"}


OLD_TABLE = """CREATE SCHEMA gradual;
CREATE TABLE gradual.rollout_state (id bigserial PRIMARY KEY, plan text NOT NULL, stage text NOT NULL,
  status text NOT NULL CHECK (status IN ('running', 'passed', 'failed', 'rolled_back')),
  started_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz, batches_done integer NOT NULL DEFAULT 0,
  hosts_done jsonb NOT NULL DEFAULT '[]'::jsonb, figures jsonb NOT NULL DEFAULT '{}'::jsonb,
  reason text, actor text, awx_job_id text);
INSERT INTO gradual.rollout_state (plan, stage, status, finished_at)
  VALUES ('post-p1', 'a', 'passed', now()), ('post-p1', 'b', 'passed', now());"""


def test_a_table_of_an_older_version_learns_the_superseded_status(postgres, pg_db):
    postgres.psql(OLD_TABLE, pg_db)
    res = run_module("rollout_state", args(postgres, pg_db, operation="start", stage="a", supersede=["b"]))
    assert res["rc"] == 0, res
    assert res["latest"]["b"]["status"] == "superseded"
    assert "superseded" in postgres.psql(
        "SELECT string_agg(pg_get_constraintdef(oid), ' ') FROM pg_constraint "
        "WHERE conrelid = 'gradual.rollout_state'::regclass AND contype = 'c'", pg_db)
    again = run_module("rollout_state", args(postgres, pg_db, operation="ensure_schema"))
    assert again["changed"] is False
