"""Shared by the molecule scenarios' tests: `--check` of a scenario's converge.yml on its
converged hosts must report no change and no failure (what a reviewer runs before a change)."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

RECAP = re.compile(r"^(\S+)\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def changed_tasks(out: str) -> list[str]:
    """'TASK name -> host' for every task the run reported as changed."""
    found, task = [], ""
    for line in out.splitlines():
        if line.startswith("TASK ["):
            task = line[6:line.rfind("]")]
        elif line.startswith("changed: ["):
            found.append(f"{task} -> {line[10:line.index(']')]}")
    return found


def assert_check_changes_nothing(scenario: Path) -> None:
    cmd = ["ansible-playbook", str(scenario / "converge.yml"), "--check"]
    if os.environ.get("MOLECULE_INVENTORY_FILE"):
        cmd += ["-i", os.environ["MOLECULE_INVENTORY_FILE"]]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=os.environ.copy(), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    recap = RECAP.findall(proc.stdout)
    assert recap, out[-2000:]
    bad = [host for host, changed, unreachable, failed in recap if (changed, unreachable, failed) != ("0", "0", "0")]
    assert not bad, f"--check on converged hosts {bad} reported changes: {changed_tasks(proc.stdout)}"
