"""The execution environment AWX runs the rollout in: `ansible-builder create` accepts
meta/execution-environment.yml and the context carries the Python libraries the rollout needs, the
Debian package manager, the collections from PyPI and this collection from its own tarball.

The image itself (tests/harness/ee.sh, `make ee`; cached by content hash: seconds warm, about 6
minutes cold) is built here and ansible-runner checks rollout.yml in it; runs against the lab
(status, one stage) are in molecule/rollout/tests/test_rollout_ee.py."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EE = ROOT / "meta" / "execution-environment.yml"


def _pin(name: str) -> str:
    """The pin requirements.txt gives a package, e.g. 'ansible==12.3.0'."""
    for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines():
        if line.split("==")[0].strip() == name:
            return line.strip()
    raise AssertionError("requirements.txt pins no %s" % name)


@pytest.fixture(scope="module")
def context(tmp_path_factory) -> Path:
    builder = shutil.which("ansible-builder") or str(ROOT / ".venv" / "bin" / "ansible-builder")
    ctx = tmp_path_factory.mktemp("ee") / "ctx"
    proc = subprocess.run([builder, "create", "-f", "execution-environment.yml", "-c", str(ctx)],
                          cwd=ROOT / "meta", capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return ctx


@pytest.mark.skipif(not EE.exists(), reason="no EE definition yet")
def test_ansible_builder_create_accepts_the_ee(context):
    assert (context / "Dockerfile").is_file()
    reqs = "".join(p.read_text() for p in context.rglob("requirements.txt")).lower()
    for lib in ("psycopg2", "pglast", "redis", "jmespath"):
        assert lib in reqs, lib


@pytest.mark.skipif(not EE.exists(), reason="no EE definition yet")
def test_the_ee_needs_no_galaxy_and_installs_with_apt_get(context):
    dockerfile = (context / "Dockerfile").read_text(encoding="utf-8")
    # The base image is a build argument; Debian's package manager; no ensurepip (Debian has none).
    assert 'ARG EE_BASE_IMAGE="' in dockerfile
    assert 'ARG PKGMGR="/usr/bin/apt-get"' in dockerfile
    assert "pip_install $PYCMD" not in dockerfile
    # The community collections come from the `ansible` package, pinned as in requirements.txt.
    assert _pin("ansible") in dockerfile and _pin("ansible-core") in dockerfile
    # This collection from its tarball, offline, without dependencies from a server; no galaxy stage.
    assert 'ARG ANSIBLE_GALAXY_CLI_COLLECTION_OPTS="--offline --no-deps"' in dockerfile
    assert "FROM base AS galaxy" not in dockerfile
    install = [line for line in dockerfile.splitlines() if "ansible-galaxy collection install" in line]
    assert len(install) == 1 and "$ANSIBLE_GALAXY_CLI_COLLECTION_OPTS" in install[0], install
    assert "/tmp/gradual-rollout.tar.gz" in install[0]
    definition = yaml.safe_load(EE.read_text(encoding="utf-8"))
    assert {"src": "gradual-rollout.tar.gz", "dest": "collection"} in definition["additional_build_files"]
    bindep = (context / "_build" / "bindep.txt").read_text(encoding="utf-8")
    assert "postgresql-client [platform:dpkg]" in bindep and "openssh-client [platform:dpkg]" in bindep


def _docker_answers() -> bool:
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "info"], capture_output=True, check=False, timeout=60).returncode == 0


@pytest.mark.skipif(not EE.exists() or not _docker_answers(), reason="no EE definition or no Docker engine")
def test_the_ee_builds_and_ansible_runner_runs_a_playbook_in_it():
    """tests/harness/ee.sh (make ee): reused in seconds when nothing changed, about 10 s after a
    change to the collection, minutes cold. Then ansible-runner in the image checks rollout.yml
    (no lab needed: --syntax-check on the default bridge network)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "MOLECULE_"))}
    build = subprocess.run([str(ROOT / "tests" / "harness" / "ee.sh")], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=1800, check=False)
    assert build.returncode == 0, build.stderr[-3000:]
    tag = build.stdout.strip().splitlines()[-1]
    listing = subprocess.run(["docker", "run", "--rm", tag, "ansible-galaxy", "collection", "list"],
                             capture_output=True, text=True, timeout=300, check=True).stdout
    for name in ("gradual.rollout", "community.postgresql", "community.general", "ansible.posix", "awx.awx"):
        assert name in listing, listing
    run = subprocess.run([str(ROOT / "tests" / "harness" / "ee-run.sh"), "rollout.yml", "--syntax-check"], cwd=ROOT,
                         env={**env, "EE_NETWORK": "bridge", "EE_IMAGE": tag}, capture_output=True, text=True,
                         timeout=600, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "ee-run: successful rc=0" in run.stdout, run.stdout[-3000:]
