"""Shared pytest fixtures: real servers on loopback (see tests/harness/services.py)."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "harness"))
# The collection's plugins import as ansible_collections.gradual.rollout.plugins...
sys.path.insert(0, str(ROOT / "build" / "collections"))

import services  # noqa: E402


@pytest.fixture(scope="session")
def postgres():
    base = services.tempbase("pg")
    server = services.Postgres(base).start()
    yield server
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pgbouncer(postgres):
    base = services.tempbase("pgb")
    server = services.PgBouncer(base, postgres).start()
    yield server
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server():
    base = services.tempbase("redis")
    server = services.Redis(base).start()
    yield server
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_db(postgres, request):
    """A fresh database per test, dropped afterwards."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:50]
    postgres.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    postgres.psql(f'CREATE DATABASE "{name}"')
    yield name
    postgres.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def plain_clone(tmp_path_factory):
    """A factory: each call lays the files git tracks (as they are in the working tree) into a new
    folder, the way a fresh clone or an AWX project sync has them: no venv, no build/ link, no lab."""
    import subprocess

    def make(name: str = "clone") -> Path:
        tree = tmp_path_factory.mktemp(name) / "project"
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        for rel in filter(None, listed.decode().split("\0")):
            src, dst = ROOT / rel, tree / rel
            if src.is_symlink():
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.symlink_to(src.readlink())
            elif src.is_file():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
        return tree

    return make
