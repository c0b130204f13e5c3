"""playbooks/migrate.yml end to end on localhost against a real PostgreSQL (check mode, then apply)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def playbook(postgres, db: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    variables = {
        "migrate_hosts": "localhost",
        "migrate_dest": str(tmp_path / "dest"),
        "migrate_db": db,
        "migrate_backup_dir": str(tmp_path / "backups"),
        "migrate_login": {"login_host": postgres.host, "login_port": postgres.port,
                          "login_user": postgres.user, "login_password": postgres.password},
        "ansible_python_interpreter": sys.executable,
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
        if task["task"]["name"] == name:
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
