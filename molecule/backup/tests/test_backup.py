"""Backups: the timer is scheduled; a real dump restores with matching row counts; a bad one fails."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DIR = "/var/backups/postgresql"
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
