"""The report fills seed 003's Metric | Target | Actual | Status table from recorded figures only."""
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.gradual.rollout.plugins.filter.rollout import (
    rollout_flag_mismatches,
    rollout_lock_wait_seconds,
)
from ansible_collections.gradual.rollout.plugins.module_utils.rollout_report import (
    build_report,
    dig,
    render_markdown,
)

PLAN = {
    "name": "post-p1",
    "stages": [{"name": "limits"}, {"name": "cache"}],
    "cleanup": ["USE_OPTIMIZED_DAILY_REWARDS"],
    "metrics": [
        {"name": "Daily rewards queries", "target": "≤3", "op": "<=", "threshold": 3},
        {"name": "Pool utilization", "target": "<50%", "op": "<", "threshold": 50, "unit": "%",
         "stage": "limits", "gate": "pool", "field": "figures.utilization.max"},
        {"name": "Cache hit rate", "target": ">80%", "op": ">", "threshold": 80, "unit": "%",
         "stage": "cache", "gate": "cache", "field": "figures.hit_rate"},
    ],
}


def row(i, stage, status, figures):
    return dict(id=i, stage=stage, status=status, figures=figures, started_at="2026-02-02T09:00:00+00:00",
                finished_at="2026-02-02T09:00:42+00:00", actor="ops", awx_job_id="12", reason=None)


def test_measured_figures_fill_the_table():
    report = build_report(PLAN, [
        row(1, "limits", "passed", {"pool": {"passed": True, "figures": {"utilization": {"max": 41.5}}}}),
        row(2, "cache", "passed", {"cache": {"passed": True, "figures": {"hit_rate": 62.0}}}),
    ])
    by_name = {m["metric"]: m for m in report["metrics"]}
    assert by_name["Pool utilization"]["actual"] == "41.5%" and by_name["Pool utilization"]["status"] == "PASS"
    assert by_name["Cache hit rate"]["status"] == "FAIL"
    assert by_name["Daily rewards queries"]["status"] == "NOT MEASURED"
    assert report["overall"] == "COMPLETE"
    assert report["stages"][0]["duration_s"] == 42.0


def test_missing_figure_is_never_a_pass():
    report = build_report(PLAN, [row(1, "limits", "rolled_back", {"pool": {"passed": False, "figures": {}}})])
    pool = report["metrics"][1]
    assert pool["status"] == "NOT MEASURED" and "no figure" in pool["source"]
    assert report["overall"] == "ROLLED BACK"
    assert report["metrics"][2]["source"] == "stage cache has not run"


def test_a_figure_of_a_rolled_back_stage_says_so():
    report = build_report(PLAN, [row(1, "limits", "rolled_back",
                                     {"pool": {"passed": False, "figures": {"utilization": {"max": 93}}}})])
    assert report["metrics"][1]["status"] == "FAIL (stage rolled_back)"


def test_stage_gates_say_which_failed_and_hide_the_snapshot():
    report = build_report(PLAN, [row(1, "limits", "rolled_back", {
        "pool": {"gate_type": "pool_check", "passed": False, "reason": "utilization 93% > 50%"},
        "slo": {"gate_type": "http_slo", "passed": True, "reason": "p95 12 ms"},
        "_snapshot": {"app1": {"present": {"X": "1"}}}})])
    gates = {g["name"]: g for g in report["stages"][0]["gates"]}
    assert sorted(gates) == ["pool", "slo"]
    assert gates["pool"]["passed"] is False and gates["pool"]["msg"] == "utilization 93% > 50%"
    assert gates["slo"]["passed"] is True


def test_markdown_has_the_seed_table():
    text = render_markdown(build_report(PLAN, []))
    assert "| Metric | Target | Actual | Status |" in text
    assert "| Pool utilization | <50% | not measured | NOT MEASURED |" in text
    assert "- `USE_OPTIMIZED_DAILY_REWARDS`" in text


def test_dig():
    assert dig({"a": {"b": [1, {"c": 5}]}}, "a.b.1.c") == 5
    assert dig({"a": 1}, "a.b") is None


def test_flag_mismatches_compare_as_served():
    served = {"flags": {"USE_X": {"value": True, "source": "env"}, "LIMIT": {"value": 10, "source": "env"}}}
    assert rollout_flag_mismatches({"USE_X": "true", "LIMIT": "10"}, served) == []
    assert rollout_flag_mismatches({"USE_X": "false"}, served) == ["USE_X: expected false, the app serves True"]
    assert rollout_flag_mismatches({"MISSING": "1"}, served) == ["MISSING: expected 1, the app serves nothing"]


def test_lock_wait_is_summed_wherever_it_is():
    result = {"migrations": [{"statements": [{"lock_wait_s": 0.25}, {"lock_wait_ms": 500}]}, {"lock_wait_s": 1}]}
    assert rollout_lock_wait_seconds(result) == 1.75
    assert rollout_lock_wait_seconds({}) == 0


def test_blocker_wait_is_summed_apart_from_lock_wait():
    result = {"statements": [{"lock_wait_ms": 30, "blocker_wait_ms": 8100}, {"lock_wait_ms": 0, "blocker_wait_ms": None},
                             {"lock_wait_ms": 5, "blocker_wait_ms": 400}]}
    assert rollout_lock_wait_seconds(result) == 0.035
    assert rollout_lock_wait_seconds(result, "blocker") == 8.5


def test_unknown_wait_kind_is_named():
    with pytest.raises(AnsibleFilterError, match="kind='queue', expected 'lock' or 'blocker'"):
        rollout_lock_wait_seconds({}, "queue")


def test_each_stage_lists_the_watches_of_its_latest_run():
    watches = [dict(state_id=1, at="2026-02-02T13:00:00+00:00", verdict="passed", reason="all 1 gate(s) passed",
                    actor="awx", gates={"errors": {"passed": True, "gate_type": "prometheus_check", "reason": "ok"}}),
               dict(state_id=1, at="2026-02-02T17:00:00+00:00", verdict="inconclusive",
                    reason="errors: no answer | retry", actor="awx",
                    gates={"errors": {"passed": False, "inconclusive": True, "reason": "no answer"}}),
               dict(state_id=7, at="2026-02-01T00:00:00+00:00", verdict="failed", reason="an older run", gates={})]
    report = build_report(PLAN, [row(1, "limits", "passed", {})], watches=watches)
    limits, cache = report["stages"]
    assert [w["verdict"] for w in limits["watches"]] == ["passed", "inconclusive"] and cache["watches"] == []
    text = render_markdown(report)
    assert "| limits | 2026-02-02T17:00:00+00:00 | inconclusive | errors FAILED | errors: no answer / retry |" in text
    assert "an older run" not in text
    assert "## Watches" not in render_markdown(build_report(PLAN, [row(1, "limits", "passed", {})]))
