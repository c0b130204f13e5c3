"""Flag logic: names and values, plan/snapshot, env-file editing that keeps the file's shape."""
from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.gradual.rollout.plugins.module_utils import flags as F

ENV = """# goalgpt flags (read by PM2)
export USE_OPTIMIZED_DAILY_REWARDS=false

# cache
CACHE_H2H="off now"
MATCH_ENRICHER_CONCURRENCY=999
CACHE_H2H=off
"""


@pytest.mark.parametrize("name", ["USE_X", "_x1", "a"])
def test_env_names_ok(name):
    F.validate_name(name, "env_file")


@pytest.mark.parametrize("name", ["1X", "USE-X", "A B", "", "X=Y", 5])
def test_env_names_rejected_with_the_name(name):
    with pytest.raises(F.FlagError, match="environment variable name"):
        F.validate_name(name, "env_file")


def test_key_names_allow_dots_and_colons():
    F.validate_name("cache.standings:v2", "postgres")
    with pytest.raises(F.FlagError, match="not valid"):
        F.validate_name("has space", "redis")
    with pytest.raises(F.FlagError):
        F.validate_name("x" * 129, "redis")


@pytest.mark.parametrize("value", [1.5, None, [1], {"a": 1}])
def test_values_must_be_scalar(value):
    with pytest.raises(F.FlagError, match="use a string, an integer or a boolean"):
        F.validate_value("X", value, "postgres")


@pytest.mark.parametrize("name", ["FOO\n", "FOO\r\n", "FOO\x00", "\nFOO", "FO\nO"])
def test_env_names_with_a_control_character_rejected(name):
    # "^...$" matched "FOO\n": the flag was written as two broken lines, again on every run
    with pytest.raises(F.FlagError, match="environment variable name"):
        F.validate_name(name, "env_file")


@pytest.mark.parametrize("backend", ["postgres", "redis"])
@pytest.mark.parametrize("name", ["use_x\n", "use_x\r\n", "use\x00x"])
def test_key_names_with_a_control_character_rejected(backend, name):
    with pytest.raises(F.FlagError, match="not valid"):
        F.validate_name(name, backend)


def test_table_name_with_a_final_newline_rejected():
    with pytest.raises(F.FlagError, match="not a plain SQL identifier"):
        F.split_ident("feature_flags\n")


@pytest.mark.parametrize("backend", ["env_file", "redis"])
@pytest.mark.parametrize("char", ["\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\x1b", "\x7f", "\n", "\r", "\x00"])
def test_control_characters_in_values_refused_naming_the_flag(backend, char):
    # \x0b, \x0c, \x1c, \x85, \u2028 passed before and split the env file line on the next read
    with pytest.raises(F.FlagError, match=r"flag USE_X: .*control character U\+%04X" % ord(char)):
        F.validate_value("USE_X", "on" + char, backend)


def test_tab_and_unicode_text_are_values():
    F.validate_value("X", "a\tb", "env_file")
    F.validate_value("X", "café ünïcode", "env_file")


def test_nul_refused_in_postgres_values():
    with pytest.raises(F.FlagError, match="flag X: .*NUL"):
        F.validate_value("X", "a\x00b", "postgres")


def test_newline_refused_outside_postgres():
    with pytest.raises(F.FlagError, match="newline"):
        F.validate_value("X", "a\nb", "env_file")
    F.validate_value("X", "a\nb", "postgres")


def test_empty_flags_refused():
    with pytest.raises(F.FlagError, match="flags is empty"):
        F.validate_flags({}, "redis")


def test_text_forms():
    assert F.as_text(True) == "true" and F.as_text(False) == "false" and F.as_text(50) == "50"
    assert F.stored_form(True, "postgres") is True
    assert F.stored_form(True, "redis") == "true"


def test_plan_snapshot_marks_absent_and_is_type_aware():
    current = {"A": 1, "B": "x"}
    out = F.plan(current, {"A": True, "B": "x", "C": 5, "D": None}, "postgres")
    assert out["previous"] == {"backend": "postgres", "present": {"A": 1, "B": "x"}, "absent": ["C", "D"]}
    assert out["current"] == {"A": True, "B": "x", "C": 5}
    assert [(c["flag"], c["action"]) for c in out["changes"]] == [("A", "update"), ("C", "create")]


def test_plan_delete_and_noop():
    out = F.plan({"A": "1"}, {"A": None}, "redis")
    assert out["changes"] == [{"flag": "A", "action": "delete", "old": "1", "new": None}]
    assert F.plan({"A": "true"}, {"A": True}, "redis")["changes"] == []


def test_snapshot_validation():
    snap = {"backend": "redis", "present": {"A": "1"}, "absent": ["B"]}
    assert F.validate_snapshot(snap, "redis") == {"present": {"A": "1"}, "absent": ["B"]}
    with pytest.raises(F.FlagError, match="taken from backend 'redis'"):
        F.validate_snapshot(snap, "env_file")
    with pytest.raises(F.FlagError, match="both present and absent"):
        F.validate_snapshot({"present": {"A": "1"}, "absent": ["A"]}, "redis")
    with pytest.raises(F.FlagError, match="previous"):
        F.validate_snapshot({"present": ["A"]}, "redis")
    with pytest.raises(F.FlagError, match="empty"):
        F.validate_snapshot({"present": {}, "absent": []}, "redis")


@pytest.mark.parametrize("raw, value", [
    ("plain", "plain"), ('"a b"', "a b"), ("'a $b'", "a $b"), (r'"q\"x\\y\$z"', 'q"x\\y$z'), ("", ""),
])
def test_parse_env_value(raw, value):
    assert F.parse_env_value(raw) == value


@pytest.mark.parametrize("value", ["plain", "a b", 'q"x\\y$z`', "", "http://h:1/p?x=1&y=2", "#nope"])
def test_render_then_parse_round_trips(value):
    assert F.parse_env_value(F.render_env_value(value)) == value


def test_edit_keeps_comments_order_and_export():
    out = F.edit_env_text(ENV, {"USE_OPTIMIZED_DAILY_REWARDS": "true", "NEW_ONE": "5"})
    assert out == ENV.replace("export USE_OPTIMIZED_DAILY_REWARDS=false",
                              "export USE_OPTIMIZED_DAILY_REWARDS=true") + "NEW_ONE=5\n"


def test_edit_updates_the_last_duplicate_and_deletes_all():
    out = F.edit_env_text(ENV, {"CACHE_H2H": "on"})
    assert out.splitlines()[-1] == "CACHE_H2H=on" and 'CACHE_H2H="off now"' in out
    gone = F.edit_env_text(ENV, {"CACHE_H2H": None})
    assert "CACHE_H2H" not in gone and "# cache" in gone


def test_edit_unchanged_value_keeps_the_line_byte_for_byte():
    text = 'X="same"\n'
    assert F.edit_env_text(text, {"X": "same"}) == text


def test_edit_file_without_final_newline():
    assert F.edit_env_text("A=1", {"B": "2"}) == "A=1\nB=2\n"


def test_read_env_file_last_wins(tmp_path):
    path = tmp_path / "flags.env"
    path.write_text(ENV)
    text, values = F.read_env_file(str(path))
    assert text == ENV
    assert values == {"USE_OPTIMIZED_DAILY_REWARDS": "false", "CACHE_H2H": "off",
                      "MATCH_ENRICHER_CONCURRENCY": "999"}
    assert F.read_env_file(str(tmp_path / "missing")) == ("", {})


def test_write_atomic_keeps_mode_and_leaves_no_temp(tmp_path):
    path = tmp_path / "flags.env"
    path.write_text("A=1\n")
    os.chmod(path, 0o604)
    F.write_atomic(str(path), "A=2\n", 0o600)
    assert path.read_text() == "A=2\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o604
    F.write_atomic(str(tmp_path / "new.env"), "B=1\n", 0o640)
    assert stat.S_IMODE((tmp_path / "new.env").stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flags.env", "new.env"]


def test_identifiers():
    assert F.split_ident("feature_flags") == ("feature_flags",)
    assert F.split_ident("ops.flags") == ("ops", "flags")
    for bad in ("flags; drop table x", "a.b.c", "", '"x"'):
        with pytest.raises(F.FlagError, match="identifier"):
            F.split_ident(bad)


def test_run_id_and_actor_from_environment():
    assert F.default_run_id({"AWX_JOB_ID": "42"}) == "42"
    assert F.default_run_id({"TOWER_JOB_ID": "7"}) == "7"
    assert F.default_run_id({}) is None
    assert F.default_actor({"AWX_USER_NAME": "alice", "SUDO_USER": "bob"}) == "alice"
    assert F.default_actor({"SUDO_USER": "bob"}) == "bob"


def test_audit_records_and_file(tmp_path):
    changes = [{"flag": "A", "action": "create", "old": None, "new": "1"}]
    recs = F.audit_records(changes, "env_file", "/etc/x.env", "alice", "42")
    assert recs[0]["actor"] == "alice" and recs[0]["run_id"] == "42" and recs[0]["at"].endswith("+00:00")
    log = tmp_path / "audit.jsonl"
    F.audit_file_write(str(log), recs)
    F.audit_file_write(str(log), recs)
    assert len(log.read_text().splitlines()) == 2
    with pytest.raises(F.FlagError, match="does not exist"):
        F.audit_file_check(str(tmp_path / "nope" / "a.jsonl"))


def test_edit_keeps_the_quoting_style_of_the_line():
    text = "A=\"off\"\nB='x'\nC=1\n"
    out = F.edit_env_text(text, {"A": "on", "B": "y z", "C": "2"})
    assert out == "A=\"on\"\nB='y z'\nC=2\n"
    assert F.edit_env_text(out, {"A": "off", "B": "x", "C": "1"}) == text
