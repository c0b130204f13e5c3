"""pg_migrate backup_method=restore_point against PostgreSQL clusters that archive WAL (issue #24).

The session's `postgres` fixture does not archive: it serves the refusal when archive_mode is off.
The other tests start their own cluster with archive_mode = on and an archive_command that copies
each segment into a folder of the test, and stop it at the end.
"""
from __future__ import annotations

import re
import shutil
import time

import pytest

import services
from ansible_run import run_module

BASE = """CREATE TABLE accounts (id bigint PRIMARY KEY, email text);
INSERT INTO accounts SELECT g, 'a' || g FROM generate_series(1, 100) g;
"""
NAME_RE = r"gradual_before_%s_\d{8}T\d{6}Z"


def args(server, db: str, path, **extra) -> dict:
    base = dict(login_host=server.host, login_port=server.port, login_user=server.user,
                login_password=server.password, db=db, path=str(path), backup=True,
                backup_method="restore_point")
    base.update(extra)
    return base


def query(server, db: str, sql: str, params=None):
    return server.query(sql, db, params)


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    """Poll (a synchronisation helper, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("gave up waiting for " + what)


def restore_points(server, db: str, since: str) -> list:
    """Descriptions of the RESTORE_POINT records written to the WAL since LSN SINCE (pg_walinspect)."""
    query(server, db, "CREATE EXTENSION IF NOT EXISTS pg_walinspect")
    query(server, db, "SELECT pg_logical_emit_message(true, 'gr-test', 'flush')")  # a commit: flushed
    return [r[0] for r in query(server, db, "SELECT description FROM pg_get_wal_records_info(%s::pg_lsn,"
                                            " pg_current_wal_flush_lsn()) WHERE record_type = 'RESTORE_POINT'",
                                (since,))]


def insert_lsn(server, db: str) -> str:
    return query(server, db, "SELECT pg_current_wal_insert_lsn()::text")[0][0]


def write(directory, name: str, sql: str):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(sql)


def archiving_cluster():
    """A cluster archiving into <base>/wal, with one segment archived already."""
    base = services.tempbase("pg-archive")
    (base / "wal").mkdir()
    server = services.Postgres(base, settings={"archive_mode": "on", "wal_level": "replica"})
    server.start()  # chowns base, wal included
    try:
        server.psql("ALTER SYSTEM SET archive_command = 'test ! -f %s/wal/%%f && cp %%p %s/wal/%%f'" % (base, base))
        server.psql("SELECT pg_reload_conf()")
        wait_for(lambda: server.psql("SHOW archive_command").startswith("test"), what="archive_command reloaded")
        server.psql("SELECT pg_switch_wal()")
        wait_for(lambda: int(server.psql("SELECT archived_count FROM pg_stat_archiver")) > 0,
                 what="the first segment archived")
    except BaseException:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
        raise
    return server


@pytest.fixture(scope="module")
def archiving():
    server = archiving_cluster()
    yield server
    server.stop()
    shutil.rmtree(server.base, ignore_errors=True)


@pytest.fixture
def db(archiving, request):
    name = "rp_" + re.sub(r"\W", "_", request.node.name.lower())[:40]
    archiving.psql('CREATE DATABASE "%s"' % name)
    yield name
    archiving.psql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)


def test_restore_point_created_and_recorded(archiving, db, tmp_path):
    migdir = tmp_path / "migrations"
    write(migdir, "001_base.up.sql", BASE)
    write(migdir, "002_col.up.sql", "ALTER TABLE accounts ADD COLUMN nick text;\n")
    write(migdir, "002_col.down.sql", "ALTER TABLE accounts DROP COLUMN nick;\n")
    since = insert_lsn(archiving, db)
    res = run_module("pg_migrate", args(archiving, db, migdir, target="001"))
    assert res["rc"] == 0, res
    point = res["restore_point"]
    assert re.fullmatch(NAME_RE % "001", point["name"]), point
    assert re.fullmatch(r"[0-9A-F]+/[0-9A-F]+", point["lsn"]) and point["time"]
    assert any("archiving healthy" in line for line in res["log"])
    rows = query(archiving, db, "SELECT version, restore_point, restore_lsn::text FROM gradual.schema_migrations")
    assert rows == [("001", point["name"], point["lsn"])]
    assert restore_points(archiving, db, since) == [point["name"]]
    # the LSN is behind the migration's first change: the restore point precedes it in the WAL
    assert query(archiving, db, "SELECT pg_current_wal_lsn() > %s::pg_lsn", (point["lsn"],)) == [(True,)]

    res2 = run_module("pg_migrate", args(archiving, db, migdir, backup_method="both", backup_dir=str(tmp_path / "dumps")))
    assert res2["rc"] == 0, res2
    assert re.fullmatch(NAME_RE % "002", res2["restore_point"]["name"])
    assert res2["backup_file"].startswith(str(tmp_path / "dumps"))
    rows = dict((v, (n, lsn)) for v, n, lsn in query(
        archiving, db, "SELECT version, restore_point, restore_lsn::text FROM gradual.schema_migrations"))
    assert rows == {"001": (point["name"], point["lsn"]), "002": (res2["restore_point"]["name"], res2["restore_point"]["lsn"])}
    # the restore point's WAL record reaches the archive once its segment is done
    query(archiving, db, "SELECT pg_switch_wal()")
    segment = query(archiving, db, "SELECT pg_walfile_name(%s::pg_lsn)", (res2["restore_point"]["lsn"],))[0][0]
    wait_for((archiving.base / "wal" / segment).exists, what="segment %s archived" % segment)

    down = run_module("pg_migrate", args(archiving, db, migdir, target="001"))
    assert down["rc"] == 0 and down["rolled_back"] == ["002"], down
    assert re.fullmatch(NAME_RE % "down_002", down["restore_point"]["name"])


def test_check_mode_creates_nothing(archiving, db, tmp_path):
    migdir = tmp_path / "migrations"
    write(migdir, "001_base.up.sql", BASE)
    since = insert_lsn(archiving, db)
    res = run_module("pg_migrate", args(archiving, db, migdir), check=True)
    assert res["rc"] == 0 and res["changed"] is True, res
    assert re.fullmatch(NAME_RE % "001", res["restore_point"]["name"])
    assert res["restore_point"]["lsn"] is None and res["restore_point"]["time"] is None
    assert query(archiving, db, "SELECT to_regclass('gradual.schema_migrations'), to_regclass('accounts')") == [(None, None)]
    assert restore_points(archiving, db, since) == []


def test_old_ledger_is_upgraded(archiving, db, tmp_path):
    migdir = tmp_path / "migrations"
    write(migdir, "001_base.up.sql", BASE)
    write(migdir, "002_col.up.sql", "ALTER TABLE accounts ADD COLUMN nick text;\n")
    plain = run_module("pg_migrate", dict(args(archiving, db, migdir, target="001"), backup=False))
    assert plain["rc"] == 0, plain
    # the ledger as 1.0.0 made it: no restore_point / restore_lsn
    query(archiving, db, "ALTER TABLE gradual.schema_migrations DROP COLUMN restore_point, DROP COLUMN restore_lsn")
    check = run_module("pg_migrate", args(archiving, db, migdir), check=True)
    assert check["rc"] == 0, check
    assert any("lacks column(s) restore_point, restore_lsn" in line for line in check["log"]), check["log"]
    res = run_module("pg_migrate", args(archiving, db, migdir))
    assert res["rc"] == 0, res
    assert any("upgraded: added column(s) restore_point, restore_lsn" in line for line in res["log"])
    rows = query(archiving, db, "SELECT version, restore_point, restore_lsn::text FROM gradual.schema_migrations"
                                " ORDER BY version")
    assert rows == [("001", None, None), ("002", res["restore_point"]["name"], res["restore_point"]["lsn"])]


def test_archive_mode_off_is_refused(postgres, pg_db, tmp_path):
    migdir = tmp_path / "migrations"
    write(migdir, "001_base.up.sql", BASE)
    res = run_module("pg_migrate", args(postgres, pg_db, migdir))
    assert res["rc"] != 0
    assert "archive_mode is off" in res["msg"] and "backup_method=pg_dump" in res["msg"], res["msg"]
    assert query(postgres, pg_db, "SELECT to_regclass('gradual.schema_migrations'), to_regclass('accounts')") \
        == [(None, None)]
    # today's plans keep working: backup=true without backup_method still dumps
    plain = args(postgres, pg_db, migdir, backup_dir=str(tmp_path / "d"))
    del plain["backup_method"]
    dumped = run_module("pg_migrate", plain)
    assert dumped["rc"] == 0 and dumped["backup_file"] and "restore_point" not in dumped, dumped


def test_failing_archiver_is_refused_before_any_change(tmp_path):
    server = archiving_cluster()  # its own cluster: a failed archiver waits up to a minute to retry
    try:
        server.psql('CREATE DATABASE app')
        migdir = tmp_path / "migrations"
        write(migdir, "001_base.up.sql", BASE)
        write(migdir, "002_col.up.sql", "ALTER TABLE accounts ADD COLUMN nick text;\n")
        assert run_module("pg_migrate", args(server, "app", migdir, target="001"))["rc"] == 0
        ledger_before = query(server, "app", "SELECT * FROM gradual.schema_migrations")
        server.psql("ALTER SYSTEM SET archive_command = 'false'")
        server.psql("SELECT pg_reload_conf()")
        wait_for(lambda: server.psql("SHOW archive_command") == "false", what="archive_command reloaded")
        failed = int(server.psql("SELECT failed_count FROM pg_stat_archiver"))
        server.psql("CREATE TABLE churn AS SELECT 1 AS x")
        server.psql("SELECT pg_switch_wal()")
        wait_for(lambda: int(server.psql("SELECT failed_count FROM pg_stat_archiver")) > failed,
                 what="failed_count to rise")
        bad_wal = server.psql("SELECT last_failed_wal FROM pg_stat_archiver")
        since = insert_lsn(server, "app")

        for check in (True, False):
            res = run_module("pg_migrate", args(server, "app", migdir), check=check)
            assert res["rc"] != 0, res
            assert "archiving is failing: last failed WAL %s at " % bad_wal in res["msg"], res["msg"]
            assert "last archived 0000000100000000000000" in res["msg"] and "nothing changed" in res["msg"]
        assert query(server, "app", "SELECT to_regclass('gradual.schema_migrations') IS NOT NULL, "
                                    "(SELECT count(*) FROM information_schema.columns WHERE table_name = 'accounts'"
                                    " AND column_name = 'nick')") == [(True, 0)]
        assert query(server, "app", "SELECT * FROM gradual.schema_migrations") == ledger_before
        assert restore_points(server, "app", since) == []  # no restore point either
    finally:
        server.stop()
        shutil.rmtree(server.base, ignore_errors=True)


def facts(**changed) -> dict:
    """A healthy read_archiving() answer, with CHANGED over it."""
    import datetime
    now = datetime.datetime(2026, 12, 6, 12, 0, tzinfo=datetime.timezone.utc)
    base = dict(archive_mode="on", archive_command="cp %p /a/%f", archive_library="", archive_timeout_s=0,
                wal_level="replica", wal_segment_size=16 << 20, in_recovery=False,
                current_wal="000000010000000000000010", may_create=True, archived_count=15,
                last_archived_wal="00000001000000000000000F", last_archived_time=now - datetime.timedelta(hours=5),
                failed_count=0, last_failed_wal=None, last_failed_time=None, stats_reset=now - datetime.timedelta(days=1),
                now=now, user="migrator")
    base.update(changed)
    return base


@pytest.mark.parametrize("changed,named", [
    ({}, None),
    (dict(archive_timeout_s=60), None),  # old success, but no completed segment waits: an idle server
    (dict(archive_timeout_s=60, current_wal="000000010000000000000013"), "archiving is stalled: the last WAL archived, "
     "00000001000000000000000F, was at 2026-12-06 07:00:00 UTC (18000 s ago, over 2 x archive_timeout = 60 s) and 3"),
    (dict(archive_command=" "), "neither archive_command nor archive_library is set"),
    (dict(archive_command="", archive_library="basic_archive"), None),
    (dict(archive_mode="always"), None),
    (dict(archived_count=0, last_archived_wal=None, last_archived_time=None), "no WAL segment has been archived since"),
    (dict(wal_level="minimal", archive_mode="off"), "archive_mode is off: WAL is not archived"),
    (dict(may_create=False), "GRANT EXECUTE ON FUNCTION pg_create_restore_point(text) TO migrator"),
    (dict(in_recovery=True), "the server is in recovery"),
])
def test_archiving_verdicts(changed, named):
    from ansible_collections.gradual.rollout.plugins.module_utils.migration import runner as mrun
    problems = mrun.archiving_problems(facts(**changed))
    if named is None:
        assert problems == []
    else:
        assert len(problems) >= 1 and named in "; ".join(problems), problems
