"""A streaming replica built from the pgBackRest repository (issue #24): gr-backup-db2 has
postgresql_replica_clone_method: pgbackrest, so converge.yml restored the newest backup on it as a
standby instead of copying the primary. It stays in recovery, streams from the primary through its
slot, receives what the primary writes, and its data carries the repository's restore evidence."""
from __future__ import annotations

import time

import pytest
import testinfra

PRIMARY = "gr-backup-db1"
REPO = "gr-backup-repo1"
SLOT = "gr_backup_db2"
DATA = "/var/lib/postgresql/15/main"
testinfra_hosts = ["docker://gr-backup-db2"]


def psql(host, sql, db="postgres"):
    return host.check_output(f"su postgres -c \"psql -XAtq -d {db} -c \\\"{sql}\\\"\"")


@pytest.fixture(scope="module")
def primary():
    return testinfra.get_host(f"docker://{PRIMARY}")


@pytest.fixture(scope="module")
def repo():
    return testinfra.get_host(f"docker://{REPO}")


def wait_for(check, seconds=30):
    deadline = time.monotonic() + seconds
    while True:
        got = check()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.5)


def test_replica_is_in_recovery(host):
    assert psql(host, "select pg_is_in_recovery()") == "t"
    assert host.file(f"{DATA}/standby.signal").exists


def test_primary_sees_it_streaming_through_its_slot(host, primary):
    sql = ("select r.state from pg_replication_slots s join pg_stat_replication r on r.pid = s.active_pid "
           f"where s.slot_name = '{SLOT}'")
    assert wait_for(lambda: psql(primary, sql) == "streaming"), psql(primary, "select * from pg_stat_replication")
    assert psql(host, "select status || ' ' || slot_name from pg_stat_wal_receiver") == f"streaming {SLOT}"


def test_a_row_written_on_the_primary_reaches_the_replica(host, primary):
    psql(primary, "create table if not exists gradual_replica_probe (id serial primary key, note text)")
    row = int(psql(primary, "insert into gradual_replica_probe (note) values ('test: after the replica build') "
                            "returning id"))
    # No WAL switch: the row comes by streaming, not from the archive.
    seen = wait_for(lambda: psql(host, f"select count(*) from gradual_replica_probe where id = {row}") == "1"
                    if psql(host, "select count(*) from pg_class where relname = 'gradual_replica_probe'") == "1"
                    else False, seconds=20)
    assert seen, host.run("tail -n 20 /var/log/postgresql/postgresql-15-main.log").stdout


def test_its_data_came_from_the_repository(host, repo):
    """pgBackRest's restore log on the replica names a backup set the repository host took, the restore
    left archive-get as restore_command, and the clone mark says pgBackRest, not pg_basebackup."""
    log = host.file("/var/log/pgbackrest/main-restore.log")
    assert log.exists, "no pgBackRest restore ran on the replica"
    restored = [line.split("restore backup set ")[1].split(",")[0]
                for line in log.content_string.splitlines() if "restore backup set " in line]
    assert restored, log.content_string[-2000:]
    # The repository host's own log of the backups it took (the later tests' backups may have
    # expired that one from `pgbackrest info` by then).
    assert f"new backup label = {restored[-1]}" in repo.file("/var/log/pgbackrest/main-backup.log").content_string
    assert "archive-get" in host.file(f"{DATA}/postgresql.auto.conf").content_string
    assert "pgBackRest repository" in host.file(f"{DATA}.gradual-replica").content_string
