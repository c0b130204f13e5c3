"""feature_flag against a real env file, PostgreSQL and Redis: round trip, exact restore, audit,
check mode, and bad input that fails clearly with nothing changed."""
from __future__ import annotations

import json
import os
import stat

import psycopg2
import pytest

from ansible_run import ansible_adhoc, run_module

ENV = """# goalgpt feature flags, read by PM2 (ecosystem env_file) / systemd EnvironmentFile
export USE_OPTIMIZED_DAILY_REWARDS=false
USE_OPTIMIZED_BADGE_UNLOCK=false

# caching (PR-P1D)
USE_REDIS_CACHE="false"
MATCH_ENRICHER_CONCURRENCY=999
"""


@pytest.fixture
def env_file(tmp_path):
    path = tmp_path / "flags.env"
    path.write_text(ENV)
    os.chmod(path, 0o604)
    return path


def pg_args(postgres, db):
    return {"login_host": postgres.host, "login_port": postgres.port, "login_user": postgres.user,
            "login_password": postgres.password, "db": db}


def redis_args(server, user="app"):
    return {"redis_host": "127.0.0.1", "redis_port": server.port, "redis_username": user,
            "redis_password": server.app_password if user == "app" else server.admin_password}


def rows(postgres, db, sql):
    with psycopg2.connect(**postgres.conninfo(db)) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


# --- env_file -------------------------------------------------------------------------------

def test_env_file_round_trip_and_exact_restore(env_file, tmp_path):
    audit = tmp_path / "audit.jsonl"
    flags = {"USE_OPTIMIZED_DAILY_REWARDS": True, "USE_REDIS_CACHE": "true",
             "MATCH_ENRICHER_CONCURRENCY": 50, "CACHE_STANDINGS": True}
    res = run_module("feature_flag", {"backend": "env_file", "path": str(env_file), "flags": flags,
                                      "audit": {"file": str(audit), "actor": "alice", "run_id": "77"}},
                     diff=True)
    assert res["rc"] == 0 and res["changed"] is True, res
    assert res["previous"] == {"backend": "env_file",
                               "present": {"MATCH_ENRICHER_CONCURRENCY": "999",
                                           "USE_OPTIMIZED_DAILY_REWARDS": "false",
                                           "USE_REDIS_CACHE": "false"},
                               "absent": ["CACHE_STANDINGS"]}
    assert res["current"] == {"CACHE_STANDINGS": "true", "MATCH_ENRICHER_CONCURRENCY": "50",
                              "USE_OPTIMIZED_DAILY_REWARDS": "true", "USE_REDIS_CACHE": "true"}
    text = env_file.read_text()
    assert text == ("# goalgpt feature flags, read by PM2 (ecosystem env_file) / systemd EnvironmentFile\n"
                    "export USE_OPTIMIZED_DAILY_REWARDS=true\nUSE_OPTIMIZED_BADGE_UNLOCK=false\n\n"
                    "# caching (PR-P1D)\nUSE_REDIS_CACHE=\"true\"\nMATCH_ENRICHER_CONCURRENCY=50\n"
                    "CACHE_STANDINGS=true\n")
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o604
    assert res["diff"]["before"] == ENV and res["diff"]["after"] == text
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    assert {(r["flag"], r["action"], r["old"], r["new"]) for r in lines} == {
        ("CACHE_STANDINGS", "create", None, "true"),
        ("MATCH_ENRICHER_CONCURRENCY", "update", "999", "50"),
        ("USE_OPTIMIZED_DAILY_REWARDS", "update", "false", "true"),
        ("USE_REDIS_CACHE", "update", "false", "true")}
    assert all(r["actor"] == "alice" and r["run_id"] == "77" and r["target"] == str(env_file) for r in lines)

    again = run_module("feature_flag", {"backend": "env_file", "path": str(env_file), "flags": flags})
    assert again["changed"] is False and again["rc"] == 0

    back = run_module("feature_flag", {"backend": "env_file", "path": str(env_file),
                                       "restore": res["previous"], "audit": {"file": str(audit)}})
    assert back["changed"] is True and back["rc"] == 0
    assert env_file.read_text() == ENV  # byte for byte: comments, order, quoting, the flag removed
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o604
    assert len(audit.read_text().splitlines()) == 8
    assert back["previous"]["present"]["CACHE_STANDINGS"] == "true"  # the restore is undoable too


def test_env_file_check_mode_changes_nothing(env_file, tmp_path):
    audit = tmp_path / "audit.jsonl"
    res = run_module("feature_flag", {"backend": "env_file", "path": str(env_file),
                                      "flags": {"USE_REDIS_CACHE": True}, "audit": {"file": str(audit)}},
                     check=True, diff=True)
    assert res["changed"] is True and res["current"] == {"USE_REDIS_CACHE": "true"}
    assert 'USE_REDIS_CACHE="true"' in res["diff"]["after"]
    assert env_file.read_text() == ENV and not audit.exists()


def test_a_read_without_audit_does_not_warn_of_an_unaudited_change(env_file):
    # the rollout's snapshot step reads the flags in check mode: nothing changes, nothing to audit
    args = {"backend": "env_file", "path": str(env_file), "flags": {"USE_REDIS_CACHE": True}}
    read = run_module("feature_flag", args, check=True)
    assert read["rc"] == 0 and read["changed"] is True, read
    assert "audit" not in json.dumps(read.get("warnings", [])), read.get("warnings")
    same = run_module("feature_flag", dict(args, flags={"USE_REDIS_CACHE": "false"}))
    assert same["changed"] is False and "audit" not in json.dumps(same.get("warnings", []))
    assert env_file.read_text() == ENV
    real = run_module("feature_flag", args)
    assert real["changed"] is True
    assert "changed 1 flag(s) without an audit destination" in json.dumps(real.get("warnings", []))


def test_env_file_created_with_mode(tmp_path):
    path = tmp_path / "new.env"
    res = run_module("feature_flag", {"backend": "env_file", "path": str(path), "mode": "0600",
                                      "flags": {"A": "1 2"}})
    assert res["changed"] and path.read_text() == 'A="1 2"\n'
    assert "without an audit destination" in json.dumps(res.get("warnings", []))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert res["previous"] == {"backend": "env_file", "present": {}, "absent": ["A"]}


def test_full_stack_check_diff_and_run_id_from_awx_env(env_file, tmp_path):
    audit = tmp_path / "audit.jsonl"
    os.environ["AWX_JOB_ID"] = "4242"
    try:
        res = ansible_adhoc("feature_flag", {"backend": "env_file", "path": str(env_file),
                                             "flags": {"USE_OPTIMIZED_BADGE_UNLOCK": True},
                                             "audit": {"file": str(audit)}}, diff=True)
    finally:
        del os.environ["AWX_JOB_ID"]
    assert res["rc"] == 0 and res["changed"] is True, res["_stdout"][-2000:]
    assert json.loads(audit.read_text())["run_id"] == "4242"
    assert "USE_OPTIMIZED_BADGE_UNLOCK=true" in env_file.read_text()


# --- postgres -------------------------------------------------------------------------------

def test_postgres_round_trip_restore_and_audit_in_same_transaction(postgres, pg_db):
    args = dict(pg_args(postgres, pg_db), backend="postgres", create_table=True,
                audit={"table": "feature_flag_audit", "actor": "bob", "run_id": "9"})
    first = run_module("feature_flag", dict(args, flags={"cache_standings": False, "limit": 10}))
    assert first["rc"] == 0 and first["changed"], first
    assert first["previous"] == {"backend": "postgres", "present": {}, "absent": ["cache_standings", "limit"]}

    second = run_module("feature_flag", dict(args, flags={"cache_standings": True, "limit": 10,
                                                          "mode": "fast"}))
    assert second["previous"] == {"backend": "postgres", "present": {"cache_standings": False, "limit": 10},
                                  "absent": ["mode"]}
    assert [c["flag"] for c in second["changes"]] == ["cache_standings", "mode"]
    stored = rows(postgres, pg_db, "SELECT name, value, updated_by FROM feature_flags ORDER BY name")
    assert stored == [("cache_standings", True, "bob"), ("limit", 10, "bob"), ("mode", "fast", "bob")]

    back = run_module("feature_flag", dict(args, restore=second["previous"]))
    assert back["changed"] and back["rc"] == 0
    assert rows(postgres, pg_db, "SELECT name, value FROM feature_flags ORDER BY name") == \
        [("cache_standings", False), ("limit", 10)]
    audit = rows(postgres, pg_db, "SELECT actor, run_id, flag, action, old_value, new_value "
                                  "FROM feature_flag_audit ORDER BY id")
    assert audit[-2:] == [("bob", "9", "cache_standings", "update", True, False),
                          ("bob", "9", "mode", "delete", "fast", None)]
    assert len(audit) == 6


def test_postgres_missing_table_fails_and_creates_nothing(postgres, pg_db):
    res = run_module("feature_flag", dict(pg_args(postgres, pg_db), backend="postgres",
                                          flags={"x": True}, audit={"table": "flag_audit"}))
    assert res.get("failed") and "create_table: true" in res["msg"] and "feature_flags" in res["msg"]
    assert rows(postgres, pg_db, "SELECT to_regclass('feature_flags'), to_regclass('flag_audit')") == [(None, None)]


def test_postgres_check_mode_creates_nothing(postgres, pg_db):
    res = run_module("feature_flag", dict(pg_args(postgres, pg_db), backend="postgres", create_table=True,
                                          flags={"x": True}), check=True)
    assert res["changed"] and res["current"] == {"x": True}
    assert rows(postgres, pg_db, "SELECT to_regclass('feature_flags')") == [(None,)]


def test_postgres_unreachable_fails_clearly(postgres, pg_db):
    args = dict(pg_args(postgres, pg_db), backend="postgres", flags={"x": True}, connect_timeout=2)
    args["login_password"] = "wrong"
    res = run_module("feature_flag", args)
    assert res.get("failed") and "cannot connect to PostgreSQL" in res["msg"]
    assert "wrong" not in res["msg"]


# --- redis ----------------------------------------------------------------------------------

def test_redis_round_trip_restore_with_app_user(redis_server, postgres, pg_db, tmp_path):
    admin = redis_server.client("admin")
    admin.delete("rollout:flags")
    admin.hset("rollout:flags", mapping={"CACHE_H2H": "false", "UNRELATED": "keep"})
    args = dict(redis_args(redis_server), **pg_args(postgres, pg_db))
    args.update(backend="redis", key="rollout:flags", audit={"table": "flag_audit", "file": str(tmp_path / "a.jsonl")})
    res = run_module("feature_flag", dict(args, flags={"CACHE_H2H": True, "CACHE_MATCH_DETAILS": True}))
    assert res["rc"] == 0 and res["changed"], res
    assert admin.hgetall("rollout:flags") == {"CACHE_H2H": "true", "CACHE_MATCH_DETAILS": "true", "UNRELATED": "keep"}
    assert res["previous"] == {"backend": "redis", "present": {"CACHE_H2H": "false"}, "absent": ["CACHE_MATCH_DETAILS"]}
    back = run_module("feature_flag", dict(args, restore=res["previous"]))
    assert back["changed"] and admin.hgetall("rollout:flags") == {"CACHE_H2H": "false", "UNRELATED": "keep"}
    assert res["audited"] == {"table": 2, "file": 2}
    assert rows(postgres, pg_db, "SELECT count(*) FROM flag_audit WHERE backend = 'redis'") == [(4,)]


def test_redis_wrong_type_and_bad_password_change_nothing(redis_server):
    admin = redis_server.client("admin")
    admin.set("a_string", "x")
    res = run_module("feature_flag", dict(redis_args(redis_server), backend="redis", key="a_string",
                                          flags={"X": True}))
    assert res.get("failed") and "holds a string, not a hash" in res["msg"]
    assert admin.get("a_string") == "x"
    bad = dict(redis_args(redis_server), backend="redis", flags={"X": True}, redis_password="nope-secret")
    res = run_module("feature_flag", bad)
    assert res.get("failed") and "refused the credentials" in res["msg"] and "nope-secret" not in res["msg"]
    assert admin.exists("feature_flags") == 0


def test_redis_password_is_not_logged(redis_server):
    args = dict(redis_args(redis_server), backend="redis", key="nolog", flags={"X": 1})
    res = ansible_adhoc("feature_flag", args, check=True)
    assert res["rc"] == 0 and res["changed"] is True
    assert redis_server.app_password not in res["_stdout"]


# --- bad input: clear message, nothing changed ------------------------------------------------

@pytest.mark.parametrize("args, message", [
    ({"backend": "etcd", "flags": {"A": 1}}, "value of backend must be one of"),
    ({"backend": "env_file", "flags": {"A": 1}}, "path"),
    ({"backend": "env_file", "flags": {"1BAD": 1}}, "'1BAD' is not a valid environment variable name"),
    ({"backend": "env_file", "flags": {"A": 1.5}}, "use a string, an integer or a boolean"),
    ({"backend": "env_file", "flags": {"A": "x\ny"}}, "newline"),
    # a name ending in a newline passed "^...$": changed on every run, two broken lines written
    ({"backend": "env_file", "flags": {"FOO\n": "1"}}, "'FOO\\n' is not a valid environment variable name"),
    ({"backend": "env_file", "restore": {"present": {}, "absent": ["FOO\n"]}}, "'FOO\\n' is not a valid"),
    ({"backend": "env_file", "flags": {"A": "x\x0by"}}, "flag A: value 'x\\x0by' contains the control character U+000B"),
    ({"backend": "env_file", "flags": {"A": "x\u2028y"}}, "flag A: value"),
    ({"backend": "env_file", "flags": {}}, "flags is empty"),
    ({"backend": "env_file", "flags": {"A": 1}, "restore": {"present": {}}}, "mutually exclusive"),
    ({"backend": "env_file", "restore": {"backend": "redis", "present": {"A": "1"}, "absent": []}},
     "taken from backend 'redis'"),
    ({"backend": "env_file", "flags": {"A": 1}, "audit": {"file": "/nonexistent-dir/a.jsonl"}},
     "does not exist"),
    ({"backend": "env_file", "flags": {"A": 1}, "mode": "rw-r"}, "is not a file mode"),
    ({"backend": "env_file", "flags": {"A": 1}, "audit": {"actor": "x"}}, "one of the following is required"),
])
def test_bad_input_fails_and_leaves_the_file(env_file, args, message):
    if "path" not in args and args.get("backend") == "env_file" and message != "path":
        args = dict(args, path=str(env_file))
    res = run_module("feature_flag", args)
    assert res.get("failed") is True and message in res["msg"], res.get("msg")
    assert env_file.read_text() == ENV


def test_missing_folder_and_bad_table_name(tmp_path, postgres, pg_db):
    res = run_module("feature_flag", {"backend": "env_file", "path": str(tmp_path / "no" / "f.env"),
                                      "flags": {"A": 1}})
    assert res.get("failed") and "does not exist" in res["msg"]
    res = run_module("feature_flag", dict(pg_args(postgres, pg_db), backend="postgres",
                                          table="flags; drop table x", flags={"A": 1}))
    assert res.get("failed") and "not a plain SQL identifier" in res["msg"]


def test_unreachable_audit_database_fails_before_the_file_changes(env_file):
    res = run_module("feature_flag", {"backend": "env_file", "path": str(env_file),
                                      "flags": {"USE_REDIS_CACHE": True}, "audit": {"table": "flag_audit"},
                                      "login_host": "127.0.0.1", "login_port": 9, "connect_timeout": 2})
    assert res.get("failed") and "cannot connect to PostgreSQL at postgres@127.0.0.1:9" in res["msg"]
    assert env_file.read_text() == ENV


def test_unreachable_redis_changes_nothing(env_file):
    res = run_module("feature_flag", {"backend": "redis", "redis_host": "127.0.0.1", "redis_port": 9,
                                      "redis_timeout": 2, "flags": {"X": True}})
    assert res.get("failed") and "cannot connect to Redis at default@127.0.0.1:9/0" in res["msg"]
