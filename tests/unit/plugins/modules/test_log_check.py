"""log_check's argument checks for its two sources, a log file and a journald unit: each refusal
names the option, before anything is read."""
from __future__ import annotations

import pytest

from ansible_collections.gradual.rollout.plugins.module_utils import gates as G
from ansible_collections.gradual.rollout.plugins.modules import log_check

ERRORS = [{"name": "errors", "regex": "ERROR", "max_count": 0}]


def params(**given):
    out = {name: opts.get("default") for name, opts in log_check.argument_spec().items()}
    out.update(patterns=ERRORS)
    out.update(given)
    return out


def test_a_journal_unit_needs_no_offset_and_since_time_needs_no_time_regex():
    opts = log_check.check_options(params(journal_unit="app.service", since_time="2026-01-01T08:00:00Z"))
    assert opts["since"].isoformat() == "2026-01-01T08:00:00+00:00"
    assert log_check.check_options(params(journal_unit="app.service", since_cursor="s=1"))["max_bytes"] > 0


@pytest.mark.parametrize("given, words", [
    (dict(), "give one of path (a log file) and journal_unit"),
    (dict(path="/var/log/app.log", journal_unit="app.service", since_offset=0), "give one of path"),
    (dict(path="/var/log/app.log"), "since_offset is required with path"),
    (dict(path="/var/log/app.log", since_offset=0, since_cursor="s=1"), "since_cursor is for journal_unit"),
    (dict(journal_unit="app.service", since_offset=0), "since_offset=0 is for a log file"),
    (dict(journal_unit="app.service", since_inode=7), "since_inode=7 is for a log file"),
    (dict(journal_unit="app.service", rotated_path="/x.1"), "rotated_path='/x.1' is for a log file"),
    (dict(path="/var/log/app.log", since_offset=0, since_time="2026-01-01T08:00:00Z"), "needs time_regex"),
])
def test_bad_source_options_are_refused_naming_them(given, words):
    with pytest.raises(G.GateInputError) as err:
        log_check.check_options(params(**given))
    assert words in str(err.value)


def test_the_result_names_the_source_its_position_is_kept_under():
    p = params(journal_unit="app.service", since_cursor="s=1")
    out = log_check.empty(p, log_check.check_options(p))
    assert out["source"] == "journald:app.service" and out["cursor"] == "s=1" and out["offset"] is None
    p = params(path="/var/log/app.log", since_offset=10)
    out = log_check.empty(p, log_check.check_options(p))
    assert out["source"] == "/var/log/app.log" and out["offset"] == 10 and "cursor" not in out
    assert log_check.position(out) == {"offset": 10, "inode": None}
    assert log_check.position(dict(out, journal_unit="app.service", cursor="s=2")) == {"cursor": "s=2"}
