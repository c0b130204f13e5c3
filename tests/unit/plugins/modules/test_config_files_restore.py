"""config_files restore: the backups of an earlier call put back atomically, with the owner, group
and mode they carry; check mode, diff, entries without a backup, and bad input that changes
nothing. The real module on real files in a temporary folder (tests/harness/ansible_run.py)."""
from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "harness"))
from ansible_run import run_module  # noqa: E402


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def write(files: list[dict], **options) -> dict:
    """One config_files write with backups; its result (asserted to succeed)."""
    res = run_module("config_files", {"files": files, "backup": True, **options})
    assert res["rc"] == 0, res
    return res


def restore(entries: list[dict], check: bool = False, diff: bool = False, **options) -> dict:
    return run_module("config_files", {"restore": entries, **options}, check=check, diff=diff)


@pytest.fixture
def written(tmp_path):
    """a.conf replaced (its backup made, mode 0604 before, 0640 after) and new.conf created."""
    a, new = tmp_path / "a.conf", tmp_path / "new.conf"
    a.write_text("port = 1\n")
    os.chmod(a, 0o604)
    res = write([{"dest": str(a), "content": "port = 2\n"}, {"dest": str(new), "content": "fresh\n"}], mode="0640")
    assert a.read_text() == "port = 2\n" and mode(a) == 0o640
    return a, new, res


def test_restores_content_and_the_backups_mode_and_keeps_the_backup(written, tmp_path):
    a, new, res = written
    backup = res["files"][0]["backup_file"]
    # the earlier result's entries as they are (changed, created, content_changed included)
    out = restore(res["files"])
    assert out["rc"] == 0 and out["changed"] is True, out
    assert a.read_text() == "port = 1\n" and mode(a) == 0o604
    assert out["changed_files"] == [str(a)]
    assert out["files"][0] == {"dest": str(a), "backup_file": backup, "restored": True,
                               "changed": True, "content_changed": True}
    assert open(backup).read() == "port = 1\n", "the backup is kept"
    # no temporary file left beside the files
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a.conf", "new.conf", os.path.basename(backup)])
    again = restore(res["files"])
    assert again["rc"] == 0 and again["changed"] is False and again["changed_files"] == [], again
    assert again["files"][0]["restored"] is True


@pytest.mark.skipif(os.getuid() != 0, reason="changing a file's owner needs root")
def test_restores_the_backups_owner_and_group(tmp_path):
    a = tmp_path / "a.conf"
    a.write_text("old\n")
    os.chown(a, 1, 1)
    res = write([{"dest": str(a), "content": "new\n"}], owner="root", group="root")
    assert (os.stat(a).st_uid, os.stat(a).st_gid) == (0, 0)
    out = restore(res["files"])
    assert out["rc"] == 0, out
    assert a.read_text() == "old\n" and (os.stat(a).st_uid, os.stat(a).st_gid) == (1, 1)


def test_mode_given_wins_over_the_backups(written):
    a, _new, res = written
    entry = dict(res["files"][0])
    out = restore([entry], mode="0600")
    assert out["rc"] == 0 and a.read_text() == "port = 1\n" and mode(a) == 0o600, out
    entry["mode"] = "0644"  # an entry's own mode wins over the module's
    out = restore([entry], mode="0600")
    assert out["rc"] == 0 and out["changed"] is True and out["files"][0]["content_changed"] is False, out
    assert mode(a) == 0o644


def test_a_symbolic_mode_counts_from_the_backups_mode(written, tmp_path):
    a, _new, res = written
    entry = dict(res["files"][0], mode="o-r")  # backup 0604, file now 0640
    out = restore([entry])
    assert out["rc"] == 0 and out["files"][0]["content_changed"] is True, out
    assert a.read_text() == "port = 1\n" and mode(a) == 0o600
    # the same when only the attributes differ: from the backup's 0604, not the file's 0666
    os.chmod(a, 0o666)
    out = restore([entry])
    assert out["rc"] == 0 and out["changed"] is True and out["files"][0]["content_changed"] is False, out
    assert mode(a) == 0o600
    os.chmod(a, 0o666)
    bad = restore([dict(entry, mode="o-z")])
    assert bad["rc"] != 0 and "o-z" in bad["msg"] and str(a) in bad["msg"], bad
    assert mode(a) == 0o666
    # checked with the backups, before any file is touched: the first entry is not put back either
    a.write_text("port = 3\n")
    other = tmp_path / "b.conf"
    other.write_text("b\n")
    b_res = write([{"dest": str(other), "content": "b2\n"}])
    bad = restore([entry, dict(b_res["files"][0], mode="o-z")])
    assert bad["rc"] != 0 and "o-z" in bad["msg"] and str(other) in bad["msg"], bad
    assert "nothing was restored" in bad["msg"]
    assert a.read_text() == "port = 3\n" and mode(a) == 0o666 and other.read_text() == "b2\n"


def test_check_mode_and_diff_change_nothing(written):
    a, new, res = written
    out = restore(res["files"], check=True, diff=True)
    assert out["rc"] == 0 and out["changed"] is True, out
    assert out["files"][0]["restored"] is True and out["files"][0]["changed"] is True
    assert a.read_text() == "port = 2\n" and mode(a) == 0o640
    assert new.read_text() == "fresh\n"
    assert "-port = 2\n+port = 1\n" in out["diff"][0]["prepared"], out["diff"]
    assert len(out["diff"]) == 1


def test_a_mode_alone_is_reported_in_check_mode(written):
    a, _new, res = written
    a.write_text("port = 1\n")  # content back already, mode still 0640
    out = restore(res["files"], check=True)
    assert out["rc"] == 0 and out["changed"] is True and out["files"][0]["content_changed"] is False, out
    assert mode(a) == 0o640


def test_entries_without_a_backup_are_left_alone_and_named(written):
    a, new, res = written
    out = restore(res["files"])
    assert out["rc"] == 0, out
    assert new.exists() and new.read_text() == "fresh\n"
    assert out["no_backup"] == [str(new)]
    assert out["files"][1] == {"dest": str(new), "restored": False, "changed": False, "content_changed": False}
    nothing = restore([{"dest": str(new)}])
    assert nothing["rc"] == 0 and nothing["changed"] is False and nothing["no_backup"] == [str(new)], nothing
    empty = restore([])
    assert empty["rc"] == 0 and empty["changed"] is False and empty["files"] == [], empty


def test_a_missing_dest_is_put_back(written):
    a, _new, res = written
    a.unlink()
    out = restore(res["files"])
    assert out["rc"] == 0 and out["changed"] is True, out
    assert a.read_text() == "port = 1\n" and mode(a) == 0o604


def test_bad_entries_are_named_and_nothing_changes(written, tmp_path):
    a, _new, res = written
    good = res["files"][0]
    gone = str(tmp_path / "b.conf.123.2026-12-01@10:00:00~")
    (tmp_path / "b.conf").write_text("b now\n")
    cases = [
        ({"dest": str(tmp_path / "b.conf"), "backup_file": gone}, f"restore[].backup_file '{gone}' of "
                                                                  f"'{tmp_path / 'b.conf'}' does not exist"),
        ({"dest": str(tmp_path / "b.conf"), "backup_file": "b.conf.bak"}, "'b.conf.bak'"),
        ({"dest": str(tmp_path / "b.conf"), "backup_file": str(tmp_path)}, "is not a regular file"),
        ({"dest": str(a), "backup_file": str(a)}, "is given twice"),
        ({"dest": str(tmp_path / "b.conf"), "backup_file": str(tmp_path / "b.conf")}, "is the file itself"),
        ({"dest": "relative.conf", "backup_file": good["backup_file"]}, "restore[].dest must be an absolute path"),
        ({"dest": str(tmp_path / "nope" / "b.conf"), "backup_file": good["backup_file"]}, "does not exist"),
    ]
    for bad, message in cases:
        out = restore([good, bad])
        assert out["rc"] != 0 and message in out["msg"], (bad, out)
        assert a.read_text() == "port = 2\n" and mode(a) == 0o640, bad
        assert (tmp_path / "b.conf").read_text() == "b now\n", bad


def test_restore_takes_neither_files_nor_the_write_options(written):
    a, _new, res = written
    both = run_module("config_files", {"restore": res["files"], "files": [{"dest": str(a), "content": "x\n"}]})
    assert both["rc"] != 0 and "mutually exclusive" in both["msg"] and "files" in both["msg"], both
    neither = run_module("config_files", {"mode": "0600"})
    assert neither["rc"] != 0 and "one of the following is required" in neither["msg"], neither
    for option, value in (("backup", True), ("backups_kept", 2), ("create_parents", True)):
        out = restore(res["files"], **{option: value})
        assert out["rc"] != 0 and f"{option}={value!r} does not apply to restore" in out["msg"], out
    assert a.read_text() == "port = 2\n"
