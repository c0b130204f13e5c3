"""config_files on a real filesystem: one call writes a set of files atomically with their modes,
a second call changes nothing, check mode and diff, backups, and bad input that changes nothing."""
from __future__ import annotations

import os
import pwd
import stat

from ansible_run import ansible_adhoc, run_module


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_writes_the_set_then_changes_nothing(tmp_path):
    a, b = tmp_path / "a.conf", tmp_path / "b.conf"
    b.write_text("old b\n")
    os.chmod(b, 0o644)
    args = {"files": [{"dest": str(a), "content": "a = 1\n"},
                      {"dest": str(b), "content": "b = 2\n", "mode": "0600"}],
            "mode": "0640", "backup": True}
    first = run_module("config_files", args)
    assert first["rc"] == 0 and first["changed"] is True, first
    assert a.read_text() == "a = 1\n" and mode(a) == 0o640
    assert b.read_text() == "b = 2\n" and mode(b) == 0o600
    by_dest = {f["dest"]: f for f in first["files"]}
    assert by_dest[str(a)]["created"] and "backup_file" not in by_dest[str(a)]
    backup = by_dest[str(b)]["backup_file"]
    assert open(backup).read() == "old b\n"
    assert sorted(first["changed_files"]) == sorted([str(a), str(b)])
    # No temporary file is left beside the files.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a.conf", "b.conf", os.path.basename(backup)])

    second = run_module("config_files", args)
    assert second["rc"] == 0 and second["changed"] is False and second["changed_files"] == [], second


def test_mode_alone_is_corrected(tmp_path):
    a = tmp_path / "a.conf"
    a.write_text("same\n")
    os.chmod(a, 0o666)
    res = run_module("config_files", {"files": [{"dest": str(a), "content": "same\n", "mode": "0640"}]})
    assert res["changed"] is True and res["files"][0]["content_changed"] is False, res
    assert mode(a) == 0o640


def test_check_mode_and_diff_touch_nothing(tmp_path):
    a = tmp_path / "a.conf"
    a.write_text("port = 1\nname = before\n")
    res = run_module("config_files", {"files": [{"dest": str(a), "content": "port = 1\nname = after\n"},
                                                {"dest": str(tmp_path / "new.conf"), "content": "new file\n"}]},
                     check=True, diff=True)
    assert res["rc"] == 0 and res["changed"] is True, res
    assert a.read_text() == "port = 1\nname = before\n" and not (tmp_path / "new.conf").exists()
    assert "-name = before\n+name = after\n" in res["diff"][0]["prepared"], res["diff"]
    assert res["diff"][1]["prepared"].startswith("--- /dev/null")


def test_new_file_owner_and_mode_set_before_it_appears(tmp_path):
    user = pwd.getpwuid(os.getuid()).pw_name
    secret = tmp_path / "secret.conf"
    res = run_module("config_files", {"files": [{"dest": str(secret), "content": "key\n", "owner": user}]})
    assert res["rc"] == 0, res
    # No mode given: a new file is private, not world-readable.
    assert mode(secret) == 0o600


def test_bad_entries_change_nothing(tmp_path):
    a = tmp_path / "a.conf"
    a.write_text("keep\n")
    cases = [
        # (content longer than a word: the module masks a no_log value wherever it appears)
        ({"dest": "relative.conf", "content": "some content\n"}, "must be an absolute path, got 'relative.conf'"),
        ({"dest": str(tmp_path / "nope" / "b.conf"), "content": "some content\n"}, "does not exist (create it first"),
        ({"dest": str(a), "content": "some content\n"}, "is given twice"),
        ({"dest": str(tmp_path / "c.conf"), "content": "some content\n", "owner": "gr-no-such-user"},
         "owner 'gr-no-such-user'"),
        ({"dest": str(tmp_path / "c.conf"), "content": "some content\n", "mode": "o-z"},
         "mode 'o-z' of '%s': bad symbolic permission for mode: o-z; expected octal (0640) or symbolic"
         % (tmp_path / "c.conf")),
        ({"dest": str(tmp_path / "c.conf"), "content": "some content\n", "mode": "0999"}, "mode '0999' of"),
    ]
    for bad, message in cases:
        res = run_module("config_files", {"files": [{"dest": str(a), "content": "changed content\n"}, bad]})
        assert res["rc"] != 0 and message in res["msg"], (bad, res)
        assert a.read_text() == "keep\n", bad
    assert not (tmp_path / "c.conf").exists()


def test_create_parents(tmp_path):
    dest = tmp_path / "d" / "e" / "f.conf"
    res = run_module("config_files", {"files": [{"dest": str(dest), "content": "x\n", "mode": "0644"}],
                                      "create_parents": True})
    assert res["rc"] == 0 and dest.read_text() == "x\n", res
    assert mode(dest.parent) == 0o755


def test_content_is_never_logged(tmp_path):
    """Through ansible itself: the content is no_log in the invocation."""
    dest = tmp_path / "users.conf"
    host = ansible_adhoc("config_files", {"files": [{"dest": str(dest), "content": "user app on >s3cr3t-value\n",
                                                     "mode": "0600"}]})
    assert host["rc"] == 0, host["_stdout"][-2000:]
    assert "s3cr3t-value" not in host["_stdout"]
    assert dest.read_text() == "user app on >s3cr3t-value\n"


def test_unset_attributes_are_kept_from_the_replaced_file(tmp_path):
    a = tmp_path / "a.conf"
    a.write_text("old content\n")
    os.chmod(a, 0o604)
    os.chown(a, os.getuid(), 0)
    res = run_module("config_files", {"files": [{"dest": str(a), "content": "new content\n"}]})
    assert res["rc"] == 0 and res["changed"] is True, res
    assert a.read_text() == "new content\n" and mode(a) == 0o604
    assert os.stat(a).st_gid == 0


def test_backups_kept_removes_only_the_oldest_backups_of_the_replaced_file(tmp_path):
    a, b = tmp_path / "a.conf", tmp_path / "b.conf"
    a.write_text("version 0\n")
    b.write_text("b stays\n")
    # look-alikes that are not backups of a.conf: never touched
    strangers = [tmp_path / "a.conf.bak", tmp_path / "a.conf.1.notadate~", tmp_path / "b.conf.1.2020-01-01@00:00:00~"]
    for path in strangers:
        path.write_text("not mine\n")
    made = []
    for version in range(1, 6):
        res = run_module("config_files", {"files": [{"dest": str(a), "content": "version %d\n" % version},
                                                    {"dest": str(b), "content": "b stays\n"}],
                                          "backup": True, "backups_kept": 2})
        assert res["rc"] == 0, res
        made.append(res["files"][0]["backup_file"])
        assert "backup_file" not in res["files"][1], res["files"][1]
        expected_removed = made[:-2][-1:]  # from the third run on, the one that fell out of the window
        assert res["files"][0]["backups_removed"] == expected_removed, (version, res["files"][0], made)
    left = sorted(str(p) for p in tmp_path.glob("a.conf.*~") if p not in strangers)
    assert left == sorted(made[-2:]), (left, made)
    assert [open(p).read() for p in made[-2:]] == ["version 3\n", "version 4\n"]
    assert all(path.read_text() == "not mine\n" for path in strangers)
    assert a.read_text() == "version 5\n"


def test_negative_backups_kept_is_named_and_changes_nothing(tmp_path):
    a = tmp_path / "a.conf"
    a.write_text("keep\n")
    res = run_module("config_files", {"files": [{"dest": str(a), "content": "changed content\n"}],
                                      "backup": True, "backups_kept": -1})
    assert res["rc"] != 0 and "backups_kept=-1: expected 0" in res["msg"], res
    assert a.read_text() == "keep\n" and sorted(p.name for p in tmp_path.iterdir()) == ["a.conf"]
