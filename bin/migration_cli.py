# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg-migration-lint [--format text|json|sarif] [--dsn DSN [--trace]] PATH...: the CI validator for
PostgreSQL migrations.

Run through bin/pg-migration-lint, which makes the collection importable. Exit status: 0 clean
(warnings allowed), 1 when an active finding has severity error (with --trace: when a statement
failed), 2 for usage errors, missing files, SQL that does not parse or a database that cannot be
reached. The rules are the engine's (plugins/module_utils/migration/lint.py, shared with the
modules), which imports nothing from Ansible: the CLI needs only pglast (and psycopg2 for --dsn).

--dsn reads the live catalog (column types and modifiers, NOT NULL, validated CHECK constraints,
index columns, the session TimeZone) so that type changes, SET NOT NULL and ADD PRIMARY KEY USING
INDEX are judged exactly; nothing is written. --trace applies each file inside a transaction that
is rolled back and reports, per statement, the locks it took (pg_locks) and the relations it
rewrote (relfilenode changed): run it against a copy of production, never production itself.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from ansible_collections.gradual.rollout.plugins.module_utils.migration import lint

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
# lock_timeout of a traced statement: a trace waits this long at most behind other sessions
TRACE_LOCK_TIMEOUT = "5s"


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="pg-migration-lint",
                                     description="Find PostgreSQL migration statements that lock or "
                                     "break production. Silence one with "
                                     "'-- gradual:ignore <rule-id> <reason>'.")
    parser.add_argument("--format", choices=("text", "json", "sarif"), default="text",
                        help="sarif: SARIF 2.1.0 for CI code scanning")
    parser.add_argument("--show-ignored", action="store_true",
                        help="also print findings silenced by gradual:ignore (text format)")
    parser.add_argument("--dsn", help="libpq connection string of the database the migrations will run "
                        "on: judge type changes, SET NOT NULL and primary keys on its live catalog "
                        "(read-only); give the pending files only")
    parser.add_argument("--trace", action="store_true",
                        help="with --dsn: run each file in a transaction that is rolled back and report "
                        "per statement the locks taken and the tables rewritten (use a copy of "
                        "production)")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="SQL file or directory")
    args = parser.parse_args(argv)
    if args.trace and not args.dsn:
        parser.error("--trace needs --dsn")
    if args.trace and args.format == "sarif":
        parser.error("--trace reports in text or json")
    return args


def render_text(findings, ignored, files, show_ignored):
    out = []
    for f in findings:
        out.append("%s:%d: %s [%s] %s\n    %s\n    fix: %s"
                   % (f.file, f.line, f.severity, f.rule, f.message, f.statement, f.suggestion))
    if show_ignored:
        for f in ignored:
            out.append("%s:%d: ignored [%s] %s" % (f.file, f.line, f.rule, f.ignored))
    errors = sum(1 for f in findings if f.severity == "error")
    warnings = len(findings) - errors
    if errors:
        out.append("%d error(s), %d warning(s) in %d file(s)" % (errors, warnings, len(files)))
    else:
        out.append("All migrations are safe: %d file(s), 0 errors, %d warning(s), %d ignored"
                   % (len(files), warnings, len(ignored)))
    return "\n".join(out)


def _uri(path: str) -> str:
    """PATH as a SARIF artifact URI: relative to the working directory when inside it."""
    rel = os.path.relpath(path)
    return (path if rel.startswith(os.pardir) else rel).replace(os.sep, "/")


def render_sarif(findings, rules: dict) -> dict:
    """SARIF 2.1.0 log of FINDINGS (ignored ones as in-source suppressions). RULES: lint.RULES."""
    ids = sorted(rules)
    results = []
    for f in findings:
        result = dict(ruleId=f.rule, ruleIndex=ids.index(f.rule), level=f.severity,
                      message=dict(text="%s. Fix: %s" % (f.message, f.suggestion)),
                      locations=[dict(physicalLocation=dict(artifactLocation=dict(uri=_uri(f.file)),
                                                            region=dict(startLine=f.line)))])
        if f.ignored is not None:
            result["suppressions"] = [dict(kind="inSource", justification=f.ignored)]
        results.append(result)
    driver = dict(name="pg-migration-lint", informationUri="https://github.com/gradual-rollout/gradual.rollout",
                  rules=[dict(id=rule, shortDescription=dict(text=rules[rule][1]),
                              defaultConfiguration=dict(level=rules[rule][0])) for rule in ids])
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [dict(tool=dict(driver=driver), results=results)]}


def connect(dsn: str):
    """A read-only autocommit psycopg2 connection; raises RuntimeError saying what is wrong."""
    try:
        import psycopg2  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise RuntimeError("--dsn needs psycopg2 (pip install psycopg2-binary)") from None
    try:
        conn = psycopg2.connect(dsn)
    except psycopg2.Error as exc:
        raise RuntimeError("cannot connect with --dsn: %s" % str(exc).strip()) from None
    conn.autocommit = True
    return conn


# --------------------------------------------------------------------------- trace
TRACE_LOCKS = """
SELECT l.relation::regclass::text, l.mode
  FROM pg_locks l
 WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND l.relation NOT IN (SELECT oid FROM pg_class WHERE relnamespace = 'pg_catalog'::regnamespace)
"""
# by name: an index PostgreSQL rebuilds for a type change is dropped and created again (new oid)
TRACE_FILES = """
SELECT c.oid::regclass::text, c.relfilenode
  FROM pg_class c
 WHERE c.relkind IN ('r', 'm', 'i') AND c.relnamespace <> 'pg_catalog'::regnamespace
   AND c.relnamespace <> 'information_schema'::regnamespace
   AND c.relnamespace NOT IN (SELECT oid FROM pg_namespace WHERE nspname LIKE 'pg_toast%%')
"""


def _query(cur, sql: str) -> list:
    cur.execute(sql)
    return cur.fetchall()


def trace_file(conn, lint, path: str) -> list:
    """Run PATH's statements in one transaction, rolled back at the end; one dict per statement:
    line, statement, locks ([relation, mode] taken by it), rewritten (tables and indexes whose
    relfilenode changed: rewritten or rebuilt), and error or skipped."""
    with open(path, encoding="utf-8") as handle:
        statements = lint.split_statements(handle.read(), path)
    report = []
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT set_config('lock_timeout', %s, true)", (TRACE_LOCK_TIMEOUT,))
            held = set(_query(cur, TRACE_LOCKS))
            files = dict(_query(cur, TRACE_FILES))
            for stmt in statements:
                entry = dict(file=path, line=stmt.line, statement=lint._one_line(stmt.sql), locks=[], rewritten=[])
                report.append(entry)
                if stmt.kind == "TransactionStmt":
                    entry["skipped"] = "the trace runs the file in one transaction"
                    continue
                if lint.is_concurrent(stmt.node):
                    entry["skipped"] = "runs outside a transaction: not traced"
                    continue
                try:
                    cur.execute(stmt.sql)
                except Exception as exc:  # pylint: disable=broad-except  # any driver error ends the trace
                    entry["error"] = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    break
                now = set(_query(cur, TRACE_LOCKS))
                entry["locks"] = sorted([rel, mode] for rel, mode in now - held)
                held = now
                after = dict(_query(cur, TRACE_FILES))
                entry["rewritten"] = sorted(name for name, node in after.items() if files.get(name, node) != node)
                files = after
    finally:
        conn.rollback()
        conn.autocommit = True
    return report


def render_trace(report: list) -> str:
    out = []
    for entry in report:
        out.append("%s:%d: %s" % (entry["file"], entry["line"], entry["statement"]))
        if "skipped" in entry:
            out.append("    skipped: %s" % entry["skipped"])
            continue
        out.append("    locks: %s" % (", ".join("%s %s" % (rel, mode) for rel, mode in entry["locks"]) or "none new"))
        if entry["rewritten"]:
            out.append("    rewritten: %s" % ", ".join(entry["rewritten"]))
        if "error" in entry:
            out.append("    error: %s (the rest of the file was not traced)" % entry["error"])
    out.append("Traced %d statement(s); every change was rolled back" % len(report))
    return "\n".join(out)


def _trace(args, conn, files) -> int:
    report = []
    for path in files:
        report.extend(trace_file(conn, lint, path))
    _out(json.dumps(report, indent=2) if args.format == "json" else render_trace(report))
    return 1 if any("error" in entry for entry in report) else 0


def main(argv=None) -> int:
    """The CLI; returns the exit status."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not lint.HAS_PGLAST:
        _err("pg-migration-lint: pglast is not installed (pip install pglast)")
        return 2
    try:
        files = lint.migration_files(args.paths)
        conn = connect(args.dsn) if args.dsn is not None else None
    except (FileNotFoundError, RuntimeError) as exc:
        _err("pg-migration-lint: %s" % exc)
        return 2
    catalog = lint.Catalog(conn) if conn is not None else None
    findings = []
    path = None
    try:
        for path in files:
            findings.extend(lint.lint_file(path, catalog))
        if args.trace:
            return _trace(args, conn, files)
    except lint.MigrationParseError as exc:
        _err("pg-migration-lint: parse error: %s:%d: %s" % (exc.filename, exc.line, exc.message))
        return 2
    except (OSError, UnicodeDecodeError) as exc:
        _err("pg-migration-lint: cannot read %s: %s" % (path, exc))
        return 2
    finally:
        if conn is not None:
            conn.close()
    active = lint.active(findings)
    ignored = [f for f in findings if f.ignored is not None]
    if args.format == "json":
        _out(json.dumps([f.to_dict() for f in active], indent=2))
    elif args.format == "sarif":
        _out(json.dumps(render_sarif(findings, lint.RULES), indent=2))
    else:
        _out(render_text(active, ignored, files, args.show_ignored))
    return 1 if any(f.severity == "error" for f in active) else 0
