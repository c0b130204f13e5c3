# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""From migration files to an execution plan: discovery, autofix rewrites, transaction steps.

No database here: ``pg_migrate`` executes the plan (``runner``), check mode returns it.
A plan is a list of steps; a step is either one transaction (several statements, run under the
lock_timeout ladder) or one statement that must run outside a transaction (CONCURRENTLY, VACUUM).
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field

from ansible_collections.gradual.rollout.plugins.module_utils.migration import lint

try:
    from pglast import ast as pg_ast, enums as pg_enums
except ImportError:  # pragma: no cover - HAS_PGLAST in lint says why
    pg_ast = None
    pg_enums = None

# NNN_name.up.sql / NNN_name.down.sql: a file-name pattern, not SQL.
FILE_RE = re.compile(r"^(?P<version>\d+)_(?P<name>[A-Za-z0-9_\-]+)\.(?P<direction>up|down)\.sql$")


class PlanError(Exception):
    """The migration directory or a file cannot be planned; the message says what to change."""


@dataclass
class Migration:
    version: str
    name: str
    up_path: str | None = None
    down_path: str | None = None

    @property
    def number(self) -> int:
        return int(self.version)

    def checksum(self) -> str:
        with open(self.up_path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()


@dataclass
class PlannedStatement:
    sql: str
    lock: str
    line: int
    concurrent: bool = False  # outside any transaction, statement_timeout = 0
    isolated: bool = False  # its own transaction (VALIDATE CONSTRAINT)
    rewritten_from: str | None = None
    index_name: str | None = None  # CREATE INDEX CONCURRENTLY: schema-qualified name to check
    drop_index: bool = False  # DROP INDEX CONCURRENTLY: skip when already gone
    relations: tuple = ()  # existing tables it locks (its target, a new foreign key's referenced table)

    def to_dict(self) -> dict:
        data = dict(sql=self.sql, lock=self.lock, line=self.line,
                    transactional=not self.concurrent)
        if self.rewritten_from:
            data["rewritten_from"] = self.rewritten_from
        return data


@dataclass
class Step:
    statements: list
    transactional: bool


@dataclass
class FilePlan:
    path: str
    statements: list  # PlannedStatement
    findings: list  # lint.Finding of the file as written
    blocking: list  # lint.Finding still active after autofix: the runner refuses the file
    steps: list = field(default_factory=list)
    dropped: list = field(default_factory=list)  # statements the runner owns (BEGIN/COMMIT, SET lock_timeout)


# --------------------------------------------------------------------------- discovery
def discover(path: str) -> list[Migration]:
    """Migrations in directory PATH, sorted by version."""
    if not os.path.isdir(path):
        raise PlanError("path %s is not a directory: give the directory holding NNN_name.up.sql files"
                        % path)
    found: dict = {}
    for entry in sorted(os.listdir(path)):
        if not entry.endswith(".sql"):
            continue
        match = FILE_RE.fullmatch(entry)
        if not match:
            raise PlanError("%s does not follow NNN_name.up.sql / NNN_name.down.sql: rename it"
                            % os.path.join(path, entry))
        number = int(match.group("version"))
        mig = found.setdefault(number, Migration(match.group("version"), match.group("name")))
        if mig.name != match.group("name") or mig.version != match.group("version"):
            raise PlanError("version %s is used by two names (%s, %s): give each migration its own "
                            "number" % (match.group("version"), mig.name, match.group("name")))
        key = "%s_path" % match.group("direction")
        setattr(mig, key, os.path.join(path, entry))
    for mig in found.values():
        if mig.up_path is None:
            raise PlanError("%s_%s has a down file but no up file: add %s_%s.up.sql"
                            % (mig.version, mig.name, mig.version, mig.name))
    return [found[k] for k in sorted(found)]


# --------------------------------------------------------------------------- rewrites
def _alter_one(relation, cmd):
    return pg_ast.AlterTableStmt(relation=relation, cmds=(cmd,), objtype=pg_enums.ObjectType.OBJECT_TABLE)


def _validate(relation, name: str):
    cmd = pg_ast.AlterTableCmd(subtype=pg_enums.AlterTableType.AT_ValidateConstraint, name=name,
                               behavior=pg_enums.DropBehavior.DROP_RESTRICT)
    return _alter_one(relation, cmd)


def _column_refs(expr) -> list[str]:
    cols = []
    for node in lint._walk(expr):
        if type(node).__name__ == "ColumnRef":
            cols.append(lint._names(node.fields)[-1])
    return cols


def _constraint_name(table: str, con) -> str:
    if con.conname:
        return con.conname
    ct = pg_enums.ConstrType
    short = lint._short_name(table)
    if lint._contype(con) == ct.CONSTR_FOREIGN:
        return "%s_%s_fkey" % (short, "_".join(lint._names(con.fk_attrs)))
    if lint._contype(con) == ct.CONSTR_PRIMARY:
        return "%s_pkey" % short
    if lint._contype(con) == ct.CONSTR_UNIQUE:
        return "%s_%s_key" % (short, "_".join(lint._names(con.keys)))
    cols = _column_refs(con.raw_expr) or ["expr"]
    return "%s_%s_check" % (short, cols[0])


def _stmt(node, line: int, origin: str, **flags) -> PlannedStatement:
    return PlannedStatement(sql=lint._deparse(node), lock=lint.lock_of(node), line=line,
                            concurrent=lint.is_concurrent(node), rewritten_from=origin,
                            relations=lint.locked_relations(node), **flags)


def _fix_validated_constraint(relation, cmd, line: int, origin: str) -> list:
    table = lint.relname(relation)
    con = cmd.def_
    con.conname = _constraint_name(table, con)
    con.skip_validation = True
    con.initially_valid = False
    con.is_enforced = True
    return [_stmt(_alter_one(relation, cmd), line, origin),
            _stmt(_validate(relation, con.conname), line, origin, isolated=True)]


def _checks_every_row(con) -> bool:
    """A FOREIGN KEY or CHECK: PostgreSQL validates it against every row unless NOT VALID."""
    return lint._contype(con) in (pg_enums.ConstrType.CONSTR_FOREIGN, pg_enums.ConstrType.CONSTR_CHECK)


def _fix_column_constraints(relation, cmd, line: int, origin: str) -> list:
    """ADD COLUMN ... CHECK / REFERENCES: the bare column, then each of those constraints as
    ADD CONSTRAINT ... NOT VALID with its own VALIDATE (PostgreSQL's default constraint names)."""
    coldef = cmd.def_
    kept, moved = [], []
    for con in coldef.constraints or ():
        (moved if _checks_every_row(con) else kept).append(con)
    coldef.constraints = tuple(kept) or None
    out = [_stmt(_alter_one(relation, cmd), line, origin)]
    for con in moved:
        if lint._contype(con) == pg_enums.ConstrType.CONSTR_FOREIGN:
            con.fk_attrs = (pg_ast.String(sval=coldef.colname),)
        add = pg_ast.AlterTableCmd(subtype=pg_enums.AlterTableType.AT_AddConstraint, def_=con)
        out.extend(_fix_validated_constraint(relation, add, line, origin))
    return out


def _fix_set_not_null(relation, cmd, line: int, origin: str) -> list:
    table = lint.relname(relation)
    name = "%s_%s_not_null" % (lint._short_name(table), cmd.name)
    check = pg_ast.Constraint(contype=pg_enums.ConstrType.CONSTR_CHECK, conname=name, skip_validation=True,
                              initially_valid=False, is_enforced=True,
                              raw_expr=pg_ast.NullTest(arg=pg_ast.ColumnRef(fields=(pg_ast.String(sval=cmd.name),)),
                                                       nulltesttype=pg_enums.NullTestType.IS_NOT_NULL))
    add = pg_ast.AlterTableCmd(subtype=pg_enums.AlterTableType.AT_AddConstraint, def_=check)
    drop = pg_ast.AlterTableCmd(subtype=pg_enums.AlterTableType.AT_DropConstraint, name=name,
                                behavior=pg_enums.DropBehavior.DROP_RESTRICT)
    return [_stmt(_alter_one(relation, add), line, origin),
            _stmt(_validate(relation, name), line, origin, isolated=True),
            _stmt(_alter_one(relation, cmd), line, origin),
            _stmt(_alter_one(relation, drop), line, origin)]


def _fix_unique(relation, cmd, line: int, origin: str) -> list:
    table = lint.relname(relation)
    con = cmd.def_
    name = _constraint_name(table, con)
    elems = tuple(pg_ast.IndexElem(name=key.sval, ordering=pg_enums.SortByDir.SORTBY_DEFAULT,
                                   nulls_ordering=pg_enums.SortByNulls.SORTBY_NULLS_DEFAULT)
                  for key in con.keys or ())
    index = pg_ast.IndexStmt(idxname=name, relation=relation, accessMethod="btree", indexParams=elems,
                             unique=True, concurrent=True)
    using = pg_ast.Constraint(contype=con.contype, conname=name, indexname=name)
    add = pg_ast.AlterTableCmd(subtype=pg_enums.AlterTableType.AT_AddConstraint, def_=using)
    out = [_stmt(index, line, origin, index_name=_qualified(relation.schemaname, name))]
    if lint._contype(con) == pg_enums.ConstrType.CONSTR_PRIMARY:
        # PRIMARY KEY USING INDEX sets NOT NULL on the keys: validate a CHECK first so it skips the scan
        for key in con.keys or ():
            out.extend(_fix_set_not_null(relation, pg_ast.AlterTableCmd(
                subtype=pg_enums.AlterTableType.AT_SetNotNull, name=key.sval,
                behavior=pg_enums.DropBehavior.DROP_RESTRICT), line, origin))
    return out + [_stmt(_alter_one(relation, add), line, origin)]


def _fix_alter(node, rules: set, line: int, origin: str) -> list | None:
    att = pg_enums.AlterTableType
    ct = pg_enums.ConstrType
    out = []
    changed = False
    for cmd in node.cmds or ():
        kind = lint._contype(cmd.def_) if cmd.subtype == att.AT_AddConstraint else None
        if kind is not None and _checks_every_row(cmd.def_) and not cmd.def_.skip_validation and \
                {"foreign-key-not-valid", "check-not-valid"} & rules:
            out.extend(_fix_validated_constraint(node.relation, cmd, line, origin))
            changed = True
        elif kind in (ct.CONSTR_UNIQUE, ct.CONSTR_PRIMARY) and not cmd.def_.indexname and \
                "add-unique-without-index" in rules:
            out.extend(_fix_unique(node.relation, cmd, line, origin))
            changed = True
        elif cmd.subtype == att.AT_AddColumn and any(map(_checks_every_row, lint._constraints(cmd.def_))) \
                and {"foreign-key-not-valid", "check-not-valid"} & rules:
            out.extend(_fix_column_constraints(node.relation, cmd, line, origin))
            changed = True
        elif cmd.subtype == att.AT_SetNotNull and "set-not-null" in rules:
            out.extend(_fix_set_not_null(node.relation, cmd, line, origin))
            changed = True
        else:
            out.append(_stmt(_alter_one(node.relation, cmd), line, origin))
    return out if changed else None


def _qualified(schema: str | None, name: str) -> str:
    return "%s.%s" % (schema, name) if schema else name


def _fix_index(node, rules: set, line: int, origin: str) -> list | None:
    if "create-index-non-concurrent" not in rules:
        return None
    node.concurrent = True
    name = _qualified(node.relation.schemaname, node.idxname) if node.idxname else None
    return [_stmt(node, line, origin, index_name=name)]


def _fix_drop(node, rules: set, line: int, origin: str) -> list | None:
    if "drop-index-non-concurrent" not in rules or node.behavior == pg_enums.DropBehavior.DROP_CASCADE:
        return None
    out = []
    for obj in node.objects:
        one = pg_ast.DropStmt(objects=(obj,), removeType=node.removeType, behavior=node.behavior,
                              missing_ok=True, concurrent=True)
        out.append(_stmt(one, line, origin, drop_index=True))
    return out


def _fix_reindex(node, rules: set, line: int, origin: str) -> list | None:
    if "reindex-non-concurrent" not in rules:
        return None
    rot = pg_enums.ReindexObjectType
    if node.kind not in (rot.REINDEX_OBJECT_INDEX, rot.REINDEX_OBJECT_TABLE):
        return None
    kept = tuple(opt for opt in node.params or () if opt.defname != "concurrently")  # (CONCURRENTLY false)
    node.params = kept + (pg_ast.DefElem(defname="concurrently"),)
    return [_stmt(node, line, origin)]


FIXERS = {
    "IndexStmt": _fix_index,
    "DropStmt": _fix_drop,
    "ReindexStmt": _fix_reindex,
    "AlterTableStmt": _fix_alter,
}
FIXABLE_RULES = {"create-index-non-concurrent", "drop-index-non-concurrent", "reindex-non-concurrent",
                 "foreign-key-not-valid", "check-not-valid", "set-not-null", "add-unique-without-index"}


def _as_written(stmt: lint.Statement) -> PlannedStatement:
    node = stmt.node
    name = None
    if stmt.kind == "IndexStmt" and node.concurrent and node.idxname:
        name = _qualified(node.relation.schemaname, node.idxname)
    isolated = lint.runs_alone(node) and not lint.is_concurrent(node)
    drop_index = stmt.kind == "DropStmt" and bool(node.concurrent)
    return PlannedStatement(sql=stmt.sql.rstrip().rstrip(";").rstrip(), lock=lint.lock_of(node),
                            line=stmt.line, concurrent=lint.is_concurrent(node), isolated=isolated,
                            index_name=name, drop_index=drop_index,
                            relations=lint.locked_relations(node))


# --------------------------------------------------------------------------- planning
def _relint(planned: list, origins: list, path: str, catalog=None) -> list:
    """Lint the statements as they will run; ignores of the original statement carry over."""
    statements = []
    for item, origin in zip(planned, origins):
        parsed = lint.split_statements(item.sql, path)
        for stmt in parsed:
            stmt.line = item.line
            stmt.ignores = dict(origin.ignores)
        statements.extend(parsed)
    return lint.lint_statements(statements, path, catalog)


def plan_text(text: str, path: str, autofix: bool = False, catalog=None) -> FilePlan:
    """Plan one migration file: its findings, what runs (rewritten when AUTOFIX) and the steps.

    The verdict is the linter's on the statements as they will run, so the CLI and pg_migrate agree
    on every file: BEGIN/COMMIT are dropped here and the linter judges a file as one transaction
    already. With a lint.Catalog (pg_migrate's connection), type changes, SET NOT NULL and primary
    keys are judged on the live columns; the catalog then forgets the tables this file changes."""
    statements = lint.split_statements(text, path)
    findings = lint.lint_statements(statements, path, catalog)
    planned: list = []
    origins: list = []
    dropped: list = []
    for stmt in statements:
        if _runner_owned(stmt):
            dropped.append(lint._one_line(stmt.sql))
            continue
        rules = {f.rule for f in lint.active(findings) if f.line == stmt.line and f.statement ==
                 lint._one_line(stmt.sql)} & FIXABLE_RULES if autofix else set()
        fixer = FIXERS.get(stmt.kind)
        fixed = fixer(stmt.node, rules, stmt.line, lint._one_line(stmt.sql)) if fixer and rules else None
        items = fixed if fixed is not None else [_as_written(stmt)]
        planned.extend(items)
        origins.extend([stmt] * len(items))
    after = _relint(planned, origins, path, catalog)
    # an ignore comment without a reason is the file's fault whatever runs
    blocking = [f for f in lint.active(findings) if f.rule == "ignore-without-reason"]
    blocking.extend(f for f in lint.active(after) if f.severity == lint.ERROR)
    if catalog is not None:
        catalog.forget(lint.changed_tables(statements))
    return FilePlan(path=path, statements=planned, findings=findings, blocking=blocking,
                    steps=group_steps(planned), dropped=dropped)


RUNNER_SETTINGS = ("lock_timeout", "statement_timeout")


def _runner_owned(stmt: lint.Statement) -> bool:
    """Transactions and timeouts are the runner's: a file's BEGIN/COMMIT or SET lock_timeout = 0
    must not undo the ladder."""
    if stmt.kind == "TransactionStmt":
        return True
    return stmt.kind == "VariableSetStmt" and (stmt.node.name or "").lower() in RUNNER_SETTINGS


def plan_file(path: str, autofix: bool = False, catalog=None) -> FilePlan:
    with open(path, encoding="utf-8") as handle:
        return plan_text(handle.read(), path, autofix, catalog)


def group_steps(planned: list) -> list[Step]:
    """Consecutive transactional statements share a step; CONCURRENTLY ones and VALIDATE get their own."""
    steps: list = []
    current: Step | None = None
    for item in planned:
        if item.concurrent or item.isolated:
            current = None
            steps.append(Step([item], transactional=not item.concurrent))
            continue
        if current is None:
            current = Step([], transactional=True)
            steps.append(current)
        current.statements.append(item)
    return steps
