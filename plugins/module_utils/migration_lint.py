# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Static analysis of PostgreSQL migrations with PostgreSQL's own parser (pglast).

Shared by ``gradual.rollout.pg_migration_lint``, ``gradual.rollout.pg_migrate`` and
``bin/pg-migration-lint``. It imports nothing from Ansible so the CLI can load it alone.

A file is split into statements (with line numbers); each statement gets the lock it takes and a
list of findings ``{file, line, statement, rule, severity, message, suggestion}``. A finding is
silenced by a comment ``-- gradual:ignore <rule-id> <reason>`` placed before the statement (after
the previous one) or inside it; the reason is mandatory.
"""
from __future__ import annotations

import os
import re
import traceback
from dataclasses import dataclass, field

try:
    import pglast
    from pglast import enums as pg_enums
    from pglast.parser import ParseError as PgParseError, scan as pg_scan
    HAS_PGLAST = True
    PGLAST_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - exercised by the sanity import test
    pglast = None
    pg_enums = None
    PgParseError = Exception
    pg_scan = None
    HAS_PGLAST = False
    PGLAST_IMPORT_ERROR = traceback.format_exc()

ERROR = "error"
WARNING = "warning"

# rule id -> (severity, one-line description). The README of the rules is this table.
RULES = {
    "create-index-non-concurrent": (ERROR, "CREATE INDEX without CONCURRENTLY blocks writes"),
    "drop-index-non-concurrent": (ERROR, "DROP INDEX without CONCURRENTLY takes ACCESS EXCLUSIVE"),
    "reindex-non-concurrent": (ERROR, "REINDEX without CONCURRENTLY blocks writes"),
    "concurrently-in-transaction": (ERROR, "CONCURRENTLY cannot run inside a transaction block"),
    "foreign-key-not-valid": (ERROR, "ADD FOREIGN KEY without NOT VALID scans under a write lock"),
    "check-not-valid": (ERROR, "ADD CHECK without NOT VALID scans under ACCESS EXCLUSIVE"),
    "set-not-null": (ERROR, "SET NOT NULL without a validated CHECK scans under ACCESS EXCLUSIVE"),
    "add-column-volatile-default": (ERROR, "ADD COLUMN with a volatile default rewrites the table"),
    "add-column-stored-generated": (ERROR, "ADD COLUMN ... STORED generated rewrites the table"),
    "add-column-not-null-no-default": (ERROR, "ADD COLUMN NOT NULL without a default fails on rows"),
    "alter-column-type": (ERROR, "ALTER COLUMN TYPE rewrites or scans the table"),
    "add-unique-without-index": (ERROR, "ADD UNIQUE / PRIMARY KEY builds an index under a lock"),
    "rename-column": (ERROR, "renaming a column breaks the running release"),
    "rename-table": (ERROR, "renaming a table breaks the running release"),
    "drop-column": (ERROR, "dropping a column breaks the running release"),
    "drop-table": (ERROR, "dropping a table, view or schema breaks the running release"),
    "vacuum-full": (ERROR, "VACUUM FULL rewrites the table under ACCESS EXCLUSIVE"),
    "cluster": (ERROR, "CLUSTER rewrites the table under ACCESS EXCLUSIVE"),
    "lock-table": (ERROR, "explicit LOCK TABLE"),
    "detach-partition-non-concurrent": (ERROR, "DETACH PARTITION without CONCURRENTLY"),
    "attach-partition-scan": (WARNING, "ATTACH PARTITION scans the partition unless a CHECK proves it"),
    "rewrite-table": (ERROR, "SET TABLESPACE / LOGGED / UNLOGGED / ACCESS METHOD rewrites the table"),
    "refresh-matview-non-concurrent": (ERROR, "REFRESH MATERIALIZED VIEW without CONCURRENTLY blocks reads"),
    "truncate": (ERROR, "TRUNCATE removes every row under ACCESS EXCLUSIVE"),
    "unbounded-update": (ERROR, "UPDATE with no WHERE, or one naming no column, rewrites every row in one transaction"),
    "unbounded-delete": (ERROR, "DELETE with no WHERE, or one naming no column, removes every row in one transaction"),
    "ignore-without-reason": (ERROR, "gradual:ignore needs a rule id and a reason"),
}

# Lock modes by strength (PostgreSQL's table-level lock numbering).
LOCK_MODES = ["none", "ACCESS SHARE", "ROW SHARE", "ROW EXCLUSIVE", "SHARE UPDATE EXCLUSIVE",
              "SHARE", "SHARE ROW EXCLUSIVE", "EXCLUSIVE", "ACCESS EXCLUSIVE"]
# Locks that conflict with ordinary reads or writes: they run under the lock_timeout ladder.
STRONG_LOCKS = {"SHARE", "SHARE ROW EXCLUSIVE", "EXCLUSIVE", "ACCESS EXCLUSIVE"}

# Functions whose result changes per row: as a column default they force a table rewrite.
VOLATILE_FUNCTIONS = {
    "random", "gen_random_uuid", "uuid_generate_v1", "uuid_generate_v1mc", "uuid_generate_v4",
    "clock_timestamp", "timeofday", "nextval", "setval", "random_normal", "txid_current",
    "pg_current_xact_id", "statement_timestamp",
}
# Functions known to be stable or immutable (safe as a default in PostgreSQL 11+).
NON_VOLATILE_FUNCTIONS = {
    "now", "transaction_timestamp", "current_timestamp", "current_date", "localtimestamp",
    "lower", "upper", "coalesce", "jsonb_build_object", "json_build_object", "to_jsonb",
    "array", "make_interval", "interval", "concat", "abs", "round",
}
SERIAL_TYPES = {"serial", "serial2", "serial4", "serial8", "smallserial", "bigserial"}

# DROP of these relations breaks a release that still reads them (pglast ObjectType name -> SQL).
DROPPED_RELATIONS = {"OBJECT_TABLE": "TABLE", "OBJECT_VIEW": "VIEW", "OBJECT_MATVIEW": "MATERIALIZED VIEW"}

# ALTER TABLE subcommands (by pglast AlterTableType name) that copy the whole table.
REWRITE_SUBCOMMANDS = {"AT_SetTableSpace": "SET TABLESPACE", "AT_SetLogged": "SET LOGGED",
                       "AT_SetUnLogged": "SET UNLOGGED", "AT_SetAccessMethod": "SET ACCESS METHOD"}

IGNORE_RE = re.compile(r"gradual:ignore\b(?P<rest>.*)$", re.MULTILINE)


class MigrationParseError(Exception):
    """The file is not valid SQL for PostgreSQL's parser."""

    def __init__(self, filename: str, line: int, message: str) -> None:
        super().__init__("%s:%d: %s" % (filename, line, message))
        self.filename = filename
        self.line = line
        self.message = message


@dataclass
class Finding:
    file: str
    line: int
    statement: str
    rule: str
    severity: str
    message: str
    suggestion: str
    ignored: str | None = None  # the reason, when silenced by gradual:ignore

    def to_dict(self) -> dict:
        data = dict(file=self.file, line=self.line, statement=self.statement, rule=self.rule,
                    severity=self.severity, message=self.message, suggestion=self.suggestion)
        if self.ignored is not None:
            data["ignored"] = self.ignored
        return data


@dataclass
class Statement:
    """One statement of a migration file: its text, where it starts and what pglast made of it."""

    sql: str
    line: int
    node: object
    ignores: dict = field(default_factory=dict)  # rule id -> reason
    bad_ignores: list = field(default_factory=list)  # (line, text) of ignores without reason
    in_transaction_block: bool = False

    @property
    def kind(self) -> str:
        return type(self.node).__name__


# --------------------------------------------------------------------------- splitting
def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _parse_error_line(text: str, exc: Exception) -> int:
    location = getattr(exc, "location", None)
    if location is None and len(getattr(exc, "args", ())) > 1:
        location = exc.args[1]
    if isinstance(location, int) and location >= 0:
        return _line_of(text, min(location, len(text)))
    return 1


def _comment_ignores(text: str, tokens: list, start: int, end: int) -> tuple[dict, list]:
    """gradual:ignore comments among TOKENS in [start, end): ({rule: reason}, [(line, bad)])."""
    ignores: dict = {}
    bad: list = []
    for tok in tokens:
        if tok.start < start or tok.start >= end or tok.name not in ("SQL_COMMENT", "C_COMMENT"):
            continue
        body = text[tok.start:tok.end + 1]
        for match in IGNORE_RE.finditer(body):
            words = match.group("rest").replace("*/", " ").split(None, 1)
            if len(words) == 2 and words[0] in RULES and words[1].strip():
                ignores[words[0]] = words[1].strip()
            else:
                bad.append((_line_of(text, tok.start), body.strip()))
    return ignores, bad


def split_statements(text: str, filename: str = "<sql>") -> list[Statement]:
    """Parse TEXT; one Statement per SQL statement, with its first line and its ignores."""
    if not HAS_PGLAST:
        raise RuntimeError("pglast is required to analyse migrations (pip install pglast)")
    try:
        raw = pglast.parse_sql(text)
        tokens = pg_scan(text)
    except PgParseError as exc:
        message = exc.args[0] if exc.args else str(exc)
        raise MigrationParseError(filename, _parse_error_line(text, exc), str(message)) from None
    statements: list[Statement] = []
    prev_end = 0
    in_block = False
    for raw_stmt in raw:
        loc = raw_stmt.stmt_location or 0
        length = raw_stmt.stmt_len or (len(text) - loc)
        first = next((t for t in tokens if t.start >= loc and t.name not in ("SQL_COMMENT", "C_COMMENT")), None)
        start = first.start if first is not None else loc
        end = loc + length
        ignores, bad = _comment_ignores(text, tokens, prev_end, end)
        stmt = Statement(sql=text[start:end].strip(), line=_line_of(text, start), node=raw_stmt.stmt,
                         ignores=ignores, bad_ignores=bad)
        in_block = _track_transaction_block(stmt, in_block)
        statements.append(stmt)
        prev_end = end
    return statements


def _track_transaction_block(stmt: Statement, in_block: bool) -> bool:
    """Mark STMT when inside BEGIN ... COMMIT; return the block state after it."""
    if stmt.kind != "TransactionStmt":
        stmt.in_transaction_block = in_block
        return in_block
    kind = stmt.node.kind
    tsk = pg_enums.TransactionStmtKind
    if kind in (tsk.TRANS_STMT_BEGIN, tsk.TRANS_STMT_START):
        return True
    if kind in (tsk.TRANS_STMT_COMMIT, tsk.TRANS_STMT_ROLLBACK, tsk.TRANS_STMT_PREPARE):
        return False
    return in_block


# --------------------------------------------------------------------------- helpers on nodes
def relname(rangevar) -> str:
    """schema.table (or table) of a RangeVar."""
    if rangevar is None:
        return ""
    if getattr(rangevar, "schemaname", None):
        return "%s.%s" % (rangevar.schemaname, rangevar.relname)
    return rangevar.relname


def _short_name(name: str) -> str:
    return name.split(".")[-1]


def _names(seq) -> list[str]:
    return [getattr(item, "sval", str(item)) for item in (seq or ())]


def _has_defelem(options, name: str) -> bool:
    return any(getattr(opt, "defname", None) == name for opt in (options or ()))


def _walk(node):
    """Every pglast node below NODE (NODE included)."""
    if node is None:
        return
    if isinstance(node, (list, tuple)):
        for item in node:
            yield from _walk(item)
        return
    if not hasattr(node, "__slots__"):
        return
    yield node
    for attr in getattr(node, "__slots__", ()):
        value = getattr(node, attr, None)
        if isinstance(value, (list, tuple)) or hasattr(value, "__slots__"):
            yield from _walk(value)


def _function_names(expr) -> list[str]:
    found = []
    for node in _walk(expr):
        kind = type(node).__name__
        if kind == "FuncCall":
            found.append(_names(node.funcname)[-1].lower())
        elif kind == "SQLValueFunction":
            found.append("current_timestamp")
    return found


def _constraints(coldef) -> list:
    return list(getattr(coldef, "constraints", None) or ())


def _contype(con):
    return pg_enums.ConstrType(con.contype) if con is not None else None


def _deparse(node) -> str:
    from pglast.stream import RawStream
    return RawStream()(node)


# --------------------------------------------------------------------------- locks
def _alter_cmd_lock(cmd) -> str:
    att = pg_enums.AlterTableType
    sub = cmd.subtype
    if sub == att.AT_AddConstraint:
        con = cmd.def_
        if _contype(con) == pg_enums.ConstrType.CONSTR_FOREIGN:
            return "SHARE ROW EXCLUSIVE"
        return "ACCESS EXCLUSIVE"
    if sub in (att.AT_ValidateConstraint, att.AT_SetStatistics, att.AT_ClusterOn,
               att.AT_DropCluster, att.AT_SetOptions, att.AT_ResetOptions):
        return "SHARE UPDATE EXCLUSIVE"
    if sub == att.AT_DetachPartition and getattr(cmd.def_, "concurrent", False):
        return "SHARE UPDATE EXCLUSIVE"
    if sub in (att.AT_AttachPartition,):
        return "SHARE UPDATE EXCLUSIVE"
    return "ACCESS EXCLUSIVE"


def _strongest(locks) -> str:
    best = "none"
    for lock in locks:
        if LOCK_MODES.index(lock) > LOCK_MODES.index(best):
            best = lock
    return best


def lock_of(node) -> str:
    """The strongest table-level lock NODE takes on an existing relation."""
    kind = type(node).__name__
    if kind == "IndexStmt":
        return "SHARE UPDATE EXCLUSIVE" if node.concurrent else "SHARE"
    if kind == "DropStmt":
        if node.removeType == pg_enums.ObjectType.OBJECT_INDEX and node.concurrent:
            return "SHARE UPDATE EXCLUSIVE"
        return "ACCESS EXCLUSIVE"
    if kind == "ReindexStmt":
        return "SHARE UPDATE EXCLUSIVE" if _has_defelem(node.params, "concurrently") else "ACCESS EXCLUSIVE"
    if kind == "AlterTableStmt":
        return _strongest(_alter_cmd_lock(cmd) for cmd in node.cmds or ())
    if kind == "VacuumStmt":
        if _has_defelem(node.options, "full"):
            return "ACCESS EXCLUSIVE"
        return "SHARE UPDATE EXCLUSIVE" if node.is_vacuumcmd else "SHARE UPDATE EXCLUSIVE"
    if kind in ("ClusterStmt", "RenameStmt", "TruncateStmt"):
        return "ACCESS EXCLUSIVE"
    if kind == "RefreshMatViewStmt":
        return "EXCLUSIVE" if node.concurrent else "ACCESS EXCLUSIVE"
    if kind == "LockStmt":
        return LOCK_MODES[node.mode] if 0 < node.mode < len(LOCK_MODES) else "ACCESS EXCLUSIVE"
    if kind in ("UpdateStmt", "DeleteStmt", "InsertStmt", "MergeStmt"):
        return "ROW EXCLUSIVE"
    if kind == "SelectStmt":
        return "ACCESS SHARE"
    if kind == "CreateStmt":
        elements = [[elt] if type(elt).__name__ == "Constraint" else _constraints(elt)
                    for elt in node.tableElts or ()]
        has_fk = any(_contype(c) == pg_enums.ConstrType.CONSTR_FOREIGN for group in elements for c in group)
        return "SHARE ROW EXCLUSIVE" if has_fk else "none"
    if kind in ("CommentStmt", "CreateTrigStmt"):
        return "SHARE ROW EXCLUSIVE"
    if kind in ("TransactionStmt", "VariableSetStmt", "CreateSchemaStmt", "CreateExtensionStmt",
                "CreateFunctionStmt", "CreateSeqStmt", "ViewStmt", "CreateTableAsStmt",
                "CreateEnumStmt", "CompositeTypeStmt", "DoStmt", "GrantStmt", "CreateDomainStmt"):
        return "none"
    return "ACCESS EXCLUSIVE"


def is_concurrent(node) -> bool:
    """True when NODE must run outside a transaction block."""
    kind = type(node).__name__
    if kind == "IndexStmt":
        return bool(node.concurrent)
    if kind == "DropStmt":
        return bool(node.concurrent)
    if kind == "ReindexStmt":
        return _has_defelem(node.params, "concurrently")
    if kind == "VacuumStmt":
        return bool(node.is_vacuumcmd)
    if kind == "AlterTableStmt":
        att = pg_enums.AlterTableType
        return any(cmd.subtype == att.AT_DetachPartition and getattr(cmd.def_, "concurrent", False)
                   for cmd in node.cmds or ())
    if kind in ("CreatedbStmt", "DropdbStmt", "AlterSystemStmt"):
        return True
    return False


def target_table(node) -> str:
    """The table a statement acts on (lower-case name), or ''."""
    kind = type(node).__name__
    if kind in ("IndexStmt", "AlterTableStmt", "ClusterStmt", "UpdateStmt", "DeleteStmt", "InsertStmt",
                "RenameStmt", "ReindexStmt", "RefreshMatViewStmt"):
        if kind == "ReindexStmt" and node.kind != pg_enums.ReindexObjectType.REINDEX_OBJECT_TABLE:
            return ""
        return relname(getattr(node, "relation", None))
    if kind == "VacuumStmt" and node.rels:
        return relname(node.rels[0].relation)
    if kind == "LockStmt" and node.relations:
        return relname(node.relations[0])
    return ""


def locked_relations(node) -> tuple:
    """Existing relations NODE locks: its target and the tables new foreign keys reference."""
    names = [target_table(node)]
    if type(node).__name__ in ("LockStmt", "TruncateStmt"):
        names.extend(relname(rel) for rel in node.relations or ())
    if type(node).__name__ == "AlterTableStmt":
        for cmd in node.cmds or ():
            con = cmd.def_ if cmd.subtype == pg_enums.AlterTableType.AT_AddConstraint else None
            if con is not None and _contype(con) == pg_enums.ConstrType.CONSTR_FOREIGN:
                names.append(relname(con.pktable))
    return tuple(dict.fromkeys(name for name in names if name))


def _created_table(node) -> str:
    kind = type(node).__name__
    if kind == "CreateStmt":
        return relname(node.relation)
    if kind == "CreateTableAsStmt":
        return relname(node.into.rel)
    if kind == "ViewStmt" and not node.replace:
        return relname(node.view)
    return ""


# --------------------------------------------------------------------------- rules
@dataclass
class Context:
    """What earlier statements of the same file established."""

    created_tables: set = field(default_factory=set)
    # (table, column) pairs covered by a validated CHECK (col IS NOT NULL)
    not_null_checks: dict = field(default_factory=dict)  # (table, constraint) -> column
    validated_columns: set = field(default_factory=set)

    def all_created(self, names: list) -> bool:
        """True when every table in NAMES was created earlier in this migration."""
        return all(name in self.created_tables for name in names)


def _finding(rule: str, message: str, suggestion: str) -> tuple:
    return rule, message, suggestion


def _rule_index(node, ctx: Context) -> list:
    if node.concurrent:
        return []
    name = node.idxname or "<name>"
    return [_finding("create-index-non-concurrent",
                     "CREATE INDEX %s on %s takes a SHARE lock: writes to the table wait for the "
                     "whole build" % (name, relname(node.relation)),
                     "CREATE INDEX CONCURRENTLY %s ... (outside a transaction block)" % name)]


def _rule_drop(node, ctx: Context) -> list:
    ot = pg_enums.ObjectType
    if node.removeType == ot.OBJECT_INDEX and not node.concurrent:
        names = ", ".join(".".join(_names(obj)) for obj in node.objects or ())
        return [_finding("drop-index-non-concurrent",
                         "DROP INDEX %s takes ACCESS EXCLUSIVE on its table" % names,
                         "DROP INDEX CONCURRENTLY IF EXISTS %s" % names)]
    what = DROPPED_RELATIONS.get(node.removeType.name)
    if what:
        names = [".".join(_names(obj)) for obj in node.objects or ()]
        if ctx.all_created(names):
            return []
        return [_finding("drop-table",
                         "DROP %s %s breaks the release that still reads it" % (what, ", ".join(names)),
                         "expand/contract: ship code that no longer uses it first, drop it in a later "
                         "release (ignore with a reason once that is true)")]
    if node.removeType == ot.OBJECT_SCHEMA and node.behavior == pg_enums.DropBehavior.DROP_CASCADE:
        names = ", ".join(obj.sval for obj in node.objects or ())
        return [_finding("drop-table",
                         "DROP SCHEMA %s CASCADE drops every table in it under the release that still "
                         "reads them" % names,
                         "drop the tables one by one, each once no release uses it, then DROP SCHEMA "
                         "without CASCADE")]
    return []


def _rule_reindex(node, ctx: Context) -> list:
    if _has_defelem(node.params, "concurrently"):
        return []
    return [_finding("reindex-non-concurrent", "REINDEX blocks writes (and reads through the index)",
                     "REINDEX (CONCURRENTLY) ... outside a transaction block")]


def _rule_vacuum(node, ctx: Context) -> list:
    if node.is_vacuumcmd and _has_defelem(node.options, "full"):
        return [_finding("vacuum-full", "VACUUM FULL rewrites the table under ACCESS EXCLUSIVE",
                         "plain VACUUM, or pg_repack for an online rewrite")]
    return []


def _rule_cluster(node, ctx: Context) -> list:
    return [_finding("cluster", "CLUSTER rewrites %s under ACCESS EXCLUSIVE" % (relname(node.relation) or "tables"),
                     "pg_repack --order-by for an online rewrite")]


def _rule_lock(node, ctx: Context) -> list:
    return [_finding("lock-table", "LOCK TABLE %s IN %s MODE queues every later query on it"
                     % (", ".join(relname(r) for r in node.relations or ()), lock_of(node)),
                     "drop the explicit lock; the runner takes locks with a lock_timeout ladder")]


def _rule_rename(node, ctx: Context) -> list:
    ot = pg_enums.ObjectType
    if node.renameType == ot.OBJECT_COLUMN:
        return [_finding("rename-column", "renaming %s.%s to %s breaks the release that still uses the "
                         "old name" % (relname(node.relation), node.subname, node.newname),
                         "add the new column, dual-write and backfill in batches, switch reads, drop "
                         "the old column in a later release")]
    if node.renameType == ot.OBJECT_TABLE:
        return [_finding("rename-table", "renaming %s to %s breaks the release that still uses the old "
                         "name" % (relname(node.relation), node.newname),
                         "create a view with the old name during the transition, or expand/contract")]
    return []


def _bounds_nothing(where) -> bool:
    """True for a missing WHERE and for one that names no column (WHERE true, WHERE 1 = 1,
    WHERE now() > '2020-01-01'): it keeps or drops every row alike. WHERE CURRENT OF is one row."""
    kinds = {type(n).__name__ for n in _walk(where)}
    return "ColumnRef" not in kinds and "CurrentOfExpr" not in kinds


def _rule_dml(node, ctx: Context) -> list:
    if not _bounds_nothing(node.whereClause):
        return []
    kind = "update" if type(node).__name__ == "UpdateStmt" else "delete"
    where = ("with WHERE %s, which names no column," % _deparse(node.whereClause)
             if node.whereClause is not None else "without WHERE")
    return [_finding("unbounded-%s" % kind,
                     "%s on %s %s touches every row in one transaction"
                     % (kind.upper(), relname(node.relation), where),
                     "backfill in batches: %s ... WHERE id IN (SELECT id ... LIMIT 10000), repeated "
                     "until no row is left, each batch its own transaction" % kind.upper())]


def _coldef_findings(table: str, coldef) -> list:
    found = []
    cons = _constraints(coldef)
    ct = pg_enums.ConstrType
    types = {_contype(c) for c in cons}
    default = next((c for c in cons if _contype(c) == ct.CONSTR_DEFAULT), None)
    typname = _names(coldef.typeName.names)[-1].lower() if coldef.typeName else ""
    col = "%s.%s" % (table, coldef.colname)
    if typname in SERIAL_TYPES or ct.CONSTR_IDENTITY in types:
        what = typname if typname in SERIAL_TYPES else "GENERATED AS IDENTITY"
        found.append(_finding("add-column-volatile-default",
                              "ADD COLUMN %s %s fills every row from a sequence: full rewrite under "
                              "ACCESS EXCLUSIVE" % (col, what),
                              "add a nullable column, set the default from a sequence for new rows, "
                              "backfill old rows in batches"))
    if default is not None:
        funcs = _function_names(default.raw_expr)
        volatile = [f for f in funcs if f in VOLATILE_FUNCTIONS]
        unknown = [f for f in funcs if f not in VOLATILE_FUNCTIONS and f not in NON_VOLATILE_FUNCTIONS]
        if volatile or unknown:
            found.append(_finding("add-column-volatile-default",
                                  "ADD COLUMN %s DEFAULT calls %s: a volatile default rewrites the table "
                                  "under ACCESS EXCLUSIVE" % (col, ", ".join(volatile or unknown)),
                                  "add the column without default (or with a constant), then "
                                  "ALTER COLUMN ... SET DEFAULT and backfill old rows in batches"))
    if ct.CONSTR_GENERATED in types:
        found.append(_finding("add-column-stored-generated",
                              "ADD COLUMN %s GENERATED ... STORED computes every row under ACCESS "
                              "EXCLUSIVE" % col,
                              "add a plain nullable column filled by a trigger and backfilled in "
                              "batches, or compute it in a view"))
    if ct.CONSTR_NOTNULL in types and default is None and ct.CONSTR_GENERATED not in types \
            and ct.CONSTR_IDENTITY not in types and typname not in SERIAL_TYPES:
        found.append(_finding("add-column-not-null-no-default",
                              "ADD COLUMN %s NOT NULL without DEFAULT fails as soon as the table has "
                              "a row" % col,
                              "ADD COLUMN ... NOT NULL DEFAULT <constant> (instant since PostgreSQL "
                              "11), or add it nullable, backfill, then the CHECK NOT VALID / "
                              "VALIDATE / SET NOT NULL sequence"))
    for con in cons:
        if _contype(con) == ct.CONSTR_FOREIGN:
            found.append(_finding("foreign-key-not-valid",
                                  "ADD COLUMN %s REFERENCES validates under SHARE ROW EXCLUSIVE" % col,
                                  "add the column, then ADD CONSTRAINT ... FOREIGN KEY ... NOT VALID "
                                  "and VALIDATE CONSTRAINT in a separate transaction"))
        if _contype(con) == ct.CONSTR_CHECK:
            found.append(_finding("check-not-valid",
                                  "ADD COLUMN %s CHECK scans the table under ACCESS EXCLUSIVE" % col,
                                  "add the column, then ADD CONSTRAINT ... CHECK (...) NOT VALID and "
                                  "VALIDATE CONSTRAINT in a separate transaction"))
        if _contype(con) in (ct.CONSTR_UNIQUE, ct.CONSTR_PRIMARY):
            found.append(_finding("add-unique-without-index",
                                  "ADD COLUMN %s UNIQUE/PRIMARY KEY builds an index under ACCESS "
                                  "EXCLUSIVE" % col,
                                  "CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT ... UNIQUE "
                                  "USING INDEX"))
    return found


def _not_null_check_column(con) -> str | None:
    """The column of a CHECK (col IS NOT NULL), else None."""
    expr = getattr(con, "raw_expr", None)
    if type(expr).__name__ != "NullTest":
        return None
    if expr.nulltesttype != pg_enums.NullTestType.IS_NOT_NULL or type(expr.arg).__name__ != "ColumnRef":
        return None
    return _names(expr.arg.fields)[-1]


def _constraint_findings(table: str, con, ctx: Context) -> list:
    ct = pg_enums.ConstrType
    name = con.conname or "<name>"
    kind = _contype(con)
    if kind == ct.CONSTR_FOREIGN and not con.skip_validation:
        return [_finding("foreign-key-not-valid",
                         "ADD FOREIGN KEY %s on %s scans the table under SHARE ROW EXCLUSIVE (writes "
                         "wait on both tables)" % (name, table),
                         "ADD CONSTRAINT %s FOREIGN KEY ... NOT VALID; then in a separate transaction "
                         "ALTER TABLE %s VALIDATE CONSTRAINT %s" % (name, table, name))]
    if kind == ct.CONSTR_CHECK:
        if con.skip_validation:
            column = _not_null_check_column(con)
            if column and con.conname:
                ctx.not_null_checks[(table, con.conname)] = column
            return []
        return [_finding("check-not-valid",
                         "ADD CHECK %s on %s scans the table under ACCESS EXCLUSIVE" % (name, table),
                         "ADD CONSTRAINT %s CHECK (...) NOT VALID; then in a separate transaction "
                         "ALTER TABLE %s VALIDATE CONSTRAINT %s" % (name, table, name))]
    if kind in (ct.CONSTR_UNIQUE, ct.CONSTR_PRIMARY) and not con.indexname:
        what = "UNIQUE" if kind == ct.CONSTR_UNIQUE else "PRIMARY KEY"
        return [_finding("add-unique-without-index",
                         "ADD %s %s on %s builds its index under ACCESS EXCLUSIVE" % (what, name, table),
                         "CREATE UNIQUE INDEX CONCURRENTLY %s ON %s (...); then ALTER TABLE %s ADD "
                         "CONSTRAINT %s %s USING INDEX %s" % (name, table, table, name, what, name))]
    if kind == ct.CONSTR_EXCLUSION:
        return [_finding("add-unique-without-index",
                         "ADD EXCLUDE %s on %s builds its index under ACCESS EXCLUSIVE" % (name, table),
                         "exclusion constraints cannot use an existing index: add it on an empty or new "
                         "table, or during a maintenance window")]
    return []


def _alter_type_finding(table: str, cmd) -> list:
    coldef = cmd.def_
    typ = _names(coldef.typeName.names)[-1].lower() if coldef.typeName else ""
    using = getattr(coldef, "raw_default", None)
    col = "%s.%s" % (table, cmd.name)
    if typ in ("text", "varchar") and not coldef.typeName.typmods and using is None:
        return [("alter-column-type", WARNING,
                 "ALTER COLUMN %s TYPE %s is metadata-only from varchar/text, but rewrites from any "
                 "other type" % (col, typ),
                 "make sure the old type is varchar or text (binary-coercible); otherwise use a new "
                 "column, backfill and switch")]
    return [_finding("alter-column-type",
                     "ALTER COLUMN %s TYPE %s rewrites or scans the table under ACCESS EXCLUSIVE"
                     % (col, typ),
                     "add a new column of the new type, dual-write, backfill in batches, switch reads, "
                     "drop the old column later")]


def _alter_cmd_findings(table: str, cmd, ctx: Context) -> list:
    att = pg_enums.AlterTableType
    sub = cmd.subtype
    if sub == att.AT_AddColumn:
        return _coldef_findings(table, cmd.def_)
    if sub == att.AT_AddConstraint:
        return _constraint_findings(table, cmd.def_, ctx)
    if sub == att.AT_ValidateConstraint:
        column = ctx.not_null_checks.get((table, cmd.name))
        if column:
            ctx.validated_columns.add((table, column))
        return []
    if sub == att.AT_SetNotNull:
        if (table, cmd.name) in ctx.validated_columns:
            return []
        return [_finding("set-not-null",
                         "SET NOT NULL on %s.%s scans the table under ACCESS EXCLUSIVE" % (table, cmd.name),
                         "ADD CONSTRAINT %s_%s_not_null CHECK (%s IS NOT NULL) NOT VALID; VALIDATE "
                         "CONSTRAINT (separate transaction); SET NOT NULL (no scan); DROP CONSTRAINT"
                         % (_short_name(table), cmd.name, cmd.name))]
    if sub == att.AT_AlterColumnType:
        return _alter_type_finding(table, cmd)
    if sub == att.AT_DropColumn:
        return [_finding("drop-column",
                         "DROP COLUMN %s.%s breaks the release that still reads or writes it"
                         % (table, cmd.name),
                         "expand/contract: ship code that ignores the column first, drop it in a later "
                         "release (ignore with a reason once that is true)")]
    if sub.name in REWRITE_SUBCOMMANDS:
        return [_finding("rewrite-table",
                         "ALTER TABLE %s %s rewrites the whole table under ACCESS EXCLUSIVE"
                         % (table, REWRITE_SUBCOMMANDS[sub.name]),
                         "pg_repack --tablespace moves a table online" if sub == att.AT_SetTableSpace
                         else "create the table as wanted, copy the rows in batches while the "
                         "application writes to both, then switch")]
    if sub == att.AT_AttachPartition and relname(cmd.def_.name) not in ctx.created_tables:
        return [("attach-partition-scan", WARNING,
                 "ATTACH PARTITION %s to %s scans it under ACCESS EXCLUSIVE to check the bound (and "
                 "any default partition of %s too)" % (relname(cmd.def_.name), table, table),
                 "on the partition: ADD CONSTRAINT ... CHECK (<the bound>) NOT VALID, VALIDATE "
                 "CONSTRAINT; then ATTACH skips the scan; drop the CHECK afterwards")]
    if sub == att.AT_DetachPartition and not getattr(cmd.def_, "concurrent", False):
        return [_finding("detach-partition-non-concurrent",
                         "DETACH PARTITION on %s takes ACCESS EXCLUSIVE on the parent" % table,
                         "ALTER TABLE %s DETACH PARTITION ... CONCURRENTLY (outside a transaction "
                         "block)" % table)]
    return []


def _rule_refresh(node, ctx: Context) -> list:
    if node.concurrent:
        return []
    view = relname(node.relation)
    return [_finding("refresh-matview-non-concurrent",
                     "REFRESH MATERIALIZED VIEW %s takes ACCESS EXCLUSIVE: reads of it wait for the "
                     "whole refresh" % view,
                     "REFRESH MATERIALIZED VIEW CONCURRENTLY %s (needs a unique index on the view)" % view)]


def _rule_truncate(node, ctx: Context) -> list:
    names = [relname(rel) for rel in node.relations or ()]
    if ctx.all_created(names):
        return []
    return [_finding("truncate",
                     "TRUNCATE %s removes every row under ACCESS EXCLUSIVE; no down migration brings "
                     "them back" % ", ".join(names),
                     "DELETE in batches (each its own transaction) after a backup, or ignore with a "
                     "reason when the rows are disposable")]


def _rule_alter(node, ctx: Context) -> list:
    table = relname(node.relation)
    found = []
    for cmd in node.cmds or ():
        found.extend(_alter_cmd_findings(table, cmd, ctx))
    return found


RULE_DISPATCH = {
    "IndexStmt": _rule_index,
    "DropStmt": _rule_drop,
    "ReindexStmt": _rule_reindex,
    "VacuumStmt": _rule_vacuum,
    "ClusterStmt": _rule_cluster,
    "LockStmt": _rule_lock,
    "RenameStmt": _rule_rename,
    "UpdateStmt": _rule_dml,
    "DeleteStmt": _rule_dml,
    "AlterTableStmt": _rule_alter,
    "RefreshMatViewStmt": _rule_refresh,
    "TruncateStmt": _rule_truncate,
}


def _statement_findings(stmt: Statement, ctx: Context) -> list:
    """(rule, severity, message, suggestion) tuples for STMT, updating CTX."""
    raw = []
    table = target_table(stmt.node)
    new_table = table and table in ctx.created_tables
    check = RULE_DISPATCH.get(stmt.kind)
    if check is not None:
        for item in check(stmt.node, ctx):
            raw.append(item if len(item) == 4 else (item[0], RULES[item[0]][0], item[1], item[2]))
    if new_table:
        # rewrites and locks on a table created earlier in this migration hurt nobody
        raw = [item for item in raw if item[0] in ("concurrently-in-transaction",)]
    if is_concurrent(stmt.node) and stmt.in_transaction_block:
        raw.append(("concurrently-in-transaction", ERROR,
                    "%s cannot run inside BEGIN ... COMMIT (PostgreSQL refuses it)" % stmt.kind,
                    "remove BEGIN/COMMIT around it; pg_migrate runs CONCURRENTLY statements on their "
                    "own and groups the rest in one transaction"))
    created = _created_table(stmt.node)
    if created:
        ctx.created_tables.add(created)
    for line, text in stmt.bad_ignores:
        raw.append(("ignore-without-reason", ERROR, "'%s' (line %d) has no known rule id or no reason"
                    % (text, line), "-- gradual:ignore <rule-id> <why this is safe here>"))
    return raw


# Rules about breaking the running release do not apply to a down migration: it runs after the
# release that used the objects has been rolled back, and dropping what the up created is its job.
RELEASE_RULES = {"rename-column", "rename-table", "drop-column", "drop-table"}


def is_down_file(filename: str) -> bool:
    return filename.endswith(".down.sql")


def lint_statements(statements: list[Statement], filename: str = "<sql>") -> list[Finding]:
    """Findings for parsed STATEMENTS; ignored ones carry ``ignored=<reason>``."""
    ctx = Context()
    findings = []
    down = is_down_file(filename)
    for stmt in statements:
        for rule, severity, message, suggestion in _statement_findings(stmt, ctx):
            if down and rule in RELEASE_RULES:
                continue
            reason = stmt.ignores.get(rule) if rule != "ignore-without-reason" else None
            findings.append(Finding(file=filename, line=stmt.line, statement=_one_line(stmt.sql),
                                    rule=rule, severity=severity, message=message,
                                    suggestion=suggestion, ignored=reason))
    return findings


def _one_line(sql: str, width: int = 200) -> str:
    text = " ".join(sql.split())
    return text if len(text) <= width else text[:width - 3] + "..."


def lint_text(text: str, filename: str = "<sql>") -> list[Finding]:
    return lint_statements(split_statements(text, filename), filename)


def active(findings: list[Finding]) -> list[Finding]:
    """Findings not silenced by gradual:ignore."""
    return [f for f in findings if f.ignored is None]


# --------------------------------------------------------------------------- files
def migration_files(paths: list[str]) -> list[str]:
    """*.sql files named by PATHS (directories are walked, sorted by name)."""
    files = []
    for path in paths:
        if os.path.isdir(path):
            for root, _dirs, names in sorted(os.walk(path)):
                files.extend(os.path.join(root, n) for n in sorted(names) if n.endswith(".sql"))
        elif os.path.exists(path):
            files.append(path)
        else:
            raise FileNotFoundError("%s: no such file or directory" % path)
    return files


def lint_file(path: str) -> list[Finding]:
    with open(path, encoding="utf-8") as handle:
        return lint_text(handle.read(), path)
