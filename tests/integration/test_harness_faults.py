"""The harness fails fast, with one clear line, and leaves nothing half-built behind."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parents[2] / "tests" / "harness"


def _run(cmd: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300,
                          env=dict(os.environ, **env))


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "gradual-harness: ERROR:" in line]


def test_unreadable_mirror_fails_and_tags_nothing():
    if not shutil.which("docker") or _run(["docker", "info"]).returncode != 0:
        pytest.fail("docker is not running: make test starts it before the integration tests")
    image = "gradual/test-unreadable-mirror"
    before = set(os.listdir("/var/tmp"))
    proc = _run([str(HARNESS / "build-image.sh")], GR_DEBIAN_MIRROR="http://127.0.0.1:9/debian",
                GR_IMAGE=image)
    assert proc.returncode == 1
    errors = _errors(proc.stderr)
    assert len(errors) == 1 and "mirror http://127.0.0.1:9/debian cannot be read" in errors[0]
    assert _run(["docker", "images", "-q", image]).stdout.strip() == ""
    leftovers = {n for n in set(os.listdir("/var/tmp")) - before if n.startswith("gradual-rootfs")}
    assert not leftovers


def test_short_disk_is_named():
    proc = _run(["bash", "-c", f"source {HARNESS}/lib.sh; need_disk 999999999 /tmp"])
    assert proc.returncode == 1
    errors = _errors(proc.stderr)
    assert len(errors) == 1 and "need 999999999 MiB" in errors[0] and "/tmp" in errors[0]


def test_missing_tool_is_named(tmp_path):
    # A PATH with bash only: docker cannot be found.
    (tmp_path / "bash").symlink_to(shutil.which("bash"))
    for tool in ("dirname", "mkdir", "cat", "cut", "id"):
        (tmp_path / tool).symlink_to(shutil.which(tool))
    proc = _run([str(tmp_path / "bash"), str(HARNESS / "docker-up.sh")], PATH=str(tmp_path))
    assert proc.returncode == 1
    errors = _errors(proc.stderr)
    assert len(errors) == 1 and "'docker' is missing" in errors[0]


def test_lab_usage_error():
    proc = _run([str(HARNESS / "lab.sh"), "sideways"])
    assert proc.returncode == 1
    assert _errors(proc.stderr) == ["gradual-harness: ERROR: usage: lab.sh up|down|status"]
