"""Autofix rewrites and transaction steps (no database)."""
from __future__ import annotations

import pytest

from ansible_collections.gradual.rollout.plugins.module_utils.migration import plan as mp


def sqls(plan) -> list:
    return [s.sql for s in plan.statements]


def test_without_autofix_unsafe_statements_block():
    plan = mp.plan_text("CREATE INDEX i ON t (a);", "x.up.sql", autofix=False)
    assert [f.rule for f in plan.blocking] == ["create-index-non-concurrent"]


def test_autofix_index_becomes_concurrent_and_own_step():
    plan = mp.plan_text("CREATE TABLE n (id int);\nCREATE INDEX i ON t (a);\nALTER TABLE t ADD COLUMN c int;",
                        "x.up.sql", autofix=True)
    assert plan.blocking == []
    assert sqls(plan)[1] == "CREATE INDEX CONCURRENTLY i ON t (a)"
    assert [(s.transactional, len(s.statements)) for s in plan.steps] == [(True, 1), (False, 1), (True, 1)]
    assert plan.statements[1].index_name == "i"


def test_autofix_foreign_key_and_check_validate_separately():
    plan = mp.plan_text("ALTER TABLE t ADD FOREIGN KEY (u_id) REFERENCES u (id), ADD CHECK (a > 0);",
                        "x.up.sql", autofix=True)
    assert sqls(plan) == [
        "ALTER TABLE t ADD CONSTRAINT t_u_id_fkey FOREIGN KEY (u_id) REFERENCES u (id) NOT VALID",
        "ALTER TABLE t VALIDATE CONSTRAINT t_u_id_fkey",
        "ALTER TABLE t ADD CONSTRAINT t_a_check CHECK (a > 0) NOT VALID",
        "ALTER TABLE t VALIDATE CONSTRAINT t_a_check",
    ]
    assert [[x.sql for x in s.statements] for s in plan.steps][1] == ["ALTER TABLE t VALIDATE CONSTRAINT t_u_id_fkey"]
    assert plan.blocking == []


def test_autofix_column_check_and_references_move_out_of_add_column():
    plan = mp.plan_text("ALTER TABLE t ADD COLUMN u_id bigint NOT NULL DEFAULT 1 REFERENCES u (id) "
                        "CHECK (u_id > 0);", "x.up.sql", autofix=True)
    assert sqls(plan) == [
        "ALTER TABLE t ADD COLUMN u_id bigint NOT NULL DEFAULT 1",
        "ALTER TABLE t ADD CONSTRAINT t_u_id_fkey FOREIGN KEY (u_id) REFERENCES u (id) NOT VALID",
        "ALTER TABLE t VALIDATE CONSTRAINT t_u_id_fkey",
        "ALTER TABLE t ADD CONSTRAINT t_u_id_check CHECK (u_id > 0) NOT VALID",
        "ALTER TABLE t VALIDATE CONSTRAINT t_u_id_check",
    ]
    assert [len(s.statements) for s in plan.steps] == [2, 1, 1, 1]
    assert plan.blocking == []


def test_autofix_set_not_null_sequence():
    plan = mp.plan_text("ALTER TABLE app.t ALTER COLUMN a SET NOT NULL;", "x.up.sql", autofix=True)
    assert sqls(plan) == [
        "ALTER TABLE app.t ADD CONSTRAINT t_a_not_null CHECK (a IS NOT NULL) NOT VALID",
        "ALTER TABLE app.t VALIDATE CONSTRAINT t_a_not_null",
        "ALTER TABLE app.t ALTER COLUMN a SET NOT NULL",
        "ALTER TABLE app.t DROP CONSTRAINT t_a_not_null",
    ]
    assert [len(s.statements) for s in plan.steps] == [1, 1, 2]
    assert all(s.rewritten_from for s in plan.statements)


def test_autofix_unique_uses_concurrent_index():
    plan = mp.plan_text("ALTER TABLE t ADD CONSTRAINT t_a_key UNIQUE (a);", "x.up.sql", autofix=True)
    assert sqls(plan) == ["CREATE UNIQUE INDEX CONCURRENTLY t_a_key ON t (a)",
                          "ALTER TABLE t ADD CONSTRAINT t_a_key UNIQUE USING INDEX t_a_key"]


def test_autofix_drop_index_splits_and_is_idempotent():
    plan = mp.plan_text("DROP INDEX a, b;", "x.up.sql", autofix=True)
    assert sqls(plan) == ["DROP INDEX CONCURRENTLY IF EXISTS a", "DROP INDEX CONCURRENTLY IF EXISTS b"]
    assert all(s.drop_index and s.concurrent for s in plan.statements)


def test_autofix_leaves_unfixable_findings_blocking():
    plan = mp.plan_text("ALTER TABLE t RENAME COLUMN a TO b;", "x.up.sql", autofix=True)
    assert [f.rule for f in plan.blocking] == ["rename-column"]


def test_ignored_statement_is_kept_as_written():
    sql = "-- gradual:ignore create-index-non-concurrent tiny lookup table\nCREATE INDEX i ON t (a);"
    plan = mp.plan_text(sql, "x.up.sql", autofix=True)
    assert sqls(plan) == ["CREATE INDEX i ON t (a)"] and plan.blocking == []


def test_transaction_statements_are_dropped_and_concurrent_split_out():
    plan = mp.plan_text("BEGIN;\nCREATE TABLE n (id int);\nCREATE INDEX CONCURRENTLY i ON t (a);\n"
                        "INSERT INTO n VALUES (1);\nCOMMIT;", "x.up.sql")
    assert [[x.sql for x in s.statements] for s in plan.steps] == [
        ["CREATE TABLE n (id int)"], ["CREATE INDEX CONCURRENTLY i ON t (a)"], ["INSERT INTO n VALUES (1)"]]
    assert plan.blocking == []


def test_discover_pairs_up_and_down(tmp_path):
    for name in ("001_a.up.sql", "001_a.down.sql", "002_b.up.sql"):
        (tmp_path / name).write_text("SELECT 1;")
    migs = mp.discover(str(tmp_path))
    assert [(m.version, m.name, bool(m.down_path)) for m in migs] == [("001", "a", True), ("002", "b", False)]


@pytest.mark.parametrize("names,fragment", [
    (["1_a.up.sql", "01_b.up.sql"], "two names"),
    (["oops.sql"], "does not follow"),
    (["003_c.down.sql"], "no up file"),
])
def test_discover_rejects_bad_layouts(tmp_path, names, fragment):
    for name in names:
        (tmp_path / name).write_text("SELECT 1;")
    with pytest.raises(mp.PlanError, match=fragment):
        mp.discover(str(tmp_path))


def test_file_timeouts_cannot_undo_the_ladder():
    plan = mp.plan_text("SET lock_timeout = 0;\nSET statement_timeout TO '1h';\nSET search_path = app;\n"
                        "ALTER TABLE t ADD COLUMN c int;", "x.up.sql")
    assert plan.dropped == ["SET lock_timeout = 0", "SET statement_timeout TO '1h'"]
    assert sqls(plan) == ["SET search_path = app", "ALTER TABLE t ADD COLUMN c int"]


def test_autofix_primary_key_validates_not_null_before_using_the_index():
    plan = mp.plan_text("ALTER TABLE t ADD PRIMARY KEY (id);", "x.up.sql", autofix=True)
    assert sqls(plan) == ["CREATE UNIQUE INDEX CONCURRENTLY t_pkey ON t (id)",
                          "ALTER TABLE t ADD CONSTRAINT t_id_not_null CHECK (id IS NOT NULL) NOT VALID",
                          "ALTER TABLE t VALIDATE CONSTRAINT t_id_not_null",
                          "ALTER TABLE t ALTER COLUMN id SET NOT NULL",
                          "ALTER TABLE t DROP CONSTRAINT t_id_not_null",
                          "ALTER TABLE t ADD CONSTRAINT t_pkey PRIMARY KEY USING INDEX t_pkey"]
    assert plan.blocking == []


def test_autofix_reindex_concurrently_false_becomes_concurrent():
    plan = mp.plan_text("REINDEX (CONCURRENTLY false) INDEX i;", "x.up.sql", autofix=True)
    assert sqls(plan) == ["REINDEX (CONCURRENTLY) INDEX i"] and plan.blocking == []


def test_ignore_without_reason_blocks_whatever_runs():
    plan = mp.plan_text("-- gradual:ignore no-such-rule because\nSELECT 1;", "x.up.sql")
    assert [f.rule for f in plan.blocking] == ["ignore-without-reason"]
