"""log_check's pure logic: the byte ranges to read after a rotation, the bounded line reader, the
matcher's counts and figures, the verdict."""
from __future__ import annotations

import datetime

import pytest

from ansible_collections.gradual.rollout.plugins.module_utils import gates as G
from ansible_collections.gradual.rollout.plugins.module_utils import log_gate as L


def test_no_rotation_reads_from_the_offset_to_the_end():
    assert L.read_plan(100, 7, (7, 250), None) == ([(L.CURRENT, 100, 250)], None)
    assert L.read_plan(100, None, (7, 100), (8, 900)) == ([(L.CURRENT, 100, 100)], None)


def test_rename_and_create_reads_the_rest_of_the_old_file_then_the_new_one():
    assert L.read_plan(100, 7, (9, 40), (7, 300)) == ([(L.ROTATED, 100, 300), (L.CURRENT, 0, 40)], None)
    # the new file may already be longer than the old offset: the inode says it is another file
    assert L.read_plan(100, 7, (9, 4000), (7, 300)) == ([(L.ROTATED, 100, 300), (L.CURRENT, 0, 4000)], None)


def test_copytruncate_reads_the_copy_from_the_offset():
    assert L.read_plan(100, 7, (7, 10), (8, 150)) == ([(L.ROTATED, 100, 150), (L.CURRENT, 0, 10)], None)


@pytest.mark.parametrize("rotated", [None, (5, 300), (8, 50)])
def test_a_missing_or_foreign_rotated_file_reads_the_new_file_and_says_what_was_lost(rotated):
    segments, note = L.read_plan(100, 7, (9, 40), rotated)
    assert segments == [(L.CURRENT, 0, 40)]
    assert "inode changed (7 -> 9)" in note and "after offset 100" in note


def test_a_shorter_file_without_its_copy_is_a_gap():
    segments, note = L.read_plan(100, None, (7, 10), None)
    assert segments == [(L.CURRENT, 0, 10)] and "shorter (10 bytes) than the offset 100" in note


def write(path, text):
    path.write_bytes(text.encode())
    return str(path)


def test_reader_hands_over_complete_lines_and_leaves_a_partial_one(tmp_path):
    log = write(tmp_path / "app.log", "one\ntwo\nthr")
    seen = []
    done = L.read_lines([(L.CURRENT, 0, 11)], {L.CURRENT: log}, 1000, seen.append, chunk=3)
    assert seen == ["one", "two"] and done["offset"] == 8 and not done["truncated"]
    assert done["bytes_read"] == 11 and done["files"] == [{"file": L.CURRENT, "start": 0, "end": 8}]


def test_reader_reads_a_rotated_file_to_its_last_line_then_the_new_one(tmp_path):
    old = write(tmp_path / "app.log.1", "a\nb\nlast")
    new = write(tmp_path / "app.log", "c\n")
    seen = []
    done = L.read_lines([(L.ROTATED, 2, 8), (L.CURRENT, 0, 2)], {L.ROTATED: old, L.CURRENT: new}, 1000, seen.append)
    assert seen == ["b", "last", "c"] and done["stopped_in"] == L.CURRENT and done["offset"] == 2


def test_reader_stops_at_the_cap_on_a_line_boundary(tmp_path):
    log = write(tmp_path / "app.log", "".join("line %d\n" % i for i in range(10)))  # 7 bytes a line
    seen = []
    done = L.read_lines([(L.CURRENT, 0, 70)], {L.CURRENT: log}, 25, seen.append, chunk=4)
    assert done["truncated"] and done["bytes_read"] == 25
    assert seen == ["line 0", "line 1", "line 2"] and done["offset"] == 21
    more = []
    again = L.read_lines([(L.CURRENT, done["offset"], 70)], {L.CURRENT: log}, 1000, more.append)
    assert more[0] == "line 3" and len(seen + more) == 10 and again["offset"] == 70


def test_reader_cut_in_the_rotated_file_resumes_there(tmp_path):
    old = write(tmp_path / "app.log.1", "x\n" * 10)
    new = write(tmp_path / "app.log", "y\n")
    done = L.read_lines([(L.ROTATED, 0, 20), (L.CURRENT, 0, 2)], {L.ROTATED: old, L.CURRENT: new}, 9, lambda _l: None)
    assert done["truncated"] and done["stopped_in"] == L.ROTATED and done["offset"] == 8


def rules(**kw):
    return L.compile_rules(kw.get("patterns", []), kw.get("extract", []))


def test_matcher_counts_and_extracts_with_the_gates_percentile():
    patterns, extractors = rules(patterns=[{"name": "errors", "regex": r"\bERROR\b", "max_count": 0}],
                                 extract=[{"name": "ms", "regex": r"Completed in (\d+)ms", "max_p95": 5000}])
    m = L.Matcher(patterns, extractors)
    for line in ["INFO Completed in %dms" % v for v in range(1, 101)] + ["ERROR boom", "INFO ERRORS is a word"]:
        m(line)
    figures = m.figures()
    assert figures["lines"] == 102 and figures["patterns"]["errors"] == {"count": 1, "first": "ERROR boom"}
    values = [float(v) for v in range(1, 101)]
    assert figures["extractors"]["ms"] == dict(G.summarize(values), count=100)
    assert figures["extractors"]["ms"]["p95"] == G.percentile(values, 95) == 95.0
    gate = L.judge(patterns, extractors, figures, False, None)
    assert gate["passed"] is False and gate["failures"] == ["errors count 1 exceeds max_count 0"]


def test_matcher_skips_lines_before_since_time_and_keeps_their_continuations():
    patterns = rules(patterns=[{"name": "errors", "regex": "ERROR"}])[0]
    since = datetime.datetime(2026, 1, 1, 8, 0, tzinfo=datetime.timezone.utc)
    m = L.Matcher(patterns, [], since, r"^(\S+)")
    for line in ["2026-01-01T07:59:59 ERROR old", "  ERROR old trace", "2026-01-01T08:00:00 ERROR new",
                 "  ERROR new trace"]:
        m(line)
    assert m.figures()["patterns"]["errors"]["count"] == 2 and m.skipped == 2


def test_judge_no_line_is_inconclusive_never_a_pass():
    patterns, extractors = rules(patterns=[{"name": "errors", "regex": "ERROR", "max_count": 0}])
    gate = L.judge(patterns, extractors, L.Matcher(patterns, extractors).figures(), False, None)
    assert gate["passed"] is False and gate["inconclusive"] and "no line since the offset" in gate["reason"]


def test_judge_empty_ok_passes_a_silent_error_log_but_not_a_missing_number():
    patterns = rules(patterns=[{"name": "errors", "regex": "ERROR", "max_count": 0}])[0]
    gate = L.judge(patterns, [], L.Matcher(patterns, []).figures(), False, None, empty_ok=True)
    assert gate["passed"] is True and not gate["inconclusive"], gate
    m = L.Matcher(patterns, [])
    m("2026-12-07T20:15:06Z ERROR app[1] boom")
    gate = L.judge(patterns, [], m.figures(), False, None, empty_ok=True)
    assert gate["passed"] is False and gate["failures"] == ["errors count 1 exceeds max_count 0"]
    extractors = rules(extract=[{"name": "q", "regex": r"Query count: (\d+)", "max_value": 3}])[1]
    gate = L.judge([], extractors, L.Matcher([], extractors).figures(), False, None, empty_ok=True)
    assert gate["inconclusive"] and "fewer than min_count 1" in gate["reason"], gate


def test_judge_the_cap_is_inconclusive_unless_a_threshold_already_broke():
    patterns, extractors = rules(patterns=[{"name": "errors", "regex": "ERROR", "max_count": 0}],
                                 extract=[{"name": "q", "regex": r"Query count: (\d+)", "max_value": 3}])
    m = L.Matcher(patterns, extractors)
    m("Query count: 2")
    gate = L.judge(patterns, extractors, m.figures(), True, None)
    assert gate["inconclusive"] and "max_bytes reached" in gate["reason"]
    m("Query count: 10001")
    gate = L.judge(patterns, extractors, m.figures(), True, None)
    assert not gate["inconclusive"] and gate["failures"] == ["q max 10001 exceeds max_value 3"]


def test_judge_an_extractor_without_numbers_is_inconclusive():
    patterns, extractors = rules(extract=[{"name": "q", "regex": r"Query count: (\d+)", "max_value": 3,
                                           "min_count": 2}])
    m = L.Matcher(patterns, extractors)
    m("Query count: 1")
    m("other")
    gate = L.judge(patterns, extractors, m.figures(), False, None)
    assert gate["inconclusive"] and "q: 1 number(s) extracted, fewer than min_count 2" in gate["reason"]


@pytest.mark.parametrize("patterns, extract, words", [
    ([{"name": "e", "regex": "(unclosed"}], [], "patterns e: regex '(unclosed' does not compile"),
    ([], [{"name": "q", "regex": r"Query count: \d+"}], "extract q: regex 'Query count: \\\\d+' has no group"),
    ([{"name": "e", "regex": "x"}], [{"name": "e", "regex": "(x)"}], "name 'e' is used twice"),
    ([{"name": "e", "regex": "x", "max_count": -1}], [], "patterns e: max_count=-1 must be >= 0"),
])
def test_bad_rules_are_refused_naming_them(patterns, extract, words):
    with pytest.raises(G.GateInputError) as err:
        L.compile_rules(patterns, extract)
    assert words in str(err.value)


# journald: the command, the bounded reader of its JSON output, the position


def entry(message, cursor, usec=1767254400000000, **more):
    import json
    return (json.dumps(dict({"MESSAGE": message, "__CURSOR": cursor, "__REALTIME_TIMESTAMP": str(usec)}, **more))
            + "\n").encode()


def test_the_journal_is_read_after_the_cursor_else_since_the_time_else_from_its_start():
    since = datetime.datetime(2026, 1, 1, 8, 0, tzinfo=datetime.timezone.utc)
    base = ["/bin/journalctl", "--no-pager", "--quiet", "--output=json", "--unit=app.service"]
    assert L.journal_command("/bin/journalctl", "app.service", "s=abc;i=2", since) == base + ["--after-cursor=s=abc;i=2"]
    assert L.journal_command("/bin/journalctl", "app.service", None, since) == base + ["--since=@1767254400"]
    assert L.journal_command("/bin/journalctl", "app.service") == base
    assert L.journal_position_command("/bin/journalctl", "app.service") == base + ["--lines=1"]


def test_the_position_of_a_log_is_kept_under_its_path_or_its_unit():
    assert L.source_key("/var/log/app.log", None) == "/var/log/app.log"
    assert L.source_key(None, "app.service") == "journald:app.service"


def test_journal_entries_are_matched_and_the_last_cursor_is_the_next_position():
    import io
    stream = io.BytesIO(entry("GET / 200", "c1") + entry("ERROR boom", "c2")
                        + entry([69, 82, 82, 79, 82, 32, 0xff], "c3") + entry(None, "c4"))
    rules = L.compile_rules([{"name": "errors", "regex": "ERROR", "max_count": 0}], [])
    matcher = L.Matcher(*rules)
    done = L.read_journal(stream, 1 << 20, matcher)
    assert done["cursor"] == "c4" and done["entries"] == 4 and done["truncated"] is False
    figures = matcher.figures()
    # a binary MESSAGE (a list of bytes) is decoded too
    assert figures["lines"] == 4 and figures["patterns"]["errors"]["count"] == 2


def test_the_journal_read_stops_at_max_bytes_and_resumes_at_the_entry_cut():
    import io
    data = entry("one", "c1") + entry("two", "c2") + entry("three", "c3")
    lines = []
    done = L.read_journal(io.BytesIO(data), len(entry("one", "c1")) + 5, lambda line, when: lines.append(line), chunk=7)
    assert lines == ["one"] and done["cursor"] == "c1" and done["truncated"] is True
    # exactly at the end of the output is not truncated
    done = L.read_journal(io.BytesIO(data), len(data), lambda line, when: None)
    assert done["cursor"] == "c3" and done["truncated"] is False and done["bytes_read"] == len(data)


def test_journal_entries_before_since_time_are_skipped_by_their_own_time():
    import io
    since = datetime.datetime(2026, 1, 1, 0, 0, 30, tzinfo=datetime.timezone.utc)
    t0 = 1767225600000000  # 2026-01-01T00:00:00Z in microseconds
    stream = io.BytesIO(entry("ERROR old", "c1", t0) + entry("ERROR new", "c2", t0 + 60_000_000)
                        + b"-- not json --\n")
    matcher = L.Matcher(*L.compile_rules([{"name": "errors", "regex": "ERROR"}], []), since=since)
    done = L.read_journal(stream, 1 << 20, matcher)
    figures = matcher.figures()
    assert done["cursor"] == "c2" and done["entries"] == 2
    assert figures["lines"] == 1 and figures["lines_before_since_time"] == 1
    assert figures["patterns"]["errors"]["first"] == "ERROR new"


def test_no_journal_entry_is_inconclusive_naming_the_cursor():
    figures = {"lines": 0, "patterns": {}, "extractors": {}, "cursor": "c9"}
    gate = L.judge([], [], figures, False, None)
    assert gate["inconclusive"] and "no entry since the cursor" in gate["reason"]
