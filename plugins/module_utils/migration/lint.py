# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Static analysis of PostgreSQL migrations with PostgreSQL's own parser (pglast).

Shared by ``gradual.rollout.pg_migration_lint``, ``gradual.rollout.pg_migrate`` and
``bin/pg-migration-lint``. It imports nothing from Ansible, so the CLI needs only pglast.

A file is split into statements (with line numbers); each statement gets the lock it takes and a
list of findings ``{file, line, statement, rule, severity, message, suggestion}``. A finding is
silenced by a comment ``-- gradual:ignore <rule-id> <reason>`` placed before the statement (after
the previous one) or inside it; the reason is mandatory.
"""
from __future__ import annotations

import os
import re
import traceback
from dataclasses import dataclass, field, replace

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
    "concurrently-in-transaction": (WARNING, "CONCURRENTLY inside BEGIN ... COMMIT: pg_migrate runs it alone, "
                                    "psql would fail"),
    "foreign-key-not-valid": (ERROR, "ADD FOREIGN KEY without NOT VALID scans under a write lock"),
    "check-not-valid": (ERROR, "ADD CHECK without NOT VALID scans under ACCESS EXCLUSIVE"),
    "set-not-null": (ERROR, "SET NOT NULL without a validated CHECK scans under ACCESS EXCLUSIVE"),
    "add-column-volatile-default": (ERROR, "ADD COLUMN with a volatile default rewrites the table"),
    "add-column-stored-generated": (ERROR, "ADD COLUMN ... STORED generated rewrites the table"),
    "add-column-not-null-no-default": (ERROR, "ADD COLUMN NOT NULL without a default fails on rows"),
    "alter-column-type": (ERROR, "ALTER COLUMN TYPE rewrites the table unless the change is binary-coercible"),
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
    "unbounded-update": (ERROR, "UPDATE whose WHERE matches every row rewrites them all in one transaction"),
    "unbounded-delete": (ERROR, "DELETE whose WHERE matches every row removes them all in one transaction"),
    "drop-database": (ERROR, "DROP DATABASE destroys every table of a database"),
    "alter-domain-constraint": (ERROR, "ALTER DOMAIN ADD CONSTRAINT / SET NOT NULL checks every column of the "
                                "domain under a SHARE lock"),
    "rename-enum-value": (ERROR, "ALTER TYPE ... RENAME VALUE breaks the release that still uses the old value"),
    "rename-schema": (ERROR, "renaming a schema breaks the running release"),
    "set-schema": (ERROR, "moving an object to another schema breaks the running release"),
    "rename-view": (ERROR, "renaming a view or materialized view breaks the running release"),
    "access-exclusive-held": (ERROR, "a statement that reads or writes rows after an ACCESS EXCLUSIVE lock in the "
                              "same transaction holds that lock through it"),
    "primary-key-nullable": (ERROR, "ADD PRIMARY KEY USING INDEX on a column not known NOT NULL scans under "
                             "ACCESS EXCLUSIVE"),
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


# Spellings of false for a boolean option of VACUUM / REINDEX (FULL false, CONCURRENTLY off, FULL 0).
FALSE_WORDS = {"false", "off", "no", "0"}


def _option_on(options, name: str) -> bool:
    """True when the boolean option NAME is given and not switched off: (FULL), (FULL true)."""
    for opt in options or ():
        if getattr(opt, "defname", None) != name:
            continue
        arg = getattr(opt, "arg", None)
        if arg is None:
            return True
        for attr in ("boolval", "ival", "sval"):
            value = getattr(arg, attr, None)
            if value is not None:
                return str(value).lower() not in FALSE_WORDS
        return True
    return False


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
        return "SHARE UPDATE EXCLUSIVE" if _option_on(node.params, "concurrently") else "ACCESS EXCLUSIVE"
    if kind == "AlterTableStmt":
        return _strongest(_alter_cmd_lock(cmd) for cmd in node.cmds or ())
    if kind == "VacuumStmt":
        if _option_on(node.options, "full"):
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
    if kind == "AlterDomainStmt":
        # on every table with a column of the domain, while PostgreSQL checks their rows
        return "SHARE" if _domain_checks_rows(node) or node.subtype == "V" else "none"
    if kind in ("TransactionStmt", "VariableSetStmt", "CreateSchemaStmt", "CreateExtensionStmt",
                "CreateFunctionStmt", "CreateSeqStmt", "ViewStmt", "CreateTableAsStmt",
                "CreateEnumStmt", "CompositeTypeStmt", "DoStmt", "GrantStmt", "CreateDomainStmt",
                "AlterEnumStmt", "DropdbStmt"):
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
        return _option_on(node.params, "concurrently")
    if kind == "VacuumStmt":
        return bool(node.is_vacuumcmd)
    if kind == "AlterTableStmt":
        att = pg_enums.AlterTableType
        return any(cmd.subtype == att.AT_DetachPartition and getattr(cmd.def_, "concurrent", False)
                   for cmd in node.cmds or ())
    if kind in ("CreatedbStmt", "DropdbStmt", "AlterSystemStmt"):
        return True
    return False


def runs_alone(node) -> bool:
    """True when pg_migrate runs NODE as a step of its own: outside a transaction (CONCURRENTLY,
    VACUUM) or in a transaction of its own (an ALTER TABLE that only validates constraints). Every
    other statement of a file shares one transaction with its neighbours: BEGIN/COMMIT in the file
    are dropped, the runner owns the transactions."""
    if is_concurrent(node):
        return True
    return type(node).__name__ == "AlterTableStmt" and all(
        cmd.subtype == pg_enums.AlterTableType.AT_ValidateConstraint for cmd in node.cmds or ())


def target_table(node) -> str:
    """The table a statement acts on (lower-case name), or ''."""
    kind = type(node).__name__
    if kind in ("IndexStmt", "AlterTableStmt", "ClusterStmt", "UpdateStmt", "DeleteStmt", "InsertStmt",
                "RenameStmt", "ReindexStmt", "RefreshMatViewStmt", "AlterObjectSchemaStmt"):
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


# --------------------------------------------------------------------------- what is known
# A column type as (name, type modifiers, is an array): ("varchar", (20,), False).
def type_key(typename) -> tuple | None:
    """The type of a pglast TypeName as a comparable key; None for %TYPE and SETOF."""
    if typename is None or typename.pct_type or typename.setof:
        return None
    mods = []
    for mod in typename.typmods or ():
        val = getattr(mod, "val", None)
        mods.append(getattr(val, "ival", None) if type(val).__name__ == "Integer" else _deparse(mod))
    return _names(typename.names)[-1].lower(), tuple(mods), bool(typename.arrayBounds)


def parse_type(sql_type: str) -> tuple | None:
    """type_key of a type written in SQL, as format_type() returns it ('character varying(20)')."""
    try:
        node = pglast.parse_sql("SELECT NULL::%s" % sql_type)[0].stmt
        return type_key(node.targetList[0].val.typeName)
    except (PgParseError, AttributeError, IndexError):
        return None


def _type_sql(key: tuple) -> str:
    name, mods, array = key
    return "%s%s%s" % (name, "(%s)" % ",".join(str(m) for m in mods) if mods else "", "[]" if array else "")


# Session time zones with a fixed zero offset: there PostgreSQL 12+ changes timestamp to timestamptz
# (and back) without a rewrite.
UTC_ZONES = {"utc", "etc/utc", "gmt", "etc/gmt", "uct", "etc/uct", "universal", "etc/universal", "zulu",
             "etc/zulu", "greenwich", "etc/greenwich", "gmt0", "etc/gmt0", "gmt+0", "etc/gmt+0", "gmt-0",
             "etc/gmt-0"}
TEXT_TYPES = {"varchar", "text"}
TIMESTAMP_TYPES = {"timestamp", "timestamptz"}


def type_change(old: tuple, new: tuple, timezone: str | None) -> str:
    """What ALTER COLUMN TYPE from OLD to NEW costs (type_key tuples, no USING): 'none' when
    PostgreSQL only changes the catalog, 'rewrite', or 'timezone' when that depends on the session
    TimeZone, unknown here (timestamp <-> timestamptz, no rewrite under UTC)."""
    (old_name, old_mods, old_array), (new_name, new_mods, new_array) = old, new
    if old_array != new_array:
        return "rewrite"
    if old == new:
        return "none"
    if old_name in TEXT_TYPES and new_name in TEXT_TYPES:
        # to text or unbounded varchar always; between varchar limits when the limit grows
        if not new_mods or (old_mods and new_mods[0] >= old_mods[0]):
            return "none"
        return "rewrite"
    if old_name == new_name == "numeric":
        # unconstrained, or more precision at the same scale
        if not new_mods or (old_mods and (new_mods + (0,))[1] == (old_mods + (0,))[1] and new_mods[0] >= old_mods[0]):
            return "none"
        return "rewrite"
    if (old_name, new_name) == ("cidr", "inet"):
        return "none"
    if {old_name, new_name} == TIMESTAMP_TYPES and old_mods == new_mods:
        if timezone is None:
            return "timezone"
        return "none" if timezone.lower() in UTC_ZONES else "rewrite"
    return "rewrite"


@dataclass
class ColumnFact:
    """What is known of a column: its type (type_key), whether it is NOT NULL, and whether it was
    added bare in this file (every existing row holds NULL in it)."""

    type: tuple | None = None
    not_null: bool | None = None
    fresh: bool = False


def _regclass(name: str) -> str:
    """NAME (schema.table as the linter writes it) quoted for to_regclass()."""
    return ".".join('"%s"' % part.replace('"', '""') for part in name.split("."))


class Catalog:
    """The live database's view of the relations a migration touches, read on demand through CONN
    (a DB-API connection, psycopg2 in practice; only SELECTs). Relations are resolved with the
    connection's search_path, as the migration's statements will be.

    The catalog describes the database before the files run: once a file is linted, the tables it
    changes are forgotten (``forget``) so later files of the same run are judged without it."""

    def __init__(self, conn) -> None:
        self.conn = conn
        self._tables: dict = {}
        self._indexes: dict = {}
        self._timezone = None
        self.forgotten: set = set()

    def _rows(self, query: str, params: tuple) -> list:
        with self.conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall()

    def _table(self, name: str) -> dict | None:
        """{'columns': {col: ColumnFact}, 'checks': {conname: (col, validated)}} or None."""
        if name in self.forgotten:
            return None
        if name not in self._tables:
            columns = {row[0]: ColumnFact(type=parse_type(row[1]), not_null=bool(row[2]))
                       for row in self._rows(CATALOG_COLUMNS, (_regclass(name),))}
            checks = {}
            for conname, definition, validated in self._rows(CATALOG_CHECKS, (_regclass(name),)):
                column = _check_definition_column(definition)
                if column:
                    checks[conname] = (column, bool(validated))
            self._tables[name] = dict(columns=columns, checks=checks) if columns else None
        return self._tables[name]

    def column(self, table: str, column: str) -> ColumnFact | None:
        info = self._table(table)
        return info["columns"].get(column) if info else None

    def not_null_check(self, table: str, conname: str) -> str | None:
        """The column of CHECK (col IS NOT NULL) constraint CONNAME of TABLE, validated or not."""
        info = self._table(table)
        found = info["checks"].get(conname) if info else None
        return found[0] if found else None

    def validated_not_null(self, table: str, column: str) -> bool:
        info = self._table(table)
        return bool(info) and any(col == column and valid for col, valid in info["checks"].values())

    def index_columns(self, table: str, index: str) -> list | None:
        """Columns of INDEX (in TABLE's schema); None when unknown or an expression index."""
        if table in self.forgotten:
            return None
        name = "%s.%s" % (table.rsplit(".", 1)[0], index) if "." in table else index
        if name not in self._indexes:
            rows = self._rows(CATALOG_INDEX, (_regclass(name),))
            self._indexes[name] = [row[0] for row in rows] if rows and None not in [r[0] for r in rows] else None
        return self._indexes[name]

    @property
    def timezone(self) -> str:
        """The session TimeZone the migration will run under."""
        if self._timezone is None:
            self._timezone = self._rows("SELECT current_setting('TimeZone')", ())[0][0]
        return self._timezone

    def forget(self, tables) -> None:
        self.forgotten.update(tables)


CATALOG_COLUMNS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull
  FROM pg_attribute a
 WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped
"""
CATALOG_CHECKS = """
SELECT c.conname, pg_get_constraintdef(c.oid), c.convalidated
  FROM pg_constraint c
 WHERE c.conrelid = to_regclass(%s) AND c.contype = 'c'
"""
# one row per key column, NULL for an expression
CATALOG_INDEX = """
SELECT a.attname
  FROM pg_index i
  CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
  LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
 WHERE i.indexrelid = to_regclass(%s) AND k.n <= i.indnkeyatts
 ORDER BY k.n
"""


def _check_definition_column(definition: str) -> str | None:
    """The column of a pg_get_constraintdef() text 'CHECK ((col IS NOT NULL))', else None."""
    try:
        node = pglast.parse_sql("ALTER TABLE t ADD %s" % definition)[0].stmt
    except PgParseError:
        return None
    return _not_null_check_column(node.cmds[0].def_)


# --------------------------------------------------------------------------- rules
@dataclass
class Context:
    """What earlier statements of the same file established, and the live catalog if any."""

    created_tables: set = field(default_factory=set)
    # (table, column) pairs covered by a validated CHECK (col IS NOT NULL)
    not_null_checks: dict = field(default_factory=dict)  # (table, constraint) -> column
    validated_columns: set = field(default_factory=set)
    columns: dict = field(default_factory=dict)  # (table, column) -> ColumnFact from this file
    indexes: dict = field(default_factory=dict)  # index name -> [columns], created in this file
    timezone: str | None = None  # SET TimeZone in this file
    held: tuple | None = None  # (table, line): ACCESS EXCLUSIVE held by the current transaction
    catalog: Catalog | None = None

    def all_created(self, names: list) -> bool:
        """True when every table in NAMES was created earlier in this migration."""
        return all(name in self.created_tables for name in names)

    def column(self, table: str, column: str) -> ColumnFact | None:
        fact = self.columns.get((table, column))
        if fact is None and self.catalog is not None:
            fact = self.catalog.column(table, column)
        return fact

    def not_null_known(self, table: str, column: str) -> bool:
        """NOT NULL, or covered by a validated CHECK (col IS NOT NULL): SET NOT NULL skips the scan."""
        fact = self.column(table, column)
        if fact is not None and fact.not_null:
            return True
        if (table, column) in self.validated_columns:
            return True
        return self.catalog is not None and self.catalog.validated_not_null(table, column)

    def session_timezone(self) -> str | None:
        if self.timezone is None and self.catalog is not None:
            return self.catalog.timezone
        return self.timezone


NEEDS_CATALOG = "lint with the live catalog (pg-migration-lint --dsn, or pg_migrate) to judge it exactly"


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
    if _option_on(node.params, "concurrently"):
        return []
    return [_finding("reindex-non-concurrent", "REINDEX blocks writes (and reads through the index)",
                     "REINDEX (CONCURRENTLY) ... outside a transaction block")]


def _rule_vacuum(node, ctx: Context) -> list:
    if node.is_vacuumcmd and _option_on(node.options, "full"):
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
    if node.renameType in (ot.OBJECT_VIEW, ot.OBJECT_MATVIEW):
        old = relname(node.relation)
        return [_finding("rename-view", "renaming view %s to %s breaks the release that still reads the old "
                         "name" % (old, node.newname),
                         "CREATE VIEW %s AS SELECT * FROM %s beside the old one; drop the old view in a "
                         "later release, once no release reads it" % (node.newname, old))]
    if node.renameType == ot.OBJECT_SCHEMA:
        return [_finding("rename-schema", "renaming schema %s to %s breaks every query of the running "
                         "release that names it or finds it in search_path" % (node.subname, node.newname),
                         "keep the schema name; or create schema %s, ship a release that uses it, move "
                         "the objects one by one (views left behind in %s), drop %s last"
                         % (node.newname, node.subname, node.subname))]
    return []


def _rule_dropdb(node, ctx: Context) -> list:
    return [_finding("drop-database", "DROP DATABASE %s destroys every table in it; no down migration "
                     "brings them back" % node.dbname,
                     "drop databases by hand after a backup, never from a migration (or ignore with a "
                     "reason when the database is disposable)")]


def _domain_checks_rows(node) -> bool:
    """ALTER DOMAIN ADD CONSTRAINT (unless NOT VALID) and SET NOT NULL check every stored value."""
    if node.subtype == "O":
        return True
    return node.subtype == "C" and not getattr(node.def_, "skip_validation", False)


def _rule_alter_domain(node, ctx: Context) -> list:
    if not _domain_checks_rows(node):
        return []
    domain = ".".join(_names(node.typeName))
    what = "SET NOT NULL" if node.subtype == "O" else "ADD CONSTRAINT %s" % (node.def_.conname or "<name>")
    return [_finding("alter-domain-constraint",
                     "ALTER DOMAIN %s %s checks every column of type %s in every table under a SHARE "
                     "lock: writes to those tables wait for the whole scan" % (domain, what, domain),
                     "ALTER DOMAIN %s ADD CONSTRAINT ... CHECK (...) NOT VALID (new values only, no "
                     "scan); VALIDATE CONSTRAINT also scans under SHARE (PostgreSQL 17 and older): run it "
                     "when writes can wait, or put a CHECK ... NOT VALID + VALIDATE on each table column "
                     "instead" % domain)]


def _rule_alter_enum(node, ctx: Context) -> list:
    if not node.oldVal:
        return []
    enum = ".".join(_names(node.typeName))
    return [_finding("rename-enum-value",
                     "ALTER TYPE %s RENAME VALUE '%s' TO '%s': the running release still writes and "
                     "compares '%s', which no longer exists" % (enum, node.oldVal, node.newVal, node.oldVal),
                     "ALTER TYPE %s ADD VALUE '%s'; ship a release that writes it; UPDATE the rows in "
                     "batches; stop using '%s' (an enum value cannot be dropped: leave it)"
                     % (enum, node.newVal, node.oldVal))]


def _rule_set_schema(node, ctx: Context) -> list:
    name = relname(node.relation) if node.relation is not None else _deparse(node.object)
    if node.relation is not None and ctx.all_created([name]):
        return []
    kind = node.objectType.name.replace("OBJECT_", "").replace("_", " ")
    moved = "%s.%s" % (node.newschema, _short_name(name))
    first = ("leave a view with the old name behind (CREATE VIEW %s AS SELECT * FROM %s)" % (name, moved)
             if node.objectType == pg_enums.ObjectType.OBJECT_TABLE else "create %s beside the old one" % moved)
    return [_finding("set-schema",
                     "ALTER %s %s SET SCHEMA %s breaks the release that still finds it under its old "
                     "schema" % (kind, name, node.newschema),
                     "%s, ship a release that uses the new name, drop the old one later" % first)]


def _bounds_nothing(where) -> bool:
    """True for a missing WHERE and for one that names no column (WHERE true, WHERE 1 = 1,
    WHERE now() > '2020-01-01'): it keeps or drops every row alike. WHERE CURRENT OF is one row."""
    kinds = {type(n).__name__ for n in _walk(where)}
    return "ColumnRef" not in kinds and "CurrentOfExpr" not in kinds


def _matches_every_row(where, fresh: set) -> bool:
    """True when WHERE keeps every row: it bounds nothing, or it is 'col IS NULL' on a column in
    FRESH (added bare in this file, so NULL in every row), or an AND / OR that reduces to those."""
    if _bounds_nothing(where):
        return True
    kind = type(where).__name__
    if kind == "NullTest":
        return (where.nulltesttype == pg_enums.NullTestType.IS_NULL and type(where.arg).__name__ == "ColumnRef"
                and _names(where.arg.fields)[-1] in fresh)
    if kind == "BoolExpr":
        matches = [_matches_every_row(arg, fresh) for arg in where.args]
        if where.boolop == pg_enums.BoolExprType.AND_EXPR:
            return all(matches)
        if where.boolop == pg_enums.BoolExprType.OR_EXPR:
            return any(matches)
    return False


def _rule_dml(node, ctx: Context) -> list:
    table = relname(node.relation)
    fresh = {col for (tbl, col), fact in ctx.columns.items() if tbl == table and fact.fresh}
    if not _matches_every_row(node.whereClause, fresh):
        return []
    kind = "update" if type(node).__name__ == "UpdateStmt" else "delete"
    if node.whereClause is None:
        where = "without WHERE"
    elif _bounds_nothing(node.whereClause):
        where = "with WHERE %s, which names no column," % _deparse(node.whereClause)
    else:
        where = ("with WHERE %s, which every row matches (%s added in this file without a default: "
                 "NULL in every row)," % (_deparse(node.whereClause), ", ".join(sorted(fresh))))
    return [_finding("unbounded-%s" % kind,
                     "%s on %s %s touches every row in one transaction" % (kind.upper(), table, where),
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
                         "CONSTRAINT %s %s USING INDEX %s%s"
                         % (name, table, table, name, what, name,
                            "" if kind == ct.CONSTR_UNIQUE else " (key columns NOT NULL first)"))]
    if kind == ct.CONSTR_PRIMARY:
        return _primary_key_using_index(table, con, ctx)
    if kind == ct.CONSTR_EXCLUSION:
        return [_finding("add-unique-without-index",
                         "ADD EXCLUDE %s on %s builds its index under ACCESS EXCLUSIVE" % (name, table),
                         "exclusion constraints cannot use an existing index: add it on an empty or new "
                         "table, or during a maintenance window")]
    return []


def _not_null_steps(table: str, column: str) -> str:
    name = "%s_%s_not_null" % (_short_name(table), column)
    return ("ALTER TABLE %s ADD CONSTRAINT %s CHECK (%s IS NOT NULL) NOT VALID; VALIDATE CONSTRAINT %s "
            "(separate transaction); SET NOT NULL (no scan); DROP CONSTRAINT %s"
            % (table, name, column, name, name))


def _primary_key_using_index(table: str, con, ctx: Context) -> list:
    """ADD PRIMARY KEY USING INDEX sets NOT NULL on the key columns: a scan under ACCESS EXCLUSIVE
    for each column not already NOT NULL or covered by a validated CHECK (col IS NOT NULL)."""
    columns = ctx.indexes.get(con.indexname)
    if columns is None and ctx.catalog is not None:
        columns = ctx.catalog.index_columns(table, con.indexname)
    if columns is None:
        return [_finding("primary-key-nullable",
                         "ADD PRIMARY KEY USING INDEX %s on %s: the index's columns and whether they are "
                         "NOT NULL are unknown here; each nullable one is scanned under ACCESS EXCLUSIVE. "
                         "%s" % (con.indexname, table, NEEDS_CATALOG.capitalize()),
                         "make every key column NOT NULL first (%s), or ignore with a reason once they are"
                         % _not_null_steps(table, "<column>"))]
    nullable = [col for col in columns if not ctx.not_null_known(table, col)]
    if not nullable:
        return []
    return [_finding("primary-key-nullable",
                     "ADD PRIMARY KEY USING INDEX %s on %s sets NOT NULL on %s: a scan of the table under "
                     "ACCESS EXCLUSIVE" % (con.indexname, table, ", ".join(nullable)),
                     "; then ".join(_not_null_steps(table, col) for col in nullable) +
                     "; then ADD PRIMARY KEY USING INDEX %s" % con.indexname)]


def _alter_type_finding(table: str, cmd, ctx: Context) -> list:
    coldef = cmd.def_
    new = type_key(coldef.typeName)
    typ = _deparse(coldef.typeName)
    using = getattr(coldef, "raw_default", None)
    col = "%s.%s" % (table, cmd.name)
    fact = ctx.column(table, cmd.name)
    old = fact.type if fact is not None else None
    rewrite = "%s TYPE %s%s rewrites %s and rebuilds its indexes under ACCESS EXCLUSIVE" % (
        col, typ, " USING %s" % _deparse(using) if using is not None else "", table)
    new_column = ("add a new column of the new type, dual-write, backfill in batches, switch reads, "
                  "drop the old column later")
    if using is not None:
        return [_finding("alter-column-type", "ALTER COLUMN " + rewrite, new_column)]
    if old is None or new is None:
        if new is not None and new[0] in TEXT_TYPES and not new[1] and not new[2]:
            return [("alter-column-type", WARNING,
                     "ALTER COLUMN %s TYPE %s is metadata-only from varchar/text, but rewrites %s from any "
                     "other type; the current type of %s is unknown: %s" % (col, typ, table, cmd.name, NEEDS_CATALOG),
                     "make sure the old type is varchar or text (binary-coercible); otherwise " + new_column)]
        return [_finding("alter-column-type",
                         "ALTER COLUMN %s, unless the change is binary-coercible (varchar widened or to text, "
                         "numeric precision raised at the same scale, cidr to inet, timestamp to timestamptz "
                         "under UTC); the current type of %s is unknown: %s" % (rewrite, cmd.name, NEEDS_CATALOG),
                         new_column)]
    verdict = type_change(old, new, ctx.session_timezone())
    if verdict == "none":
        return []
    if verdict == "timezone":
        return [_finding("alter-column-type",
                         "ALTER COLUMN %s TYPE %s from %s is metadata-only when the session TimeZone is UTC "
                         "(PostgreSQL 12+), else it rewrites %s; the TimeZone is unknown: SET TimeZone = "
                         "'UTC' earlier in the file, or %s" % (col, typ, _type_sql(old), table, NEEDS_CATALOG),
                         "SET TimeZone = 'UTC' before the ALTER in this file; or " + new_column)]
    return [_finding("alter-column-type", "ALTER COLUMN %s (from %s)" % (rewrite, _type_sql(old)), new_column)]


def _alter_cmd_findings(table: str, cmd, ctx: Context) -> list:
    att = pg_enums.AlterTableType
    sub = cmd.subtype
    if sub == att.AT_AddColumn:
        return _coldef_findings(table, cmd.def_)
    if sub == att.AT_AddConstraint:
        return _constraint_findings(table, cmd.def_, ctx)
    if sub == att.AT_ValidateConstraint:
        column = ctx.not_null_checks.get((table, cmd.name))
        if column is None and ctx.catalog is not None:
            column = ctx.catalog.not_null_check(table, cmd.name)
        if column:
            ctx.validated_columns.add((table, column))
        return []
    if sub == att.AT_SetNotNull:
        if ctx.not_null_known(table, cmd.name):
            return []
        known = "" if ctx.catalog is not None else (
            " (a CHECK (%s IS NOT NULL) validated by an earlier migration spares the scan: %s)"
            % (cmd.name, NEEDS_CATALOG))
        return [_finding("set-not-null",
                         "SET NOT NULL on %s.%s scans the table under ACCESS EXCLUSIVE%s" % (table, cmd.name, known),
                         _not_null_steps(table, cmd.name))]
    if sub == att.AT_AlterColumnType:
        return _alter_type_finding(table, cmd, ctx)
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
    "DropdbStmt": _rule_dropdb,
    "AlterDomainStmt": _rule_alter_domain,
    "AlterEnumStmt": _rule_alter_enum,
    "AlterObjectSchemaStmt": _rule_set_schema,
}


def _rows_touched(node, ctx: Context) -> list:
    """Existing tables whose rows NODE reads or writes: SELECT ... FROM, UPDATE, DELETE, MERGE,
    INSERT ... SELECT, CREATE TABLE ... AS (INSERT ... VALUES touches no existing row)."""
    kind = type(node).__name__
    scope = {"InsertStmt": "selectStmt", "CreateTableAsStmt": "query"}.get(kind)
    if scope is not None:
        node = getattr(node, scope)
    elif kind not in ("SelectStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"):
        return []
    nodes = list(_walk(node))
    ctes = {cte.ctename for n in nodes if type(n).__name__ == "WithClause" for cte in n.ctes or ()}
    names = (relname(n) for n in nodes if type(n).__name__ == "RangeVar")
    return list(dict.fromkeys(n for n in names if n not in ctx.created_tables and n not in ctes))


def _exclusive_target(node, ctx: Context) -> str:
    """The existing table NODE takes ACCESS EXCLUSIVE on, or ''."""
    if lock_of(node) != "ACCESS EXCLUSIVE":
        return ""
    names = list(locked_relations(node))
    if type(node).__name__ == "DropStmt" and node.removeType.name in DROPPED_RELATIONS:
        names.extend(".".join(_names(obj)) for obj in node.objects or ())
    return next((name for name in names if name not in ctx.created_tables), "")


def _held_lock_findings(stmt: Statement, ctx: Context) -> list:
    """pg_migrate runs the statements of a file in one transaction (BEGIN/COMMIT dropped) except
    those that run alone: an ACCESS EXCLUSIVE lock taken by one is held through every later one."""
    if stmt.kind == "TransactionStmt":
        return []
    if runs_alone(stmt.node):
        ctx.held = None
        return []
    found = []
    touched = _rows_touched(stmt.node, ctx) if ctx.held else []
    if touched:
        table, line = ctx.held
        found.append(_finding("access-exclusive-held",
                              "this statement reads or writes rows of %s while the ACCESS EXCLUSIVE lock on %s "
                              "taken at line %d is still held (one transaction): every query on %s waits "
                              "until it ends" % (", ".join(touched), table, line, table),
                              "move it to the next migration file, or before the statement of line %d; "
                              "pg_migrate runs a file's statements in one transaction" % line))
    if ctx.held is None:
        table = _exclusive_target(stmt.node, ctx)
        if table:
            ctx.held = (table, stmt.line)
    return found


def _record_alter_facts(table: str, cmd, ctx: Context) -> None:
    att = pg_enums.AlterTableType
    ct = pg_enums.ConstrType
    sub = cmd.subtype
    if sub == att.AT_AddColumn:
        coldef = cmd.def_
        kinds = {_contype(c) for c in _constraints(coldef)}
        typname = _names(coldef.typeName.names)[-1].lower() if coldef.typeName else ""
        filled = kinds & {ct.CONSTR_DEFAULT, ct.CONSTR_IDENTITY, ct.CONSTR_GENERATED} or typname in SERIAL_TYPES
        ctx.columns[(table, coldef.colname)] = ColumnFact(
            type=type_key(coldef.typeName), not_null=bool(kinds & {ct.CONSTR_NOTNULL, ct.CONSTR_PRIMARY}),
            fresh=not filled)
        return
    if sub in (att.AT_AlterColumnType, att.AT_SetNotNull, att.AT_DropNotNull):
        fact = replace(ctx.column(table, cmd.name) or ColumnFact())
        if sub == att.AT_AlterColumnType:
            fact.type = type_key(cmd.def_.typeName)
        else:
            fact.not_null = sub == att.AT_SetNotNull
        ctx.columns[(table, cmd.name)] = fact
    elif sub == att.AT_AddConstraint and _contype(cmd.def_) == ct.CONSTR_PRIMARY:
        _record_not_null(table, _names(cmd.def_.keys) or ctx.indexes.get(cmd.def_.indexname) or (), ctx)


def _record_not_null(table: str, columns, ctx: Context) -> None:
    for column in columns:
        ctx.columns[(table, column)] = replace(ctx.column(table, column) or ColumnFact(), not_null=True)


def _record_facts(node, ctx: Context) -> None:
    """What NODE establishes for the statements after it: column types and nullability, indexes
    and their columns, the session TimeZone."""
    kind = type(node).__name__
    ct = pg_enums.ConstrType
    if kind == "CreateStmt":
        table = relname(node.relation)
        for elt in node.tableElts or ():
            if type(elt).__name__ == "ColumnDef":
                kinds = {_contype(c) for c in _constraints(elt)}
                ctx.columns[(table, elt.colname)] = ColumnFact(
                    type=type_key(elt.typeName), not_null=bool(kinds & {ct.CONSTR_NOTNULL, ct.CONSTR_PRIMARY}))
            elif type(elt).__name__ == "Constraint" and _contype(elt) == ct.CONSTR_PRIMARY:
                _record_not_null(table, _names(elt.keys), ctx)
    elif kind == "AlterTableStmt":
        for cmd in node.cmds or ():
            _record_alter_facts(relname(node.relation), cmd, ctx)
    elif kind == "IndexStmt" and node.idxname:
        columns = [param.name for param in node.indexParams or ()]
        ctx.indexes[node.idxname] = columns if all(columns) else None
    elif kind == "VariableSetStmt" and (node.name or "").lower() == "timezone":
        value = getattr(node.args[0], "val", None) if node.args else None
        ctx.timezone = getattr(value, "sval", None)


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
        raw = []
    raw.extend((rule, RULES[rule][0], message, suggestion)
               for rule, message, suggestion in _held_lock_findings(stmt, ctx))
    if is_concurrent(stmt.node) and stmt.in_transaction_block:
        raw.append(("concurrently-in-transaction", WARNING,
                    "%s inside BEGIN ... COMMIT: pg_migrate drops the BEGIN/COMMIT and runs it on its own, "
                    "but psql or another runner fails (PostgreSQL refuses CONCURRENTLY in a transaction "
                    "block)" % stmt.kind,
                    "remove BEGIN/COMMIT around it; pg_migrate runs CONCURRENTLY statements on their "
                    "own and groups the rest in one transaction"))
    _record_facts(stmt.node, ctx)
    created = _created_table(stmt.node)
    if created:
        ctx.created_tables.add(created)
    for line, text in stmt.bad_ignores:
        raw.append(("ignore-without-reason", ERROR, "'%s' (line %d) has no known rule id or no reason"
                    % (text, line), "-- gradual:ignore <rule-id> <why this is safe here>"))
    return raw


# Rules about breaking the running release do not apply to a down migration: it runs after the
# release that used the objects has been rolled back, and dropping what the up created is its job.
RELEASE_RULES = {"rename-column", "rename-table", "drop-column", "drop-table", "rename-view", "rename-schema",
                 "set-schema", "rename-enum-value"}


def is_down_file(filename: str) -> bool:
    return filename.endswith(".down.sql")


def lint_statements(statements: list[Statement], filename: str = "<sql>",
                    catalog: Catalog | None = None) -> list[Finding]:
    """Findings for parsed STATEMENTS; ignored ones carry ``ignored=<reason>``. With a CATALOG,
    type changes, SET NOT NULL and primary keys are judged on the live columns and constraints."""
    ctx = Context(catalog=catalog)
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


def lint_text(text: str, filename: str = "<sql>", catalog: Catalog | None = None) -> list[Finding]:
    """Findings of TEXT. A CATALOG then forgets the tables the file changes (see Catalog)."""
    statements = split_statements(text, filename)
    findings = lint_statements(statements, filename, catalog)
    if catalog is not None:
        catalog.forget(changed_tables(statements))
    return findings


def changed_tables(statements: list[Statement]) -> set:
    """Tables whose definition STATEMENTS change (ALTER, rename, drop, move)."""
    names = set()
    for stmt in statements:
        if stmt.kind in ("AlterTableStmt", "RenameStmt", "AlterObjectSchemaStmt"):
            names.add(target_table(stmt.node))
        elif stmt.kind == "DropStmt":
            names.update(".".join(_names(obj)) for obj in stmt.node.objects or ()
                         if isinstance(obj, (list, tuple)))
    return names - {""}


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


def lint_file(path: str, catalog: Catalog | None = None) -> list[Finding]:
    with open(path, encoding="utf-8") as handle:
        return lint_text(handle.read(), path, catalog)
