"""The shipped inventories hold only their real hosts: every file in an inventory folder is an
inventory source, so a stray list (such as the lab's secret names) would turn into hosts."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ansible_collections.gradual.rollout.plugins.module_utils.rollout_plan import load_plan

ROOT = Path(__file__).resolve().parents[2]
LAB_HOSTS = {"db1", "db2", "cache1", "web1", "app1", "app2", "mon1"}
# Beside this Python first (.venv), else on PATH (ansible-test units runs a Python of its own choice).
BIN_PATH = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
INVENTORY_BIN = shutil.which("ansible-inventory", path=BIN_PATH)
ANSIBLE_BIN = shutil.which("ansible", path=BIN_PATH)


# The vault variables the plan's gate presets read.
PLAN_SECRETS = ("vault_redis_admin_password", "vault_monitoring_admin_password", "vault_analytics_db_password")


def inventory_cli(source: Path, *args: str, binary=INVENTORY_BIN, **env_vars: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    env.update(env_vars)
    return subprocess.run([str(binary), "-i", str(source), *args],
                          capture_output=True, text=True, env=env, cwd=ROOT, check=False)


def templated_var(source: Path, host: str, name: str):
    """Variable NAME of HOST as a play would use it: templated by Ansible (the debug action runs on
    the controller, nothing connects). The vault's secrets stand in as a placeholder."""
    proc = inventory_cli(source, host, "-m", "ansible.builtin.debug", "-a", "var=" + name,
                         *("-e%s=placeholder" % secret for secret in PLAN_SECRETS), binary=ANSIBLE_BIN,
                         ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    # the JSON document, after what other enabled callbacks (profile_tasks) print before it
    start = proc.stdout.find("{") if proc.stdout.startswith("{") else proc.stdout.index("\n{") + 1
    result = json.JSONDecoder().raw_decode(proc.stdout, start)[0]
    return result["plays"][0]["tasks"][0]["hosts"][host][name]


def graph(inventory: str) -> dict[str, set[str]]:
    """Group name -> hosts directly under it, from `ansible-inventory --graph` (needs no vault)."""
    proc = inventory_cli(ROOT / "inventories" / inventory, "--graph")
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


def test_lab_has_its_seven_hosts():
    groups = graph("lab")
    hosts = set().union(*groups.values())
    assert hosts == LAB_HOSTS


@pytest.mark.parametrize("inventory, duration", [("lab", "3s"), ("staging", "10m"), ("production", "2h")])
def test_every_inventory_reads_the_one_plan_with_its_own_gate_duration(tmp_path, inventory, duration):
    """The plan exists once (examples/rollout/plan.yml); each inventory links it into group_vars/all
    and sets only what differs. Read as Ansible reads it: the host variables of an app host (the
    inventory copied with its links followed, without the vaults, which need no password here)."""
    source = ROOT / "inventories" / inventory
    assert (source / "group_vars/all/plan.yml").resolve() == ROOT / "examples/rollout/plan.yml"
    copy = tmp_path / inventory
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("vault.yml"))
    app_host = sorted(graph(inventory)["app"])[0]
    proc = inventory_cli(copy, "--host", app_host)
    assert proc.returncode == 0, proc.stderr
    hostvars = json.loads(proc.stdout)
    plan = yaml.safe_load((ROOT / "examples/rollout/plan.yml").read_text(encoding="utf-8"))["rollout_plan"]
    assert hostvars["rollout_plan"] == plan
    assert hostvars["rollout_gate_duration"] == duration
    # ... and the plan the rollout validates, templated for that host, loads without a problem
    loaded = load_plan(templated_var(copy, app_host, "rollout_plan"))
    names = [stage.name for stage in loaded.stages]
    assert names[0] == "w1d1_migration_safety" and names[-1] == "w4_stabilisation" and len(names) == 9
    assert all(isinstance(gate.args, dict) for stage in loaded.stages for gate in stage.gates)
    pool_gate = next(gate for gate in loaded.stages[-1].gates if gate.type == "pool_check")
    assert pool_gate.args["duration"] == duration
