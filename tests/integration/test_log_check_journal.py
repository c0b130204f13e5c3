"""log_check's journald source run as a module against this machine's real journalctl, which has
no journal here, so it answers no entry: what it proves is that journalctl accepts the command
lines (--since=@SECONDS, --after-cursor, --lines=1) and that an unreadable cursor is inconclusive
with journalctl's own words. The cursor round trip on a real journal is
molecule/app/tests/test_journal_log_check.py (both app containers run systemd and journald)."""
from __future__ import annotations

import shutil

import pytest

from ansible_run import run_module

ERRORS = dict(patterns=[{"name": "errors", "regex": r"\bERROR\b", "max_count": 0}])


@pytest.mark.skipif(shutil.which("journalctl") is None, reason="no journalctl on this machine")
def test_the_real_journalctl_accepts_the_command_lines():
    since = run_module("log_check", dict(ERRORS, journal_unit="gr-test-nothing.service",
                                         since_time="2026-01-01T08:00:00Z", fail_on_inconclusive=False))
    assert since["rc"] == 0 and since["inconclusive"] is True, since
    assert since["entries"] == 0 and since["cursor"] is None and "no entry since the cursor" in since["gate"]["reason"]
    start = run_module("log_check", dict(journal_unit="gr-test-nothing.service", position_only=True))
    assert start["rc"] == 0 and start["gate"] is None and start["cursor"] is None, start
    # a cursor journalctl cannot seek to: inconclusive, with journalctl's own words
    bad = run_module("log_check", dict(ERRORS, journal_unit="gr-test-nothing.service", since_cursor="not-a-cursor"))
    assert bad.get("failed") is True and bad["inconclusive"] is True
    assert "the journal of gr-test-nothing.service cannot be read" in bad["msg"] and "cursor" in bad["msg"]
