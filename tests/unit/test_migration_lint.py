"""Linter rules: each rule fires on the unsafe form (positive) and stays quiet on the safe one."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.gradual.rollout.plugins.module_utils import migration_lint as lint

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "bin" / "pg-migration-lint"

# rule -> (unsafe SQL that must raise it, safe SQL that must not)
CASES = {
    "create-index-non-concurrent": ("CREATE INDEX i ON t (a);", "CREATE INDEX CONCURRENTLY i ON t (a);"),
    "drop-index-non-concurrent": ("DROP INDEX i;", "DROP INDEX CONCURRENTLY IF EXISTS i;"),
    "reindex-non-concurrent": ("REINDEX INDEX i;", "REINDEX INDEX CONCURRENTLY i;"),
    "concurrently-in-transaction": ("BEGIN; CREATE INDEX CONCURRENTLY i ON t (a); COMMIT;",
                                    "BEGIN; SELECT 1; COMMIT; CREATE INDEX CONCURRENTLY i ON t (a);"),
    "foreign-key-not-valid": ("ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (u) REFERENCES u (id);",
                              "ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (u) REFERENCES u (id) NOT VALID;"),
    "check-not-valid": ("ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0);",
                        "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0) NOT VALID;"),
    "set-not-null": ("ALTER TABLE t ALTER COLUMN a SET NOT NULL;",
                     "ALTER TABLE t ADD CONSTRAINT t_a_nn CHECK (a IS NOT NULL) NOT VALID;"
                     "ALTER TABLE t VALIDATE CONSTRAINT t_a_nn;"
                     "ALTER TABLE t ALTER COLUMN a SET NOT NULL;"),
    "add-column-volatile-default": ("ALTER TABLE t ADD COLUMN u uuid DEFAULT gen_random_uuid();",
                                    "ALTER TABLE t ADD COLUMN c timestamptz DEFAULT now();"),
    "add-column-stored-generated": ("ALTER TABLE t ADD COLUMN d int GENERATED ALWAYS AS (a * 2) STORED;",
                                    "ALTER TABLE t ADD COLUMN d int;"),
    "add-column-not-null-no-default": ("ALTER TABLE t ADD COLUMN s text NOT NULL;",
                                       "ALTER TABLE t ADD COLUMN s text NOT NULL DEFAULT 'new';"),
    "alter-column-type": ("ALTER TABLE t ALTER COLUMN a TYPE bigint;",
                          "ALTER TABLE t ALTER COLUMN a SET DEFAULT 0;"),
    "add-unique-without-index": ("ALTER TABLE t ADD CONSTRAINT t_a_key UNIQUE (a);",
                                 "ALTER TABLE t ADD CONSTRAINT t_a_key UNIQUE USING INDEX t_a_key;"),
    "rename-column": ("ALTER TABLE t RENAME COLUMN a TO b;", "ALTER TABLE t ADD COLUMN b int;"),
    "rename-table": ("ALTER TABLE t RENAME TO t2;", "CREATE VIEW t2 AS SELECT * FROM t;"),
    "drop-column": ("ALTER TABLE t DROP COLUMN a;", "ALTER TABLE t ALTER COLUMN a DROP NOT NULL;"),
    "drop-table": ("DROP TABLE t;", "CREATE TABLE n (id int); DROP TABLE n;"),
    "vacuum-full": ("VACUUM FULL t;", "VACUUM (ANALYZE) t;"),
    "cluster": ("CLUSTER t USING i;", "ANALYZE t;"),
    "lock-table": ("LOCK TABLE t IN ACCESS EXCLUSIVE MODE;", "SELECT 1 FROM t LIMIT 1;"),
    "detach-partition-non-concurrent": ("ALTER TABLE p DETACH PARTITION p1;",
                                        "ALTER TABLE p DETACH PARTITION p1 CONCURRENTLY;"),
    "attach-partition-scan": ("ALTER TABLE p ATTACH PARTITION p1 FOR VALUES IN (1);",
                              "CREATE TABLE p2 (LIKE p); ALTER TABLE p ATTACH PARTITION p2 FOR VALUES IN (2);"),
    "rewrite-table": ("ALTER TABLE t SET TABLESPACE fast;", "ALTER TABLE t SET (fillfactor = 90);"),
    "refresh-matview-non-concurrent": ("REFRESH MATERIALIZED VIEW mv;",
                                       "REFRESH MATERIALIZED VIEW CONCURRENTLY mv;"),
    "truncate": ("TRUNCATE t;", "CREATE TABLE scratch (id int); TRUNCATE scratch;"),
    "unbounded-update": ("UPDATE t SET a = 0;", "UPDATE t SET a = 0 WHERE id BETWEEN 1 AND 10000;"),
    "unbounded-delete": ("DELETE FROM t;", "DELETE FROM t WHERE created_at < now() - interval '1 year';"),
    "ignore-without-reason": ("-- gradual:ignore drop-column\nALTER TABLE t DROP COLUMN a;",
                              "-- gradual:ignore drop-column app 41 stopped reading t.a\n"
                              "ALTER TABLE t DROP COLUMN a;"),
}


def rules(sql: str, filename: str = "m.up.sql") -> set:
    return {f.rule for f in lint.active(lint.lint_text(sql, filename))}


def test_every_rule_has_a_case():
    assert set(CASES) == set(lint.RULES)


@pytest.mark.parametrize("rule", sorted(CASES))
def test_rule_fires_on_unsafe_sql(rule):
    assert rule in rules(CASES[rule][0])


@pytest.mark.parametrize("rule", sorted(CASES))
def test_rule_quiet_on_safe_sql(rule):
    assert rule not in rules(CASES[rule][1])


def test_findings_carry_severity_message_and_suggestion():
    finding = lint.lint_text("SELECT 1;\n\nCREATE INDEX i ON t (a);\n", "x.sql")[0]
    assert (finding.file, finding.line, finding.rule, finding.severity) == \
        ("x.sql", 3, "create-index-non-concurrent", "error")
    assert "SHARE" in finding.message and "CONCURRENTLY" in finding.suggestion
    assert finding.statement == "CREATE INDEX i ON t (a)"


def test_table_created_in_same_migration_is_safe():
    sql = ("CREATE TABLE n (id int, a int);\nCREATE INDEX n_a ON n (a);\n"
           "ALTER TABLE n ADD CONSTRAINT c CHECK (a > 0), ALTER COLUMN a SET NOT NULL;\n"
           "ALTER TABLE n ADD COLUMN u uuid DEFAULT gen_random_uuid();\nUPDATE n SET a = 1;\n")
    assert rules(sql) == set()


def test_table_created_elsewhere_is_not_exempt():
    assert "create-index-non-concurrent" in rules("CREATE TABLE n (id int);\nCREATE INDEX x ON other (a);")


def test_ignore_silences_only_its_rule_and_keeps_reason():
    sql = "-- gradual:ignore drop-column app 41 stopped reading it\nALTER TABLE t DROP COLUMN a, ALTER COLUMN b TYPE bigint;"
    findings = lint.lint_text(sql)
    ignored = [f for f in findings if f.ignored]
    assert [(f.rule, f.ignored) for f in ignored] == [("drop-column", "app 41 stopped reading it")]
    assert {f.rule for f in lint.active(findings)} == {"alter-column-type"}


def test_ignore_applies_to_next_statement_only():
    sql = "-- gradual:ignore drop-column reason\nALTER TABLE t DROP COLUMN a;\nALTER TABLE t DROP COLUMN b;"
    assert [f.line for f in lint.active(lint.lint_text(sql))] == [3]


def test_no_lock_timeout_finding_for_safe_file():
    assert lint.lint_text("CREATE INDEX CONCURRENTLY i ON t (a);\nALTER TABLE t ADD COLUMN c text;") == []


def test_down_file_may_drop_what_the_up_created():
    assert rules("DROP TABLE t;\nALTER TABLE u DROP COLUMN c;", "001_x.down.sql") == set()
    assert rules("DROP INDEX i;", "001_x.down.sql") == {"drop-index-non-concurrent"}


def test_varchar_to_text_is_only_a_warning():
    finding = lint.lint_text("ALTER TABLE t ALTER COLUMN a TYPE text;")[0]
    assert (finding.rule, finding.severity) == ("alter-column-type", "warning")


def test_serial_column_and_unknown_function_default_are_flagged():
    assert "add-column-volatile-default" in rules("ALTER TABLE t ADD COLUMN n bigserial;")
    assert "add-column-volatile-default" in rules("ALTER TABLE t ADD COLUMN n int DEFAULT my_func();")
    assert rules("ALTER TABLE t ADD COLUMN n int DEFAULT 0;") == set()


def test_identity_and_column_check_are_flagged():
    # measured on PostgreSQL 15, 3 million rows: ADD COLUMN ... GENERATED AS IDENTITY 4.1 s (rewrite),
    # ADD COLUMN ... CHECK 0.2 s (scan) against 0.04 s for ADD COLUMN ... NOT NULL DEFAULT 1
    assert rules("ALTER TABLE t ADD COLUMN n bigint GENERATED BY DEFAULT AS IDENTITY;") == \
        {"add-column-volatile-default"}
    assert rules("ALTER TABLE t ADD COLUMN k int DEFAULT 1 CHECK (k > 0);") == {"check-not-valid"}
    assert rules("ALTER TABLE t ADD COLUMN k int NOT NULL DEFAULT 1;") == set()


@pytest.mark.parametrize("command,named", [("SET LOGGED", "SET LOGGED"), ("SET UNLOGGED", "SET UNLOGGED"),
                                           ("SET ACCESS METHOD heap", "SET ACCESS METHOD")])
def test_every_table_rewrite_is_flagged(command, named):
    finding, = lint.lint_text("ALTER TABLE t %s;" % command)
    assert finding.rule == "rewrite-table" and "t %s rewrites" % named in finding.message


@pytest.mark.parametrize("sql,message", [
    ("DROP VIEW shop.v, w;", "DROP VIEW shop.v, w breaks"),
    ("DROP MATERIALIZED VIEW mv;", "DROP MATERIALIZED VIEW mv breaks"),
    ("DROP SCHEMA shop CASCADE;", "DROP SCHEMA shop CASCADE drops every table"),
])
def test_drops_of_views_and_schemas_with_their_tables_are_flagged(sql, message):
    finding, = lint.lint_text(sql)
    assert finding.rule == "drop-table" and message in finding.message


def test_drops_that_break_nothing_are_quiet():
    assert rules("DROP SCHEMA empty_one;") == set()  # refused by PostgreSQL unless empty
    assert rules("CREATE VIEW n AS SELECT 1;\nDROP VIEW n;") == set()
    assert rules("CREATE OR REPLACE VIEW v AS SELECT 1;\nDROP VIEW v;") == {"drop-table"}


def test_truncate_names_every_table_and_spares_new_ones():
    finding, = lint.lint_text("CREATE TABLE n (id int);\nTRUNCATE n, orders;")
    assert (finding.rule, finding.line) == ("truncate", 2) and "n, orders" in finding.message


@pytest.mark.parametrize("sql, rule, shown", [
    ("UPDATE t SET a = 0 WHERE true;", "unbounded-update", "WHERE TRUE"),
    ("DELETE FROM t WHERE 1 = 1;", "unbounded-delete", "WHERE 1 = 1"),
    ("UPDATE t SET a = 0 WHERE now() > '2020-01-01';", "unbounded-update", "WHERE now() > '2020-01-01'"),
])
def test_where_that_names_no_column_is_unbounded(sql, rule, shown):
    finding, = lint.lint_text(sql)
    assert finding.rule == rule and shown in finding.message and "names no column" in finding.message


@pytest.mark.parametrize("sql", [
    "DELETE FROM t WHERE CURRENT OF c;",
    "UPDATE t SET a = o.a FROM o WHERE o.id = t.id;",
    "DELETE FROM t WHERE id IN (SELECT id FROM t ORDER BY id LIMIT 1000);",
])
def test_where_that_names_a_column_or_a_cursor_row_is_bounded(sql):
    assert rules(sql) == set()


def test_parse_error_names_file_and_line():
    with pytest.raises(lint.MigrationParseError) as info:
        lint.lint_text("SELECT 1;\n\nSELEC 2;\n", "bad.sql")
    assert (info.value.filename, info.value.line) == ("bad.sql", 3)


def test_split_keeps_lines_and_skips_comments():
    stmts = lint.split_statements("-- header\n/* block */\nSELECT 1;\n\n  SELECT\n 2;")
    assert [(s.line, s.sql) for s in stmts] == [(3, "SELECT 1"), (5, "SELECT\n 2")]


@pytest.mark.parametrize("sql,lock", [
    ("CREATE INDEX i ON t (a)", "SHARE"),
    ("CREATE INDEX CONCURRENTLY i ON t (a)", "SHARE UPDATE EXCLUSIVE"),
    ("ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES u (id) NOT VALID", "SHARE ROW EXCLUSIVE"),
    ("ALTER TABLE t VALIDATE CONSTRAINT fk", "SHARE UPDATE EXCLUSIVE"),
    ("ALTER TABLE t ADD COLUMN c int", "ACCESS EXCLUSIVE"),
    ("UPDATE t SET a = 1 WHERE id = 1", "ROW EXCLUSIVE"),
    ("LOCK TABLE t IN SHARE MODE", "SHARE"),
    ("TRUNCATE t", "ACCESS EXCLUSIVE"),
    ("REFRESH MATERIALIZED VIEW mv", "ACCESS EXCLUSIVE"),
    ("REFRESH MATERIALIZED VIEW CONCURRENTLY mv", "EXCLUSIVE"),
    ("CREATE TABLE n (id int)", "none"),
])
def test_lock_of_statement(sql, lock):
    assert lint.lock_of(lint.split_statements(sql)[0].node) == lock


@pytest.mark.parametrize("sql,relations", [
    ("ALTER TABLE shop.orders ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES customers (id) NOT VALID",
     ("shop.orders", "customers")),
    ("ALTER TABLE orders ADD COLUMN c int, ADD CONSTRAINT c_check CHECK (c > 0)", ("orders",)),
    ('ALTER TABLE "Orders" ALTER COLUMN c SET NOT NULL', ("Orders",)),
    ("LOCK TABLE t IN SHARE MODE", ("t",)),
    ("LOCK TABLE t, u IN SHARE MODE", ("t", "u")),
    ("TRUNCATE t, u", ("t", "u")),
    ("CREATE TABLE n (id int)", ()),
])
def test_locked_relations(sql, relations):
    assert lint.locked_relations(lint.split_statements(sql)[0].node) == relations


def run_cli(*argv):
    return subprocess.run([sys.executable, str(CLI), *argv], capture_output=True, text=True, timeout=60,
                          check=False)


def test_cli_exit_codes_and_json(tmp_path):
    bad = tmp_path / "001_bad.up.sql"
    bad.write_text("SELECT 1;\nCREATE INDEX i ON t (a);\n")
    good = tmp_path / "good"
    good.mkdir()
    (good / "001_ok.up.sql").write_text("CREATE INDEX CONCURRENTLY i ON t (a);\n")
    out = run_cli("--format", "json", str(bad))
    assert out.returncode == 1
    data = json.loads(out.stdout)
    assert data == [{"file": str(bad), "line": 2, "statement": "CREATE INDEX i ON t (a)",
                     "rule": "create-index-non-concurrent", "severity": "error",
                     "message": data[0]["message"], "suggestion": data[0]["suggestion"]}]
    clean = run_cli(str(good))
    assert clean.returncode == 0 and "All migrations are safe" in clean.stdout
    unparsable = tmp_path / "002_x.up.sql"
    unparsable.write_text("SELECT 1;\nALTER TABEL t;\n")
    broken = run_cli(str(unparsable))
    assert broken.returncode == 2 and "002_x.up.sql:2" in broken.stderr
    assert run_cli(str(tmp_path / "missing.sql")).returncode == 2
    assert run_cli().returncode == 2


def test_cli_warnings_only_exit_zero(tmp_path):
    path = tmp_path / "w.sql"
    path.write_text("ALTER TABLE t ALTER COLUMN a TYPE text;\n")
    assert run_cli(str(path)).returncode == 0


def test_example_app_migrations_are_clean():
    out = run_cli(str(ROOT / "examples" / "app" / "migrations"))
    assert out.returncode == 0, out.stdout
