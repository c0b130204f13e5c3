# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pure part of gradual.rollout.sql_check: which SQL it agrees to run, what an EXPLAIN (FORMAT
JSON) plan says (node types, indexes, times), and the scalar a query returned.

No server and no Ansible import, so the unit tests need only pglast. The statement check uses
PostgreSQL's own parser (pglast), never a regular expression: EXPLAIN ANALYZE executes the query,
so anything but one plain SELECT (or WITH ... SELECT) is refused before a connection is opened.
"""
from __future__ import annotations

import traceback

try:
    import pglast
    from pglast.parser import ParseError as PgParseError
    from pglast.visitors import Visitor
    HAS_PGLAST = True
    PGLAST_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - exercised by the sanity import test
    pglast = None
    PgParseError = Exception
    Visitor = object
    HAS_PGLAST = False
    PGLAST_IMPORT_ERROR = traceback.format_exc()

# Plan nodes that read through an index, and so carry "Index Name".
INDEX_NODE_TYPES = ("Index Scan", "Index Only Scan", "Bitmap Index Scan")
# Statements a SELECT may not contain (a data-modifying WITH, for one).
WRITING_NODES = ("InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt")


class SqlRefused(ValueError):
    """SQL that sql_check will not run; the message names the statement and why."""


def _short(sql: str, width: int = 120) -> str:
    text = " ".join(str(sql).split())
    return text if len(text) <= width else text[:width - 3] + "..."


class _Kinds(Visitor):  # pylint: disable=too-few-public-methods
    """Collects the node class names of a parse tree."""

    def __init__(self):
        super().__init__()
        self.kinds = []

    def visit(self, ancestors, node):  # pylint: disable=unused-argument
        self.kinds.append(type(node).__name__)


def check_select(sql: str, option: str = "query") -> None:
    """Raise SqlRefused unless SQL is exactly one plain SELECT (WITH ... SELECT included): no
    data-modifying WITH, no SELECT INTO (it creates a table), no FOR UPDATE / FOR SHARE (row
    locks), nothing that parses as another statement."""
    if not HAS_PGLAST:
        raise RuntimeError("pglast is required to check the SQL of sql_check (pip install pglast)")
    if not isinstance(sql, str) or not sql.strip():
        raise SqlRefused("%s is empty; give one SELECT statement" % option)
    try:
        stmts = pglast.parse_sql(sql)
    except PgParseError as exc:
        raise SqlRefused("%s %r does not parse: %s" % (option, _short(sql), exc)) from None
    if len(stmts) != 1:
        raise SqlRefused("%s %r holds %d statements; give exactly one SELECT"
                         % (option, _short(sql), len(stmts)))
    node = stmts[0].stmt
    kind = type(node).__name__
    if kind != "SelectStmt":
        word = kind.replace("Stmt", "").upper() or kind
        raise SqlRefused("%s %r is %s %s statement, not a SELECT: sql_check runs only a plain SELECT "
                         "(or WITH ... SELECT), since EXPLAIN ANALYZE executes it"
                         % (option, _short(sql), "an" if word[0] in "AEIOU" else "a", word))
    kinds = _Kinds()
    kinds(stmts[0])
    writing = sorted(set(kinds.kinds) & set(WRITING_NODES))
    if writing:
        raise SqlRefused("%s %r contains a data-modifying %s; sql_check runs only a read-only SELECT"
                         % (option, _short(sql), "/".join(w.replace("Stmt", "").upper() for w in writing)))
    if "IntoClause" in kinds.kinds:
        raise SqlRefused("%s %r is a SELECT INTO, which creates a table; give a plain SELECT"
                         % (option, _short(sql)))
    if "LockingClause" in kinds.kinds:
        raise SqlRefused("%s %r takes row locks (FOR UPDATE / FOR SHARE); give a plain SELECT"
                         % (option, _short(sql)))


def plan_nodes(plan: dict) -> list:
    """Every node of an EXPLAIN (FORMAT JSON) plan tree, depth first, as
    {node_type, relation, index, parent_relationship}."""
    out = []
    stack = [plan]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        out.append({"node_type": node.get("Node Type"), "relation": node.get("Relation Name"),
                    "index": node.get("Index Name"), "parent_relationship": node.get("Parent Relationship")})
        stack.extend(reversed(node.get("Plans") or []))
    return out


def explain_figures(explain) -> dict:
    """Figures of EXPLAIN (FORMAT JSON) output: the list PostgreSQL returns (one element per
    statement) or its first element. Index names are those of the index-reading nodes only."""
    doc = explain[0] if isinstance(explain, list) else explain
    if not isinstance(doc, dict) or not isinstance(doc.get("Plan"), dict):
        raise ValueError("EXPLAIN returned no plan: %r" % (explain,))
    nodes = plan_nodes(doc["Plan"])
    return {
        "node_types": sorted({n["node_type"] for n in nodes if n["node_type"]}),
        "index_names": sorted({n["index"] for n in nodes if n["index"] and n["node_type"] in INDEX_NODE_TYPES}),
        "seq_scans": sorted({n["relation"] for n in nodes if n["node_type"] == "Seq Scan" and n["relation"]}),
        "plan_nodes": nodes,
        "total_cost": doc["Plan"].get("Total Cost"),
        "planning_time_ms": doc.get("Planning Time"),
        "execution_time_ms": doc.get("Execution Time"),
    }


def index_failure(index: str | None, figures: dict) -> str | None:
    """A failure message when the plan does not read through INDEX (None: no index asked)."""
    if not index or index in figures["index_names"]:
        return None
    seen = ", ".join("%s%s" % (n["node_type"], " on %s" % n["relation"] if n["relation"] else "")
                     for n in figures["plan_nodes"]) or "no node"
    return "index %s is not used by the plan (indexes used: %s; nodes: %s)" % (
        index, ", ".join(figures["index_names"]) or "none", seen)


def scalar(rows: list):
    """(value, why_inconclusive) of a scalar query's rows: the first column of the only row as a
    number; no row or NULL gives (None, reason). A value that is not a number raises ValueError."""
    if not rows:
        return None, "the query returned no row"
    if len(rows) > 1:
        raise ValueError("the query returned more than one row; a scalar query returns one row")
    value = rows[0][0] if rows[0] else None
    if value is None:
        return None, "the query returned NULL"
    if isinstance(value, bool):
        return (1.0 if value else 0.0), None
    try:
        return float(value), None
    except (TypeError, ValueError):
        raise ValueError("the query returned %r, not a number" % (value,)) from None


def index_usage_failures(wanted: list, rows: list, min_idx_scan: int) -> tuple:
    """(figures, failures) of pg_stat_user_indexes ROWS ({schema, index, table, idx_scan}) for the
    WANTED index names: a missing index and one scanned fewer than MIN_IDX_SCAN times each fail."""
    found = {}
    for row in rows:
        found.setdefault(row["index"], []).append(row)
    failures = []
    figures = {}
    for name in wanted:
        hits = found.get(name)
        if not hits:
            failures.append("index %s does not exist (not in pg_stat_user_indexes)" % name)
            figures[name] = None
            continue
        scans = sum(int(h["idx_scan"] or 0) for h in hits)
        figures[name] = {"idx_scan": scans, "table": hits[0]["table"], "schema": hits[0]["schema"]}
        if scans < min_idx_scan:
            failures.append("index %s has idx_scan %d, below min_idx_scan %d" % (name, scans, min_idx_scan))
    return figures, failures
