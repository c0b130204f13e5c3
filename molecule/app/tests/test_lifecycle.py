"""The app's lifecycle (lifecycle.yml, one run for both hosts): kill -9 recovers, deploy 2.0.0, roll
back to 1.0.0, a flags.env change applies on reload, a missing required key fails naming it while
the old release keeps serving. A module of its own so it runs after test_app.py's checks."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from test_app import APP, get

SCENARIO = Path(__file__).resolve().parents[1]
testinfra_hosts = ["docker://gr-app-pm2", "docker://gr-app-systemd"]


@pytest.fixture(scope="session")
def lifecycle():
    inventory = os.environ.get("MOLECULE_INVENTORY_FILE")
    cmd = ["ansible-playbook", str(SCENARIO / "lifecycle.yml")]
    if inventory:
        cmd += ["-i", inventory]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=os.environ.copy(), check=False)
    return proc


def test_lifecycle(host, lifecycle):
    # One run for both hosts (parallel); its own asserts carry the details.
    assert lifecycle.returncode == 0, lifecycle.stdout[-6000:] + lifecycle.stderr[-2000:]
    assert get(host, "/health")["body"]["version"] == "1.0.0"
    assert not host.file(f"/srv/{APP}/releases/3.0.0").exists
