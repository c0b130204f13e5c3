"""A reload the app does not come back healthy from fails with the tail of the app's log (the
handler path: the env file changed), and the next good converge brings the app back."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from molecule_check import run_playbook
from test_app import get

SCENARIO = Path(__file__).resolve().parents[1]
testinfra_hosts = ["docker://gr-app-pm2", "docker://gr-app-systemd"]


def playbook(name: str, extra: dict | None = None) -> subprocess.CompletedProcess:
    return run_playbook(SCENARIO / name, extra, timeout=600)


@pytest.fixture(scope="module")
def runs():
    """One bad run and one good run for both hosts at once."""
    bad = playbook("unhealthy.yml", {"app_db_port": 1, "app_health_timeout": 6})
    good = playbook("converge.yml")
    return bad, good


def test_unhealthy_reload_fails_with_the_log_tail_then_recovers(host, runs):
    bad, good = runs
    out = bad.stdout + bad.stderr
    name = host.backend.get_hostname()
    assert bad.returncode != 0, out[-3000:]
    assert f"goalgpt-api on {name} did not answer 200 on /health within 6 s" in out, out[-4000:]
    assert "lines of /var/log/goalgpt-api/app.log" in out, out[-4000:]
    assert "molecule-db-secret" not in out
    assert good.returncode == 0, good.stdout[-4000:]
    assert get(host, "/health")["status"] == 200
