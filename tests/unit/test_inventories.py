"""The shipped inventories hold only their real hosts: every file in an inventory folder is an
inventory source, so a stray list (such as the lab's secret names) would turn into hosts."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAB_HOSTS = {"db1", "db2", "cache1", "web1", "app1", "app2"}
# Beside this Python first (.venv), else on PATH (ansible-test units runs a Python of its own choice).
INVENTORY_BIN = shutil.which("ansible-inventory",
                             path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))


def graph(inventory: str) -> dict[str, set[str]]:
    """Group name -> hosts directly under it, from `ansible-inventory --graph` (needs no vault)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    proc = subprocess.run([str(INVENTORY_BIN), "-i",
                           str(ROOT / "inventories" / inventory), "--graph"],
                          capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr
    groups: dict[str, set[str]] = {}
    stack: list[tuple[int, str]] = []
    for line in proc.stdout.splitlines():
        depth = line.find("@") if "@" in line else line.find("|--") + 3
        name = line.strip(" |-")
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if name.startswith("@"):
            groups[name[1:].rstrip(":")] = set()
            stack.append((depth, name[1:].rstrip(":")))
        elif stack:
            groups[stack[-1][1]].add(name)
    return groups


@pytest.mark.parametrize("inventory", ["lab", "staging", "production"])
def test_no_stray_hosts(inventory):
    groups = graph(inventory)
    assert groups.get("ungrouped", set()) == set(), groups["ungrouped"]


def test_lab_has_its_six_hosts():
    groups = graph("lab")
    hosts = set().union(*groups.values())
    assert hosts == LAB_HOSTS
