"""Shared by the molecule scenarios' tests: run one of a scenario's playbooks against its hosts,
and `--check` of its converge.yml on the converged hosts, which must report no change and no
failure (what a reviewer runs before a change)."""
from __future__ import annotations

import json
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


def run_playbook(path: Path, extra: dict | None = None, *options: str,
                 timeout: int = 900) -> subprocess.CompletedProcess:
    """ansible-playbook PATH [-e EXTRA as JSON] [OPTIONS] on the scenario's inventory (molecule
    gives it in MOLECULE_INVENTORY_FILE); the finished run, whatever its exit code."""
    cmd = ["ansible-playbook", str(path), *options]
    if extra:
        cmd += ["-e", json.dumps(extra)]
    if os.environ.get("MOLECULE_INVENTORY_FILE"):
        cmd += ["-i", os.environ["MOLECULE_INVENTORY_FILE"]]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=os.environ.copy(), check=False)


def assert_check_changes_nothing(scenario: Path) -> None:
    proc = run_playbook(scenario / "converge.yml", None, "--check")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    recap = RECAP.findall(proc.stdout)
    assert recap, out[-2000:]
    bad = [host for host, changed, unreachable, failed in recap if (changed, unreachable, failed) != ("0", "0", "0")]
    assert not bad, f"--check on converged hosts {bad} reported changes: {changed_tasks(proc.stdout)}"


def unit_exposure(host, unit: str) -> float:
    """systemd-analyze security's overall exposure of UNIT on a testinfra HOST (0 = locked down,
    10 = nothing sandboxed), printed so the scenario's log keeps the figure."""
    last = host.check_output(f"systemd-analyze security --no-pager {unit} | tail -n 1")
    score = float(re.search(r"level for \S+: ([0-9.]+)", last).group(1))
    print("systemd-analyze security %s: %.1f" % (unit, score))
    return score
