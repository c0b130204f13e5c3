"""Backups: the timer is scheduled; a real dump restores with matching row counts; a bad one fails;
the textfile metrics for alerting follow the successful backups and only them."""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DIR = "/var/backups/postgresql"
TEXTFILE = "/var/lib/prometheus/node-exporter"
testinfra_hosts = ["docker://gr-backup-db1"]


def playbook(name, *extra):
    env = dict(os.environ)
    env.update(ANSIBLE_COLLECTIONS_PATH=str(ROOT / "build/collections"), ANSIBLE_ROLES_PATH=str(ROOT / "roles"),
               ANSIBLE_FORCE_COLOR="false", ANSIBLE_STDOUT_CALLBACK="default")
    cmd = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(ROOT / "playbooks" / name)]
    for e in extra:
        cmd += ["-e", e]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)


def psql(host, sql):
    return host.check_output(f"su postgres -c \"psql -XAtq -d goalgpt -c \\\"{sql}\\\"\"")


@pytest.fixture(scope="module")
def dumped(host):
    psql(host, "set role goalgpt_owner; create table if not exists matches (id int primary key, name text); "
               "create schema if not exists gradual; create table if not exists gradual.state (k text); "
               "truncate matches, gradual.state; "
               "insert into matches select g, 'm' || g from generate_series(1, 1234) g; "
               "insert into gradual.state values ('a'), ('b')")
    res = playbook("backup.yml")
    assert res.returncode == 0, res.stdout[-3000:]
    return host.check_output(f"ls -1 {DIR}/goalgpt/goalgpt_*.dump | sort | tail -n1")


def test_timer_scheduled(host):
    timer = host.service("gradual-pg-backup.timer")
    assert timer.is_enabled and timer.is_running
    assert host.file(DIR).mode == 0o700 and host.file(DIR).user == "postgres"


def test_dump_layout(host, dumped):
    name = os.path.basename(dumped)
    assert name.startswith("goalgpt_") and name.endswith("Z.dump") and len(name) == len("goalgpt_20260101T000000Z.dump")
    assert host.file(dumped).mode == 0o600
    assert host.run(f"cd {DIR}/goalgpt && sha256sum -c {name}.sha256").rc == 0
    stamp = name[len("goalgpt_"):-len(".dump")]
    assert host.file(f"{DIR}/globals_{stamp}.sql").exists
    assert "CREATE ROLE goalgpt_owner" in host.file(f"{DIR}/globals_{stamp}.sql").content_string
    assert host.run(f"head -c 5 {dumped}").stdout == "PGDMP"


def test_restore_drill_matches(host, dumped):
    res = playbook("restore_drill.yml")
    assert res.returncode == 0, res.stdout[-3000:]
    assert "row counts match the source" in res.stdout
    assert "public.matches" in res.stdout and "1234" in res.stdout
    assert "goalgpt_restore_drill" not in psql(host, "select string_agg(datname, ',') from pg_database")


@pytest.mark.parametrize("damage", ["truncate", "empty", "flip"])
def test_restore_drill_of_a_bad_dump_fails(host, dumped, damage):
    bad_dir = f"/var/tmp/bad-{damage}"
    name = os.path.basename(dumped)
    host.check_output(f"rm -rf {bad_dir} && mkdir -p {bad_dir}/goalgpt && cp {dumped} {dumped}.sha256 {bad_dir}/goalgpt/")
    bad = f"{bad_dir}/goalgpt/{name}"
    if damage == "truncate":
        # Cut the dump in half and record a matching checksum: only the restore can notice.
        host.check_output(f"truncate -s $(( $(stat -c %s {bad}) / 2 )) {bad} && cd {bad_dir}/goalgpt && sha256sum {name} > {name}.sha256")
    elif damage == "empty":
        host.check_output(f": > {bad}")
    else:
        host.check_output(f"printf 'X' | dd of={bad} bs=1 seek=200 conv=notrunc status=none")
    res = playbook("restore_drill.yml", f"backup_dir={bad_dir}")
    assert res.returncode != 0, res.stdout[-2000:]
    assert "row counts match the source" not in res.stdout
    assert "goalgpt_restore_drill" not in psql(host, "select string_agg(datname, ',') from pg_database")


def test_retention_comes_from_the_inventory(host):
    script = host.file("/usr/local/sbin/gradual-pg-backup")
    assert script.mode == 0o755 and "RETENTION_DAYS=7\n" in script.content_string


# --- Signals for alerting (issue #24, item 4) ------------------------------------------------------

@pytest.fixture(scope="module")
def promtool():
    proc = subprocess.run([str(ROOT / "tests/harness/promtool.sh")], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-1000:]
    return proc.stdout.strip()


def metrics(host, promtool, source):
    """The samples of gradual_backup_<source>.prom, after promtool (Prometheus' own parser and linter)
    accepted the file: {(name, ((label, value), ...)): value}."""
    path = f"{TEXTFILE}/gradual_backup_{source}.prom"
    text = host.file(path).content_string
    proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and not (proc.stdout + proc.stderr).strip(), proc.stdout + proc.stderr + text
    samples = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name, labels, value = re.fullmatch(r"(\w+)\{(.*)\} (\S+)", line).groups()
        samples[(name, tuple(sorted(re.findall(r'(\w+)="([^"]*)"', labels))))] = float(value)
    for name in {key[0] for key in samples}:
        assert f"# HELP {name} " in text and f"# TYPE {name} " in text, text
    return samples


def pg_dump_key(name, db="goalgpt"):
    return (name, (("database", db), ("method", "pg_dump")))


def test_metrics_written_after_the_dump(host, dumped, promtool):
    assert host.file(TEXTFILE).is_directory and host.file(TEXTFILE).mode == 0o755
    prom = host.file(f"{TEXTFILE}/gradual_backup_pg_dump.prom")
    assert prom.mode == 0o644 and prom.user == "root"
    # Written to a temporary file and renamed: nothing left beside it.
    assert ".tmp" not in host.check_output(f"ls -A {TEXTFILE}")
    got = metrics(host, promtool, "pg_dump")
    stamp = got[pg_dump_key("gradual_backup_last_success_timestamp_seconds")]
    assert abs(int(host.check_output("date +%s")) - stamp) < 600
    # The time the dump was verified: its checksum was written just before.
    assert 0 <= stamp - host.file(f"{dumped}.sha256").mtime.timestamp() <= 5
    assert got[pg_dump_key("gradual_backup_last_size_bytes")] == host.file(dumped).size


def test_pgbackrest_metrics_match_the_repository(host, dumped, promtool):
    got = metrics(host, promtool, "pgbackrest")
    backups = json.loads(host.check_output("su postgres -c 'pgbackrest --stanza=main --output=json info'"))[0]["backup"]
    newest = max(backups, key=lambda b: b["timestamp"]["stop"])
    key = (("database", "main"), ("method", "pgbackrest"))
    assert got[("gradual_backup_last_success_timestamp_seconds", key)] == newest["timestamp"]["stop"]
    assert got[("gradual_backup_last_size_bytes", key)] == newest["info"]["repository"]["delta"]
    assert abs(int(host.check_output("date +%s")) - newest["timestamp"]["stop"]) < 600
    for kind in {b["type"] for b in backups}:
        assert got[("gradual_backup_type_last_success_timestamp_seconds", key + (("type", kind),))] == max(
            b["timestamp"]["stop"] for b in backups if b["type"] == kind)
    assert got[("gradual_backup_configured", key)] == 1
    archive = metrics(host, promtool, "archive")
    assert ("gradual_backup_archive_failed_total", (("database", "main"),)) in archive


def test_a_failed_dump_leaves_the_metrics_and_a_good_one_updates_them(host, dumped, promtool):
    before = host.file(f"{TEXTFILE}/gradual_backup_pg_dump.prom").content_string
    host.check_output(f"chmod 000 {DIR}/goalgpt")
    try:
        # The timer's own service: pg_dump cannot write, the run fails, ExecStartPost is skipped.
        assert host.run("systemctl start gradual-pg-backup.service").rc != 0
        # A refresh after the failure re-reads the last success, not the failed run.
        host.check_output("/usr/local/sbin/gradual-backup-metrics pg_dump")
        assert host.file(f"{TEXTFILE}/gradual_backup_pg_dump.prom").content_string == before
    finally:
        host.check_output(f"chmod 700 {DIR}/goalgpt && systemctl reset-failed gradual-pg-backup.service")
    stamp = metrics(host, promtool, "pg_dump")[pg_dump_key("gradual_backup_last_success_timestamp_seconds")]
    host.check_output("sleep 1 && systemctl start gradual-pg-backup.service")
    assert metrics(host, promtool, "pg_dump")[pg_dump_key("gradual_backup_last_success_timestamp_seconds")] > stamp


def test_a_database_never_dumped_is_configured_without_a_success(host, dumped, promtool):
    """A database created after the last dump: gradual_backup_configured names it, no success series
    does (BackupNeverSucceeded in roles/monitoring fires on that pair after 26 h); the next dump
    gives it one."""
    host.check_output("su postgres -c 'createdb gr_never_dumped'")
    try:
        host.check_output("/usr/local/sbin/gradual-backup-metrics pg_dump")
        got = metrics(host, promtool, "pg_dump")
        assert got[pg_dump_key("gradual_backup_configured", "gr_never_dumped")] == 1
        assert got[pg_dump_key("gradual_backup_configured")] == 1
        assert pg_dump_key("gradual_backup_last_success_timestamp_seconds", "gr_never_dumped") not in got
        assert pg_dump_key("gradual_backup_last_success_timestamp_seconds") in got
        host.check_output("systemctl start gradual-pg-backup.service")
        got = metrics(host, promtool, "pg_dump")
        assert pg_dump_key("gradual_backup_last_success_timestamp_seconds", "gr_never_dumped") in got
    finally:
        host.run("su postgres -c 'dropdb --if-exists gr_never_dumped'")
        host.run(f"rm -rf {DIR}/gr_never_dumped")
