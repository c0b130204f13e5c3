"""The execution environment AWX runs the rollout in: `ansible-builder create` accepts
meta/execution-environment.yml and the context carries the Python libraries the rollout needs, the
Debian package manager, the collections from PyPI and this collection from its own tarball.

Building the image takes minutes cold (see tests/harness/ee.sh, `make ee`): the build and a run
through ansible-runner in it are tested on the lab, in molecule/rollout/tests/test_rollout_ee.py."""
from __future__ import annotations

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
