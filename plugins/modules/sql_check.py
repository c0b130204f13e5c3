#!/usr/bin/python
# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Gate on what PostgreSQL says: a scalar query, a query plan, index usage."""
from __future__ import annotations

DOCUMENTATION = r"""
module: sql_check
short_description: Gate a rollout on a scalar query, a query plan or index usage in PostgreSQL
version_added: 0.1.0
description:
  - One measurement per run, chosen by O(mode), in a read-only transaction
    (C(SET TRANSACTION READ ONLY)) with C(SET LOCAL statement_timeout) (O(statement_timeout)); the
    transaction is rolled back at the end.
  - V(query) runs O(query), a scalar query (one row, one column, a number), and compares the value
    with O(min_value) and O(max_value). No row or NULL makes the result inconclusive, never a pass.
  - V(explain) runs C(EXPLAIN) with C(FORMAT JSON) on O(query), with C(ANALYZE) when O(analyze) is set,
    walks the plan tree, and fails when O(index) is not read by an C(Index Scan),
    C(Index Only Scan) or C(Bitmap Index Scan) node, or when the C(Execution Time) is over
    O(max_time_ms). The figures carry every node type and index name seen.
  - V(index_usage) reads C(idx_scan) of the O(indexes) in C(pg_stat_user_indexes) and fails when
    one is missing (naming it) or was scanned fewer than O(min_idx_scan) times. The counters are
    since the last statistics reset, and the replica's are its own (a standby counts the scans it
    served).
  - C(EXPLAIN ANALYZE) executes the query, so O(query) must be exactly one plain C(SELECT) (or
    C(WITH ... SELECT)); anything else (a second statement, a data-modifying C(WITH),
    C(SELECT INTO), C(FOR UPDATE)) is refused with a message naming the statement, before any
    connection. The statement is parsed with PostgreSQL's own parser (pglast).
  - Run it against a replica by default, so the measurement costs the primary nothing; which
    server is the caller's choice (O(login_host)). A hot standby accepts the read-only
    transaction. The plan and timings of a replica are those of the replica.
options:
  mode:
    description:
      - What to measure.
    type: str
    required: true
    choices: [query, explain, index_usage]
  query:
    description:
      - V(query) and V(explain). One C(SELECT) statement (C(WITH ... SELECT) included).
      - For V(query), it returns one row whose first column is a number (a boolean counts as 1 or 0).
    type: str
  min_value:
    description:
      - V(query) only. Lowest acceptable value.
    type: float
  max_value:
    description:
      - V(query) only. Highest acceptable value.
    type: float
  index:
    description:
      - V(explain) only. Name of the index the plan must read (C(Index Name) of an index-reading node).
    type: str
  analyze:
    description:
      - V(explain) only. Run C(EXPLAIN ANALYZE), which executes the query and gives its
        C(Execution Time). Needed by O(max_time_ms).
    type: bool
    default: false
  max_time_ms:
    description:
      - V(explain) with O(analyze) only. Highest acceptable C(Execution Time), milliseconds.
      - When O(statement_timeout) is not above this bound and cancels the query, the bound was
        exceeded and the gate fails; otherwise a cancelled statement is inconclusive.
    type: float
  indexes:
    description:
      - V(index_usage) only. Index names to look up in C(pg_stat_user_indexes).
    type: list
    elements: str
  schema:
    description:
      - V(index_usage) only. Look the indexes up in this schema only (default every schema).
    type: str
  min_idx_scan:
    description:
      - V(index_usage) only. Fewest scans each index must have had.
    type: int
    default: 1
  statement_timeout:
    description:
      - C(statement_timeout) of the transaction. Seconds as a number, or a string with a unit such
        as V(500ms), V(5s), V(1m). A cancelled statement makes the result inconclusive (or failed,
        see O(max_time_ms)).
    type: raw
    default: 5s
extends_documentation_fragment:
  - community.postgresql.postgres
  - gradual.rollout.postgres
  - gradual.rollout.gate.verdict
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
    details: A gate only reads; it measures the live database in check mode too.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: none
requirements:
  - pglast
notes:
  - The module is in the C(gradual.rollout.postgres) action group, so C(module_defaults) for
    C(group/gradual.rollout.postgres) applies to it. Give O(login_host) (a replica's) in the task to
    measure elsewhere than the group's database; explicit task arguments override C(module_defaults).
  - The read-only transaction refuses writes, C(nextval) and DDL, but not every function with a side
    effect; log in as a role that may only read (for example one with C(pg_read_all_data) and
    C(pg_monitor)).
  - A failed threshold fails the task with a message naming the figure and the threshold; the
    result still carries every figure.
  - The result is inconclusive, never a pass, when there was nothing to judge - no row, NULL, a
    cancelled statement (unless O(max_time_ms) makes it a failure), a database that cannot be
    reached - and then fails the task unless O(fail_on_inconclusive=false).
author:
  - gradual.rollout contributors (@gradual-rollout)
"""

EXAMPLES = r"""
- name: No order is stuck in the pending state for more than an hour
  gradual.rollout.sql_check:
    login_host: db-replica.internal
    login_user: monitor
    login_password: "{{ vault_monitor_password }}"
    db: app
    mode: query
    query: >-
      SELECT count(*) FROM orders
      WHERE status = 'pending' AND created_at < now() - interval '1 hour'
    max_value: 0

- name: The customer's order list reads its index and takes under 50 ms
  gradual.rollout.sql_check:
    login_host: db-replica.internal
    login_user: monitor
    login_password: "{{ vault_monitor_password }}"
    db: app
    mode: explain
    analyze: true
    query: SELECT * FROM orders WHERE customer_id = 42 ORDER BY created_at DESC LIMIT 20
    index: idx_orders_customer_created
    max_time_ms: 50
    statement_timeout: 2s

- name: The new indexes have served queries
  gradual.rollout.sql_check:
    login_host: db-replica.internal
    login_user: monitor
    login_password: "{{ vault_monitor_password }}"
    db: app
    mode: index_usage
    indexes:
      - idx_orders_customer_created
      - idx_orders_status_created
"""

RETURN = r"""
mode:
  description: The O(mode) measured.
  returned: always
  type: str
  sample: explain
value:
  description: V(query) only. The scalar the query returned; null for no row or NULL.
  returned: when mode is query
  type: float
  sample: 2.0
node_types:
  description: V(explain) only. Every plan node type seen, sorted.
  returned: when mode is explain and the plan was read
  type: list
  elements: str
  sample: ["Index Scan", "Sort"]
index_names:
  description: V(explain) only. Indexes read by index-scanning nodes, sorted.
  returned: when mode is explain and the plan was read
  type: list
  elements: str
  sample: ["idx_orders_customer_created"]
seq_scans:
  description: V(explain) only. Tables read by a C(Seq Scan).
  returned: when mode is explain and the plan was read
  type: list
  elements: str
  sample: []
plan_nodes:
  description: V(explain) only. Each node of the plan, depth first, with its relation and index.
  returned: when mode is explain and the plan was read
  type: list
  elements: dict
  sample: [{"node_type": "Index Scan", "relation": "orders", "index": "idx_orders_customer_created",
            "parent_relationship": null}]
total_cost:
  description: V(explain) only. The planner's total cost of the top node.
  returned: when mode is explain and the plan was read
  type: float
execution_time_ms:
  description: V(explain) with O(analyze) only. C(Execution Time) in milliseconds (null without O(analyze)).
  returned: when mode is explain and the plan was read
  type: float
  sample: 0.42
planning_time_ms:
  description: V(explain) with O(analyze) only. C(Planning Time) in milliseconds.
  returned: when mode is explain and the plan was read
  type: float
indexes:
  description: V(index_usage) only. Per index name, its C(idx_scan), table and schema; null when missing.
  returned: when mode is index_usage and the statistics were read
  type: dict
  sample: {"idx_orders_customer_created": {"idx_scan": 12, "table": "orders", "schema": "public"}}
statement_timeout_ms:
  description: The C(statement_timeout) set on the transaction, milliseconds.
  returned: always
  type: int
  sample: 5000
elapsed_ms:
  description: Wall time of the measurement on the connection, milliseconds.
  returned: always
  type: float
inconclusive:
  description: Nothing could be judged (no row, NULL, a cancelled statement, no connection).
  returned: always
  type: bool
gate:
  description: The verdict.
  returned: always
  type: dict
  sample: {"passed": false, "inconclusive": false, "failures": [],
           "reason": "index idx_orders_customer_created is not used by the plan (indexes used: none; nodes: Seq Scan on orders)"}
"""

import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.common.text.converters import to_native
from ansible_collections.gradual.rollout.plugins.module_utils import gates as G
from ansible_collections.gradual.rollout.plugins.module_utils import sql_gate as S
from ansible_collections.gradual.rollout.plugins.module_utils.pg import (
    HAS_PSYCOPG2, PSYCOPG2_IMPORT_ERROR, conn_params, describe_target, pg_argument_spec)

try:
    import psycopg2
    import psycopg2.extensions
except ImportError:
    psycopg2 = None  # HAS_PSYCOPG2 says so

INDEX_USAGE_SQL = """
SELECT schemaname, indexrelname, relname, idx_scan
FROM pg_stat_user_indexes
WHERE indexrelname = ANY(%s) AND (%s::text IS NULL OR schemaname = %s::text)
"""

MODE_OPTIONS = {
    "query": ("query", "min_value", "max_value"),
    "explain": ("query", "index", "analyze", "max_time_ms"),
    "index_usage": ("indexes", "schema", "min_idx_scan"),
}
DEFAULTS = {"analyze": False, "min_idx_scan": 1}


def argument_spec() -> dict:
    spec = pg_argument_spec()
    spec.update(
        mode=dict(type="str", required=True, choices=list(MODE_OPTIONS)),
        query=dict(type="str"),
        min_value=dict(type="float"), max_value=dict(type="float"),
        index=dict(type="str"), analyze=dict(type="bool", default=False), max_time_ms=dict(type="float"),
        indexes=dict(type="list", elements="str"), schema=dict(type="str"),
        min_idx_scan=dict(type="int", default=1),
        statement_timeout=dict(type="raw", default="5s"),
    )
    spec.update(G.verdict_argument_spec())
    return spec


def check_options(p: dict) -> int:
    """The statement_timeout in milliseconds, once every option fits the mode; raises
    GateInputError or SqlRefused naming the bad value."""
    mode = p["mode"]
    used = set(MODE_OPTIONS[mode])
    for other, names in MODE_OPTIONS.items():
        for name in names:
            if name not in used and p.get(name) not in (None, DEFAULTS.get(name)):
                raise G.GateInputError("%s=%r is only used with mode: %s (mode is %s); remove it"
                                       % (name, p[name], other, mode))
    if mode in ("query", "explain"):
        if not p.get("query"):
            raise G.GateInputError("mode: %s needs query (one SELECT statement)" % mode)
        S.check_select(p["query"])
    if mode == "explain":
        if not p.get("index") and p.get("max_time_ms") is None:
            raise G.GateInputError("mode: explain needs index (the index the plan must use) or max_time_ms")
        if p.get("max_time_ms") is not None and not p.get("analyze"):
            raise G.GateInputError("max_time_ms=%s needs analyze: true (only EXPLAIN ANALYZE measures "
                                   "the Execution Time)" % p["max_time_ms"])
    if mode == "index_usage":
        if not p.get("indexes"):
            raise G.GateInputError("mode: index_usage needs indexes (the index names to look up)")
        if p["min_idx_scan"] < 0:
            raise G.GateInputError("min_idx_scan=%d must be >= 0" % p["min_idx_scan"])
    if p.get("max_time_ms") is not None and p["max_time_ms"] < 0:
        raise G.GateInputError("max_time_ms=%s must be >= 0" % p["max_time_ms"])
    if p.get("min_value") is not None and p.get("max_value") is not None and p["min_value"] > p["max_value"]:
        raise G.GateInputError("min_value=%s is above max_value=%s; no value could pass"
                               % (p["min_value"], p["max_value"]))
    timeout = G.parse_duration(p["statement_timeout"], "statement_timeout")
    if timeout <= 0:
        raise G.GateInputError("statement_timeout=%r must be > 0: a gate's query must be bounded"
                               % (p["statement_timeout"],))
    return max(1, int(round(timeout * 1000)))


def measure(cur, p: dict) -> tuple:
    """(figures, failures, why_inconclusive) of one mode on a cursor inside the read-only transaction."""
    if p["mode"] == "query":
        cur.execute(p["query"])
        value, why = S.scalar(cur.fetchmany(2))
        return {"value": value}, [
            G.check_min("value", value, "min_value", p["min_value"]),
            G.check_max("value", value, "max_value", p["max_value"])], why
    if p["mode"] == "explain":
        cur.execute("EXPLAIN (FORMAT JSON%s) %s" % (", ANALYZE" if p["analyze"] else "", p["query"]))
        raw = cur.fetchone()[0]
        figures = S.explain_figures(raw)
        return figures, [
            S.index_failure(p["index"], figures),
            G.check_max("execution_time_ms", figures["execution_time_ms"], "max_time_ms", p["max_time_ms"], " ms")], None
    cur.execute(INDEX_USAGE_SQL, (list(p["indexes"]), p["schema"], p["schema"]))
    rows = [{"schema": r[0], "index": r[1], "table": r[2], "idx_scan": r[3]} for r in cur.fetchall()]
    figures, failures = S.index_usage_failures(p["indexes"], rows, p["min_idx_scan"])
    return {"indexes": figures}, failures, None


def run(module, timeout_ms: int) -> dict:
    """Connect, measure in a read-only transaction, roll back; the result dict with its gate."""
    p = module.params
    params = conn_params(module)
    out = {"mode": p["mode"], "statement_timeout_ms": timeout_ms}
    failures, why = [], None
    start = time.monotonic()
    try:
        conn = psycopg2.connect(**params)
    except psycopg2.Error as exc:
        why = "cannot connect to PostgreSQL at %s: %s" % (describe_target(params), to_native(exc).strip())
        conn = None
    if conn is not None:
        try:
            conn.autocommit = False
            with conn.cursor() as cur:
                cur.execute("SET TRANSACTION READ ONLY")
                cur.execute("SET LOCAL statement_timeout = %s", (timeout_ms,))
                figures, failures, why = measure(cur, p)
                out.update(figures)
        except psycopg2.extensions.QueryCanceledError as exc:
            message = "statement_timeout %d ms cancelled the %s (%s)" % (
                timeout_ms, "EXPLAIN" if p["mode"] == "explain" else "query", to_native(exc).strip())
            if p["mode"] == "explain" and p["max_time_ms"] is not None and timeout_ms <= p["max_time_ms"]:
                failures = ["execution time over max_time_ms %g ms: %s" % (p["max_time_ms"], message)]
            else:
                why = message
        except psycopg2.Error as exc:
            # a missing table or column, a permission: the query cannot measure anything as written
            failures = ["the %s failed on %s: %s" % (p["mode"], describe_target(params), to_native(exc).strip())]
        except ValueError as exc:
            failures = [str(exc)]
        finally:
            try:
                conn.rollback()
            finally:
                conn.close()
    out["elapsed_ms"] = round((time.monotonic() - start) * 1000, 2)
    out["gate"] = G.gate(failures, why)
    out["inconclusive"] = out["gate"]["inconclusive"]
    return out


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    p = module.params
    if not S.HAS_PGLAST:
        module.fail_json(msg=missing_required_lib("pglast"), exception=S.PGLAST_IMPORT_ERROR)
    if not HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"), exception=PSYCOPG2_IMPORT_ERROR)
    try:
        timeout_ms = check_options(p)
    except (G.GateInputError, S.SqlRefused) as exc:
        module.fail_json(msg=str(exc))
    out = run(module, timeout_ms)
    if G.fails_task(out, p["fail_on_inconclusive"]):
        module.fail_json(msg="sql_check gate failed: " + out["gate"]["reason"], **out)
    module.exit_json(changed=False, **out)


if __name__ == "__main__":
    main()
