"""The linter's rules against --trace, their ground truth (issue #25), on the unit corpus.

Every case of tests/unit/migration_corpus.py (the unsafe and the safe SQL of each rule) runs through
the trace of pg-migration-lint (migration_cli.trace_file: the file in one transaction, rolled back;
per statement the locks it took and the relations it rewrote) in a scratch database whose tables
hold thousands of rows, so scans and rewrites are real. Alongside the trace, each statement's row
reads and writes are read from pg_stat_xact_user_tables, in the same transaction: that tells a lock
held for a metadata change from one held through a scan.

A statement is unsafe per the trace when, on a table (or materialized view) that existed before the
file and holds rows, it
  - rewrites it (relfilenode changed: the table, or an index of it),
  - reads or writes rows while the transaction holds a lock on such a table that blocks its writes
    (SHARE, SHARE ROW EXCLUSIVE, EXCLUSIVE, ACCESS EXCLUSIVE; on a materialized view, which only
    its refresh writes, ACCESS EXCLUSIVE, the lock that blocks reads),
  - updates or deletes every row of it, or
  - fails (the migration stops; expected only where the case is about that failure).
A lock that blocks writes taken for a metadata change alone (no rows read, nothing rewritten) is
safe. Statements that pg_migrate runs on their own (VALIDATE CONSTRAINT) are judged on their own
locks; every other statement with every lock the file's transaction holds.

The linter agrees on a case when it flags (error or warning, gradual:ignore'd or not) every
statement of the case the trace finds unsafe. Flags on statements the trace finds safe are no
disagreement (renames and drops break the running release, not the locks) and are listed as
"stricter". Cases with a statement the trace does not run (CONCURRENTLY, VACUUM, CREATE/DROP
DATABASE) are not traceable. The figures go to tests/output/migration_trace_agreement.json
(git-ignored), so `make test` leaves a clone as it found it; GR_BENCH_REFRESH=1 writes them to the
tracked benchmark result bench/results/migration_trace_agreement.json instead:
  GR_BENCH_REFRESH=1 .venv/bin/python -m pytest -q tests/integration/test_migration_trace_agreement.py
"""
from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path

import psycopg2
import pytest

from ansible_collections.gradual.rollout.bin import migration_cli as cli
from ansible_collections.gradual.rollout.plugins.module_utils.migration import lint

import services

ROOT = Path(__file__).resolve().parents[2]
RESULTS_NAME = "migration_trace_agreement.json"
MIN_AGREEMENT = 0.97


def _load_corpus() -> dict:
    path = ROOT / "tests" / "unit" / "migration_corpus.py"
    spec = importlib.util.spec_from_file_location("migration_corpus_data", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CASES


CORPUS = _load_corpus()

# The objects the corpus names, with rows. The tablespace "fast" is made once for the cluster.
BASE = """
CREATE SCHEMA shop;
CREATE SCHEMA archive;
CREATE TABLE shop.items (id int);
INSERT INTO shop.items SELECT generate_series(1, 1000);
CREATE DOMAIN positive AS int;
CREATE TYPE status AS ENUM ('new', 'done');
CREATE TABLE u (id int PRIMARY KEY);
INSERT INTO u SELECT generate_series(1, 5000);
CREATE TABLE t (id int PRIMARY KEY, a int, created_at timestamptz NOT NULL, state status NOT NULL DEFAULT 'new');
INSERT INTO t (id, a, created_at) SELECT g, g, now() - g * interval '1 hour' FROM generate_series(1, 20000) g;
CREATE TABLE orders (id bigint, note text);
INSERT INTO orders SELECT g, 'n' || g FROM generate_series(1, 5000) g;
CREATE UNIQUE INDEX orders_id ON orders (id);
CREATE TABLE measures (id int, val positive);
INSERT INTO measures SELECT g, g FROM generate_series(1, 5000) g;
CREATE TABLE p (k int, v text) PARTITION BY LIST (k);
CREATE TABLE p1 PARTITION OF p FOR VALUES IN (1);
INSERT INTO p SELECT 1, 'v' || g FROM generate_series(1, 5000) g;
CREATE VIEW v AS SELECT id, note FROM orders;
CREATE MATERIALIZED VIEW mv AS SELECT id, note FROM orders;
CREATE UNIQUE INDEX mv_id ON mv (id);
ANALYZE;
"""
INDEX_I = "CREATE INDEX i ON t (a);"
# case id -> what the case needs beyond BASE (cases with the same needs share a database)
SETUP = {
    "drop-index-non-concurrent:unsafe": INDEX_I,
    "reindex-non-concurrent:unsafe": INDEX_I,
    "cluster:unsafe": INDEX_I,
    "foreign-key-not-valid:unsafe": "ALTER TABLE t ADD COLUMN u int; UPDATE t SET u = id % 5000 + 1;",
    "foreign-key-not-valid:safe": "ALTER TABLE t ADD COLUMN u int; UPDATE t SET u = id % 5000 + 1;",
    "alter-column-type:safe": "ALTER TABLE t DROP COLUMN a;",
    "add-unique-without-index:safe": "CREATE UNIQUE INDEX t_a_key ON t (a);",
    "attach-partition-scan:unsafe": "ALTER TABLE p DETACH PARTITION p1;",
}
# cases whose statement fails on a table with rows, which is what their rule says
EXPECTED_FAILURES = {"add-column-not-null-no-default:unsafe": "contains null values"}

TABLE_BLOCKING = {"ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"}
MATVIEW_BLOCKING = {"AccessExclusiveLock"}
COUNTS = ("read", "inserted", "updated", "deleted")

STATS = """
SELECT relid, seq_tup_read + coalesce(idx_tup_fetch, 0), n_tup_ins, n_tup_upd, n_tup_del
  FROM pg_stat_xact_user_tables
"""
NAMES = """
SELECT c.oid, c.oid::regclass::text FROM pg_class c
 WHERE c.relkind IN ('r', 'p', 'm', 'i', 'v') AND c.relnamespace NOT IN ('pg_catalog'::regnamespace,
       'information_schema'::regnamespace)
"""
RELATIONS = """
SELECT c.oid, c.relkind, coalesce(x.indrelid, 0)
  FROM pg_class c LEFT JOIN pg_index x ON x.indexrelid = c.oid
 WHERE c.relkind IN ('r', 'p', 'm', 'i') AND c.relnamespace NOT IN ('pg_catalog'::regnamespace,
       'information_schema'::regnamespace) AND c.relnamespace::regnamespace::text NOT LIKE 'pg_toast%%'
"""


def results_path() -> Path:
    """Where the figures go: the tracked bench/results/ only when asked (GR_BENCH_REFRESH=1)."""
    if os.environ.get("GR_BENCH_REFRESH") == "1":
        return ROOT / "bench" / "results" / RESULTS_NAME
    return ROOT / "tests" / "output" / RESULTS_NAME


def case_ids() -> list:
    return ["%s:%s" % (rule, kind) for rule in sorted(CORPUS) for kind in ("unsafe", "safe")]


def case_sql(case: str) -> str:
    rule, kind = case.split(":")
    return CORPUS[rule][0 if kind == "unsafe" else 1]


# --------------------------------------------------------------------------- the probe beside the trace
class ProbedConnection:
    """A psycopg2 connection for trace_file that also records, after each statement of the file,
    the rows it read and wrote per table (pg_stat_xact_user_tables, same transaction) and the names
    of the relations at that moment (the trace reports names; a rename changes them)."""

    def __init__(self, conn):
        self.conn = conn
        self.probes = []  # (statement sql, {oid: (read, ins, upd, del)} delta, {name: oid})
        self._stats = {}

    @property
    def autocommit(self):
        return self.conn.autocommit

    @autocommit.setter
    def autocommit(self, value):
        self.conn.autocommit = value

    def rollback(self):
        self.conn.rollback()

    def cursor(self):
        return ProbedCursor(self)

    def snapshot(self) -> dict:
        with self.conn.cursor() as cur:
            cur.execute(STATS)
            return {row[0]: row[1:] for row in cur.fetchall()}

    def record(self, sql: str) -> None:
        now = self.snapshot()
        delta = {}
        for oid, counts in now.items():
            before = self._stats.get(oid, (0, 0, 0, 0))
            # clamped: idx_tup_fetch sums over the table's indexes and falls when one is dropped
            diff = tuple(max(0, a - b) for a, b in zip(counts, before))
            if any(diff):
                delta[oid] = diff
        self._stats = now
        with self.conn.cursor() as cur:
            cur.execute(NAMES)
            names = {name: oid for oid, name in cur.fetchall()}
        self.probes.append((sql, delta, names))


class ProbedCursor:
    def __init__(self, owner: ProbedConnection):
        self.owner = owner
        self.cur = owner.conn.cursor()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cur.close()
        return False

    def execute(self, sql, params=None):
        self.cur.execute(sql, params)
        if sql.startswith("SELECT set_config('lock_timeout'"):
            self.owner._stats = self.owner.snapshot()  # the transaction's start
        elif sql not in (cli.TRACE_LOCKS, cli.TRACE_FILES):
            self.owner.record(sql)

    def fetchall(self):
        return self.cur.fetchall()


# --------------------------------------------------------------------------- databases
def connect(postgres, db: str):
    conn = psycopg2.connect(**postgres.conninfo(db))
    conn.autocommit = True
    return conn


@pytest.fixture(scope="module")
def tablespace(postgres):
    """Tablespace "fast" (rewrite-table's unsafe case moves t there)."""
    location = postgres.base / "ts_fast"
    location.mkdir(exist_ok=True)
    services._chown_tree(location)  # pylint: disable=protected-access
    if postgres.psql("SELECT count(*) FROM pg_tablespace WHERE spcname = 'fast'") == "0":
        postgres.psql("CREATE TABLESPACE fast LOCATION '%s'" % location)
    yield "fast"


def describe(conn) -> dict:
    """The relations the setup made: oid -> (relkind, table oid of an index or 0, rows)."""
    with conn.cursor() as cur:
        cur.execute(RELATIONS)
        found = {}
        for oid, kind, table in cur.fetchall():
            rows = 0
            if kind in ("r", "p", "m"):
                cur.execute("SELECT count(*) FROM %s" % oid_name(cur, oid))
                rows = cur.fetchone()[0]
            found[oid] = (kind, table, rows)
        return found


def oid_name(cur, oid: int) -> str:
    cur.execute("SELECT %s::regclass::text", (oid,))
    return cur.fetchone()[0]


# --------------------------------------------------------------------------- verdicts
def trace_verdicts(entries: list, probes: list, relations: dict) -> tuple[list, list]:
    """Per statement of one traced file: (entry, reasons it is unsafe, [] when safe); and the
    reasons the file cannot be judged (statements the trace skipped)."""
    untraced = ["%s: %s" % (e["statement"], e["skipped"]) for e in entries
                if "skipped" in e
                and not e["statement"].upper().startswith(("BEGIN", "COMMIT", "START", "ROLLBACK", "END"))]
    probes = list(probes)
    held = set()  # (oid, mode, name) of the blocking locks the file's transaction holds
    judged = []
    nonempty = {oid for oid, (kind, _table, rows) in relations.items() if rows > 0}
    for entry in entries:
        if "skipped" in entry:
            continue
        if "error" in entry:
            judged.append((entry, ["fails: %s" % entry["error"]]))
            break
        sql, delta, names = probes.pop(0)
        assert lint._one_line(sql) == entry["statement"]  # pylint: disable=protected-access
        node = lint.split_statements(sql)[0].node
        own = set()
        for rel, mode in entry["locks"]:
            oid = names.get(rel)
            kind = relations.get(oid, ("", 0, 0))[0]
            blocking = TABLE_BLOCKING if kind in ("r", "p") else MATVIEW_BLOCKING if kind == "m" else set()
            if oid in nonempty and mode in blocking:
                own.add((oid, mode, rel))
        locks = own if lint.runs_alone(node) else held | own
        if not lint.runs_alone(node):
            held |= own
        reasons = []
        rewritten = []
        for rel in entry["rewritten"]:
            oid = names.get(rel)
            kind, table, _rows = relations.get(oid, ("", 0, 0))
            if oid in nonempty or (kind == "i" and table in nonempty):
                rewritten.append(rel)
        if rewritten:
            reasons.append("rewrites %s" % ", ".join(rewritten))
        touched = sorted("%s (%s)" % (name, ", ".join("%s %d" % pair for pair in zip(COUNTS, delta[oid]) if pair[1]))
                         for name, oid in names.items() if oid in nonempty and oid in delta)
        if touched and locks:
            reasons.append("rows of %s under %s" % (
                ", ".join(touched), ", ".join(sorted("%s %s" % (rel, mode) for _oid, mode, rel in locks))))
        for name, oid in names.items():
            if oid in nonempty and oid in delta:
                _read, _ins, upd, dele = delta[oid]
                if max(upd, dele) >= relations[oid][2]:
                    reasons.append("updates or deletes every row of %s" % name)
        judged.append((entry, reasons))
    return judged, untraced


def flagged_statements(findings: list) -> dict:
    """(line, statement) -> rules the linter raised on it (gradual:ignore'd ones included)."""
    flagged: dict = {}
    for f in findings:
        flagged.setdefault((f.line, f.statement), set()).add(f.rule)
    return flagged


def compare(case: str, judged: list, findings: list) -> dict:
    flagged = flagged_statements(findings)
    missed, stricter, both = [], [], []
    for entry, reasons in judged:
        rules = sorted(flagged.get((entry["line"], entry["statement"]), ()))
        item = dict(line=entry["line"], statement=entry["statement"], trace=reasons, rules=rules)
        if reasons and not rules:
            missed.append(item)
        elif reasons:
            both.append(item)
        elif rules:
            stricter.append(item)
    return dict(case=case, agree=not missed, missed=missed, unsafe_flagged=both, stricter=stricter)


# --------------------------------------------------------------------------- the test
def run_group(postgres, db: str, extra: str, cases: list, tmp_path: Path) -> list:
    postgres.psql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % db)
    postgres.psql('CREATE DATABASE "%s"' % db)
    conn = connect(postgres, db)
    try:
        with conn.cursor() as cur:
            cur.execute("SET TimeZone = 'UTC'")
            cur.execute(BASE + extra)
        relations = describe(conn)
        results = []
        for case in cases:
            path = tmp_path / ("%s.up.sql" % case.replace(":", "_"))
            path.write_text(case_sql(case) + "\n")
            findings = lint.lint_file(str(path))
            catalog_findings = lint.lint_file(str(path), lint.Catalog(conn))
            probed = ProbedConnection(conn)
            entries = cli.trace_file(probed, lint, str(path))
            judged, untraced = trace_verdicts(entries, probed.probes, relations)
            if untraced:
                results.append(dict(case=case, traceable=False, reason="; ".join(untraced)))
                continue
            failure = next((reasons[0] for _e, reasons in judged if reasons and reasons[0].startswith("fails")), None)
            if failure is not None:
                expected = EXPECTED_FAILURES.get(case)
                if not expected or expected not in failure:
                    results.append(dict(case=case, traceable=False, setup_error=failure))
                    continue
            result = compare(case, judged, findings)
            result["traceable"] = True
            result["agree_with_catalog"] = compare(case, judged, catalog_findings)["agree"]
            results.append(result)
        return results
    finally:
        conn.close()
        postgres.psql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % db)


def test_rules_agree_with_the_trace_on_the_unit_corpus(postgres, tablespace, tmp_path):
    started = time.monotonic()
    groups: dict = {}
    for case in case_ids():
        groups.setdefault(SETUP.get(case, ""), []).append(case)
    results = []
    for n, (extra, cases) in enumerate(sorted(groups.items())):
        results.extend(run_group(postgres, "trace_agreement_%d" % n, extra, cases, tmp_path))
    results.sort(key=lambda r: case_ids().index(r["case"]))
    assert not [r for r in results if "setup_error" in r], [r for r in results if "setup_error" in r]

    traced = [r for r in results if r["traceable"]]
    agree = [r for r in traced if r["agree"]]
    disagree = [r for r in traced if not r["agree"]]
    agree_catalog = [r for r in traced if r["agree_with_catalog"]]
    unsafe = [r for r in traced if r["missed"] or r["unsafe_flagged"]]
    figures = dict(
        issue=25,
        postgresql=postgres.psql("SHOW server_version"),
        cases=len(results),
        traceable=len(traced),
        not_traceable=[dict(case=r["case"], reason=r["reason"]) for r in results if not r["traceable"]],
        agree=len(agree),
        disagree=[dict(case=r["case"], missed=r["missed"]) for r in disagree],
        agreement=round(len(agree) / len(traced), 4),
        # the control: a linter that flags nothing agrees only where the trace finds nothing unsafe
        unsafe_per_trace=len(unsafe),
        agreement_of_a_linter_that_flags_nothing=round(1 - len(unsafe) / len(traced), 4),
        agree_with_catalog=len(agree_catalog),
        disagree_with_catalog=[r["case"] for r in traced if not r["agree_with_catalog"]],
        unsafe_per_trace_and_flagged=[dict(case=r["case"], statements=r["unsafe_flagged"])
                                      for r in traced if r["unsafe_flagged"]],
        stricter_than_trace=[dict(case=r["case"], statements=r["stricter"]) for r in traced if r["stricter"]],
        seconds=round(time.monotonic() - started, 1),
    )
    written = results_path()
    written.parent.mkdir(parents=True, exist_ok=True)
    written.write_text(json.dumps(figures, indent=2) + "\n")
    print("\nmigration trace agreement: %d cases, %d traceable (%d unsafe per the trace), %d agree, "
          "%d disagree %s (%.1f %%); with --dsn catalog: %d agree; %d not traceable; figures in %s"
          % (figures["cases"], figures["traceable"], len(unsafe), figures["agree"], len(disagree),
             [r["case"] for r in disagree], 100 * figures["agreement"], len(agree_catalog),
             len(figures["not_traceable"]), written.relative_to(ROOT)))
    assert figures["cases"] == 2 * len(CORPUS)
    assert figures["agreement_of_a_linter_that_flags_nothing"] < MIN_AGREEMENT  # the trace sees what matters
    assert figures["agreement"] >= MIN_AGREEMENT, json.dumps(figures["disagree"], indent=2)
    assert len(agree_catalog) / len(traced) >= MIN_AGREEMENT, figures["disagree_with_catalog"]
