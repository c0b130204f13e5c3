"""Gate arithmetic: durations, sizes, percentiles, sampling schedule, hit rate, PgBouncer sums."""
from __future__ import annotations

import pytest

from ansible_collections.gradual.rollout.plugins.module_utils import gates as G


@pytest.mark.parametrize("value, seconds", [
    (30, 30.0), (2.5, 2.5), ("500ms", 0.5), ("90s", 90.0), ("5m", 300.0), ("2h", 7200.0),
    ("1d", 86400.0), (" 15 ", 15.0), ("0", 0.0),
])
def test_parse_duration(value, seconds):
    assert G.parse_duration(value, "duration") == seconds


@pytest.mark.parametrize("value", ["2 hours", "-1", "abc", True, -5, "5x"])
def test_parse_duration_rejects_and_names_the_option(value):
    with pytest.raises(G.GateInputError, match="duration"):
        G.parse_duration(value, "duration")


@pytest.mark.parametrize("value, size", [
    (1024, 1024), ("500mb", 500 * 1024 * 1024), ("500m", 500_000_000), ("1kb", 1024),
    ("1k", 1000), ("2GB", 2 * 1024 ** 3), ("10", 10),
])
def test_parse_size_follows_redis_conf(value, size):
    assert G.parse_size(value, "max_used_memory") == size


@pytest.mark.parametrize("value", ["500 megabytes", "-1", False, "mb"])
def test_parse_size_rejects(value):
    with pytest.raises(G.GateInputError, match="max_used_memory"):
        G.parse_size(value, "max_used_memory")


def test_percentile_nearest_rank():
    data = list(range(1, 101))  # 1..100
    assert G.percentile(data, 50) == 50
    assert G.percentile(data, 95) == 95
    assert G.percentile(data, 99) == 99
    assert G.percentile(data, 100) == 100
    assert G.percentile([7], 99) == 7
    assert G.percentile([], 50) is None
    assert G.percentile([3, 1, 2], 50) == 2


def test_summarize_skips_missing_values():
    assert G.summarize([10, None, 30, 20]) == {"max": 30, "mean": 20.0, "p95": 30}
    assert G.summarize([None]) == {"max": None, "mean": None, "p95": None}


@pytest.mark.parametrize("duration, interval, offsets", [
    (0, 5, [0.0]),
    (10, 5, [0.0, 5.0, 10.0]),
    (10, 0, [0.0, 10.0]),
    (10, 20, [0.0, 10.0]),
    (10, 3, [0.0, 3.0, 6.0, 9.0, 10.0]),
])
def test_sample_times(duration, interval, offsets):
    assert G.sample_times(duration, interval) == offsets


class FakeClock:
    """A clock the loop advances by sleeping: the schedule is checked without real time."""

    def __init__(self, cost=0.0):
        self.now = 100.0
        self.cost = cost

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_run_samples_keeps_schedule_and_records_errors():
    fake = FakeClock()
    calls = iter([1, RuntimeError("boom"), 3])

    def take():
        fake.now += 0.25  # each sample costs 250 ms: the schedule must not drift
        value = next(calls)
        if isinstance(value, Exception):
            raise value
        return value

    out = G.run_samples(take, 2, 1, clock=fake.clock, sleep=fake.sleep)
    assert [s["t"] for s in out] == [0.0, 1.0, 2.0]
    assert out[0]["value"] == 1 and out[1]["error"] == "boom" and out[2]["value"] == 3


def test_run_samples_fail_first_propagates_only_the_first():
    fake = FakeClock()

    def down():
        raise RuntimeError("down")

    with pytest.raises(RuntimeError):
        G.run_samples(down, 1, 1, clock=fake.clock, sleep=fake.sleep, fail_first=True)


def test_hit_rate_from_two_samples():
    first = {"keyspace_hits": 100, "keyspace_misses": 50}
    last = {"keyspace_hits": 107, "keyspace_misses": 53}
    assert G.hit_rate(first, last) == (70.0, 10)
    assert G.hit_rate(first, first) == (None, 0)


def test_hit_rate_counter_reset_is_refused():
    with pytest.raises(G.GateInputError, match="backwards"):
        G.hit_rate({"keyspace_hits": 10, "keyspace_misses": 0}, {"keyspace_hits": 2, "keyspace_misses": 0})


def test_pgbouncer_figures_sum_and_filter():
    pools = [
        {"database": "app", "user": "u1", "cl_active": 4, "cl_waiting": 2, "sv_active": 4, "sv_idle": 1, "maxwait": 1, "maxwait_us": 500000},
        {"database": "app", "user": "u2", "cl_active": 1, "cl_waiting": 0, "sv_active": 1, "sv_idle": 0, "maxwait": 0, "maxwait_us": 0},
        {"database": "other", "user": "u1", "cl_active": 1, "cl_waiting": 0, "sv_active": 0, "sv_idle": 2, "maxwait": 0, "maxwait_us": 0},
        {"database": "pgbouncer", "user": "pgbouncer", "cl_active": 1, "cl_waiting": 0, "sv_active": 0, "sv_idle": 0, "maxwait": 0, "maxwait_us": 0},
    ]
    sizes = {"app": 5, "other": 10, "pgbouncer": 2}
    fig = G.pgbouncer_figures(pools, sizes, database="app")
    assert (fig["active"], fig["waiting"], fig["total"], fig["utilization"]) == (5, 2, 10, 50.0)
    assert fig["maxwait_s"] == 1.5
    every = G.pgbouncer_figures(pools, sizes)
    assert every["pools"] == 3 and every["total"] == 20 and every["utilization"] == 25.0
    assert G.pgbouncer_figures(pools, sizes, database="app", user="u2")["utilization"] == 20.0
    assert G.pgbouncer_figures([], sizes)["utilization"] is None


def test_checks_name_figure_and_threshold():
    assert G.check_max("p95_ms", 240.5, "max_p95_ms", 200) == "p95_ms 240.5 exceeds max_p95_ms 200"
    assert G.check_max("p95_ms", 200, "max_p95_ms", 200) is None
    assert G.check_max("p95_ms", None, "max_p95_ms", 200) is None
    assert G.check_max("p95_ms", 500, "max_p95_ms", None) is None
    assert G.check_min("hit_rate", 62.5, "min_hit_rate", 80.0, "%") == "hit_rate 62.5% is below min_hit_rate 80%"


def test_gate_dict():
    assert G.gate([None, None])["passed"] is True
    failed = G.gate(["a", None, "b"])
    assert failed == {"passed": False, "inconclusive": False, "reason": "a; b", "failures": ["a", "b"]}
    unsure = G.gate([], "1 sample")
    assert unsure["passed"] is False and unsure["inconclusive"] is True
    assert unsure["reason"] == "inconclusive: 1 sample"


@pytest.mark.parametrize("failures, inconclusive, fail_on_inconclusive, fails", [
    ([], None, True, False),          # passed
    ([], None, False, False),
    (["x"], None, True, True),        # failed: always fails the task
    (["x"], None, False, True),
    ([], "1 sample", True, True),     # inconclusive: fails only with fail_on_inconclusive
    ([], "1 sample", False, False),
    (["x"], "1 sample", False, False),  # inconclusive wins over failures (gate() says so)
])
def test_fails_task(failures, inconclusive, fail_on_inconclusive, fails):
    result = {"gate": G.gate(failures, inconclusive)}
    result["inconclusive"] = result["gate"]["inconclusive"]
    assert G.fails_task(result, fail_on_inconclusive) is fails


def test_verdict_argument_spec_is_a_fresh_dict():
    spec = G.verdict_argument_spec()
    assert spec == {"fail_on_inconclusive": {"type": "bool", "default": True}}
    spec["fail_on_inconclusive"]["default"] = False
    assert G.verdict_argument_spec()["fail_on_inconclusive"]["default"] is True


def test_json_equal_is_type_aware():
    assert G.json_equal(True, True)
    assert not G.json_equal(True, 1)
    assert not G.json_equal("1", 1)
    assert G.json_equal({"a": 1, "b": [1]}, {"b": [1], "a": 1})
