"""The repository's ansible.cfg prints a role's argument-spec failure in one line per error
(gradual.rollout.concise), where ansible.builtin.default prints the role's whole spec."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run_redis_with_a_bad_port(tmp_path: Path, callback: str | None) -> subprocess.CompletedProcess:
    playbook = tmp_path / "play.yml"
    playbook.write_text("- hosts: all\n  gather_facts: false\n  roles: [gradual.rollout.redis]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    if callback:
        env["ANSIBLE_STDOUT_CALLBACK"] = callback
    # a tripwire interpreter: a module that got past the validation would fail, not change this host
    return subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook), "--check",
                           "-e", "redis_port=x", "-e", "ansible_python_interpreter=/nonexistent/python"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_an_argument_spec_failure_is_one_line(tmp_path):
    proc = run_redis_with_a_bad_port(tmp_path, None)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    failures = [line for line in out.splitlines() if "FAILED!" in line]
    assert failures == [failures[0]] and "role redis: argument 'redis_port' is of type str" in failures[0], out
    assert "argument_spec_data" not in out and len(out) < 2000, len(out)


def test_the_default_callback_prints_the_whole_spec(tmp_path):
    """What the concise output saves: the same run with ansible.builtin.default."""
    proc = run_redis_with_a_bad_port(tmp_path, "ansible.builtin.default")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "argument_spec_data" in out and len(out) > 3000, len(out)
