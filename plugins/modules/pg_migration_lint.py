#!/usr/bin/python
# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lint PostgreSQL migration files for statements that block production traffic."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_migration_lint
short_description: Find PostgreSQL migration statements that would lock or break production
description:
  - Parses SQL files with PostgreSQL's own parser (pglast) and reports, per statement, the rule it
    breaks, a severity, a message and the safe rewrite.
  - Rules cover non-concurrent C(CREATE/DROP INDEX) and C(REINDEX), C(ADD FOREIGN KEY) / C(CHECK)
    without C(NOT VALID), C(SET NOT NULL) without a validated C(CHECK), C(ADD COLUMN) with a volatile
    default, a stored generated column or C(NOT NULL) without default, column type changes that
    rewrite, C(ADD UNIQUE/PRIMARY KEY) not C(USING INDEX), C(ADD PRIMARY KEY USING INDEX) on columns
    not known C(NOT NULL), renames of columns, tables, views, schemas and enum values, C(SET SCHEMA),
    drops of columns, tables, views, (C(CASCADE)) schemas and databases, C(ALTER DOMAIN ADD
    CONSTRAINT) without C(NOT VALID), C(VACUUM FULL), C(CLUSTER), C(LOCK TABLE), C(DETACH
    PARTITION) without C(CONCURRENTLY), C(UPDATE)/C(DELETE) whose C(WHERE) matches every row (none,
    one naming no column, or C(new_col IS NULL) on a column added bare in the file), any statement
    reading or writing rows while an earlier statement's C(ACCESS EXCLUSIVE) lock is held (a file
    runs in one transaction under M(gradual.rollout.pg_migrate)), C(TRUNCATE), C(REFRESH
    MATERIALIZED VIEW) without C(CONCURRENTLY), C(SET TABLESPACE/LOGGED/UNLOGGED/ACCESS METHOD)
    (table rewrites) and, as warnings, C(ATTACH PARTITION) of an existing table (a scan) and
    C(CONCURRENTLY) inside C(BEGIN ... COMMIT) (M(gradual.rollout.pg_migrate) drops those, C(psql)
    would fail).
  - Statements on a table created earlier in the same file are not flagged. Files named
    C(*.down.sql) are rollbacks, so dropping or renaming is not flagged there.
  - Without a database, what a type change or C(ADD PRIMARY KEY USING INDEX) costs is known only
    when the column was created earlier in the same file; otherwise the finding says so and stays
    conservative. M(gradual.rollout.pg_migrate) and C(bin/pg-migration-lint --dsn) judge them on the
    live catalog.
  - A finding is silenced by a comment C(-- gradual:ignore <rule-id> <reason>) before the statement;
    the reason is mandatory.
  - The same analysis is the CLI C(bin/pg-migration-lint) of the collection (C(--format sarif) for
    CI code scanning, C(--dsn) for the catalog, C(--trace) for the locks each statement takes).
version_added: "1.0.0"
author:
  - gradual.rollout contributors (@gradual-rollout)
options:
  paths:
    description: SQL files or directories (walked for C(*.sql)) on the target.
    type: list
    elements: path
    required: true
    aliases: [path]
  fail_on:
    description:
      - Fail the task when a finding of this severity or worse is active. C(never) only reports.
    type: str
    choices: [error, warning, never]
    default: error
requirements:
  - pglast
attributes:
  check_mode:
    description: Read-only; reports the same findings.
    support: full
  diff_mode:
    description: Nothing changes, so there is no diff.
    support: none
notes:
  - Read-only; never changes anything, so it reports the same in check mode.
"""

EXAMPLES = r"""
- name: CI validator - every migration must be safe
  gradual.rollout.pg_migration_lint:
    paths:
      - "{{ playbook_dir }}/../examples/app/migrations"

- name: Report only
  gradual.rollout.pg_migration_lint:
    paths: [/srv/app/migrations/004_add_orders_status.up.sql]
    fail_on: never
  register: lint_report
"""

RETURN = r"""
findings:
  description: Active findings (not silenced by gradual:ignore).
  returned: always
  type: list
  elements: dict
  contains:
    file: {description: File path., type: str}
    line: {description: First line of the statement., type: int}
    statement: {description: "The statement, on one line and shortened.", type: str}
    rule: {description: Rule id (what gradual:ignore takes)., type: str}
    severity: {description: error or warning., type: str}
    message: {description: What goes wrong in production., type: str}
    suggestion: {description: The safe rewrite., type: str}
ignored:
  description: Findings silenced by gradual:ignore, with their C(ignored) reason.
  returned: always
  type: list
  elements: dict
files:
  description: Files analysed.
  returned: always
  type: list
  elements: str
errors:
  description: Number of active findings of severity error.
  returned: always
  type: int
warnings_count:
  description: Number of active findings of severity warning.
  returned: always
  type: int
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    from ansible_collections.gradual.rollout.plugins.module_utils.migration import lint
    HAS_PGLAST = lint.HAS_PGLAST
    PGLAST_IMPORT_ERROR = lint.PGLAST_IMPORT_ERROR
except ImportError:  # pragma: no cover
    HAS_PGLAST = False
    PGLAST_IMPORT_ERROR = traceback.format_exc()

SEVERITY_RANK = {"warning": 1, "error": 2}


def collect(module, paths: list) -> tuple[list, list]:
    try:
        files = lint.migration_files(paths)
    except FileNotFoundError as exc:
        module.fail_json(msg="%s: give existing SQL files or directories in paths" % exc)
    findings = []
    for path in files:
        try:
            findings.extend(lint.lint_file(path))
        except lint.MigrationParseError as exc:
            module.fail_json(msg="parse error in %s line %d: %s" % (exc.filename, exc.line, exc.message),
                             file=exc.filename, line=exc.line, files=files)
        except UnicodeDecodeError as exc:
            module.fail_json(msg="%s is not UTF-8 text: %s" % (path, exc))
    return files, findings


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(paths=dict(type="list", elements="path", required=True, aliases=["path"]),
                           fail_on=dict(type="str", choices=["error", "warning", "never"], default="error")),
        supports_check_mode=True)
    if not HAS_PGLAST:
        module.fail_json(msg=missing_required_lib("pglast"), exception=PGLAST_IMPORT_ERROR)
    files, findings = collect(module, module.params["paths"])
    active = [f.to_dict() for f in lint.active(findings)]
    result = dict(changed=False, files=files, findings=active,
                  ignored=[f.to_dict() for f in findings if f.ignored is not None],
                  errors=sum(1 for f in active if f["severity"] == "error"),
                  warnings_count=sum(1 for f in active if f["severity"] == "warning"))
    threshold = SEVERITY_RANK.get(module.params["fail_on"])
    worst = [f for f in active if threshold and SEVERITY_RANK[f["severity"]] >= threshold]
    if worst:
        first = worst[0]
        module.fail_json(msg="%d unsafe migration statement(s); first: %s:%d %s: %s (fix: %s)"
                         % (len(worst), first["file"], first["line"], first["rule"], first["message"],
                            first["suggestion"]), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
