"""What the rollout's action plugins share: the login options passed on, the report files written
whole, and the run's result."""
from __future__ import annotations

import json
import os
import stat

import pytest

from ansible_collections.gradual.rollout.plugins.action.rollout_gates import Load
from ansible_collections.gradual.rollout.plugins.plugin_utils import rollout_action as RA


def test_only_the_login_options_given_reach_rollout_state():
    args = {"login_host": "127.0.0.1", "login_user": "owner", "login_password": "s3cret", "db": "app",
            "plan": {"name": "p"}, "action": "run", "port": None}
    assert RA.login_args(args) == {"login_host": "127.0.0.1", "login_user": "owner",
                                   "login_password": "s3cret", "db": "app"}


def test_a_report_is_replaced_whole_with_its_mode_and_no_temporary_left(tmp_path):
    path = tmp_path / "reports" / "rollout-p.json"
    RA.write_json(str(path), {"a": 1})
    RA.write_json(str(path), {"a": 2, "b": [1]})
    assert json.loads(path.read_text()) == {"a": 2, "b": [1]}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert sorted(p.name for p in path.parent.iterdir()) == ["rollout-p.json"]


def test_a_failed_write_leaves_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "r.md"
    RA.write_text(str(path), "old\n")

    def refuse(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(RA.os, "replace", refuse)
    with pytest.raises(OSError):
        RA.write_text(str(path), "new\n")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["r.md"]


def test_the_run_result_names_plan_stage_outcome_and_reason():
    result = RA.run_result("p1", "run", "rolled_back", "gate pool failed", stage="w2", run_id=9)
    assert {k: result[k] for k in ("plan", "action", "stage", "outcome", "reason", "run_id")} == {
        "plan": "p1", "action": "run", "stage": "w2", "outcome": "rolled_back", "reason": "gate pool failed",
        "run_id": 9}
    assert result["at"].endswith("+00:00")


def test_a_state_plugin_takes_the_login_the_plan_and_its_own_options():
    spec = RA.state_spec(report_dir=dict(type="path", required=True))
    assert {"login_host", "login_user", "login_password", "db", "plan", "result_path", "report_dir"} <= set(spec)
    assert spec["plan"] == {"type": "dict", "required": True}
    assert spec["login_password"].get("no_log") is True


@pytest.mark.parametrize("plan, name", [({"name": "p1"}, "p1"), ({}, "rollout"), ({"name": ""}, "rollout"),
                                        ({"name": 3}, "rollout")])
def test_the_plan_name_keys_its_state_and_files(plan, name):
    assert RA.plan_name(plan) == name


def test_a_gate_load_out_of_bounds_is_reported_not_run():
    load = Load({"url": "http://127.0.0.1:9/health", "concurrency": 0, "duration": "1s"})
    load.run()
    assert "concurrency=0 must be between 1 and 256" in load.figures["error"]
