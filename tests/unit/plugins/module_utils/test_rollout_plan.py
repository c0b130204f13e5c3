"""Plan validation and the choice of the due stage (pure logic)."""
from __future__ import annotations

import copy
import pytest

from ansible_collections.gradual.rollout.plugins.module_utils.rollout_gates import GATE_TYPES
from ansible_collections.gradual.rollout.plugins.module_utils.rollout_model import Actions, Gate, Plan, Stage
from ansible_collections.gradual.rollout.plugins.module_utils.rollout_plan import (
    PlanError,
    load_plan,
    next_stage,
    plan_problems,
    stage_in_bake,
    status_table,
)


def good_plan():
    return {
        "name": "p",
        "baseline": {"USE_X": "false", "LIMIT": "999"},
        "stages": [
            {"name": "one", "bake_hours": 0, "serial": [1, "100%"], "actions": {"flags": {"USE_X": "true"}},
             "gates": [{"name": "slo", "type": "http_slo", "args": {"url": "http://x", "max_p95_ms": 200}}]},
            {"name": "two", "bake_hours": 24, "actions": {"flags": {"LIMIT": "10"}},
             "gates": [{"name": "pool", "type": "pool_check", "args": {"max_utilization": 50}}]},
            {"name": "three", "bake_hours": 2, "actions": {"migrate": {
                "target": "003", "lock_timeout_ms": 200, "blocker_wait_s": 120,
                "session_settings": {"maintenance_work_mem": "256MB"}}}},
        ],
        "metrics": [{"name": "Pool", "op": "<", "threshold": 50, "stage": "two", "gate": "pool",
                     "field": "figures.utilization.max"},
                    {"name": "Locks", "op": "<=", "threshold": 0, "stage": "three", "gate": "migrate",
                     "field": "lock_wait_s"}],
    }


def test_a_good_plan_has_no_problem():
    assert plan_problems(good_plan()) == []


@pytest.mark.parametrize("mutate, expected", [
    (lambda p: p["stages"][0]["gates"][0].update(type="latency_check"), "unknown gate type 'latency_check'"),
    (lambda p: p["stages"][1]["gates"][0]["args"].update(max_utilization=-5), "max_utilization=-5 is negative"),
    (lambda p: p["stages"][0]["gates"][0]["args"].update(max_p95_ms="-1"), "max_p95_ms='-1' is negative"),
    (lambda p: p["stages"][1].update(name="one"), "stage name 'one' is used twice"),
    (lambda p: p["stages"][0].update(serial=[0]), "serial entry 0"),
    (lambda p: p["stages"][0].update(serial=["150%"]), "serial entry '150%'"),
    (lambda p: p["stages"][0].update(bake_hours=-1), "bake_hours -1"),
    (lambda p: p["stages"][0].update(max_unavailable=0), "stage 'one': max_unavailable 0 is neither a host count"),
    (lambda p: p["stages"][0].update(max_unavailable="0%"), "max_unavailable '0%' is neither"),
    (lambda p: p.update(max_unavailable="half"), "plan: max_unavailable 'half' is neither a host count > 0"),
    (lambda p: p["stages"][0]["actions"]["flags"].update(NEW_FLAG="true"), "flag NEW_FLAG has no value in baseline"),
    (lambda p: p["stages"][0]["actions"]["flags"].update(bad_name="x"), "flag name 'bad_name'"),
    (lambda p: p["stages"][0]["actions"].update(deploy=True), "unknown action 'deploy'"),
    (lambda p: p["metrics"][0].update(gate="nope"), "stage 'two' has no gate 'nope'"),
    (lambda p: p["stages"][1]["gates"][0]["args"].update(max_utilization=150), "above 100"),
    (lambda p: p.update(stages=[]), "the plan has no stages"),
    (lambda p: p["stages"][2]["actions"]["migrate"].update(lock_timeout="5s"),
     "stage 'three': unknown actions.migrate option 'lock_timeout'; known options: target, autofix"),
    # where the migrations and the ledger live is the inventory's, not a stage's
    (lambda p: p["stages"][2]["actions"]["migrate"].update(path="/tmp/other"),
     "stage 'three': unknown actions.migrate option 'path'; known options: target, autofix, backup,"),
    (lambda p: p["stages"][2]["actions"]["migrate"].update(ledger_table="t"),
     "unknown actions.migrate option 'ledger_table'"),
    (lambda p: p["stages"][2]["actions"]["migrate"].update(lock_retries=0),
     "stage 'three': actions.migrate.lock_retries=0: expected a positive integer"),
    (lambda p: p["stages"][2]["actions"]["migrate"].update(lock_timeout_ms=4000),
     "actions.migrate.lock_timeout_max_ms=3000 is below lock_timeout_ms=4000"),
    (lambda p: p["stages"][2]["actions"]["migrate"].update(session_settings="work_mem=1GB"),
     "actions.migrate.session_settings must be a mapping"),
])
def test_each_bad_plan_is_named(mutate, expected):
    plan = good_plan()
    mutate(plan)
    problems = plan_problems(plan)
    assert any(expected in p for p in problems), problems


# ---- the typed model: types, unknown keys, missing keys, choices ------------------------------

def test_a_good_plan_loads_as_typed_objects():
    plan = load_plan(good_plan())
    assert isinstance(plan, Plan) and [s.name for s in plan.stages] == ["one", "two", "three"]
    one, three = plan.stages[0], plan.stages[2]
    assert isinstance(one, Stage) and isinstance(one.actions, Actions) and isinstance(one.gates[0], Gate)
    assert one.gates[0].type == "http_slo" and one.gates[0].args["max_p95_ms"] == 200 and one.serial == [1, "100%"]
    # defaults of what the plan leaves out; migrate stays pg_migrate's options as given
    assert three.gates == [] and three.serial is None and three.actions.flags == {} and not three.actions.lint
    assert three.actions.migrate == {"target": "003", "lock_timeout_ms": 200, "blocker_wait_s": 120,
                                     "session_settings": {"maintenance_work_mem": "256MB"}}
    assert plan.metrics[0].op == "<" and plan.cleanup == []


def test_the_gate_types_are_the_gate_modules():
    plan = good_plan()
    plan["stages"][0]["gates"] = [{"name": t, "type": t, "args": {"path": "/var/log/x.log"} if t == "log_check" else {}}
                                  for t in GATE_TYPES]
    assert plan_problems(plan) == []


@pytest.mark.parametrize("mutate, expected", [
    # wrong types, named with the path and the value
    (lambda p: p.update(name=5), "the plan: name must be a string, got 5"),
    (lambda p: p.update(baseline=["USE_X"]), "the plan: baseline must be a mapping of flag name to value, got ['USE_X']"),
    (lambda p: p.update(stages={"one": {}}), "the plan: stages must be a list of mappings, got {'one': {}}"),
    (lambda p: p["stages"].append("four"), "stage #4 must be a mapping, got 'four'"),
    (lambda p: p["stages"][0].update(bake_hours="soon"), "stage 'one': bake_hours must be a number, got 'soon'"),
    (lambda p: p["stages"][0].update(bake_hours=True), "stage 'one': bake_hours must be a number, got True"),
    (lambda p: p["stages"][0].update(serial="100%"), "stage 'one': serial must be a list, got '100%'"),
    (lambda p: p["stages"][0].update(serial=[1, 1.5]),
     "stage 'one': serial entry #2 must be a string or an integer, got 1.5"),
    (lambda p: p["stages"][0].update(description=["x"]), "stage 'one': description must be a string, got ['x']"),
    (lambda p: p["stages"][0].update(actions=["flags"]), "stage 'one': actions must be a mapping, got ['flags']"),
    (lambda p: p["stages"][0]["actions"].update(flags="USE_X=true"),
     "stage 'one': actions.flags must be a mapping of flag name to value, got 'USE_X=true'"),
    (lambda p: p["stages"][0]["actions"].update(lint="yes"), "stage 'one': actions.lint must be true or false, got 'yes'"),
    (lambda p: p["stages"][2]["actions"].update(migrate="003"),
     "stage 'three': actions.migrate must be a mapping with a target version, got '003'"),
    (lambda p: p["stages"][0].update(gates={"name": "slo"}), "stage 'one': gates must be a list of mappings"),
    (lambda p: p["stages"][0]["gates"][0].update(args="{{ rollout_gate_slo }}"),
     "stage 'one' gate 'slo': args must be a mapping, got '{{ rollout_gate_slo }}'"),
    (lambda p: p["stages"][0]["gates"][0].update(load=[1]), "stage 'one' gate 'slo': load must be a mapping, got [1]"),
    (lambda p: p["stages"][0]["gates"][0]["args"].update(url=3000),
     "stage 'one' gate 'slo': url must be a string (a URL, or a path such as \"/health\""),
    (lambda p: p["stages"][0].update(rollback={"flags": ["USE_X"]}),
     "stage 'one': rollback.flags must be a mapping of flag name to value, got ['USE_X']"),
    (lambda p: p["metrics"][0].update(threshold="50"), "metric 'Pool': threshold must be a number, got '50'"),
    (lambda p: p.update(cleanup="USE_X"), "the plan: cleanup must be a list, got 'USE_X'"),
    (lambda p: p.update(cleanup=[1]), "the plan: cleanup entry #1 must be a string, got 1"),
    # pg_migrate's own types and choices for the options of a stage's migration
    (lambda p: p["stages"][2]["actions"]["migrate"].update(target=3),
     "stage 'three': actions.migrate.target must be a string, got 3"),
    (lambda p: p["stages"][2]["actions"]["migrate"].update(cancel_autovacuum="no"),
     "stage 'three': actions.migrate.cancel_autovacuum must be true or false, got 'no'"),
    (lambda p: p["stages"][2]["actions"]["migrate"].update(backup_method="rsync"),
     "stage 'three': actions.migrate.backup_method 'rsync' must be one of pg_dump, restore_point, both"),
    # unknown keys at each level, with the known ones
    (lambda p: p.update(stage=[]), "the plan: unknown key 'stage'; known keys: name, baseline, stages, max_unavailable, "
                                   "cleanup, metrics; did you mean stages?"),
    (lambda p: p["stages"][0].update(bake_hour=1), "stage 'one': unknown key 'bake_hour'; known keys: name, "
                                                   "description, bake_hours, serial, max_unavailable, actions, gates, rollback"),
    (lambda p: p["stages"][0]["actions"].update(flag={}), "stage 'one': unknown action 'flag'; known actions: "
                                                          "flags, migrate, lint; did you mean flags?"),
    (lambda p: p["stages"][0].update(rollback={"flag": {}}),
     "stage 'one': unknown key 'rollback.flag'; known keys of rollback: flags"),
    (lambda p: p["stages"][0]["gates"][0].update(arg={}),
     "stage 'one' gate 'slo': unknown key 'arg'; known keys: name, type, args, load"),
    (lambda p: p["metrics"][0].update(gates="pool"), "metric 'Pool': unknown key 'gates'; known keys: name, "
                                                     "threshold, target, op, unit, stage, gate, field, scale"),
    # missing required keys
    (lambda p: p.pop("name"), "the plan: required key 'name' is missing"),
    (lambda p: p.pop("baseline"), "the plan: required key 'baseline' is missing"),
    (lambda p: p.pop("stages"), "the plan: required key 'stages' is missing"),
    (lambda p: p["stages"][1].pop("name"), "stage #2: required key 'name' is missing"),
    (lambda p: p["stages"][1].update(name=None), "stage #2: required key 'name' is missing"),
    (lambda p: p["stages"][0]["gates"][0].pop("name"), "stage 'one' gate #1: required key 'name' is missing"),
    (lambda p: p["stages"][0]["gates"][0].pop("type"), "stage 'one' gate 'slo': required key 'type' is missing"),
    (lambda p: p["stages"][0]["gates"][0].pop("args"), "stage 'one' gate 'slo': required key 'args' is missing"),
    (lambda p: p["metrics"][1].pop("threshold"), "metric 'Locks': required key 'threshold' is missing"),
    (lambda p: p["stages"][2]["actions"]["migrate"].pop("target"),
     "stage 'three': actions.migrate must be a mapping with a target version"),
    # choices
    (lambda p: p["stages"][0]["gates"][0].update(type="latency_check"),
     "stage 'one' gate 'slo': unknown gate type 'latency_check'; known gates: " + ", ".join(GATE_TYPES)),
    (lambda p: p["metrics"][0].update(op="=>"), "metric 'Pool': op '=>' must be one of <, <=, >, >=, =="),
])
def test_each_kind_of_problem_is_named_with_its_path_and_value(mutate, expected):
    plan = good_plan()
    mutate(plan)
    problems = plan_problems(plan)
    assert any(expected in p for p in problems), problems
    with pytest.raises(PlanError) as error:
        load_plan(plan)
    assert error.value.problems == problems


def test_every_problem_is_reported_at_once_and_each_once():
    plan = good_plan()
    plan["stages"][0].update(bake_hours="soon", bake_hour=1)
    plan["stages"][0]["gates"][0].update(type="latency_check")
    plan["stages"][1].pop("name")
    plan["stages"][2]["actions"]["migrate"].update(lock_retries="many")
    plan["metrics"][0].update(op="=>")
    plan.update(stage=[])
    problems = plan_problems(plan)
    assert len(problems) == 7, problems
    # a value of the wrong type is named once, not again by the checks that follow
    assert sum("lock_retries" in p for p in problems) == 1
    assert "stage 'three': actions.migrate.lock_retries must be an integer, got 'many'" in problems


def test_a_gate_url_may_be_a_path_on_the_changed_app_host():
    plan = good_plan()
    plan["stages"][0]["gates"][0]["args"]["url"] = "/health"
    plan["stages"][0]["gates"][0]["load"] = {"url": "/api/standings/39", "duration": "5s", "concurrency": 8}
    assert plan_problems(plan) == []
    plan["stages"][0]["gates"][0]["load"]["concurrency"] = -1
    assert plan_problems(plan) == ["stage 'one' gate 'slo' load: threshold concurrency=-1 is negative; use a value >= 0"]


def test_null_is_the_default():
    plan = good_plan()
    plan["stages"][0].update(description=None, serial=None, rollback=None)
    plan["stages"][2].update(gates=None, bake_hours=None)
    assert plan_problems(plan) == []
    assert load_plan(plan).stages[2].bake_hours == 0


def test_a_plan_that_is_no_mapping():
    assert plan_problems(["one"]) == ["the rollout plan must be a mapping, got list"]


def test_a_stage_may_ask_pg_migrate_for_a_restore_point():
    plan = good_plan()
    plan["stages"][2]["actions"]["migrate"].update(backup=True, backup_method="restore_point")
    assert plan_problems(plan) == []


@pytest.mark.parametrize("mutate, expected", [
    (lambda p: p["stages"][0].update(name="one\n"), "name 'one\\n' must match"),
    (lambda p: p["stages"][0]["actions"]["flags"].update({"USE_X\n": "true"}), "flag name 'USE_X\\n'"),
    (lambda p: p["baseline"].update({"LIMIT\n": "1"}), "baseline: flag name 'LIMIT\\n'"),
    (lambda p: p.update(cleanup=["USE_X\n"]), "cleanup: flag name 'USE_X\\n'"),
    (lambda p: p["stages"][0].update(serial=["50%\n"]), "serial entry '50%\\n'"),
])
def test_a_final_newline_is_no_part_of_a_valid_name(mutate, expected):
    # the patterns end in "$", which also matches before a final newline: full matches only
    plan = good_plan()
    mutate(plan)
    problems = plan_problems(plan)
    assert any(expected in p for p in problems), problems


def rows(*entries):
    return [dict(id=i + 1, stage=s, status=st, finished_at=f) for i, (s, st, f) in enumerate(entries)]


def test_first_stage_is_due_on_a_fresh_state():
    choice = next_stage(good_plan(), [], now="2026-02-02T09:00:00Z")
    assert choice["stage"]["name"] == "one" and not choice["refuse"]


def test_bake_time_is_enforced_and_can_be_overridden():
    state = rows(("one", "passed", "2026-02-02T09:00:00+00:00"))
    early = next_stage(good_plan(), state, now="2026-02-02T21:00:00Z")
    assert early["refuse"] and early["stage"]["name"] == "two" and early["wait_seconds"] == 12 * 3600
    assert "rollout_ignore_bake" in early["reason"]
    assert not next_stage(good_plan(), state, now="2026-02-03T09:00:01Z")["refuse"]
    assert not next_stage(good_plan(), state, now="2026-02-02T21:00:00Z", ignore_bake=True)["refuse"]
    assert not next_stage(good_plan(), state, now="2026-02-02T09:00:10Z", bake_scale=0.0001)["refuse"]


def test_a_rolled_back_stage_is_due_again_and_the_latest_row_counts():
    state = rows(("one", "passed", "2026-02-01T00:00:00+00:00"), ("two", "rolled_back", "2026-02-03T00:00:00+00:00"))
    assert next_stage(good_plan(), state, now="2026-02-10T00:00:00Z")["stage"]["name"] == "two"
    state += rows(("x", "x", None))[:0] + [dict(id=9, stage="two", status="passed", finished_at="2026-02-04T00:00:00+00:00")]
    assert next_stage(good_plan(), state, now="2026-02-10T00:00:00Z")["stage"]["name"] == "three"


def test_an_interrupted_stage_is_resumed():
    state = rows(("one", "passed", "2026-02-01T00:00:00+00:00"), ("two", "running", None))
    choice = next_stage(good_plan(), state, now="2026-02-01T00:00:01Z")
    assert choice["stage"]["name"] == "two"


def test_requested_stage_needs_its_predecessors():
    refused = next_stage(good_plan(), [], requested="two")
    assert refused["refuse"] and "'one' has passed" in refused["reason"]
    unknown = next_stage(good_plan(), [], requested="nine")
    assert unknown["refuse"] and "not in the plan" in unknown["reason"]


def rerun_plan():
    """a sets X; b sets Y; c sets X and Z; d sets Z; e sets W: re-running a touches c, then d via Z."""
    flags = {"a": {"X": "1"}, "b": {"Y": "1"}, "c": {"X": "2", "Z": "1"}, "d": {"Z": "2"}, "e": {"W": "1"}}
    return {"name": "p", "baseline": {"X": "0", "Y": "0", "Z": "0", "W": "0"},
            "stages": [{"name": n, "bake_hours": 0, "actions": {"flags": f}} for n, f in flags.items()]}


def all_passed(plan):
    return rows(*[(s["name"], "passed", "2026-02-01T00:00:00+00:00") for s in plan["stages"]])


@pytest.mark.parametrize("ignore_bake", [False, True])
def test_a_passed_stage_is_not_run_again_without_its_own_override(ignore_bake):
    plan = rerun_plan()
    choice = next_stage(plan, all_passed(plan), requested="a", ignore_bake=ignore_bake)
    assert choice["refuse"] and choice["stage"]["name"] == "a"
    assert "'a' has already passed" in choice["reason"] and "nothing was changed" in choice["reason"]
    assert "-e rollout_rerun_passed=true" in choice["reason"] and "c, d" in choice["reason"]


def test_a_rerun_supersedes_the_later_stages_it_overwrites_and_only_those():
    plan = rerun_plan()
    choice = next_stage(plan, all_passed(plan), requested="a", rerun_passed=True)
    assert not choice["refuse"] and choice["stage"]["name"] == "a"
    assert choice["supersedes"] == ["c", "d"]  # b and e set nothing a, c or d set again
    assert next_stage(plan, all_passed(plan), requested="d", rerun_passed=True)["supersedes"] == []
    # a later stage that is not passed is not marked, but what it sets still counts
    state = all_passed(plan)[:2] + [dict(id=9, stage="c", status="rolled_back", finished_at=None)]
    assert next_stage(plan, state + all_passed(plan)[3:], requested="a", rerun_passed=True)["supersedes"] == ["d"]


def test_after_a_rerun_the_superseded_stages_are_due_again_in_order():
    plan = rerun_plan()
    state = all_passed(plan)
    state += [dict(id=20, stage="c", status="superseded", finished_at="2026-02-01T00:00:00+00:00"),
              dict(id=21, stage="d", status="superseded", finished_at="2026-02-01T00:00:00+00:00"),
              dict(id=22, stage="a", status="passed", finished_at="2026-02-05T00:00:00+00:00")]
    assert next_stage(plan, state)["stage"]["name"] == "c"
    assert not next_stage(plan, state)["done"]


def test_a_rerun_of_a_migration_supersedes_the_later_migrations():
    plan = good_plan()
    plan["stages"].append({"name": "four", "actions": {"migrate": {"target": "004"}}})
    choice = next_stage(plan, all_passed(plan), requested="three", rerun_passed=True)
    assert choice["supersedes"] == ["four"]


def test_done_when_every_stage_passed():
    state = rows(*[(n, "passed", "2026-02-01T00:00:00+00:00") for n in ("one", "two", "three")])
    assert next_stage(good_plan(), state)["done"]


def test_status_table_lists_every_stage():
    state = rows(("one", "passed", "2026-02-01T00:00:00+00:00"), ("two", "running", None))
    lines = status_table(good_plan(), state)
    assert lines[0].split()[:2] == ["STAGE", "STATUS"]
    assert lines[1].split()[:2] == ["one", "passed"]
    assert lines[2].split()[:2] == ["two", "running"] and lines[3].split()[:2] == ["three", "pending"]


def test_validation_does_not_modify_the_plan():
    plan = good_plan()
    before = copy.deepcopy(plan)
    plan_problems(plan)
    assert plan == before


def test_a_stage_may_gate_on_sql_check_and_on_its_hosts_logs():
    plan = good_plan()
    plan["stages"][0]["gates"].append({"name": "hot_path_index", "type": "sql_check", "args": {
        "login_host": "db-replica.internal", "mode": "explain", "analyze": True,
        "query": "SELECT * FROM orders WHERE customer_id = 1", "index": "idx_orders_customer", "max_time_ms": 50}})
    plan["metrics"].append({"name": "Plan time", "op": "<", "threshold": 50, "stage": "one",
                            "gate": "hot_path_index", "field": "figures.execution_time_ms"})
    assert plan_problems(plan) == []
    plan["stages"][0]["gates"].append({"name": "errors", "type": "log_check", "args": {
        "path": "/var/log/app/error.log", "patterns": [{"name": "errors", "regex": "ERROR", "max_count": 0}]}})
    assert plan_problems(plan) == []


@pytest.mark.parametrize("args, expected", [
    ({"path": "app.log"}, "args.path 'app.log' must be the absolute path of the log on the app hosts"),
    ({}, "args.path None must be the absolute path"),
    ({"path": "/var/log/a.log", "since_offset": 0}, "args.since_offset is set by the rollout"),
    ({"path": "/var/log/a.log", "position_only": True}, "args.position_only is set by the rollout"),
    ({"journal_unit": "app.service", "since_cursor": "s=1"}, "args.since_cursor is set by the rollout"),
    ({"journal_unit": "app.service", "path": "/var/log/a.log"}, "give args.path (a log file) or "
                                                                "args.journal_unit (a journald unit), not both"),
    ({"path": "/var/log/a.log", "extract": [{"name": "q", "regex": "Query count: (\\d+"}]},
     "extract q: regex 'Query count: ("),
    ({"path": "/var/log/a.log", "extract": [{"name": "q", "regex": "Query count: \\d+"}]}, "extract q: regex"),
    ({"path": "/var/log/a.log", "patterns": "ERROR"}, "args.patterns and args.extract must be lists"),
])
def test_a_log_gate_names_its_bad_arguments(args, expected):
    plan = good_plan()
    plan["stages"][0]["watch"] = {"gates": [{"name": "jobs", "type": "log_check", "args": args}]}
    problems = plan_problems(plan)
    assert any(p.startswith("stage 'one' watch gate 'jobs': " + expected) for p in problems), problems


def test_a_journald_log_gate_is_a_good_gate():
    plan = good_plan()
    plan["stages"][0]["watch"] = {"gates": [{"name": "jobs", "type": "log_check", "args": {
        "journal_unit": "app.service", "patterns": [{"name": "errors", "regex": "ERROR", "max_count": 0}]}}]}
    assert plan_problems(plan) == []


@pytest.mark.parametrize("query, expected", [
    ("DELETE FROM orders", "args.query 'DELETE FROM orders' is a DELETE statement, not a SELECT"),
    ("SELECT 1; SELECT 2", "holds 2 statements"),
    ("SELEC 1", "does not parse"),
    ("WITH d AS (DELETE FROM orders RETURNING *) SELECT * FROM d", "contains a data-modifying DELETE"),
])
def test_a_sql_gate_query_that_is_not_one_read_only_select_is_refused_before_anything_runs(query, expected):
    plan = good_plan()
    plan["stages"][0]["gates"].append({"name": "plan", "type": "sql_check", "args": {
        "login_host": "db-replica.internal", "mode": "explain", "query": query}})
    problems = plan_problems(plan)
    assert any(p.startswith("stage 'one' gate 'plan': ") and expected in p for p in problems), problems


# --- the watch of a passed stage through its bake --------------------------------------------------

def watched_plan(max_age_hours=4):
    plan = good_plan()
    plan["stages"][0]["watch"] = {"gates": [{"name": "errors", "type": "prometheus_check",
                                             "args": {"url": "http://prom:9090", "query": "up", "max_value": 0}}],
                                  "max_age_hours": max_age_hours}
    plan["stages"][1]["bake_hours"] = 24
    return plan


def watch(state_id, verdict, at, reason="r"):
    return dict(id=state_id * 10, state_id=state_id, stage="one", verdict=verdict, at=at, reason=reason)


@pytest.mark.parametrize("mutate, expected", [
    (lambda p: p["stages"][0].update(watch={"gates": []}), "stage 'one' watch: gates must list at least one gate"),
    (lambda p: p["stages"][0].update(watch={"gates": [{"name": "g", "type": "tail_check", "args": {}}]}),
     "stage 'one' watch gate 'g': unknown gate type 'tail_check'"),
    (lambda p: p["stages"][0]["watch"].update(max_age_hours=0), "stage 'one' watch: max_age_hours 0 must be a number > 0"),
    (lambda p: p["stages"][0]["watch"].update(every="4h"), "unknown key 'watch.every'; known keys of watch: gates, max_age_hours"),
    (lambda p: p["stages"][0]["watch"]["gates"].append(dict(p["stages"][0]["watch"]["gates"][0])),
     "stage 'one' watch: gate name 'errors' is used twice"),
    (lambda p: p["stages"][0]["watch"]["gates"][0]["args"].update(max_value=-1),
     "stage 'one' watch gate 'errors': threshold max_value=-1 is negative"),
])
def test_a_bad_watch_is_named(mutate, expected):
    plan = watched_plan()
    assert plan_problems(plan) == []
    mutate(plan)
    problems = plan_problems(plan)
    assert any(expected in p for p in problems), problems


def test_a_metric_may_read_a_gate_of_the_watch():
    plan = watched_plan()
    plan["metrics"].append({"name": "Errors", "op": "<=", "threshold": 0, "stage": "one", "gate": "errors",
                            "field": "figures.max"})
    assert plan_problems(plan) == []
    plan["metrics"][-1]["stage"] = "two"   # the watch is stage one's
    assert "metric 'Errors': stage 'two' has no gate 'errors'" in plan_problems(plan)


def test_the_next_stage_waits_for_a_passed_recent_watch_of_its_predecessor():
    plan = watched_plan(max_age_hours=4)
    state = rows(("one", "passed", "2026-02-01T00:00:00+00:00"))
    state_id = state[0]["id"]
    later = "2026-02-02T01:00:00Z"   # the 24 h bake is over
    held = next_stage(plan, state, now=later)
    assert held["refuse"] and "no watch of it has run since it passed" in held["reason"]
    # the bake override skips the bake time, never the watch
    assert next_stage(plan, state, now=later, ignore_bake=True)["refuse"]
    fresh = [watch(state_id, "passed", "2026-02-01T23:00:00+00:00")]
    assert not next_stage(plan, state, now=later, watches=fresh)["refuse"]
    stale = [watch(state_id, "passed", "2026-02-01T20:00:00+00:00")]
    choice = next_stage(plan, state, now=later, watches=stale)
    assert choice["refuse"] and "older than its max_age_hours 4" in choice["reason"]
    unsure = fresh + [watch(state_id, "inconclusive", "2026-02-02T00:30:00+00:00", "errors: no answer")]
    choice = next_stage(plan, state, now=later, watches=unsure)
    assert choice["refuse"] and "was inconclusive: errors: no answer" in choice["reason"]
    # a watch of an earlier run of the stage does not count for this one
    assert next_stage(plan, state, now=later, watches=[watch(state_id + 1, "passed", "2026-02-02T00:59:00+00:00")])["refuse"]
    # the bake still applies when the watch passed
    early = next_stage(plan, state, now="2026-02-01T12:00:00Z", watches=[watch(state_id, "passed", "2026-02-01T11:00:00+00:00")])
    assert early["refuse"] and early["wait_seconds"] == 12 * 3600


def test_the_stage_in_bake_is_the_last_of_the_leading_passed_stages():
    plan = watched_plan()
    assert stage_in_bake(plan, [])["reason"] == "no stage has passed: nothing to watch"
    state = rows(("one", "passed", "2026-02-01T00:00:00+00:00"))
    bake = stage_in_bake(plan, state)
    assert bake["stage"]["name"] == "one" and bake["row"]["id"] == state[0]["id"] and not bake["refuse"]
    running = stage_in_bake(plan, state + rows(("two", "running", None)))
    assert running["refuse"] and "stage two is running" in running["reason"]
    rolled = stage_in_bake(plan, state + rows(("two", "rolled_back", "2026-02-02T00:00:00+00:00")))
    assert rolled["stage"]["name"] == "one"
    done = stage_in_bake(plan, state + rows(("two", "passed", "2026-02-02T00:00:00+00:00")))
    assert done["stage"] is None and "'two', the last passed, has no watch gates" in done["reason"]
