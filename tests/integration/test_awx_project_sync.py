"""A plain clone, as an AWX project update checks it out and installs collections/requirements.yml
into the project's collections folder (offline: no Galaxy here), resolves gradual.rollout for
every playbook, with no venv link (build/) and no lab."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def run(cmd: list, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture
def synced(plain_clone):
    project = plain_clone("awx-project")
    assert not (project / "build").exists()
    # AWX's project update: from the project's root, into its collections folder, with the
    # project's own ansible.cfg (none of the caller's ANSIBLE_* settings, which would show this
    # checkout's build/ link as "already installed").
    proc = run([str(BIN / "ansible-galaxy"), "collection", "install", "--offline", "-r", "collections/requirements.yml",
                "-p", "collections"], cwd=project, env=project_env(project))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (project / "collections/ansible_collections/gradual/rollout/MANIFEST.json").is_file()
    return project


def project_env(project: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["ANSIBLE_CONFIG"] = str(project / "ansible.cfg")   # the project's own, as AWX uses it
    return env


def playbooks(project: Path) -> list:
    return ["site.yml", "rollout.yml"] + sorted(str(p.relative_to(project)) for p in (project / "playbooks").glob("*.yml"))


def test_every_playbook_resolves_the_collection_after_a_project_sync(synced):
    env = project_env(synced)
    found = playbooks(synced)
    assert len(found) >= 8, found
    for playbook in found:
        proc = run([str(BIN / "ansible-playbook"), "-i", "inventories/production", playbook, "--syntax-check"],
                   cwd=synced, env=env)
        assert proc.returncode == 0, "%s: %s" % (playbook, (proc.stdout + proc.stderr)[-2000:])


def test_without_the_sync_the_collection_is_not_found(plain_clone):
    """The check above can fail: a clone with no collections installed does not resolve it."""
    project = plain_clone("no-sync")
    env = project_env(project)
    proc = run([str(BIN / "ansible-playbook"), "-i", "inventories/production", "rollout.yml", "--syntax-check"],
               cwd=project, env=env)
    assert proc.returncode != 0 and "gradual.rollout" in proc.stdout + proc.stderr
