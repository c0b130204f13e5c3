"""playbooks/tasks/migrate.yml, the rollout's stage migration, through the gradual.rollout.migrate role on
localhost against a real PostgreSQL: the login comes once from the play's module_defaults; the
figures it leaves (``rollout_db_figures``) and, on a failure, the stage's row closed as failed."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
FIGURES = {"gate_type", "passed", "reason", "target", "applied", "lint_findings", "lock_wait_s", "blocker_wait_s"}


def stage_run(postgres, db: str, tmp_path: Path, migrate: dict) -> subprocess.CompletedProcess:
    login = {"login_host": postgres.host, "login_port": postgres.port, "login_user": postgres.user,
             "login_password": postgres.password}
    play = {
        "hosts": "localhost", "gather_facts": False,
        "module_defaults": {"group/gradual.rollout.postgres": "{{ _rollout_db_login | combine({'db': _rollout_db}) }}"},
        "vars": {
            "_rollout_db_login": login, "_rollout_db": db, "_rollout_state_host": "localhost",
            "_rollout_db_python": sys.executable,
            "_rollout_migrations_src": str(ROOT / "examples" / "app" / "migrations"),
            "_rollout_migrations_dest": str(tmp_path / "dest"),
            "rollout_plan": {"name": "stage_tasks"},
            "rollout_stage_def": {"name": "schema", "actions": {"lint": True, "migrate": migrate}},
        },
        "tasks": [
            {"name": "Open the stage's row", "gradual.rollout.rollout_state": {
                "plan": "stage_tasks", "operation": "start", "stage": "schema"}, "register": "run"},
            {"name": "The stage's migration", "ansible.builtin.include_tasks": str(ROOT / "playbooks" / "tasks" / "migrate.yml"),
             "vars": {"rollout_run_id": "{{ run.run.id }}"}},
            {"name": "Show the figures", "ansible.builtin.debug": {"var": "rollout_db_figures"}},
        ],
    }
    playbook = tmp_path / "stage.yml"
    playbook.write_text(yaml.safe_dump([play], sort_keys=False))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
               ANSIBLE_CALLBACKS_ENABLED="ansible.posix.json")
    binary = ROOT / ".venv" / "bin" / "ansible-playbook"
    cmd = [str(binary) if binary.exists() else "ansible-playbook", "-i", "localhost,", "-c", "local", str(playbook),
           "-e", json.dumps({"ansible_python_interpreter": sys.executable})]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600, check=False)


def results(proc: subprocess.CompletedProcess, name: str) -> list[dict]:
    data = json.loads(proc.stdout)
    return [task["hosts"]["localhost"] for play in data["plays"] for task in play["tasks"]
            if task["task"]["name"].split(" : ")[-1] == name and "localhost" in task["hosts"]]


def test_stage_migration_keeps_its_figures(postgres, pg_db, tmp_path):
    proc = stage_run(postgres, pg_db, tmp_path, {"target": "002", "lock_timeout_ms": 200, "backup": False})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    applied = results(proc, "Apply the migrations")[0]
    assert applied["applied"] == ["001", "002"]
    # the stage's options reached pg_migrate as they were, over the base arguments
    assert applied["invocation"]["module_args"]["lock_timeout_ms"] == 200
    assert applied["invocation"]["module_args"]["target"] == "002"
    figures = results(proc, "Show the figures")[0]["rollout_db_figures"]["migrate"]
    assert set(figures) == FIGURES
    assert figures["applied"] == ["001", "002"] and figures["target"] == "002" and figures["passed"] is True


def test_stage_migration_failure_is_recorded(postgres, pg_db, tmp_path):
    proc = stage_run(postgres, pg_db, tmp_path, {"target": "002", "lock_timeout_ms": 0})
    assert proc.returncode != 0
    stop = results(proc, "Stop the rollout")[0]
    assert stop["msg"].startswith("stage schema failed in 'Apply the migrations':"), stop["msg"]
    assert stop["msg"].endswith("; no app host was changed")
    recorded = results(proc, "Record the failed migration")[0]
    assert recorded.get("failed") is not True, recorded
    assert postgres.psql("SELECT status FROM gradual.rollout_state WHERE plan = 'stage_tasks'", pg_db) == "failed"
