"""rollout.yml refuses a bad plan before anything changes: the argument spec and the semantic
checks name the bad value; the state database is never touched."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def plan(**stage_overrides):
    stage = {"name": "one", "bake_hours": 0, "serial": [1, "100%"], "actions": {"flags": {"USE_X": "true"}},
             "gates": [{"name": "slo", "type": "http_slo", "args": {"url": "http://127.0.0.1:1/", "max_p95_ms": 200}}]}
    stage.update(stage_overrides)
    return {"name": "t", "baseline": {"USE_X": "false"}, "stages": [stage, dict(stage, name="two")]}


def run(tmp_path, postgres, db, the_plan, *extra):
    inv = tmp_path / "inv.yml"
    inv.write_text(yaml.safe_dump({"all": {"children": {
        "app": {"hosts": {"fake-app": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}},
        "postgresql_primary": {"hosts": {"fake-db": {"ansible_connection": "local",
                                                     "ansible_python_interpreter": sys.executable}}}}}}))
    extra_vars = {"rollout_plan": the_plan, "rollout_state_db": db,
                  "rollout_state_login": {"login_host": postgres.host, "login_port": postgres.port,
                                          "login_user": postgres.user, "login_password": postgres.password}}
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    return subprocess.run([str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", str(inv), str(ROOT / "rollout.yml"),
                           "-e", json.dumps(extra_vars), *extra], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300, check=False)


@pytest.mark.parametrize("the_plan, message", [
    (plan(gates=[{"name": "slo", "type": "latency_gate", "args": {}}]), "latency_gate"),
    (plan(gates=[{"name": "slo", "type": "pool_check", "args": {"max_utilization": -5}}]), "max_utilization=-5 is negative"),
    ({"name": "t", "baseline": {"USE_X": "false"}, "stages": [plan()["stages"][0], plan()["stages"][0]]},
     "stage name 'one' is used twice"),
    (plan(bake_hours="soon"), "bake_hours"),
])
def test_bad_plan_fails_clearly_and_changes_nothing(tmp_path, postgres, pg_db, the_plan, message):
    proc = run(tmp_path, postgres, pg_db, the_plan)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert message in out, out[-3000:]
    assert postgres.psql("SELECT count(*) FROM pg_namespace WHERE nspname = 'gradual'", pg_db) == "0"


def test_status_of_a_good_plan_prints_the_table(tmp_path, postgres, pg_db):
    proc = run(tmp_path, postgres, pg_db, plan(), "-e", "rollout_action=status")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "STAGE" in proc.stdout and "one" in proc.stdout and "pending" in proc.stdout
