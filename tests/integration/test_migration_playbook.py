"""playbooks/migrate.yml (the gradual.rollout.migrate role under it) end to end on localhost against a
real PostgreSQL: check mode, then apply, the login given once through module_defaults."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def playbook(postgres, db: str, tmp_path: Path, *extra: str, **more) -> subprocess.CompletedProcess:
    variables = {
        "migrate_hosts": "localhost",
        "migrate_dest": str(tmp_path / "dest"),
        "migrate_db": db,
        "migrate_options": {"backup_dir": str(tmp_path / "backups")},
        "migrate_login": {"login_host": postgres.host, "login_port": postgres.port,
                          "login_user": postgres.user, "login_password": postgres.password},
        "ansible_python_interpreter": sys.executable,
        **more,
    }
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
               ANSIBLE_CALLBACKS_ENABLED="ansible.posix.json")
    binary = ROOT / ".venv" / "bin" / "ansible-playbook"
    cmd = [str(binary) if binary.exists() else "ansible-playbook", "-i", "localhost,", "-c", "local",
           str(ROOT / "playbooks" / "migrate.yml"), "-e", json.dumps(variables), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600, check=False)


def task_result(proc: subprocess.CompletedProcess, name: str) -> dict:
    data = json.loads(proc.stdout)
    for task in data["plays"][0]["tasks"]:
        # a role's task is reported as "<role> : <name>"
        if task["task"]["name"].split(" : ")[-1] == name:
            return task["hosts"]["localhost"]
    raise AssertionError("task %r not in the output" % name)


def test_migrate_playbook_check_then_apply(postgres, pg_db, tmp_path):
    (tmp_path / "dest").mkdir()
    check = playbook(postgres, pg_db, tmp_path, "--check")
    # the copy does not happen in check mode, so the plan is read from an empty directory
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-2000:]
    applied = playbook(postgres, pg_db, tmp_path)
    assert applied.returncode == 0, applied.stdout[-3000:] + applied.stderr[-2000:]
    result = task_result(applied, "Apply the migrations")
    assert result["applied"][:3] == ["001", "002", "003"]
    dump = Path(result["backup_file"])
    assert dump.exists() and Path(str(dump) + ".sha256").exists()
    assert postgres.psql("SELECT count(*) FROM pg_index WHERE indisvalid AND indexrelid::regclass::text "
                         "IN ('idx_ts_players_team_position', 'idx_ts_fixtures_league_date')", pg_db) == "2"
    again = playbook(postgres, pg_db, tmp_path)
    assert again.returncode == 0
    assert task_result(again, "Apply the migrations")["changed"] is False


def test_migrate_playbook_refuses_a_retired_variable(postgres, pg_db, tmp_path):
    """The per-option variables of earlier versions are named with the migrate_options key to use."""
    proc = playbook(postgres, pg_db, tmp_path, migrate_autofix=True)
    assert proc.returncode != 0
    result = task_result(proc, "Check the site settings (database and login) before anything changes")
    assert "migrate_autofix is retired: give migrate_options: {autofix: ...} instead." in result["msg"], result["msg"]
    assert postgres.psql("SELECT count(*) FROM pg_namespace WHERE nspname = 'gradual'", pg_db) == "0"


def test_migrate_playbook_backup_switch(postgres, pg_db, tmp_path):
    """migrate_backup (the AWX survey's "Back up first") still turns the dump off; the login is given once."""
    (tmp_path / "dest").mkdir()
    proc = playbook(postgres, pg_db, tmp_path, migrate_backup=False, migrate_target="001")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    result = task_result(proc, "Apply the migrations")
    assert result["applied"] == ["001"] and not result.get("backup_file")
    assert result["invocation"]["module_args"]["backup"] is False
    assert result["invocation"]["module_args"]["login_user"] == postgres.user
    assert not (tmp_path / "backups").exists()
