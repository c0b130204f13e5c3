"""sql_check against real PostgreSQL: a table with an index, the plan that reads it (and one that
does not), idx_scan before and after a query, a scalar query, a refused write, a statement_timeout
that fires, a database that cannot be reached."""
from __future__ import annotations

import time

import pytest

from ansible_run import run_module

DB = "t_sql_check"
INDEX = "idx_players_team_position"


def pg_args(postgres, db=DB):
    return {"login_host": postgres.host, "login_port": postgres.port, "login_user": postgres.user,
            "login_password": postgres.password, "db": db}


@pytest.fixture(scope="module")
def players(postgres):
    postgres.psql(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
    postgres.psql(f'CREATE DATABASE "{DB}"')
    postgres.psql("CREATE TABLE players (id serial PRIMARY KEY, team_id int NOT NULL, position text NOT NULL, "
                  "name text NOT NULL);"
                  "INSERT INTO players (team_id, position, name) "
                  "SELECT g % 500, 'p' || (g % 11), 'n' || g FROM generate_series(1, 20000) g;"
                  f"CREATE INDEX {INDEX} ON players (team_id, position);"
                  "CREATE INDEX idx_players_name ON players (name);"
                  "ANALYZE players;", dbname=DB)
    yield postgres
    postgres.psql(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')


def idx_scan(postgres, index):
    rows = postgres.query("SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = %s", DB, (index,))
    return rows[0][0]


def test_explain_analyze_finds_the_index_within_the_time_bound_in_check_mode(players):
    res = run_module("sql_check", dict(pg_args(players), mode="explain", analyze=True, index=INDEX, max_time_ms=50,
                                       query="SELECT * FROM players WHERE team_id = 42 ORDER BY position"),
                     check=True)
    assert res["rc"] == 0 and res["gate"]["passed"] is True, res.get("msg")
    assert INDEX in res["index_names"]
    assert any(n in res["node_types"] for n in ("Index Scan", "Bitmap Index Scan"))
    assert 0 <= res["execution_time_ms"] < 50 and res["statement_timeout_ms"] == 5000


def test_a_seq_scan_fails_naming_the_index_expected(players):
    res = run_module("sql_check", dict(pg_args(players), mode="explain", index=INDEX,
                                       query="WITH p AS (SELECT * FROM players) SELECT count(*) FROM p "
                                             "WHERE position = 'p3'"))
    assert res.get("failed") is True and res["inconclusive"] is False
    assert f"index {INDEX} is not used by the plan" in res["msg"]
    assert "Seq Scan on players" in res["msg"] and "players" in res["seq_scans"]
    assert res["execution_time_ms"] is None  # no ANALYZE: the query was planned, not run


def test_index_usage_counts_scans_before_and_after_and_names_a_missing_index(players):
    args = dict(pg_args(players), mode="index_usage", indexes=["idx_players_name"])
    before = run_module("sql_check", args)
    assert before.get("failed") is True and before["indexes"]["idx_players_name"]["idx_scan"] == 0
    assert "index idx_players_name has idx_scan 0, below min_idx_scan 1" in before["msg"]
    players.query("SELECT * FROM players WHERE name = 'n77'", DB)  # the backend exits: stats flushed
    deadline = time.monotonic() + 5
    while idx_scan(players, "idx_players_name") == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    after = run_module("sql_check", args)
    assert after["rc"] == 0 and after["gate"]["passed"] is True, after.get("msg")
    assert after["indexes"]["idx_players_name"] == {"idx_scan": 1, "table": "players", "schema": "public"}
    missing = run_module("sql_check", dict(args, indexes=["idx_players_name", "idx_nope"]))
    assert missing.get("failed") is True and "index idx_nope does not exist" in missing["msg"]
    assert missing["indexes"]["idx_nope"] is None


def test_scalar_query_thresholds_and_no_row_or_null_is_inconclusive(players):
    base = dict(pg_args(players), mode="query")
    ok = run_module("sql_check", dict(base, query="SELECT count(*) FROM players WHERE team_id = 1", max_value=40))
    assert ok["rc"] == 0 and ok["value"] == 40.0 and ok["gate"]["passed"] is True, ok.get("msg")
    over = run_module("sql_check", dict(base, query="SELECT count(*) FROM players", max_value=3))
    assert over.get("failed") is True and "value 20000 exceeds max_value 3" in over["msg"]
    none = run_module("sql_check", dict(base, query="SELECT id FROM players WHERE id < 0", max_value=3,
                                        fail_on_inconclusive=False))
    assert none["rc"] == 0 and none["inconclusive"] is True and none["gate"]["passed"] is False
    assert "no row" in none["gate"]["reason"]
    null = run_module("sql_check", dict(base, query="SELECT max(id) FROM players WHERE id < 0", min_value=1))
    assert null.get("failed") is True and null["inconclusive"] is True and "NULL" in null["msg"]


def test_non_select_is_refused_before_connecting(postgres):
    res = run_module("sql_check", dict(pg_args(postgres, db="no_such_db"), mode="explain", analyze=True,
                                       index=INDEX, query="DELETE FROM players WHERE id = 1"))
    assert res.get("failed") is True and "inconclusive" not in res
    assert "'DELETE FROM players WHERE id = 1' is a DELETE statement, not a SELECT" in res["msg"]


def test_the_transaction_is_read_only(players):
    # nextval() passes the parser (a function call in a SELECT); the read-only transaction refuses it
    players.psql("CREATE SEQUENCE IF NOT EXISTS s", dbname=DB)
    res = run_module("sql_check", dict(pg_args(players), mode="query", query="SELECT nextval('s')", max_value=10))
    assert res.get("failed") is True and res["inconclusive"] is False
    assert "read-only transaction" in res["msg"]


def test_statement_timeout_fires_and_is_inconclusive_or_over_the_time_bound(players):
    slow = "SELECT count(*) FROM players, pg_sleep(2)"
    res = run_module("sql_check", dict(pg_args(players), mode="query", query=slow, max_value=1e9,
                                       statement_timeout="200ms"))
    assert res.get("failed") is True and res["inconclusive"] is True
    assert "statement_timeout 200 ms cancelled the query" in res["msg"]
    over = run_module("sql_check", dict(pg_args(players), mode="explain", analyze=True, query=slow,
                                        max_time_ms=300, statement_timeout="200ms"))
    assert over.get("failed") is True and over["inconclusive"] is False
    assert "execution time over max_time_ms 300 ms" in over["msg"]


def test_unreachable_database_is_inconclusive_not_a_crash(postgres):
    res = run_module("sql_check", dict(pg_args(postgres), login_port=1, connect_timeout=2, mode="query",
                                       query="SELECT 1", max_value=1))
    assert res.get("failed") is True and res["inconclusive"] is True
    assert "cannot connect to PostgreSQL" in res["msg"]
