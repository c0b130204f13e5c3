"""The playbook passes a log gate's arguments to log_check by name: that list must be log_check's
own options, minus those the rollout sets (where each reading starts) - a new option of the module
would otherwise be dropped without a word."""
from __future__ import annotations

from pathlib import Path

import yaml

from ansible_collections.gradual.rollout.plugins.modules import log_check

ROOT = Path(__file__).resolve().parents[2]
SET_BY_THE_ROLLOUT = {"since_offset", "since_inode", "since_cursor", "position_only"}


def test_every_log_check_option_reaches_the_module():
    task = yaml.safe_load((ROOT / "playbooks" / "tasks" / "log_gates.yml").read_text())[0]
    passed = set(task["gradual.rollout.log_check"])
    options = set(log_check.argument_spec())
    assert passed == options - {"position_only"}
    for name in options - SET_BY_THE_ROLLOUT:
        assert task["gradual.rollout.log_check"][name] == "{{ item.1.args.%s | default(omit) }}" % name
