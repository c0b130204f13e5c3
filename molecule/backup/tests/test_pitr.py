"""pgBackRest: WAL archived to the repository host, a full backup, point-in-time recovery between
two writes at known times into a scratch cluster, and the faults the drill and the role's check
must name (real containers, real pgBackRest, nothing mocked)."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from pathlib import Path

import pytest
import testinfra

ROOT = Path(__file__).resolve().parents[3]
REPO = "gr-backup-repo1"
SCRATCH = "/var/lib/postgresql/restore-drill"
TEXTFILE = "/var/lib/prometheus/node-exporter"
testinfra_hosts = ["docker://gr-backup-db1"]


def playbook(name, *extra, path=None, tags=None):
    env = dict(os.environ)
    env.update(ANSIBLE_COLLECTIONS_PATH=str(ROOT / "build/collections"), ANSIBLE_ROLES_PATH=str(ROOT / "roles"),
               ANSIBLE_FORCE_COLOR="false", ANSIBLE_STDOUT_CALLBACK="default")
    cmd = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(path or ROOT / "playbooks" / name)]
    for e in extra:
        cmd += ["-e", e]
    if tags:
        cmd += ["--tags", tags]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)


def output(res):
    """stdout and stderr as one line of words (ansible-core may print a failure on either, and wrap it)."""
    return " ".join((res.stdout + res.stderr).split())


def psql(host, sql, db="postgres", port=5432):
    return host.check_output(f"su postgres -c \"psql -XAtq -p {port} -d {db} -c \\\"{sql}\\\"\"")


@pytest.fixture(scope="module")
def repo():
    return testinfra.get_host(f"docker://{REPO}")


def pgbackrest_info(host):
    return json.loads(host.check_output("su postgres -c 'pgbackrest --stanza=main --output=json info'"))[0]


@pytest.fixture(scope="module")
def full_backup(host, repo):
    """A full backup taken on the repository host, as its timer would (test_backup.py takes one
    through playbooks/backup.yml)."""
    repo.check_output("su postgres -c 'pgbackrest --stanza=main --type=full backup'")
    backups = pgbackrest_info(repo)["backup"]
    assert backups and backups[-1]["type"] == "full"
    return backups[-1]


def test_repository_encrypted_and_private(repo, host):
    conf = repo.file("/etc/pgbackrest/pgbackrest.conf")
    assert conf.mode == 0o640 and conf.user == "root" and conf.group == "postgres"
    assert "repo1-cipher-type=aes-256-cbc" in conf.content_string
    # The database host's configuration names the repository host and carries no passphrase.
    pg_conf = host.file("/etc/pgbackrest/pgbackrest.conf").content_string
    assert f"repo1-host={REPO}" in pg_conf and "cipher-pass" not in pg_conf
    assert "archive-async=y" in pg_conf


def test_archiving_and_timers(host, repo):
    assert psql(host, "show archive_mode") == "on"
    assert "archive-push" in psql(host, "show archive_command")
    assert psql(host, "select failed_count = 0 or last_archived_time > last_failed_time from pg_stat_archiver") == "t"
    for kind in ("full", "diff"):
        timer = repo.service(f"gradual-pgbackrest-main-{kind}.timer")
        assert timer.is_enabled and timer.is_running


def test_full_backup_encrypted_in_repository(repo, full_backup):
    info = pgbackrest_info(repo)
    assert info["cipher"] == "aes-256-cbc"
    assert info["status"]["code"] == 0
    # The backup's files are ciphertext (OpenSSL's "Salted__" header), not the plain manifest.
    manifest = repo.run(f"head -c 8 /var/lib/pgbackrest/backup/main/{full_backup['label']}/backup.manifest")
    assert manifest.rc == 0 and manifest.stdout == "Salted__"
    print("full backup %s: %.1f s, %d bytes in the repository, %d bytes of database" % (
        full_backup["label"], full_backup["timestamp"]["stop"] - full_backup["timestamp"]["start"],
        full_backup["info"]["repository"]["delta"], full_backup["info"]["size"]))


def report_ids(out, key):
    found = re.search(r'"%s": \[([^\]]*)\]' % key, out)
    assert found, out[-3000:]
    return {int(x) for x in re.findall(r"\d+", found.group(1))}


def test_restore_to_a_time_between_two_writes(host, full_backup):
    """Two writes 3 s apart, the target between them: the first is restored, the second is not."""
    psql(host, "create table if not exists gradual_restore_drill_marker (id bigserial primary key, "
               "at timestamptz not null default clock_timestamp(), note text not null)")
    first = int(psql(host, "insert into gradual_restore_drill_marker (note) values ('test: before') returning id"))
    time.sleep(1.5)
    target = psql(host, "select clock_timestamp()::text")
    time.sleep(1.5)
    second = int(psql(host, "insert into gradual_restore_drill_marker (note) values ('test: after') returning id"))
    res = playbook("restore_drill.yml", "backup_drill_method=pgbackrest", f"backup_drill_target_time='{target}'")
    out = output(res)
    assert res.returncode == 0, out[-4000:]
    assert "markers as expected" in out, out[-3000:]
    assert first in report_ids(out, "markers_before_target")
    assert second in report_ids(out, "markers_after_target")
    assert re.search(r"RPO [0-9.]+ s, RTO [0-9.]+ s", out), out[-2000:]
    assert not host.file(SCRATCH).exists
    print(re.search(r"Point-in-time drill[^\"]*", out).group(0))


def test_drill_with_its_own_target(host, full_backup):
    res = playbook("restore_drill.yml", "backup_drill_method=pgbackrest")
    out = output(res)
    assert res.returncode == 0, out[-4000:]
    summary = re.search(r"Point-in-time drill[^\"]*", out)
    assert summary, out[-3000:]
    print(summary.group(0))
    assert "markers as expected" in summary.group(0)
    # At least the drill's own marker written after its target, and none of them came back.
    assert int(re.search(r"before the target, (\d+) after;", summary.group(0)).group(1)) >= 1
    assert not host.file(SCRATCH).exists


@pytest.mark.parametrize("extra,named", [
    ("backup_drill_target_time='2026-13-45 99:00'", "backup_drill_target_time='2026-13-45 99:00'"),
    ("backup_drill_target_time='2001-01-01 00:00:00+00'", "is before the end of the oldest backup"),
    ("backup_drill_target_name=no_such_point", "backup_drill_target_name='no_such_point'"),
])
def test_drill_bad_targets_are_named(host, full_backup, extra, named):
    res = playbook("restore_drill.yml", "backup_drill_method=pgbackrest", extra)
    assert res.returncode != 0
    assert named in output(res), output(res)[-3000:]
    assert not host.file(SCRATCH).exists
    assert psql(host, "select pg_is_in_recovery()") == "f"


def test_drill_refuses_a_scratch_path_with_data(host, full_backup):
    host.check_output("mkdir -p /var/tmp/busy && echo keep > /var/tmp/busy/PG_VERSION")
    res = playbook("restore_drill.yml", "backup_drill_method=pgbackrest", "backup_drill_scratch_path=/var/tmp/busy")
    assert res.returncode != 0
    assert "backup_drill_scratch_path=/var/tmp/busy holds data" in output(res), output(res)[-3000:]
    assert host.file("/var/tmp/busy/PG_VERSION").content_string == "keep\n"


def archive_failures(host, refresh=True):
    """gradual_backup_archive_failed_total and its last failure time, refreshed now (unless told not)."""
    if refresh:
        host.check_output("systemctl start gradual-backup-metrics.service")
    text = host.file(f"{TEXTFILE}/gradual_backup_archive.prom").content_string
    value = {m.group(1): int(m.group(2)) for m in re.finditer(r'^(gradual_backup_archive_\w+)\{database="main"\} (\d+)$', text, re.M)}
    return value["gradual_backup_archive_failed_total"], value["gradual_backup_archive_last_failed_timestamp_seconds"]


def test_broken_archive_command_is_caught_and_rolled_back(host):
    before = host.file("/etc/pgbackrest/pgbackrest.conf").content_string
    # Only the role's pgBackRest tasks (the tag its include applies): the rest is converged already.
    res = playbook("converge.yml", "backup_pgbackrest_archive_command=/bin/false", "backup_pgbackrest_check_timeout=5",
                   path=ROOT / "molecule" / "backup" / "converge.yml", tags="backup_pgbackrest")
    assert res.returncode != 0
    out = output(res)
    assert "pgbackrest check failed" in out and "previous configuration was put back" in out, out[-3000:]
    assert "archive-push" in psql(host, "show archive_command")
    assert host.file("/etc/pgbackrest/pgbackrest.conf").content_string == before


def archiver(host):
    """failed_count, and whether the last attempt failed (pg_stat_archiver, read now)."""
    row = psql(host, "select failed_count, coalesce(last_failed_time > coalesce(last_archived_time, 'epoch'), false) "
                     "from pg_stat_archiver")
    count, failing = row.split("|")
    return int(count), failing == "t"


def test_an_archive_failure_raises_the_failed_count(host):
    """The same /bin/false as above, but live: the role's check refuses it before PostgreSQL ever
    runs it (it must name pgbackrest), so it is set behind the role's back for one WAL segment,
    then the role's archive_command is put back and the segment is archived."""
    good = psql(host, "show archive_command")
    assert "archive-push" in good
    failed_before, last_failed_before = archive_failures(host)
    started = int(host.check_output("date +%s"))
    try:
        psql(host, "alter system set archive_command = '/bin/false'")
        psql(host, "select pg_reload_conf()")
        psql(host, "create table if not exists gradual_archive_probe (at timestamptz default now()); "
                   "insert into gradual_archive_probe default values")
        psql(host, "select pg_switch_wal()")
        for attempt in range(40):  # up to 20 s; the archiver tries at once
            if archiver(host)[0] > failed_before:
                break
            time.sleep(0.5)
    finally:
        psql(host, f"alter system set archive_command = '{good}'")
        psql(host, "select pg_reload_conf()")
    # The failures are in the textfile metrics the BackupArchiveFailing alert reads.
    failed_after, last_failed = archive_failures(host)
    assert failed_after > failed_before and last_failed >= started > last_failed_before, (
        failed_before, failed_after, last_failed, started)
    # Healthy again: the segment that failed is archived with the good command.
    for attempt in range(60):  # up to 30 s
        if not archiver(host)[1]:
            break
        time.sleep(0.5)
    assert not archiver(host)[1], psql(host, "select * from pg_stat_archiver")


# --- The repository host unreachable (issue #24, "Bad input and faults") ---------------------------

def ready_segments(host):
    """WAL segments PostgreSQL has not had archived yet (pg_wal/archive_status/*.ready)."""
    out = psql(host, "select name from pg_ls_archive_statusdir() where name like '%.ready' order by 1")
    return [name[:-len(".ready")] for name in out.split()]


def addresses(host, repo):
    """{testinfra host: the other host's address}: what each side reaches the other one at."""
    return {host: repo.check_output("hostname -i").split()[0], repo: host.check_output("hostname -i").split()[0]}


def unit_journal(repo, unit, since):
    return repo.check_output(f"journalctl -u {unit} --since=@{since} --no-pager -o cat")


def test_repository_unreachable_backup_fails_and_no_wal_is_lost(host, repo, full_backup):
    """The network between the two hosts cut both ways (an `unreachable` route on each: a host that
    is down or partitioned off, answered at once with "No route to host", undone by deleting the
    routes). The scheduled backup unit fails and says why; archive_command fails, counted where the
    alerts read it; the WAL of the rows written meanwhile waits in pg_wal as .ready. Once the routes
    are back, the waiting segments are archived (every one of them in the repository), pgbackrest
    check passes, the backup unit succeeds again, and a drill to a time after the outage finds the
    rows written during it."""
    unit = "gradual-pgbackrest-main-diff.service"
    host.check_output("su postgres -c 'pgbackrest --stanza=main check'")
    for attempt in range(20):  # check waits for its segment in the repository, PostgreSQL marks it a moment later
        if not ready_segments(host):
            break
        time.sleep(0.5)
    assert ready_segments(host) == []
    failed_before = archive_failures(host)[0]
    repository_metrics = host.file(f"{TEXTFILE}/gradual_backup_pgbackrest.prom").content_string
    psql(host, "create table if not exists gradual_restore_drill_marker (id bigserial primary key, "
               "at timestamptz not null default clock_timestamp(), note text not null)")
    routes = addresses(host, repo)
    since = int(repo.check_output("date +%s"))
    for side, address in routes.items():
        side.check_output(f"ip route add unreachable {address}/32")
    try:
        # The backup the repository host's timer runs: it fails, the unit is left failed, and the
        # journal names the database host and the reason.
        assert repo.run(f"systemctl start {unit}").rc != 0
        assert repo.run(f"systemctl is-failed {unit}").stdout.strip() == "failed"
        journal = unit_journal(repo, unit, since)
        assert "gr-backup-db1" in journal and "No route to host" in journal and "ERROR" in journal, journal
        # Writes go on: each row in a WAL segment of its own, none of which can reach the repository.
        during = []
        for attempt in range(3):
            during.append(int(psql(host, "insert into gradual_restore_drill_marker (note) "
                                         "values ('test: during the outage') returning id")))
            psql(host, "select pg_switch_wal()")
        for attempt in range(40):  # up to 20 s; the archiver tries at once
            if archiver(host)[1]:
                break
            time.sleep(0.5)
        pending = ready_segments(host)
        assert len(pending) >= 3, pending
        # The signals of BackupArchiveFailing and BackupArchiveStuck. The metrics refresh fails (the
        # repository cannot be read: its file keeps the last backup) but still writes the archive file.
        assert host.run("systemctl start gradual-backup-metrics.service").rc != 0
        assert host.file(f"{TEXTFILE}/gradual_backup_pgbackrest.prom").content_string == repository_metrics
        failed_during, last_failed = archive_failures(host, refresh=False)
        assert failed_during > failed_before and last_failed >= since, (failed_before, failed_during, last_failed)
        assert archiver(host)[1], psql(host, "select * from pg_stat_archiver")
        # A drill now says the repository cannot be read, and why.
        res = playbook("restore_drill.yml", "backup_drill_method=pgbackrest")
        assert res.returncode != 0
        assert f"backup_pgbackrest_stanza=main: the repository on {REPO} could not be read" in output(res), output(res)[-3000:]
        assert "No route to host" in output(res)
    finally:
        for side, address in routes.items():
            side.run(f"ip route del unreachable {address}/32")
        repo.run(f"systemctl reset-failed {unit}")
        host.run("systemctl reset-failed gradual-backup-metrics.service")
    back = time.monotonic()
    time.sleep(1.2)
    target = psql(host, "select clock_timestamp()::text")
    time.sleep(1.2)
    # Traffic after the outage; the new segment also wakes the archiver (otherwise it retries on its
    # own within 60 s).
    after = int(psql(host, "insert into gradual_restore_drill_marker (note) values ('test: after the outage') returning id"))
    psql(host, "select pg_switch_wal()")
    for attempt in range(120):  # up to 60 s
        if not set(pending) & set(ready_segments(host)):
            break
        time.sleep(0.5)
    drained = time.monotonic() - back
    assert not set(pending) & set(ready_segments(host)), (pending, ready_segments(host))
    # Every segment that waited is in the repository (pgBackRest names them <segment>-<sha1>.<ext>).
    archived = repo.check_output("find /var/lib/pgbackrest/archive/main -type f -printf '%f\\n'").split()
    assert all(any(name.startswith(segment + "-") for name in archived) for segment in pending), (pending, archived)
    host.check_output("su postgres -c 'pgbackrest --stanza=main check'")
    assert not archiver(host)[1]
    assert repo.run(f"systemctl start {unit}").rc == 0
    print(f"repository unreachable: {len(pending)} WAL segment(s) waited as .ready ({pending[0]}..{pending[-1]}); "
          f"archived {drained:.1f} s after the network came back")
    res = playbook("restore_drill.yml", "backup_drill_method=pgbackrest", f"backup_drill_target_time='{target}'")
    out = output(res)
    assert res.returncode == 0, out[-4000:]
    assert "markers as expected" in out, out[-3000:]
    assert set(during) <= report_ids(out, "markers_before_target")
    assert after in report_ids(out, "markers_after_target")
    print(re.search(r"Point-in-time drill[^\"]*", out).group(0))


# --- An expired or missing backup set (issue #24, item 5) ------------------------------------------

def stamp(epoch):
    return time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(epoch))


def test_a_target_in_an_expired_backup_is_named(host, repo, full_backup):
    """The repository keeps 2 full backups (backup_pgbackrest_retention_full in molecule.yml): after
    new full ones the oldest is expired, and a time it could recover to is refused, naming the
    target and the oldest time that can still be recovered to."""
    oldest = pgbackrest_info(repo)["backup"][0]
    for attempt in range(3):
        repo.check_output("su postgres -c 'pgbackrest --stanza=main --type=full backup'")
        backups = pgbackrest_info(repo)["backup"]
        if oldest["label"] not in [b["label"] for b in backups]:
            break
    assert oldest["label"] not in [b["label"] for b in backups], backups
    assert len([b for b in backups if b["type"] == "full"]) == 2
    now_oldest = backups[0]
    target = stamp(now_oldest["timestamp"]["stop"] - 1)
    assert now_oldest["timestamp"]["stop"] - 1 >= oldest["timestamp"]["stop"]  # recoverable before the expiry
    res = playbook("restore_drill.yml", "backup_drill_method=pgbackrest", f"backup_drill_target_time='{target}'")
    out = output(res)
    assert res.returncode != 0
    assert (f"backup_drill_target_time='{target}' is before the end of the oldest backup still in the repository "
            f"({now_oldest['label']}, ended {stamp(now_oldest['timestamp']['stop'])};") in out, out[-3000:]
    assert "backup_pgbackrest_retention_full=2" in out
    assert f"the oldest time that can is {stamp(now_oldest['timestamp']['stop'])}" in out
    assert not host.file(SCRATCH).exists


def test_a_stanza_without_a_backup_is_named(host, full_backup):
    res = playbook("restore_drill.yml", "backup_drill_method=pgbackrest", "backup_pgbackrest_stanza=never_backed_up")
    out = output(res)
    assert res.returncode != 0
    assert ("backup_pgbackrest_stanza=never_backed_up: no backup of this stanza in the repository "
            "(missing stanza path)") in out, out[-3000:]
    assert not host.file(SCRATCH).exists


# --- A standby rebuilt from the repository (issue #24, item 1) ---------------------------------------

STANDBY = "/var/lib/postgresql/standby-scratch"
PG_CTL = "/usr/lib/postgresql/15/bin/pg_ctl"


def test_a_standby_rebuilt_from_the_repository_replays_the_archive(host, full_backup):
    """The scenario has no replica host: a scratch standby beside the primary on the database host,
    restored by playbooks/backup_standby.yml (`pgbackrest restore --type=standby` of the newest
    backup, nothing copied from the primary), started on its own port. It stays in recovery, and a
    row written on the primary after the restore reaches it through the repository (its
    restore_command is archive-get; it has no primary_conninfo, so not by streaming). Over the
    running primary's data directory the same playbook refuses, even with backup_standby_delta."""
    floor = psql(host, "select string_agg(name || ' = ' || setting, chr(10)) from pg_settings where name in "
                       "('max_connections', 'max_worker_processes', 'max_wal_senders', "
                       "'max_prepared_transactions', 'max_locks_per_transaction')")
    res = playbook("backup_standby.yml", f"backup_standby_path={STANDBY}")
    out = output(res)
    try:
        assert res.returncode == 0, out[-3000:]
        assert f"{STANDBY}: standby restored from backup" in out, out[-3000:]
        assert host.file(f"{STANDBY}/standby.signal").exists
        assert "archive-get" in host.file(f"{STANDBY}/postgresql.auto.conf").content_string
        conf = "\n".join(["port = 5498", "listen_addresses = ''", "unix_socket_directories = '/var/run/postgresql'",
                          f"hba_file = '{psql(host, 'show hba_file')}'", f"ident_file = '{psql(host, 'show ident_file')}'",
                          "hot_standby = on", "shared_buffers = 128MB", floor, ""])
        host.check_output(f"printf %s {shlex.quote(conf)} > {STANDBY}/postgresql.conf && chown postgres: {STANDBY}/postgresql.conf")
        host.check_output(f"su postgres -c '{PG_CTL} -D {STANDBY} -l {STANDBY}/standby.log -w -t 120 start'")
        assert psql(host, "select pg_is_in_recovery()", port=5498) == "t"
        row = int(psql(host, "insert into gradual_restore_drill_marker (note) values ('test: after the standby restore') "
                             "returning id"))
        psql(host, "select pg_switch_wal()")
        started = time.monotonic()
        for attempt in range(60):  # up to 30 s
            if psql(host, f"select count(*) from gradual_restore_drill_marker where id = {row}", port=5498) == "1":
                break
            time.sleep(0.5)
        assert psql(host, f"select count(*) from gradual_restore_drill_marker where id = {row}", port=5498) == "1", (
            host.run(f"tail -n 20 {STANDBY}/standby.log").stdout)
        assert psql(host, "select pg_is_in_recovery()", port=5498) == "t"
        assert psql(host, "select count(*) from pg_stat_wal_receiver", port=5498) == "0"
        print(f"standby from the repository: the primary's row {row} replayed from the archive "
              f"{time.monotonic() - started:.1f} s after its WAL switch")
    finally:
        host.run(f"su postgres -c '{PG_CTL} -D {STANDBY} -m immediate stop'")
        host.run(f"rm -rf {STANDBY}")
    primary_data = psql(host, "show data_directory")
    res = playbook("backup_standby.yml", f"backup_standby_path={primary_data}", "backup_standby_delta=true")
    assert res.returncode != 0
    assert f"backup_standby_path={primary_data} is the data of a running cluster (postmaster.pid)" in output(res), (
        output(res)[-3000:])
    assert psql(host, "select pg_is_in_recovery()") == "f"


def test_a_target_before_the_first_drill(host, full_backup):
    """A target older than the marker table (the first drill of a cluster, to a past time): the
    restored cluster has no marker table, which is no marker missing, not a failure."""
    psql(host, "alter table if exists gradual_restore_drill_marker rename to gradual_restore_drill_marker_kept")
    try:
        time.sleep(1.5)
        target = psql(host, "select clock_timestamp()::text")
        time.sleep(1.5)
        res = playbook("restore_drill.yml", "backup_drill_method=pgbackrest", f"backup_drill_target_time='{target}'")
        out = output(res)
        assert res.returncode == 0, out[-4000:]
        assert "0 marker(s) before the target, 1 after; markers as expected" in out, out[-3000:]
    finally:
        psql(host, "drop table if exists gradual_restore_drill_marker")
        psql(host, "alter table if exists gradual_restore_drill_marker_kept rename to gradual_restore_drill_marker")
