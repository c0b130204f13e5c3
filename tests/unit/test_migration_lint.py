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
                          "ALTER TABLE t ADD COLUMN a varchar(20);\nALTER TABLE t ALTER COLUMN a TYPE varchar(64);"),
    "add-unique-without-index": ("ALTER TABLE t ADD CONSTRAINT t_a_key UNIQUE (a);",
                                 "ALTER TABLE t ADD CONSTRAINT t_a_key UNIQUE USING INDEX t_a_key;"),
    "rename-column": ("ALTER TABLE t RENAME COLUMN a TO b;", "ALTER TABLE t ADD COLUMN b int;"),
    "rename-table": ("ALTER TABLE t RENAME TO t2;", "CREATE VIEW t2 AS SELECT * FROM t;"),
    "drop-column": ("ALTER TABLE t DROP COLUMN a;", "ALTER TABLE t ALTER COLUMN a DROP NOT NULL;"),
    "drop-table": ("DROP TABLE t;", "CREATE TABLE n (id int); DROP TABLE n;"),
    "vacuum-full": ("VACUUM FULL t;", "VACUUM (FULL false, ANALYZE) t;"),
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
    # (the unsafe cases of a WHERE that every row matches are in test_backfill_of_a_new_column_*)
    "unbounded-delete": ("DELETE FROM t;", "DELETE FROM t WHERE created_at < now() - interval '1 year';"),
    "drop-database": ("DROP DATABASE app;", "CREATE DATABASE app_archive;"),
    "alter-domain-constraint": ("ALTER DOMAIN positive ADD CONSTRAINT gt0 CHECK (VALUE > 0);",
                                "ALTER DOMAIN positive ADD CONSTRAINT gt0 CHECK (VALUE > 0) NOT VALID;"),
    "rename-enum-value": ("ALTER TYPE status RENAME VALUE 'new' TO 'open';", "ALTER TYPE status ADD VALUE 'open';"),
    "rename-schema": ("ALTER SCHEMA shop RENAME TO store;", "CREATE SCHEMA store;"),
    "set-schema": ("ALTER TABLE orders SET SCHEMA archive;",
                   "CREATE TABLE scratch (id int); ALTER TABLE scratch SET SCHEMA archive;"),
    "rename-view": ("ALTER VIEW v RENAME TO v2;", "CREATE VIEW v2 AS SELECT * FROM v;"),
    "access-exclusive-held": ("ALTER TABLE orders ADD COLUMN c int;\nSELECT count(*) FROM orders;",
                              "SELECT count(*) FROM orders;\nALTER TABLE orders ADD COLUMN c int;"),
    "primary-key-nullable": ("ALTER TABLE orders ADD CONSTRAINT orders_pkey PRIMARY KEY USING INDEX orders_id;",
                             "ALTER TABLE orders ADD COLUMN k bigint NOT NULL DEFAULT 0;\n"
                             "CREATE UNIQUE INDEX CONCURRENTLY orders_k ON orders (k);\n"
                             "ALTER TABLE orders ADD CONSTRAINT orders_pkey PRIMARY KEY USING INDEX orders_k;"),
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


# --------------------------------------------------------------------------- issue 25
@pytest.mark.parametrize("sql", ["VACUUM (FULL false) t;", "VACUUM (FULL off) t;", "VACUUM (FULL 0, VERBOSE) t;"])
def test_vacuum_full_switched_off_is_plain_vacuum(sql):
    stmt, = lint.split_statements(sql)
    assert rules(sql) == set() and lint.lock_of(stmt.node) == "SHARE UPDATE EXCLUSIVE"


@pytest.mark.parametrize("sql", ["VACUUM (FULL) t;", "VACUUM (FULL true) t;", "VACUUM (FULL on) t;",
                                 "VACUUM (FULL 1) t;"])
def test_vacuum_full_switched_on_is_flagged(sql):
    assert rules(sql) == {"vacuum-full"}


def test_reindex_concurrently_false_is_not_concurrent():
    assert rules("REINDEX (CONCURRENTLY false) INDEX i;") == {"reindex-non-concurrent"}


@pytest.mark.parametrize("old, new, timezone, verdict", [
    ("varchar(20)", "varchar(50)", None, "none"),
    ("varchar(20)", "text", None, "none"),
    ("varchar(20)", "varchar", None, "none"),
    ("text", "varchar", None, "none"),
    ("varchar(50)", "varchar(20)", None, "rewrite"),
    ("text", "varchar(20)", None, "rewrite"),
    ("numeric(10,2)", "numeric(12,2)", None, "none"),
    ("numeric(10)", "numeric(12)", None, "none"),
    ("numeric(10,2)", "numeric", None, "none"),
    ("numeric(10,2)", "numeric(12,3)", None, "rewrite"),
    ("numeric(10,2)", "numeric(8,2)", None, "rewrite"),
    ("numeric", "numeric(12,2)", None, "rewrite"),
    ("cidr", "inet", None, "none"),
    ("inet", "cidr", None, "rewrite"),
    ("timestamp", "timestamptz", None, "timezone"),
    ("timestamp", "timestamp with time zone", "UTC", "none"),
    ("timestamptz", "timestamp", "Etc/UTC", "none"),
    ("timestamp", "timestamptz", "Europe/Paris", "rewrite"),
    ("int", "bigint", "UTC", "rewrite"),
    ("int[]", "int", None, "rewrite"),
    ("character varying(20)", "character varying(20)", None, "none"),
])
def test_type_change_verdicts(old, new, timezone, verdict):
    assert lint.type_change(lint.parse_type(old), lint.parse_type(new), timezone) == verdict


@pytest.mark.parametrize("column, new", [
    ("a varchar(20)", "varchar(64)"), ("a varchar(20)", "text"), ("a numeric(10,2)", "numeric(14,2)"),
    ("a cidr", "inet"), ("a timestamp", "timestamptz"),
])
def test_type_change_known_from_the_file_without_rewrite_is_quiet(column, new):
    sql = "SET TimeZone = 'UTC';\nALTER TABLE t ADD COLUMN %s;\nALTER TABLE t ALTER COLUMN a TYPE %s;" % (column, new)
    assert rules(sql) == set()


def test_type_change_known_from_the_file_that_rewrites_names_the_old_type():
    finding, = lint.lint_text("ALTER TABLE t ADD COLUMN a varchar(50);\nALTER TABLE t ALTER COLUMN a TYPE varchar(10);")
    assert finding.rule == "alter-column-type" and finding.severity == "error"
    assert "t.a TYPE varchar(10) rewrites t" in finding.message and "from varchar(50)" in finding.message


def test_type_change_without_the_old_type_says_what_it_needs():
    finding, = lint.lint_text("ALTER TABLE t ALTER COLUMN a TYPE varchar(64);")
    assert finding.severity == "error" and "current type of a is unknown" in finding.message
    assert "--dsn" in finding.message


def test_timestamp_to_timestamptz_needs_the_session_timezone():
    sql = "ALTER TABLE t ADD COLUMN ts timestamp;\n%sALTER TABLE t ALTER COLUMN ts TYPE timestamptz;"
    finding, = lint.lint_text(sql % "")
    assert "TimeZone is unknown" in finding.message and "SET TimeZone = 'UTC'" in finding.suggestion
    assert rules(sql % "SET TIME ZONE 'Europe/Paris';\n") == {"alter-column-type"}
    assert rules(sql % "SET TimeZone = 'UTC';\n") == set()


def test_type_change_with_using_is_a_rewrite_even_when_known():
    sql = "ALTER TABLE t ADD COLUMN a varchar(5);\nALTER TABLE t ALTER COLUMN a TYPE text USING lower(a);"
    finding, = lint.lint_text(sql)
    assert "USING lower(a) rewrites t" in finding.message


@pytest.mark.parametrize("where", ["c IS NULL", "c IS NULL AND true", "c IS NULL OR id < 10", "t.c IS NULL"])
def test_backfill_of_a_new_column_that_matches_every_row(where):
    sql = "ALTER TABLE t ADD COLUMN c int;\nUPDATE t SET c = 0 WHERE %s;" % where
    findings = [f for f in lint.lint_text(sql) if f.rule == "unbounded-update"]
    assert len(findings) == 1 and "which every row matches (c added in this file" in findings[0].message


@pytest.mark.parametrize("sql", [
    "ALTER TABLE t ADD COLUMN c int DEFAULT 0;\nUPDATE t SET c = 1 WHERE c IS NULL;",  # default fills the rows
    "ALTER TABLE t ADD COLUMN c int;\nUPDATE t SET c = 0 WHERE c IS NULL AND id BETWEEN 1 AND 10000;",
    "ALTER TABLE t ADD COLUMN c int;\nUPDATE u SET c = 0 WHERE c IS NULL;",  # another table's c
    "UPDATE t SET c = 0 WHERE c IS NULL;",  # an old column: some rows may hold a value
])
def test_backfill_bounded_by_a_column_is_not_unbounded(sql):
    assert "unbounded-update" not in rules(sql)


def test_access_exclusive_is_held_through_later_statements():
    sql = ("ALTER TABLE orders ADD COLUMN c int;\nINSERT INTO orders_copy SELECT * FROM orders WHERE id < 10;\n"
           "UPDATE accounts SET n = 1 WHERE id = 1;\nINSERT INTO log VALUES (1);\nSELECT 1;")
    held = [f for f in lint.lint_text(sql) if f.rule == "access-exclusive-held"]
    assert [f.line for f in held] == [2, 3]
    assert "rows of orders while the ACCESS EXCLUSIVE lock on orders taken at line 1" in held[0].message
    assert "rows of accounts" in held[1].message and "next migration file" in held[0].suggestion


@pytest.mark.parametrize("sql", [
    # a statement that runs alone ends the transaction
    "ALTER TABLE orders ADD COLUMN c int;\nCREATE INDEX CONCURRENTLY i ON orders (c);\nSELECT count(*) FROM orders;",
    "ALTER TABLE orders ADD CONSTRAINT c CHECK (a > 0) NOT VALID;\nALTER TABLE orders VALIDATE CONSTRAINT c;\n"
    "SELECT count(*) FROM orders;",
    # a new table's lock and rows hurt nobody
    "CREATE TABLE n (id int);\nALTER TABLE n ADD COLUMN c int;\nUPDATE n SET c = 1;",
    "ALTER TABLE orders ADD COLUMN c int;\nCREATE TABLE n (id int);\nINSERT INTO n VALUES (1);\nSELECT * FROM n;",
    # weaker locks are not ACCESS EXCLUSIVE
    "ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES u (id) NOT VALID;\nSELECT count(*) FROM orders;",
])
def test_access_exclusive_held_quiet_when_the_lock_is_gone_or_harmless(sql):
    assert "access-exclusive-held" not in rules(sql)


def test_begin_commit_do_not_end_pg_migrate_transaction():
    sql = "BEGIN;\nALTER TABLE orders ADD COLUMN c int;\nCOMMIT;\nBEGIN;\nSELECT count(*) FROM orders;\nCOMMIT;"
    assert "access-exclusive-held" in rules(sql)


def test_primary_key_using_index_columns_known_not_null_in_the_file():
    base = "CREATE UNIQUE INDEX CONCURRENTLY orders_k ON orders (k);\n"
    pk = "ALTER TABLE orders ADD CONSTRAINT orders_pkey PRIMARY KEY USING INDEX orders_k;"
    assert "primary-key-nullable" in rules("ALTER TABLE orders ADD COLUMN k bigint;\n" + base + pk)
    validated = ("ALTER TABLE orders ADD CONSTRAINT k_nn CHECK (k IS NOT NULL) NOT VALID;\n"
                 "ALTER TABLE orders VALIDATE CONSTRAINT k_nn;\n")
    assert rules(validated + base + pk) == set()
    assert rules("ALTER TABLE orders ALTER COLUMN k SET NOT NULL;\n" + base + pk) == {"set-not-null"}
    finding, = lint.lint_text(pk)
    assert "--dsn" in finding.message and "NOT NULL first" in finding.suggestion


def test_concurrently_in_a_transaction_block_is_a_warning():
    finding, = lint.lint_text("BEGIN;\nCREATE INDEX CONCURRENTLY i ON t (a);\nCOMMIT;")
    assert (finding.rule, finding.severity) == ("concurrently-in-transaction", "warning")
    assert "pg_migrate drops the BEGIN/COMMIT" in finding.message


def test_down_file_may_rename_back():
    sql = "ALTER VIEW v2 RENAME TO v;\nALTER SCHEMA store RENAME TO shop;\nALTER TABLE a.t SET SCHEMA public;"
    assert rules(sql, "002_x.down.sql") == set()


def test_cli_sarif_for_code_scanning(tmp_path):
    path = tmp_path / "004_x.up.sql"
    path.write_text("SELECT 1;\nCREATE INDEX i ON t (a);\n-- gradual:ignore drop-column app 4 no longer reads it\n"
                    "ALTER TABLE t DROP COLUMN b;\nALTER TABLE t ALTER COLUMN c TYPE text;\n")
    out = run_cli("--format", "sarif", str(path))
    assert out.returncode == 1
    log = json.loads(out.stdout)
    assert log["version"] == "2.1.0" and log["$schema"].endswith("sarif-2.1.0.json")
    run, = log["runs"]
    rules_ = run["tool"]["driver"]["rules"]
    assert {r["id"] for r in rules_} == set(lint.RULES)
    assert all(r["defaultConfiguration"]["level"] in ("error", "warning") for r in rules_)
    results = [(r["ruleId"], r["level"], r["locations"][0]["physicalLocation"]["region"]["startLine"],
                "suppressions" in r) for r in run["results"]]
    assert results == [("create-index-non-concurrent", "error", 2, False), ("drop-column", "error", 4, True),
                       ("alter-column-type", "warning", 5, False)]
    first = run["results"][0]
    assert rules_[first["ruleIndex"]]["id"] == first["ruleId"]
    assert first["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].endswith("004_x.up.sql")
    assert "Fix: CREATE INDEX CONCURRENTLY" in first["message"]["text"]
    assert run["results"][1]["suppressions"] == [{"kind": "inSource", "justification": "app 4 no longer reads it"}]


def test_cli_trace_needs_a_dsn(tmp_path):
    path = tmp_path / "x.sql"
    path.write_text("SELECT 1;\n")
    out = run_cli("--trace", str(path))
    assert out.returncode == 2 and "--trace needs --dsn" in out.stderr


def test_cli_unreachable_dsn_is_a_usage_error(tmp_path):
    path = tmp_path / "x.sql"
    path.write_text("SELECT 1;\n")
    out = run_cli("--dsn", "host=127.0.0.1 port=1 connect_timeout=2", str(path))
    assert out.returncode == 2 and "cannot connect with --dsn" in out.stderr


class FakeCatalogConnection:
    """A DB-API connection answering the catalog's queries for table orders (no database)."""

    def __init__(self):
        self.queries = []
        self.rows = []

    def cursor(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, query, params=()):
        self.queries.append(params)
        target = params[0] if params else None
        if "format_type" in query:
            self.rows = [("note", "character varying(20)", False), ("ref", "bigint", False),
                         ("id", "bigint", True)] if target == '"orders"' else []
        elif "pg_get_constraintdef" in query:
            self.rows = [("orders_ref_nn", "CHECK ((ref IS NOT NULL))", True)] if target == '"orders"' else []
        elif "pg_index" in query:
            self.rows = [("id",)] if target == '"orders_id_key"' else []
        else:
            self.rows = [("UTC",)]

    def fetchall(self):
        return self.rows


def test_catalog_judges_exactly_and_forgets_what_a_file_changed():
    catalog = lint.Catalog(FakeCatalogConnection())
    safe = ("ALTER TABLE orders ALTER COLUMN note TYPE varchar(64);\n"
            "ALTER TABLE orders ALTER COLUMN ref SET NOT NULL;\n"
            "ALTER TABLE orders ADD CONSTRAINT orders_pkey PRIMARY KEY USING INDEX orders_id_key;")
    assert lint.lint_text(safe, "004.up.sql", catalog) == []
    assert "orders" in catalog.forgotten  # the next file may not trust what 004 changed
    finding, = lint.lint_text("ALTER TABLE orders ALTER COLUMN note TYPE varchar(128);", "005.up.sql", catalog)
    assert "current type of note is unknown" in finding.message
    shrink, = lint.lint_text("ALTER TABLE orders ALTER COLUMN note TYPE varchar(5);", "x.sql",
                             lint.Catalog(FakeCatalogConnection()))
    assert "from varchar(20)" in shrink.message
    assert lint.lint_text("ALTER TABLE missing ALTER COLUMN a SET NOT NULL;", "x.sql",
                          lint.Catalog(FakeCatalogConnection()))[0].rule == "set-not-null"
