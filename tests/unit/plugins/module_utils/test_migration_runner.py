"""The lock_timeout ladder (pure arithmetic; the database side is in tests/integration)."""
from __future__ import annotations

import pytest

from ansible_collections.gradual.rollout.plugins.module_utils.migration import options as mo
from ansible_collections.gradual.rollout.plugins.module_utils.migration import runner as mr


def test_ladder_rises_by_factor_and_is_capped():
    ladder = mr.Ladder(start_ms=100, max_ms=3000, factor=2.0, attempts=8)
    assert [ladder.timeout_ms(a) for a in range(1, 9)] == [100, 200, 400, 800, 1600, 3000, 3000, 3000]


def test_ladder_with_factor_one_stays_flat():
    ladder = mr.Ladder(start_ms=50, max_ms=100, factor=1.0)
    assert {ladder.timeout_ms(a) for a in range(1, 20)} == {50}


def test_sleep_is_jittered_within_bounds():
    ladder = mr.Ladder(sleep_ms=1000, jitter=0.5)
    sleeps = [ladder.sleep_s() for _attempt in range(200)]
    assert all(0.5 <= s <= 1.5 for s in sleeps)
    assert len({round(s, 3) for s in sleeps}) > 1


def test_no_sleep_when_asked():
    assert mr.Ladder(sleep_ms=0).sleep_s() == 0.0


def test_retryable_states_are_lock_timeout_and_deadlock():
    assert mr.RETRYABLE == {"55P03", "40P01"}


def test_conflicts_follow_the_manual_table():
    """Which held locks make a strong step wait: ACCESS SHARE (a plain SELECT) only stops ACCESS
    EXCLUSIVE; ROW EXCLUSIVE (a write) stops SHARE and stronger; SHARE does not conflict with itself."""
    assert "AccessShareLock" in mr.CONFLICTS["ACCESS EXCLUSIVE"]
    assert "AccessShareLock" not in mr.CONFLICTS["EXCLUSIVE"]
    assert "RowShareLock" in mr.CONFLICTS["EXCLUSIVE"]
    assert "RowShareLock" not in mr.CONFLICTS["SHARE ROW EXCLUSIVE"]
    assert "RowExclusiveLock" in mr.CONFLICTS["SHARE"]
    assert "ShareLock" not in mr.CONFLICTS["SHARE"]
    assert "ShareRowExclusiveLock" in mr.CONFLICTS["SHARE ROW EXCLUSIVE"]
    assert set(mr.CONFLICTS) == {"SHARE", "SHARE ROW EXCLUSIVE", "EXCLUSIVE", "ACCESS EXCLUSIVE"}


def test_blockers_are_described_with_what_is_known():
    holders = [mr.Holder(42, "3/7", "AccessShareLock", "orders", "report", "idle in transaction", 3100),
               mr.Holder(43, "4/1", "RowExclusiveLock", "orders", "", "", None),
               mr.Holder(44, "5/2", "ShareUpdateExclusiveLock", "orders", "", "active", 12000,
                         "autovacuum worker", "routine")]
    assert mr._describe(holders) == ("pid 42 (application report, idle in transaction, transaction open "
                                     "3.1 s) holding AccessShareLock on orders; pid 43 holding "
                                     "RowExclusiveLock on orders; pid 44 (autovacuum worker, active, "
                                     "transaction open 12.0 s) holding ShareUpdateExclusiveLock on orders")
    assert mr._describe(holders * 2).endswith(" and 3 more")


def test_deadlock_probe_is_half_the_attempt_within_bounds_and_below_the_server():
    # (attempt's lock_timeout ms, server's deadlock_timeout ms) -> the attempt's deadlock_timeout
    cases = {(50, 1000): 25, (10, 1000): 20, (100, 1000): 50, (3000, 1000): 100,
             (100, 50): None, (3000, 100): None, (100, 51): 50}
    for (timeout_ms, server_ms), expected in cases.items():
        assert mr.deadlock_probe_ms(timeout_ms, server_ms) == expected, (timeout_ms, server_ms)


def test_ladder_problems_accept_the_defaults_and_any_subset():
    assert mo.ladder_problems({}) == []
    assert mo.ladder_problems({"lock_timeout_ms": 100, "lock_timeout_max_ms": 3000, "lock_timeout_factor": 2.0,
                               "lock_retries": 10, "retry_sleep_ms": 0, "concurrent_lock_timeout_ms": 0,
                               "blocker_wait_s": 0}) == []
    assert mo.ladder_problems({"lock_timeout_ms": "250"}) == []  # templated values arrive as strings


@pytest.mark.parametrize("options, expected", [
    ({"lock_retries": 0}, ["lock_retries=0: expected a positive integer"]),
    ({"blocker_wait_s": -1}, ["blocker_wait_s=-1: expected an integer >= 0"]),
    ({"lock_timeout_factor": 0.5}, ["lock_timeout_factor=0.5: expected a number >= 1 (each attempt's"]),
    ({"lock_timeout_ms": "soon"}, ["lock_timeout_ms='soon': expected an integer"]),
    ({"cancel": 1, "retry_sleep_ms": True}, ["retry_sleep_ms=True: expected an integer"]),
    # the ceiling is checked against the module's default start, and the other way round
    ({"lock_timeout_max_ms": 50}, ["lock_timeout_max_ms=50 is below lock_timeout_ms=100"]),
    ({"lock_timeout_ms": 5000}, ["lock_timeout_max_ms=3000 is below lock_timeout_ms=5000"]),
])
def test_ladder_problems_name_the_value_and_what_is_expected(options, expected):
    problems = mo.ladder_problems(options)
    assert len(problems) == len(expected), problems
    for problem, start in zip(problems, expected):
        assert problem.startswith(start), problems
