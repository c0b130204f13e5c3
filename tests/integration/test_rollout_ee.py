"""The execution environment AWX runs the rollout in: `ansible-builder create` accepts
meta/execution-environment.yml and the context carries the Python libraries the rollout needs."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not (ROOT / "meta" / "execution-environment.yml").exists(), reason="no EE definition yet")
def test_ansible_builder_create_accepts_the_ee(tmp_path):
    builder = shutil.which("ansible-builder") or str(ROOT / ".venv" / "bin" / "ansible-builder")
    proc = subprocess.run([builder, "create", "-f", "execution-environment.yml", "-c", str(tmp_path / "ctx")],
                          cwd=ROOT / "meta", capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "ctx" / "Dockerfile").is_file()
    reqs = "".join(p.read_text() for p in (tmp_path / "ctx").rglob("requirements.txt")).lower()
    for lib in ("psycopg2", "pglast", "redis", "jmespath"):
        assert lib in reqs, lib
