"""log_check's journald source run as a module: against this machine's real journalctl (which has
no journal here, so it answers no entry; what it proves is that journalctl accepts the command
line: --since=@SECONDS, --after-cursor, --lines=1), and against a stand-in journalctl on PATH that
prints a unit's entries as `journalctl --output=json` does, for the cursor round trip and the byte
cap (the stand-in is stopped when the cap is reached). The test with the real journald is
molecule/app/tests/test_journal_log_check.py."""
from __future__ import annotations

import shutil
import stat
import sys
import textwrap

import pytest

from ansible_run import run_module

ERRORS = dict(patterns=[{"name": "errors", "regex": r"\bERROR\b", "max_count": 0}])

# the entries of a unit, c1..cN; an ERROR at the entries listed in ERRORS_AT
FAKE = textwrap.dedent("""\
    #!%s
    import json, os, sys
    args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
    assert "--output" in args and args["--output"] == "json" and "--no-pager" in sys.argv, sys.argv
    count = int(os.environ.get("GR_FAKE_ENTRIES", "5"))
    errors = [int(x) for x in os.environ.get("GR_FAKE_ERRORS_AT", "").split(",") if x]
    with open(os.environ["GR_FAKE_ARGV"], "a") as log:
        log.write(" ".join(sys.argv[1:]) + "\\n")
    if "--lines" in args:
        first = count
    elif "--after-cursor" in args:
        first = int(args["--after-cursor"][1:]) + 1
    else:
        first = 1
    for n in range(first, count + 1):
        msg = "ERROR job %%d failed" %% n if n in errors else "job %%d done in 12ms" %% n
        print(json.dumps({"MESSAGE": msg, "__CURSOR": "c%%d" %% n, "_SYSTEMD_UNIT": args["--unit"],
                          "__REALTIME_TIMESTAMP": str(1767225600000000 + n * 1000000)}), flush=True)
    """) % sys.executable


@pytest.fixture
def fake_journal(tmp_path, monkeypatch):
    tool = tmp_path / "bin" / "journalctl"
    tool.parent.mkdir()
    tool.write_text(FAKE)
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", "%s:%s" % (tool.parent, __import__("os").environ["PATH"]))
    monkeypatch.setenv("GR_FAKE_ARGV", str(tmp_path / "argv"))
    return tmp_path / "argv"


def test_the_cursor_round_trips_and_only_new_entries_are_read(fake_journal, monkeypatch):
    start = run_module("log_check", dict(journal_unit="app.service", position_only=True))
    assert start["rc"] == 0 and start["cursor"] == "c5" and start["source"] == "journald:app.service"
    monkeypatch.setenv("GR_FAKE_ENTRIES", "8")
    res = run_module("log_check", dict(ERRORS, journal_unit="app.service", since_cursor=start["cursor"]))
    assert res["rc"] == 0 and res["gate"]["passed"] is True, res.get("msg")
    assert res["entries"] == 3 and res["lines"] == 3 and res["cursor"] == "c8" and res["position"] == {"cursor": "c8"}
    monkeypatch.setenv("GR_FAKE_ENTRIES", "10")
    monkeypatch.setenv("GR_FAKE_ERRORS_AT", "2,10")
    bad = run_module("log_check", dict(ERRORS, journal_unit="app.service", since_cursor=res["cursor"]))
    # the ERROR of entry 2 was before the cursor: only entry 10's counts
    assert bad.get("failed") is True and bad["inconclusive"] is False and bad["cursor"] == "c10"
    assert bad["patterns"]["errors"] == {"count": 1, "first": "ERROR job 10 failed"}
    assert "errors count 1 exceeds max_count 0" in bad["msg"]
    calls = fake_journal.read_text().splitlines()
    assert calls[1].endswith("--unit=app.service --after-cursor=c5") and calls[2].endswith("--after-cursor=c8")


def test_the_byte_cap_stops_journalctl_and_the_next_read_resumes_at_the_entry_cut(fake_journal, monkeypatch):
    monkeypatch.setenv("GR_FAKE_ENTRIES", "100000")
    res = run_module("log_check", dict(ERRORS, journal_unit="app.service", max_bytes=4096), timeout=60)
    assert res.get("failed") is True and res["inconclusive"] is True and res["truncated"] is True
    assert 0 < res["entries"] < 100 and res["bytes_read"] == 4096
    assert res["cursor"] == "c%d" % res["entries"] and "max_bytes reached" in res["msg"]
    more = run_module("log_check", dict(ERRORS, journal_unit="app.service", max_bytes=4096,
                                        since_cursor=res["cursor"]), timeout=60)
    assert more["cursor"] == "c%d" % (2 * res["entries"])


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
