"""log_check run as a module on real files: an offset round trip, rename-and-create and
copytruncate rotations, the byte cap, check mode, a missing log and a bad regex."""
from __future__ import annotations

import os
import shutil

from ansible_run import run_module

RULES = dict(patterns=[{"name": "errors", "regex": r"\bERROR\b", "max_count": 0}],
             extract=[{"name": "query_count", "regex": r"Query count: (\d+)", "max_value": 3},
                      {"name": "completed_ms", "regex": r"Completed in (\d+)ms", "max_p95": 5000}])


def job(queries=2, ms=120):
    return "2026-01-01T08:00:00 INFO daily rewards Query count: %d\n" \
           "2026-01-01T08:00:00 INFO daily rewards Completed in %dms\n" % (queries, ms)


def append(path, text):
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)


def check(path, since, check_mode=False, **extra):
    args = dict(RULES, path=str(path), since_offset=since["offset"], since_inode=since["inode"])
    args.update(extra)
    return run_module("log_check", args, check=check_mode)


def test_offset_round_trip_in_check_mode_reads_only_the_new_lines(tmp_path):
    log = tmp_path / "jobs.log"
    log.write_text(job(queries=9) + "2026-01-01T07:00:00 ERROR before the watch\n")
    start = run_module("log_check", dict(path=str(log), since_offset=0, position_only=True))
    assert start["rc"] == 0 and start["offset"] == log.stat().st_size and start["inode"] == log.stat().st_ino
    append(log, job(2, 100) + job(3, 4000) + "partial line without its newl")
    first = check(log, start, check_mode=True)
    assert first["rc"] == 0 and first["gate"]["passed"] is True, first.get("msg")
    assert first["lines"] == 4 and first["extractors"]["query_count"] == {"count": 2, "max": 3.0, "mean": 2.5, "p95": 3.0}
    assert first["patterns"]["errors"]["count"] == 0
    assert first["offset"] == log.stat().st_size - len("partial line without its newl")
    append(log, "ine\n" + job(10001, 100))
    second = check(log, first)
    assert second.get("failed") is True and second["lines"] == 3
    assert "query_count max 10001 exceeds max_value 3" in second["msg"]
    third = check(log, second, fail_on_inconclusive=False)
    assert third["rc"] == 0 and third["inconclusive"] is True and "no line since the offset" in third["gate"]["reason"]


def test_rename_and_create_rotation_reads_the_tail_of_the_old_file_then_the_new(tmp_path):
    log = tmp_path / "jobs.log"
    log.write_text(job())
    start = run_module("log_check", dict(path=str(log), since_offset=0, position_only=True))
    append(log, "2026-01-01T08:01:00 ERROR lost connection\n")
    os.rename(log, str(log) + ".1")
    log.write_text(job(1, 50))
    res = check(log, start)
    assert res.get("failed") is True and res["rotated"] is True
    assert res["patterns"]["errors"]["count"] == 1 and "errors count 1 exceeds max_count 0" in res["msg"]
    assert [f["file"] for f in res["files_read"]] == ["rotated", "current"]
    assert res["inode"] == log.stat().st_ino and res["offset"] == log.stat().st_size


def test_copytruncate_rotation_and_a_lost_rotated_file(tmp_path):
    log = tmp_path / "jobs.log"
    log.write_text(job() * 3)
    start = {"offset": log.stat().st_size, "inode": log.stat().st_ino}
    append(log, job(4, 10))
    shutil.copy(log, str(log) + ".1")
    log.write_text("")  # truncated in place: same inode, shorter than the offset
    append(log, job(1, 10))
    res = check(log, start)
    assert res.get("failed") is True and res["extractors"]["query_count"]["count"] == 2
    assert res["extractors"]["query_count"]["max"] == 4.0 and res["inode"] == start["inode"]
    os.unlink(str(log) + ".1")
    os.rename(log, str(tmp_path / "elsewhere"))
    log.write_text(job())
    gap = check(log, res, fail_on_inconclusive=False)
    assert gap["rc"] == 0 and gap["inconclusive"] is True and gap["lines"] == 2
    assert "lines written after offset %d and before the rotation were not read" % res["offset"] in gap["gate"]["reason"]


def test_the_byte_cap_is_inconclusive_and_the_next_call_goes_on(tmp_path):
    log = tmp_path / "jobs.log"
    log.write_text(job() * 2000)  # about 190 kB
    res = check(log, {"offset": 0, "inode": None}, max_bytes=100000, fail_on_inconclusive=False)
    assert res["rc"] == 0 and res["truncated"] is True and res["inconclusive"] is True
    assert res["bytes_read"] == 100000 and "max_bytes reached" in res["gate"]["reason"]
    rest = check(log, res, max_bytes="1mb")
    assert rest["rc"] == 0 and rest["truncated"] is False and rest["offset"] == log.stat().st_size
    assert res["lines"] + rest["lines"] == 4000


def test_a_missing_log_is_inconclusive_and_a_bad_regex_is_refused(tmp_path):
    missing = check(tmp_path / "nope.log", {"offset": 0, "inode": None})
    assert missing.get("failed") is True and missing["inconclusive"] is True
    assert "does not exist" in missing["msg"]
    bad = run_module("log_check", dict(path=str(tmp_path / "x.log"), since_offset=0,
                                       patterns=[{"name": "errors", "regex": "ERROR("}]))
    assert bad.get("failed") is True and "patterns errors: regex 'ERROR(' does not compile" in bad["msg"]
