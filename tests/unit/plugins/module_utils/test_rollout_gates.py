"""The gate record of a rollout batch: one shape for every gate module's result, the batch's verdict,
and the path URLs of the plan's presets placed on the app host the batch changed."""
from __future__ import annotations

from ansible_collections.gradual.rollout.plugins.module_utils import rollout_gates as RG
from ansible_collections.gradual.rollout.plugins.module_utils.rollout_plan import GATE_TYPES


def test_every_gate_type_of_the_plan_has_a_module_and_no_other():
    assert set(GATE_TYPES) == set(RG.GATE_MODULES)
    assert all(module.startswith("gradual.rollout.") for module in RG.GATE_MODULES.values())


def test_a_passing_result_keeps_its_measurements_and_drops_the_bookkeeping():
    result = {"p95_ms": 8.5, "error_rate": 0.0, "requests": 200, "changed": False, "invocation": {"x": 1},
              "_ansible_no_log": False, "samples": [1, 2], "gate": {"passed": True, "reason": "all thresholds met"}}
    record = RG.record_from_result("api_slo", "http_slo", result)
    assert record.passed and not record.inconclusive and record.reason == "all thresholds met"
    assert record.figures == {"p95_ms": 8.5, "error_rate": 0.0, "requests": 200}
    assert record.as_dict() == {"gate_type": "http_slo", "passed": True, "reason": "all thresholds met",
                                "figures": record.figures, "inconclusive": False, "load": None}


def test_a_failed_gate_keeps_no_exception_object_and_only_json_data():
    class Captured(Exception):
        pass

    result = {"failed": True, "msg": "http_slo gate failed: p95_ms 900 exceeds max_p95_ms 500",
              "exception": Captured, "p95_ms": 900.0, "odd": {1, 2} and Captured("x"),
              "gate": {"passed": False, "reason": "p95_ms 900 exceeds max_p95_ms 500"}}
    record = RG.record_from_result("api_slo", "http_slo", result)
    assert not record.passed and record.reason == "p95_ms 900 exceeds max_p95_ms 500"
    assert record.figures == {"p95_ms": 900.0, "odd": "x"}


def test_a_module_that_failed_without_a_verdict_is_a_failed_gate_with_its_message():
    record = RG.record_from_result("cache", "cache_check", {"failed": True, "msg": "Redis refused: connection refused"})
    assert not record.passed and record.reason == "Redis refused: connection refused"
    assert record.figures == {}


def test_an_inconclusive_gate_is_not_a_pass():
    gate = {"passed": False, "inconclusive": True, "reason": "inconclusive: 1 sample, 3 needed"}
    record = RG.record_from_result("pool", "pool_check", {"gate": gate, "figures": {"samples": 1}})
    assert record.inconclusive and not record.passed
    assert record.figures == {"samples": 1}, "a module's own figures are kept as they are"
    assert RG.verdict("s1", [record])[0] is False


def test_public_path_keeps_only_its_fields():
    result = {"url": "https://web1/health", "requests": 10, "errors": 0, "error_rate": 0.0, "p95_ms": 3.0,
              "p50_ms": 2.0, "rps": 100.0, "gate": {"passed": True, "reason": "ok"}}
    record = RG.record_from_result(RG.PUBLIC_PATH, "http_slo", result, keep=RG.PUBLIC_PATH_FIELDS)
    assert set(record.figures) == {"url", "requests", "errors", "error_rate", "p95_ms"}


def test_the_verdict_names_every_failed_gate_and_its_reason():
    ok = RG.GateRecord("api_slo", "http_slo", True, "all thresholds met")
    bad = RG.GateRecord("pool", "pool_check", False, "max_waiting 3 exceeds 0")
    worse = RG.GateRecord("public_path", "http_slo", False, "error_rate 100% exceeds 0%")
    assert RG.verdict("w2", [ok]) == (True, "all 1 gate(s) of w2 passed")
    passed, message = RG.verdict("w2", [ok, bad, worse])
    assert not passed
    assert message == ("gate(s) failed in stage w2: pool: max_waiting 3 exceeds 0; "
                       "public_path: error_rate 100% exceeds 0%")


def test_a_path_url_is_placed_on_the_batch_host_and_an_absolute_one_is_kept():
    base = "http://10.0.0.7:3000"
    placed = RG.resolve_args({"url": "/health", "requests": 5}, base)
    assert placed == {"url": "http://10.0.0.7:3000/health", "requests": 5}
    assert RG.resolve_args({"url": "https://lb/health"}, base) == {"url": "https://lb/health"}
    assert RG.resolve_args({"redis_host": "cache1"}, base) == {"redis_host": "cache1"}
    assert RG.resolve_args(None, base) == {}


def test_a_gate_whose_load_did_not_run_fails_naming_the_load():
    result = {"gate": {"passed": True, "reason": "all thresholds met"}, "figures": {"max_utilization": 5}}
    record = RG.record_from_result("pool_under_load", "pool_check", result,
                                   load={"error": "load on /api did not run: concurrency=0 must be between 1 and 256"})
    assert not record.passed and "concurrency=0" in record.reason
    assert record.figures == {"max_utilization": 5}
    ok = RG.record_from_result("pool_under_load", "pool_check", result, load={"requests": 40, "errors": 0})
    assert ok.passed and ok.load["requests"] == 40


def test_a_watch_fails_on_a_failed_gate_and_holds_on_one_that_could_not_judge():
    ok = RG.GateRecord("slo", "http_slo", True, "all thresholds met")
    unsure = RG.GateRecord("errors", "prometheus_check", False, "no answer from Prometheus", inconclusive=True)
    bad = RG.GateRecord("pool", "pool_check", False, "utilization 93 exceeds 80")
    assert RG.watch_outcome([ok]) == ("passed", "all 1 gate(s) passed")
    assert RG.watch_outcome([ok, unsure]) == ("inconclusive", "errors: no answer from Prometheus")
    assert RG.watch_outcome([unsure, bad]) == ("failed", "pool: utilization 93 exceeds 80")
    # a batch knows no middle: the inconclusive gate fails it
    assert not RG.verdict("s", [ok, unsure])[0]


def log_result(passed, inconclusive=False, reason="ok", offset=120, path="/var/log/app/app.log"):
    return {"path": path, "offset": offset, "inode": 7, "lines": 3, "changed": False,
            "gate": {"passed": passed, "inconclusive": inconclusive, "reason": reason}}


def test_a_log_gate_is_one_record_over_its_hosts():
    both = RG.host_gate_record("jobs", "log_check", {"app2": log_result(True), "app1": log_result(True, offset=90)})
    assert both.passed and both.reason == "passed on 2 host(s): app1, app2"
    assert both.figures["app1"]["offset"] == 90 and both.figures["app2"]["passed"] is True
    one_bad = RG.host_gate_record("jobs", "log_check", {
        "app1": log_result(False, reason="query_count max 10001 exceeds max_value 3"),
        "app2": log_result(False, inconclusive=True, reason="no line since the offset")})
    assert not one_bad.passed and not one_bad.inconclusive
    assert one_bad.reason == "app1: query_count max 10001 exceeds max_value 3"
    unsure = RG.host_gate_record("jobs", "log_check", {"app1": log_result(True),
                                                       "app2": log_result(False, True, "the log does not exist")})
    assert unsure.inconclusive and unsure.reason == "app2: the log does not exist"
    nobody = RG.host_gate_record("jobs", "log_check", {})
    assert nobody.inconclusive and not nobody.passed and "no app host" in nobody.reason
    # a module that failed without a verdict (bad arguments) fails the gate with its message
    broken = RG.host_gate_record("jobs", "log_check", {"app1": {"failed": True, "msg": "bad regex"}})
    assert not broken.passed and not broken.inconclusive and broken.reason == "app1: bad regex"


def test_the_next_log_reading_starts_where_the_last_one_ended():
    figures = {"jobs": RG.host_gate_record("jobs", "log_check", {"app1": log_result(True, offset=90)}).as_dict(),
               "errors": RG.host_gate_record("errors", "log_check", {
                   "app1": log_result(True, offset=40, path="/var/log/app/error.log")}).as_dict(),
               "api_slo": {"gate_type": "http_slo", "figures": {"path": "/x", "offset": 1}},
               "_snapshot": {"app1": {}}}
    assert RG.positions_of(figures) == {"app1": {"/var/log/app/app.log": {"offset": 90, "inode": 7},
                                                 "/var/log/app/error.log": {"offset": 40, "inode": 7}}}


def test_a_journald_log_reading_is_resumed_from_its_cursor():
    result = {"gate": {"passed": True, "inconclusive": False, "reason": "passed"}, "path": None,
              "journal_unit": "app.service", "source": "journald:app.service", "cursor": "s=1;i=9",
              "offset": None, "inode": None, "lines": 3, "position": {"cursor": "s=1;i=9"}}
    figures = {"unit_errors": RG.host_gate_record("unit_errors", "log_check", {"app1": result}).as_dict()}
    assert RG.positions_of(figures) == {"app1": {"journald:app.service": {"cursor": "s=1;i=9"}}}


CANARY = {"name": "canary", "type": "canary_compare", "args": {"url": "/health"}}
SLO = {"name": "api", "type": "http_slo", "args": {"url": "/health"}}


def test_the_canary_gate_is_measured_while_hosts_are_left_unchanged():
    assert RG.gates_to_measure([SLO, CANARY], ["app1"], ["app2", "app3"], gated_batches=3) == [SLO, CANARY]


def test_after_the_last_of_several_batches_the_canary_gate_is_left_out():
    assert RG.gates_to_measure([SLO, CANARY], ["app1", "app2", "app3"], [], gated_batches=3) == [SLO]
    assert RG.gates_to_measure([CANARY], ["app1", "app2"], [], gated_batches=2) == []


def test_a_single_batch_stage_keeps_the_canary_gate_to_say_it_could_not_judge():
    assert RG.gates_to_measure([SLO, CANARY], ["app1", "app2"], [], gated_batches=1) == [SLO, CANARY]


def test_a_watch_has_no_changed_hosts_and_keeps_its_gates():
    assert RG.gates_to_measure([SLO, CANARY], [], [], gated_batches=3) == [SLO, CANARY]
