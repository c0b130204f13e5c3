"""canary_compare's statistics on known samples: p-values, verdicts, tolerance, errors, inconclusive
cases; and the plan's checks of the gate's arguments."""
from __future__ import annotations

import random

import pytest
from scipy import stats

from ansible_collections.gradual.rollout.plugins.module_utils.canary_compare import check_settings, compare
from ansible_collections.gradual.rollout.plugins.module_utils.rollout_gates import GATE_MODULES, compare_args
from ansible_collections.gradual.rollout.plugins.module_utils.rollout_plan import plan_problems


def sample(median, n=100, seed=1, spread=0.1):
    rng = random.Random(seed)
    return [median * (1 + rng.uniform(-spread, spread)) for _index in range(n)]


def test_known_samples_give_scipys_p_and_the_common_language_effect_size():
    canary, baseline = [11.0, 12.0, 13.0, 14.0, 15.0], [1.0, 2.0, 3.0, 4.0, 5.0]
    out = compare(canary, baseline, alpha=0.05, max_median_increase_ms=5, min_samples=5)
    expected = stats.mannwhitneyu(canary, baseline, alternative="greater").pvalue
    assert out["figures"]["p"] == pytest.approx(round(expected, 6))
    assert out["figures"]["p"] == pytest.approx(1 / 252, abs=1e-6)  # exact: one ordering in C(10, 5)
    assert out["figures"]["effect_size"] == 1.0 and out["figures"]["u"] == 25.0
    assert out["figures"]["median_diff_ms"] == 10.0
    assert not out["passed"] and not out["inconclusive"]
    assert "canary slower" in out["reason"]


def test_a_canary_three_times_slower_fails():
    out = compare(sample(30, seed=1), sample(10, seed=2))
    assert not out["passed"] and not out["inconclusive"]
    assert out["figures"]["median_ratio"] == pytest.approx(3, rel=0.1)
    assert out["figures"]["p"] < 1e-10


def test_the_same_distribution_passes():
    out = compare(sample(10, seed=3), sample(10, seed=4))
    assert out["passed"], out["reason"]
    assert out["figures"]["canary_n"] == out["figures"]["baseline_n"] == 100


def test_a_significant_difference_within_the_tolerance_passes():
    # 10 ms against 12 ms: certain, but 2 ms is within max_median_increase_ms=5
    out = compare(sample(12, seed=5, spread=0.01), sample(10, seed=6, spread=0.01), max_median_increase_ms=5)
    assert out["figures"]["p"] < 1e-10
    assert out["passed"]
    strict = compare(sample(12, seed=5, spread=0.01), sample(10, seed=6, spread=0.01), max_median_increase_ms=1)
    assert not strict["passed"]
    # a ratio tolerance as well: x1.2 is within x1.5
    assert compare(sample(12, seed=5, spread=0.01), sample(10, seed=6, spread=0.01), max_median_increase_ms=1,
                   max_median_ratio=1.5)["passed"]


def test_a_faster_canary_passes():
    assert compare(sample(5, seed=7), sample(20, seed=8))["passed"]


def test_more_canary_errors_fail_by_fishers_exact_test():
    canary, baseline = sample(10, seed=9), sample(10, seed=10)
    out = compare(canary, baseline, canary_errors=10, baseline_errors=0)
    expected = stats.fisher_exact([[10, 90], [0, 100]], alternative="greater").pvalue
    assert out["figures"]["error_p"] == pytest.approx(round(expected, 6))
    assert not out["passed"] and not out["inconclusive"] and "canary errors 10/100" in out["reason"]
    # one error against none proves nothing
    assert compare(canary, baseline, canary_errors=1, baseline_errors=0)["passed"]


@pytest.mark.parametrize("canary, baseline, errors, why", [
    (sample(10), [], (0, 0), "no baseline"),
    ([], sample(10), (0, 0), "the canary sent no request"),
    (sample(10, n=10), sample(10, n=10), (0, 0), "too few answers"),
    ([5.0] * 30, [5.0] * 30, (0, 30), "the baseline answered nothing"),
])
def test_what_cannot_be_compared_is_inconclusive_never_a_pass(canary, baseline, errors, why):
    out = compare(canary, baseline, *errors)
    assert not out["passed"] and out["inconclusive"], out
    assert why in out["reason"]


@pytest.mark.parametrize("kwargs, expected", [
    (dict(alpha=0), "alpha=0"), (dict(alpha=1.5), "alpha=1.5"),
    (dict(max_median_increase_ms=-1), "max_median_increase_ms=-1"),
    (dict(max_median_ratio=0.5), "max_median_ratio=0.5"), (dict(min_samples=1), "min_samples=1"),
])
def test_bad_settings_are_named(kwargs, expected):
    settings = dict(alpha=0.05, max_median_increase_ms=5)
    settings.update(kwargs)
    with pytest.raises(ValueError, match=expected):
        check_settings(**settings)


def test_the_gate_is_registered_and_its_url_goes_on_each_host():
    assert GATE_MODULES["canary_compare"] == "gradual.rollout.canary_compare"
    args = compare_args({"url": "/health", "requests": 50}, ["http://a:3000"], ["http://b:3000", "http://c:3000"])
    assert args == {"requests": 50, "canary_urls": ["http://a:3000/health"],
                    "baseline_urls": ["http://b:3000/health", "http://c:3000/health"]}


def plan(gate_args, watch=False):
    gate = {"name": "canary", "type": "canary_compare", "args": gate_args}
    stage = {"name": "one", "bake_hours": 1, "serial": [1, "100%"], "actions": {"flags": {"USE_X": "true"}},
             "gates": [gate]}
    if watch:
        stage["watch"] = {"gates": [gate]}
    return {"name": "p", "baseline": {"USE_X": "false"}, "stages": [stage]}


def test_the_plan_accepts_a_canary_gate_in_a_stage():
    assert plan_problems(plan({"url": "/health", "alpha": 0.01, "max_median_increase_ms": 5,
                               "max_median_ratio": 1.5})) == []


@pytest.mark.parametrize("args, watch, expected", [
    ({"url": "/health", "alpha": 1}, False, "alpha 1 must be a number between 0 and 1"),
    ({"url": "/health", "alpha": "x"}, False, "alpha 'x' must be"),
    ({"url": "/health", "max_median_increase_ms": -2}, False, "max_median_increase_ms=-2 is negative"),
    ({"url": "/health", "max_median_ratio": 0.9}, False, "max_median_ratio 0.9 must be a number >= 1"),
    ({"url": "/health", "canary_urls": ["http://x"]}, False, "canary_urls and baseline_urls are set by the rollout"),
    ({"url": "/health"}, True, "stage 'one' watch gate 'canary': a canary_compare gate needs hosts not changed"),
])
def test_the_plan_names_a_bad_canary_gate(args, watch, expected):
    problems = plan_problems(plan(args, watch))
    assert any(expected in p for p in problems), problems
