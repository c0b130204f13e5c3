"""gradual.rollout.pg_migration_lint run as Ansible runs it (no database needed)."""
from __future__ import annotations

from pathlib import Path

from ansible_run import ansible_adhoc, run_module

ROOT = Path(__file__).resolve().parents[2]


def test_example_migrations_are_safe():
    res = run_module("pg_migration_lint", {"paths": [str(ROOT / "examples" / "app" / "migrations")]})
    assert res["rc"] == 0, res
    assert res["errors"] == 0 and res["findings"] == []
    assert any(f.endswith("003_p1d_hot_path_indexes.up.sql") for f in res["files"])


def test_unsafe_file_fails_with_rule_and_fix(tmp_path):
    (tmp_path / "004_x.up.sql").write_text(
        "-- gradual:ignore drop-column app 41 no longer reads it\nALTER TABLE t DROP COLUMN a;\n"
        "ALTER TABLE t ADD CONSTRAINT c CHECK (b > 0);\n")
    res = run_module("pg_migration_lint", {"path": [str(tmp_path)]})
    assert res["rc"] != 0 and res["failed"]
    assert "check-not-valid" in res["msg"] and "NOT VALID" in res["msg"]
    assert [f["rule"] for f in res["ignored"]] == ["drop-column"]
    report = run_module("pg_migration_lint", {"paths": [str(tmp_path)], "fail_on": "never"})
    assert report["rc"] == 0 and report["errors"] == 1


def test_parse_error_and_missing_path_name_the_file(tmp_path):
    bad = tmp_path / "005_bad.up.sql"
    bad.write_text("SELECT 1;\nALTER TABEL t ADD COLUMN a int;\n")
    res = run_module("pg_migration_lint", {"paths": [str(bad)]})
    assert res["rc"] != 0 and "005_bad.up.sql line 2" in res["msg"]
    missing = run_module("pg_migration_lint", {"paths": [str(tmp_path / "nope")]})
    assert missing["rc"] != 0 and "nope" in missing["msg"]


def test_through_ansible_in_check_mode():
    host = ansible_adhoc("pg_migration_lint", {"paths": [str(ROOT / "examples" / "app" / "migrations")]},
                         check=True)
    assert host["rc"] == 0 and host.get("changed") is False and host["errors"] == 0
