"""The lock_timeout ladder (pure arithmetic; the database side is in tests/integration)."""
from __future__ import annotations

from ansible_collections.gradual.rollout.plugins.module_utils import migration_runner as mr


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
