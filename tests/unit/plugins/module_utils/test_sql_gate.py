"""sql_check's pure logic: which SQL it runs, how it reads a plan, a scalar, index statistics."""
from __future__ import annotations

import pytest

from ansible_collections.gradual.rollout.plugins.module_utils import sql_gate as S


@pytest.mark.parametrize("sql", [
    "SELECT 1",
    "select * from players where team_id = 42 order by position",
    "WITH p AS (SELECT * FROM players) SELECT count(*) FROM p",
    "SELECT a FROM t UNION ALL SELECT b FROM u",
    "SELECT 1;",
])
def test_plain_selects_are_accepted(sql):
    S.check_select(sql)


@pytest.mark.parametrize("sql, words", [
    ("DELETE FROM players WHERE id = 1", "is a DELETE statement, not a SELECT"),
    ("UPDATE t SET a = 1", "is an UPDATE statement"),
    ("CREATE TABLE x (a int)", "is a CREATE statement"),
    ("SELECT 1; DELETE FROM t", "holds 2 statements"),
    ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "data-modifying DELETE"),
    ("SELECT * INTO copy FROM t", "SELECT INTO"),
    ("SELECT * FROM t FOR UPDATE", "FOR UPDATE"),
    ("SELEC 1", "does not parse"),
    ("  ", "is empty"),
])
def test_anything_else_is_refused_naming_the_statement(sql, words):
    with pytest.raises(S.SqlRefused) as err:
        S.check_select(sql)
    assert words in str(err.value)
    if sql.strip():
        assert "query %r" % sql[:20] in str(err.value) or repr(sql)[:20] in str(err.value)


PLAN = [{"Plan": {
    "Node Type": "Sort", "Total Cost": 12.5,
    "Plans": [{"Node Type": "Nested Loop", "Parent Relationship": "Outer", "Plans": [
        {"Node Type": "Bitmap Heap Scan", "Relation Name": "players", "Parent Relationship": "Outer",
         "Plans": [{"Node Type": "Bitmap Index Scan", "Index Name": "idx_a", "Parent Relationship": "Outer"}]},
        {"Node Type": "Index Only Scan", "Relation Name": "teams", "Index Name": "teams_pkey",
         "Parent Relationship": "Inner"},
        {"Node Type": "Seq Scan", "Relation Name": "badges", "Parent Relationship": "Inner"}]}]},
    "Planning Time": 0.1, "Execution Time": 3.25}]


def test_the_plan_tree_is_walked_depth_first_for_every_index():
    figures = S.explain_figures(PLAN)
    assert [n["node_type"] for n in figures["plan_nodes"]] == [
        "Sort", "Nested Loop", "Bitmap Heap Scan", "Bitmap Index Scan", "Index Only Scan", "Seq Scan"]
    assert figures["index_names"] == ["idx_a", "teams_pkey"]
    assert figures["seq_scans"] == ["badges"]
    assert figures["execution_time_ms"] == 3.25 and figures["total_cost"] == 12.5
    assert S.index_failure("idx_a", figures) is None and S.index_failure(None, figures) is None
    message = S.index_failure("idx_b", figures)
    assert message.startswith("index idx_b is not used by the plan (indexes used: idx_a, teams_pkey;")
    assert "Seq Scan on badges" in message


def test_a_seq_scan_plan_names_the_index_expected_and_the_scan():
    figures = S.explain_figures({"Plan": {"Node Type": "Seq Scan", "Relation Name": "players"}})
    assert figures["execution_time_ms"] is None
    assert S.index_failure("idx_a", figures) == \
        "index idx_a is not used by the plan (indexes used: none; nodes: Seq Scan on players)"


def test_no_plan_is_an_error():
    with pytest.raises(ValueError, match="no plan"):
        S.explain_figures([{}])


@pytest.mark.parametrize("rows, value, why", [
    ([(3,)], 3.0, None), ([(2.5,)], 2.5, None), ([(True,)], 1.0, None),
    ([], None, "the query returned no row"), ([(None,)], None, "the query returned NULL"),
])
def test_scalar(rows, value, why):
    assert S.scalar(rows) == (value, why)


@pytest.mark.parametrize("rows, words", [([("abc",)], "'abc', not a number"), ([(1,), (2,)], "more than one row")])
def test_scalar_refuses_what_is_not_one_number(rows, words):
    with pytest.raises(ValueError, match=words):
        S.scalar(rows)


def test_index_usage_names_a_missing_index_and_an_unused_one():
    rows = [{"schema": "public", "index": "idx_a", "table": "t", "idx_scan": 4},
            {"schema": "public", "index": "idx_b", "table": "t", "idx_scan": 0}]
    figures, failures = S.index_usage_failures(["idx_a", "idx_b", "idx_c"], rows, 1)
    assert figures["idx_a"] == {"idx_scan": 4, "table": "t", "schema": "public"} and figures["idx_c"] is None
    assert failures == ["index idx_b has idx_scan 0, below min_idx_scan 1",
                        "index idx_c does not exist (not in pg_stat_user_indexes)"]
