"""pg_migrate against a real PostgreSQL 15: ledger, lock ladder, concurrent builds, resume."""
from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import psycopg2
import psycopg2.errors
import pytest

from ansible_run import run_module

ROOT = Path(__file__).resolve().parents[2]
APP_MIGRATIONS = ROOT / "examples" / "app" / "migrations"


def args(postgres, db: str, path, **extra) -> dict:
    base = dict(login_host=postgres.host, login_port=postgres.port, login_user=postgres.user,
                login_password=postgres.password, db=db, path=str(path))
    base.update(extra)
    return base


def connect(postgres, db: str):
    conn = psycopg2.connect(**postgres.conninfo(db))
    conn.autocommit = True
    return conn


def query(postgres, db: str, sql: str, params=None):
    return postgres.query(sql, db, params)


def write(directory: Path, name: str, sql: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(sql)
    return path


def ledger(postgres, db: str) -> dict:
    rows = query(postgres, db, "SELECT version, finished IS NOT NULL, steps_done, steps_total "
                               "FROM gradual.schema_migrations ORDER BY version")
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def wait_for(predicate, timeout: float = 60.0, what: str = "condition", interval: float = 0.1):
    """Poll (a synchronisation helper, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("gave up waiting for " + what)


@pytest.fixture
def migdir(tmp_path):
    return tmp_path / "migrations"


BASE = """CREATE TABLE accounts (id bigint PRIMARY KEY, email text);
CREATE TABLE orders (id bigint PRIMARY KEY, account_id bigint, amount integer);
INSERT INTO accounts SELECT g, 'a' || g FROM generate_series(1, 100) g;
INSERT INTO orders SELECT g, 1 + g % 100, g FROM generate_series(1, 5000) g;
"""


def test_app_migrations_apply_check_mode_and_roll_back(postgres, pg_db, tmp_path):
    """examples/app: 001 base schema (with the jobs' tables), 002 P1A and 003 P1D concurrent
    indexes, then down to 001."""
    directory = tmp_path / "app"
    shutil.copytree(APP_MIGRATIONS, directory)
    plan = run_module("pg_migrate", args(postgres, pg_db, directory), check=True, diff=True)
    assert plan["rc"] == 0, plan
    assert plan["changed"] is True
    assert [p["version"] for p in plan["plan"]] == ["001", "002", "003"]
    assert plan["diff"]["after"] == "version: 003\n"
    assert query(postgres, pg_db, "SELECT to_regclass('gradual.schema_migrations')") == [(None,)]

    res = run_module("pg_migrate", args(postgres, pg_db, directory))
    assert res["rc"] == 0, res
    assert res["applied"] == ["001", "002", "003"]
    cic = [s for s in res["statements"] if s["sql"].startswith("CREATE INDEX CONCURRENTLY")]
    assert cic and all(s["lock"] == "SHARE UPDATE EXCLUSIVE" and not s["transactional"] for s in cic)
    valid = query(postgres, pg_db, "SELECT indexrelid::regclass::text FROM pg_index WHERE indisvalid "
                                   "AND indexrelid::regclass::text = 'idx_ts_players_team_position'")
    assert valid == [("idx_ts_players_team_position",)]
    assert ledger(postgres, pg_db)["003"][0] is True

    again = run_module("pg_migrate", args(postgres, pg_db, directory))
    assert again["rc"] == 0 and again["changed"] is False and again["applied"] == []

    down = run_module("pg_migrate", args(postgres, pg_db, directory, target="001"))
    assert down["rc"] == 0, down
    assert down["rolled_back"] == ["003", "002"]
    assert query(postgres, pg_db, "SELECT to_regclass('idx_ts_players_team_position')") == [(None,)]
    assert query(postgres, pg_db, "SELECT to_regclass('app_users')") == [("app_users",)]
    assert list(ledger(postgres, pg_db)) == ["001"]


def test_unsafe_statement_refused_then_autofixed(postgres, pg_db, migdir):
    write(migdir, "001_base.up.sql", BASE)
    write(migdir, "002_constraints.up.sql",
          "ALTER TABLE orders ADD CONSTRAINT orders_account_fk FOREIGN KEY (account_id) REFERENCES accounts (id);\n"
          "ALTER TABLE orders ALTER COLUMN amount SET NOT NULL;\n"
          "CREATE INDEX orders_account_idx ON orders (account_id);\n")
    refused = run_module("pg_migrate", args(postgres, pg_db, migdir))
    assert refused["rc"] != 0
    assert "foreign-key-not-valid" in refused["msg"] and "set-not-null" in refused["msg"]
    assert query(postgres, pg_db, "SELECT to_regclass('orders')") == [(None,)]  # nothing ran

    fixed = run_module("pg_migrate", args(postgres, pg_db, migdir, autofix=True))
    assert fixed["rc"] == 0, fixed
    sqls = [s["sql"] for s in fixed["statements"]]
    assert any("NOT VALID" in s and "orders_account_fk" in s for s in sqls)
    assert "ALTER TABLE orders VALIDATE CONSTRAINT orders_account_fk" in sqls
    assert "CREATE INDEX CONCURRENTLY orders_account_idx ON orders (account_id)" in sqls
    cons = query(postgres, pg_db, "SELECT conname, convalidated FROM pg_constraint "
                                  "WHERE conrelid = 'orders'::regclass AND contype IN ('f', 'c') ORDER BY 1")
    assert cons == [("orders_account_fk", True)]  # the temporary NOT NULL check is gone
    assert query(postgres, pg_db, "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'orders'::regclass "
                                  "AND attname = 'amount'") == [(True,)]


def test_autofix_moves_column_constraints_out_of_add_column(postgres, pg_db, migdir):
    """ADD COLUMN ... REFERENCES / CHECK would validate every row under the ALTER's lock."""
    write(migdir, "001_base.up.sql", BASE)
    write(migdir, "002_column.up.sql",
          "ALTER TABLE orders ADD COLUMN buyer_id bigint DEFAULT 1 REFERENCES accounts (id) CHECK (buyer_id > 0);\n")
    refused = run_module("pg_migrate", args(postgres, pg_db, migdir))
    assert refused["rc"] != 0 and "foreign-key-not-valid" in refused["msg"] and "check-not-valid" in refused["msg"]

    fixed = run_module("pg_migrate", args(postgres, pg_db, migdir, autofix=True))
    assert fixed["rc"] == 0, fixed
    assert [s["sql"] for s in fixed["statements"] if s["version"] == "002"] == [
        "ALTER TABLE orders ADD COLUMN buyer_id bigint DEFAULT 1",
        "ALTER TABLE orders ADD CONSTRAINT orders_buyer_id_fkey FOREIGN KEY (buyer_id) REFERENCES accounts (id) NOT VALID",
        "ALTER TABLE orders VALIDATE CONSTRAINT orders_buyer_id_fkey",
        "ALTER TABLE orders ADD CONSTRAINT orders_buyer_id_check CHECK (buyer_id > 0) NOT VALID",
        "ALTER TABLE orders VALIDATE CONSTRAINT orders_buyer_id_check",
    ]
    cons = query(postgres, pg_db, "SELECT conname, contype, convalidated FROM pg_constraint "
                                  "WHERE conrelid = 'orders'::regclass AND contype IN ('f', 'c') ORDER BY 1")
    assert cons == [("orders_buyer_id_check", "c", True), ("orders_buyer_id_fkey", "f", True)]
    with pytest.raises(psycopg2.errors.ForeignKeyViolation):
        query(postgres, pg_db, "INSERT INTO orders VALUES (9001, 1, 1, 999)")
    assert ledger(postgres, pg_db)["002"][0] is True


def test_ignore_with_reason_lets_a_statement_through(postgres, pg_db, migdir):
    write(migdir, "001_base.up.sql", BASE)
    write(migdir, "002_drop.up.sql",
          "-- gradual:ignore drop-column release 41 no longer reads accounts.email\n"
          "ALTER TABLE accounts DROP COLUMN email;\n")
    res = run_module("pg_migrate", args(postgres, pg_db, migdir))
    assert res["rc"] == 0, res
    assert any(f["rule"] == "drop-column" and f.get("ignored") for f in res["findings"])


def test_retry_under_lock_succeeds_after_blocker_ends(postgres, pg_db, migdir):
    write(migdir, "001_base.up.sql", BASE)
    run = run_module("pg_migrate", args(postgres, pg_db, migdir))
    assert run["rc"] == 0, run
    write(migdir, "002_check.up.sql",
          "ALTER TABLE orders ADD CONSTRAINT orders_amount_check CHECK (amount >= 0) NOT VALID;\n")
    blocker = connect(postgres, pg_db)
    blocker.autocommit = False
    blocker.cursor().execute("SELECT count(*) FROM orders")  # ACCESS SHARE held until rollback
    released = threading.Event()

    def release_when_retrying():
        attempts: set = set()

        def waited_twice():
            # each attempt is a new statement waiting on the lock: two start times, one retry at least
            rows = query(postgres, pg_db, "SELECT query_start FROM pg_stat_activity WHERE application_name "
                                          "= 'gradual.rollout/pg_migrate' AND wait_event_type = 'Lock'")
            attempts.update(row[0] for row in rows)
            return len(attempts) >= 2
        wait_for(waited_twice, what="a lock-timeout retry of pg_migrate", interval=0.02)
        blocker.rollback()
        released.set()

    thread = threading.Thread(target=release_when_retrying)
    thread.start()
    # blocker_wait_s=0: straight to the ladder (the waiting in front of it has its own tests)
    res = run_module("pg_migrate", args(postgres, pg_db, migdir, lock_timeout_ms=50, lock_timeout_max_ms=200,
                                        retry_sleep_ms=100, lock_retries=60, blocker_wait_s=0))
    thread.join()
    blocker.close()
    assert released.is_set()
    assert res["rc"] == 0, res
    stmt = next(s for s in res["statements"] if "orders_amount_check" in s["sql"])
    assert stmt["attempts"] > 1
    assert stmt["lock_wait_ms"] > 0
    assert ledger(postgres, pg_db)["002"][0] is True


def test_lock_exhaustion_fails_cleanly_and_leaves_no_ledger_row(postgres, pg_db, migdir):
    write(migdir, "001_base.up.sql", BASE)
    assert run_module("pg_migrate", args(postgres, pg_db, migdir))["rc"] == 0
    write(migdir, "002_check.up.sql",
          "ALTER TABLE orders ADD CONSTRAINT orders_amount_check CHECK (amount >= 0) NOT VALID;\n"
          "ALTER TABLE orders ADD COLUMN note text;\n")
    blocker = connect(postgres, pg_db)
    blocker.autocommit = False
    blocker.cursor().execute("SELECT count(*) FROM orders")
    try:
        res = run_module("pg_migrate", args(postgres, pg_db, migdir, lock_timeout_ms=50, lock_timeout_max_ms=100,
                                            retry_sleep_ms=50, lock_retries=3, blocker_wait_s=1))
        blocker_pid = blocker.get_backend_pid()
    finally:
        blocker.rollback()
        blocker.close()
    assert res["rc"] != 0
    assert "3 attempts" in res["msg"]
    # the message names the session in the way; the log says the polite wait ran out first
    assert "Blocking now: pid %d" % blocker_pid in res["msg"], res["msg"]
    assert any("still blocked by pid %d" % blocker_pid in line for line in res["log"]), res["log"]
    assert "002" not in ledger(postgres, pg_db)
    assert query(postgres, pg_db, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'orders'::regclass "
                                  "AND attname = 'note'") == [(0,)]


def _migrator_lock_requests(postgres, db: str) -> list:
    """Lock requests of pg_migrate's session that wait (queued: everything after them waits too)."""
    return query(postgres, db, "SELECT l.mode FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE "
                               "a.application_name = 'gradual.rollout/pg_migrate' AND NOT l.granted")


def test_long_reader_is_waited_for_without_queueing_writers(postgres, pg_db, migdir):
    write(migdir, "001_base.up.sql", BASE)
    assert run_module("pg_migrate", args(postgres, pg_db, migdir))["rc"] == 0
    write(migdir, "002_check.up.sql",
          "ALTER TABLE orders ADD CONSTRAINT orders_amount_check CHECK (amount >= 0) NOT VALID;\n")
    reader = psycopg2.connect(**postgres.conninfo(pg_db, application_name="gr-monthly-report"))
    reader.cursor().execute("SELECT count(*) FROM orders")  # ACCESS SHARE until the transaction ends
    seen: dict = {"writes": 0, "queued": []}
    result: dict = {}

    def migrate():
        result.update(run_module("pg_migrate", args(postgres, pg_db, migdir)))

    thread = threading.Thread(target=migrate)
    thread.start()
    wait_for(lambda: query(postgres, pg_db, "SELECT count(*) FROM pg_stat_activity WHERE application_name"
                                            " = 'gradual.rollout/pg_migrate'")[0][0] > 0,
             what="pg_migrate's session")
    writer = connect(postgres, pg_db)
    writer.cursor().execute("SET lock_timeout = '500ms'")
    for _write in range(15):  # 1.5 s of writes while the migrator waits for the reader
        writer.cursor().execute("UPDATE orders SET amount = amount WHERE id = 1")
        seen["writes"] += 1
        seen["queued"] += _migrator_lock_requests(postgres, pg_db)
        time.sleep(0.1)
    writer.close()
    reader.rollback()
    reader.close()
    thread.join(120)
    assert seen == {"writes": 15, "queued": []}
    assert result["rc"] == 0, result
    stmt = next(s for s in result["statements"] if "orders_amount_check" in s["sql"])
    assert stmt["attempts"] == 1 and stmt["lock_wait_ms"] == 0
    assert stmt["blocker_wait_ms"] > 0
    waits = [line for line in result["log"] if "waiting for pid" in line]
    assert len(waits) == 1 and "gr-monthly-report" in waits[0] and "AccessShareLock on orders" in waits[0]
    assert ledger(postgres, pg_db)["002"][0] is True


def test_short_transactions_do_not_hold_the_migration_back(postgres, pg_db, migdir):
    """A steady stream of one-statement writes is not a blocker: the step goes at once."""
    write(migdir, "001_base.up.sql", BASE)
    assert run_module("pg_migrate", args(postgres, pg_db, migdir))["rc"] == 0
    write(migdir, "002_column.up.sql", "ALTER TABLE orders ADD COLUMN note text;\n")
    stop = threading.Event()

    def write_loop():
        conn = connect(postgres, pg_db)
        while not stop.is_set():
            conn.cursor().execute("UPDATE orders SET amount = amount WHERE id = 1")
        conn.close()

    writers = [threading.Thread(target=write_loop) for _writer in range(2)]
    for thread in writers:
        thread.start()
    try:
        res = run_module("pg_migrate", args(postgres, pg_db, migdir, blocker_wait_s=30))
    finally:
        stop.set()
        for thread in writers:
            thread.join()
    assert res["rc"] == 0, res
    # mistaken for a long transaction, the stream would hold the step for the whole 30 s budget
    assert not any("still blocked" in line for line in res["log"]), res["log"]


@pytest.fixture
def slow_autovacuum(postgres, pg_db):
    """An autovacuum worker crawling over `orders` (cost delay 100 ms per page), found within 1 s."""
    query(postgres, pg_db, "ALTER SYSTEM SET autovacuum_naptime = 1")
    query(postgres, pg_db, "SELECT pg_reload_conf()")
    query(postgres, pg_db, "ALTER TABLE orders SET (autovacuum_vacuum_threshold = 0,"
                           " autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_cost_delay = 100,"
                           " autovacuum_vacuum_cost_limit = 1)")
    query(postgres, pg_db, "UPDATE orders SET amount = amount + 1")

    def worker():
        rows = query(postgres, pg_db, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'autovacuum "
                                      "worker' AND query LIKE '%%orders%%'")
        return rows[0][0] if rows else None

    pid = wait_for(worker, what="an autovacuum worker on orders")
    # back to a 60 s naptime: a cancelled worker is not replaced during the test
    query(postgres, pg_db, "ALTER SYSTEM RESET autovacuum_naptime")
    query(postgres, pg_db, "SELECT pg_reload_conf()")
    yield pid


@pytest.fixture
def orders_50k(postgres, pg_db, migdir):
    write(migdir, "001_base.up.sql", BASE + "INSERT INTO orders SELECT g, 1, g FROM generate_series(5001, 50000) g;\n")
    assert run_module("pg_migrate", args(postgres, pg_db, migdir))["rc"] == 0
    write(migdir, "002_column.up.sql", "ALTER TABLE orders ADD COLUMN note text;\n")


@pytest.mark.parametrize("blocker_wait_s", [60, 0])  # the cancel does not depend on the blocker wait
def test_autovacuum_holding_the_table_is_cancelled(postgres, pg_db, migdir, orders_50k, slow_autovacuum,
                                                   blocker_wait_s):
    # the cancelled worker needs a moment to exit (it may be in its 100 ms cost delay): 10 short tries
    res = run_module("pg_migrate", args(postgres, pg_db, migdir, lock_timeout_ms=50, lock_timeout_max_ms=100,
                                        retry_sleep_ms=50, lock_retries=10, blocker_wait_s=blocker_wait_s))
    assert res["rc"] == 0, res
    assert any("cancelled pid %d (autovacuum worker" % slow_autovacuum in line for line in res["log"]), res["log"]
    assert ledger(postgres, pg_db)["002"][0] is True


@pytest.fixture(params=[(), ("pg_signal_backend", "pg_read_all_stats")], ids=["plain-owner", "signal-and-stats"])
def migrator(request, postgres, pg_db, orders_50k):
    """The rollout migrates as the app's owner role, not a superuser: a role owning the table and the
    ledger (no CREATE on the database: an existing ledger is enough), with the GRANTs of the param."""
    role = "gr_migrator_%d" % len(request.param)
    setup = ["CREATE ROLE %s LOGIN PASSWORD 'gr-migrator'" % role, "ALTER SCHEMA gradual OWNER TO %s" % role,
             "ALTER TABLE gradual.schema_migrations OWNER TO %s" % role, "ALTER TABLE orders OWNER TO %s" % role]
    setup += ["GRANT %s TO %s" % (granted, role) for granted in request.param]
    for sql in setup:
        query(postgres, pg_db, sql)
    yield role, bool(request.param)
    query(postgres, pg_db, "REASSIGN OWNED BY %s TO %s" % (role, postgres.user))
    query(postgres, pg_db, "DROP OWNED BY %s" % role)
    query(postgres, pg_db, "DROP ROLE %s" % role)


def test_autovacuum_cancel_as_a_table_owner(postgres, pg_db, migdir, migrator, slow_autovacuum):
    """PostgreSQL 15 lets only a superuser cancel an autovacuum worker, and a role without
    pg_read_all_stats cannot even tell one from a wraparound vacuum: the runner says which, once,
    and the ladder decides. Here its top (100 ms) is below deadlock_timeout: the step fails cleanly."""
    role, granted = migrator
    res = run_module("pg_migrate", args(postgres, pg_db, migdir, login_user=role, login_password="gr-migrator",
                                        lock_timeout_ms=50, lock_timeout_max_ms=100, retry_sleep_ms=50,
                                        lock_retries=3))
    assert res["rc"] != 0 and "3 attempts" in res["msg"], res["msg"]
    if granted:
        said = [line for line in res["log"] if "not cancelling pid %d (autovacuum worker" % slow_autovacuum in line]
        assert len(said) == 1 and "superuser" in said[0], res["log"]
    else:
        said = [line for line in res["log"] if "not cancelling pid %d (background process" % slow_autovacuum in line]
        assert len(said) == 1 and "grant pg_read_all_stats" in said[0], res["log"]
    assert "002" not in ledger(postgres, pg_db)
    assert query(postgres, pg_db, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (slow_autovacuum,)) == [(1,)]


def test_owner_role_outlasts_autovacuum_within_the_ladder(postgres, pg_db, migdir, migrator, slow_autovacuum):
    """The same role with the default ladder top (3 s): attempts of deadlock_timeout + 200 ms, and
    PostgreSQL itself cancels the worker in their way."""
    role, _granted = migrator
    res = run_module("pg_migrate", args(postgres, pg_db, migdir, login_user=role, login_password="gr-migrator",
                                        lock_timeout_ms=50, retry_sleep_ms=50, lock_retries=3))
    assert res["rc"] == 0, (res["msg"], res["log"])
    said = [line for line in res["log"] if "wait up to 1200 ms (deadlock_timeout + 200 ms)" in line]
    assert len(said) == 1, res["log"]
    assert query(postgres, pg_db, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (slow_autovacuum,)) == [(0,)]
    assert ledger(postgres, pg_db)["002"][0] is True


def test_owner_role_granted_deadlock_timeout_outlasts_autovacuum_quickly(
        postgres, pg_db, migdir, migrator, slow_autovacuum):
    """With PostgreSQL 15's GRANT SET ON PARAMETER deadlock_timeout the owner role lowers it for
    the attempt: PostgreSQL cancels the worker after a 25-50 ms wait, inside a 100 ms ladder top
    that fails the step without the grant (test_autovacuum_cancel_as_a_table_owner)."""
    role, _granted = migrator
    query(postgres, pg_db, "GRANT SET ON PARAMETER deadlock_timeout TO %s" % role)
    try:
        res = run_module("pg_migrate", args(postgres, pg_db, migdir, login_user=role, login_password="gr-migrator",
                                            lock_timeout_ms=50, lock_timeout_max_ms=100, retry_sleep_ms=50,
                                            lock_retries=10))
    finally:
        query(postgres, pg_db, "REVOKE SET ON PARAMETER deadlock_timeout FROM %s" % role)
    assert res["rc"] == 0, (res["msg"], res["log"])
    said = [line for line in res["log"] if "half their lock_timeout, 20-100 ms (25 ms now)" in line]
    assert len(said) == 1, res["log"]
    assert not any("wait up to" in line for line in res["log"]), res["log"]
    assert query(postgres, pg_db, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (slow_autovacuum,)) == [(0,)]
    assert ledger(postgres, pg_db)["002"][0] is True


def test_autovacuum_is_left_alone_when_asked(postgres, pg_db, migdir, orders_50k, slow_autovacuum):
    """The failure cancel_autovacuum prevents: every short attempt times out behind the vacuum."""
    res = run_module("pg_migrate", args(postgres, pg_db, migdir, lock_timeout_ms=50, lock_timeout_max_ms=100,
                                        retry_sleep_ms=50, lock_retries=3, cancel_autovacuum=False))
    assert res["rc"] != 0
    assert "Blocking now: pid %d (autovacuum worker" % slow_autovacuum in res["msg"], res["msg"]
    assert "002" not in ledger(postgres, pg_db)


def test_failed_concurrent_build_is_cleaned_and_rebuilt(postgres, pg_db, migdir):
    write(migdir, "001_base.up.sql", BASE + "INSERT INTO orders VALUES (5001, 1, 1);\n")
    assert run_module("pg_migrate", args(postgres, pg_db, migdir))["rc"] == 0
    write(migdir, "002_unique.up.sql", "CREATE UNIQUE INDEX CONCURRENTLY orders_amount_key ON orders (amount);\n")
    failed = run_module("pg_migrate", args(postgres, pg_db, migdir))
    assert failed["rc"] != 0 and "duplicate" in failed["msg"].lower()
    # the runner dropped the INVALID leftover of its failed build
    assert query(postgres, pg_db, "SELECT to_regclass('orders_amount_key')") == [(None,)]
    # an INVALID index left by someone else's failed build (e.g. a killed psql) is rebuilt
    other = connect(postgres, pg_db)
    with pytest.raises(psycopg2.errors.UniqueViolation):
        other.cursor().execute("CREATE UNIQUE INDEX CONCURRENTLY orders_amount_key ON orders (amount)")
    other.close()
    assert query(postgres, pg_db, "SELECT indisvalid FROM pg_index WHERE indexrelid = "
                                  "to_regclass('orders_amount_key')") == [(False,)]
    query(postgres, pg_db, "DELETE FROM orders WHERE id = 5001")
    res = run_module("pg_migrate", args(postgres, pg_db, migdir))
    assert res["rc"] == 0, res
    assert any("INVALID" in line for line in res["log"])
    assert query(postgres, pg_db, "SELECT indisvalid FROM pg_index WHERE indexrelid = "
                                  "to_regclass('orders_amount_key')") == [(True,)]


def test_tampered_applied_file_is_refused(postgres, pg_db, migdir):
    path = write(migdir, "001_base.up.sql", BASE)
    assert run_module("pg_migrate", args(postgres, pg_db, migdir))["rc"] == 0
    path.write_text(BASE + "ALTER TABLE accounts ADD COLUMN sneaky text;\n")
    res = run_module("pg_migrate", args(postgres, pg_db, migdir))
    assert res["rc"] != 0
    assert "001" in res["msg"] and "changed after it was applied" in res["msg"]
    assert query(postgres, pg_db, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'accounts'::regclass "
                                  "AND attname = 'sneaky'") == [(0,)]


def test_killed_connection_leaves_ledger_consistent_and_rerun_completes(postgres, pg_db, migdir):
    write(migdir, "001_base.up.sql", BASE)
    assert run_module("pg_migrate", args(postgres, pg_db, migdir))["rc"] == 0
    write(migdir, "002_mixed.up.sql",
          "CREATE TABLE audit (id bigint PRIMARY KEY, note text);\n"
          "CREATE INDEX CONCURRENTLY orders_account_idx ON orders (account_id);\n"
          "ALTER TABLE orders ADD COLUMN audited boolean DEFAULT false;\n")
    # a writer's open transaction makes the concurrent build wait (it waits for older writers)
    writer = connect(postgres, pg_db)
    writer.autocommit = False
    writer.cursor().execute("UPDATE orders SET amount = amount WHERE id = 1")
    result = {}

    def migrate():
        result.update(run_module("pg_migrate", args(postgres, pg_db, migdir)))

    thread = threading.Thread(target=migrate)
    thread.start()

    def waiting_pid():
        rows = query(postgres, pg_db, "SELECT pid FROM pg_stat_activity WHERE application_name = "
                                      "'gradual.rollout/pg_migrate' AND wait_event_type = 'Lock' "
                                      "AND query LIKE 'CREATE INDEX CONCURRENTLY%'")
        return rows[0][0] if rows else None

    pid = wait_for(waiting_pid, what="the concurrent build to wait")
    query(postgres, pg_db, "SELECT pg_terminate_backend(%s)", (pid,))
    thread.join(120)
    writer.rollback()
    writer.close()
    assert result["rc"] != 0
    assert "rerun" in result["msg"]
    # the first step (CREATE TABLE) committed together with its ledger update; nothing else did
    assert ledger(postgres, pg_db)["002"] == (False, 1, 3)
    assert query(postgres, pg_db, "SELECT to_regclass('audit') IS NOT NULL") == [(True,)]
    assert query(postgres, pg_db, "SELECT indisvalid FROM pg_index WHERE indexrelid = "
                                  "to_regclass('orders_account_idx')") == [(False,)]

    rerun = run_module("pg_migrate", args(postgres, pg_db, migdir))
    assert rerun["rc"] == 0, rerun
    assert rerun["applied"] == ["002"]
    assert ledger(postgres, pg_db)["002"] == (True, 3, 3)
    assert query(postgres, pg_db, "SELECT indisvalid FROM pg_index WHERE indexrelid = "
                                  "to_regclass('orders_account_idx')") == [(True,)]
    assert not any("CREATE TABLE audit" in s["sql"] for s in rerun["statements"])


def test_backup_writes_dump_and_checksum(postgres, pg_db, migdir, tmp_path):
    write(migdir, "001_base.up.sql", BASE)
    backup_dir = tmp_path / "backups"
    res = run_module("pg_migrate", args(postgres, pg_db, migdir, backup=True, backup_dir=str(backup_dir)))
    assert res["rc"] == 0, res
    dump = Path(res["backup_file"])
    assert dump.parent == backup_dir / pg_db
    assert dump.name.startswith(pg_db + "_") and dump.name.endswith("Z.dump")
    assert oct(dump.stat().st_mode & 0o777) == "0o600"
    sha = Path(str(dump) + ".sha256").read_text()
    import hashlib
    assert sha == "%s  %s\n" % (hashlib.sha256(dump.read_bytes()).hexdigest(), dump.name)


def test_bad_target_names_the_value(postgres, pg_db, migdir):
    write(migdir, "001_base.up.sql", BASE)
    res = run_module("pg_migrate", args(postgres, pg_db, migdir, target="7"))
    assert res["rc"] != 0 and "target=7" in res["msg"]


@pytest.mark.parametrize("bad,named", [
    (dict(blocker_wait_s=-1), "blocker_wait_s=-1: "),
    (dict(lock_timeout_ms=500, lock_timeout_max_ms=100), "lock_timeout_max_ms=100 is below lock_timeout_ms=500"),
    (dict(lock_timeout_factor=0.5, retry_sleep_ms=-5), "retry_sleep_ms=-5: expected an integer >= 0; "
                                                       "lock_timeout_factor=0.5: expected a number >= 1"),
])
def test_bad_ladder_values_are_named_and_change_nothing(postgres, pg_db, migdir, bad, named):
    write(migdir, "001_base.up.sql", BASE)
    res = run_module("pg_migrate", args(postgres, pg_db, migdir, **bad))
    assert res["rc"] != 0 and named in res["msg"], res["msg"]
    assert query(postgres, pg_db, "SELECT to_regclass('accounts'), to_regclass('gradual.schema_migrations')") \
        == [(None, None)]


def test_session_settings_apply_and_runner_settings_are_refused(postgres, pg_db, migdir):
    write(migdir, "001_base.up.sql", BASE)
    refused = run_module("pg_migrate", args(postgres, pg_db, migdir, session_settings={"lock_timeout": "0"}))
    assert refused["rc"] != 0 and "session_settings.lock_timeout" in refused["msg"]
    bad = run_module("pg_migrate", args(postgres, pg_db, migdir, session_settings={"work_mem": "lots"}))
    assert bad["rc"] != 0 and "session_settings.work_mem=lots" in bad["msg"]
    write(migdir, "002_idx.up.sql", "CREATE INDEX CONCURRENTLY orders_amount_idx ON orders (amount);\n")
    ok = run_module("pg_migrate", args(postgres, pg_db, migdir, session_settings={
        "max_parallel_maintenance_workers": 0, "maintenance_work_mem": "64MB"}))
    assert ok["rc"] == 0, ok
    assert ok["applied"] == ["001", "002"]


def test_check_mode_on_missing_path_warns_without_failing(postgres, pg_db, tmp_path):
    res = run_module("pg_migrate", args(postgres, pg_db, tmp_path / "not-copied-yet"), check=True)
    assert res["rc"] == 0 and res["changed"] is False
    assert "does not exist yet" in json.dumps(res.get("warnings", []))  # 2.19 wraps warnings in events
    real = run_module("pg_migrate", args(postgres, pg_db, tmp_path / "not-copied-yet"))
    assert real["rc"] != 0 and "not a directory" in real["msg"]


def test_second_concurrent_run_is_refused(postgres, pg_db, migdir):
    write(migdir, "001_base.up.sql", BASE)
    other = connect(postgres, pg_db)
    other.cursor().execute("SELECT pg_advisory_lock(hashtext('gradual.rollout/pg_migrate/gradual.schema_migrations'))")
    try:
        res = run_module("pg_migrate", args(postgres, pg_db, migdir))
    finally:
        other.close()
    assert res["rc"] != 0 and "advisory lock" in res["msg"]
    assert query(postgres, pg_db, "SELECT to_regclass('accounts')") == [(None,)]
    assert run_module("pg_migrate", args(postgres, pg_db, migdir))["rc"] == 0
