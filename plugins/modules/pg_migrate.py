#!/usr/bin/python
# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Apply or roll back PostgreSQL migrations without stalling production traffic."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_migrate
short_description: Apply PostgreSQL migrations with lock timeouts, retries and a ledger
description:
  - Applies the C(NNN_name.up.sql) files of O(path) in version order up to O(target), or runs the
    C(NNN_name.down.sql) files of applied versions above O(target) to roll back.
  - Every file is linted first (the rules of M(gradual.rollout.pg_migration_lint)); a statement with
    an unsafe finding is refused unless ignored with C(-- gradual:ignore <rule-id> <reason>), or
    rewritten by O(autofix). The verdict is the one C(bin/pg-migration-lint --dsn) gives on the same
    file and database.
  - The linter reads the live catalog through the module's connection (column types and modifiers,
    C(NOT NULL), validated C(CHECK (col IS NOT NULL)) constraints, index columns, the session
    C(TimeZone)), so a type change PostgreSQL does without a rewrite (C(varchar) widened or to
    C(text), C(numeric) precision raised at the same scale, C(cidr) to C(inet), C(timestamp) to
    C(timestamptz) under UTC) and a C(SET NOT NULL) spared by a validated check are not refused.
    Tables changed by an earlier file of the same run are judged without the catalog.
  - Statements of one migration share one transaction, run with a short C(lock_timeout) that rises
    on a ladder with jittered sleeps between attempts; when the attempts are exhausted the module
    fails and nothing of that step is applied. It never waits for a lock without a timeout.
  - Before asking for a strong lock, the runner waits (without queueing) while another session keeps
    a conflicting lock in a long transaction, and cancels autovacuum workers in the way (see
    O(blocker_wait_s) and O(cancel_autovacuum)); a request queued behind a long reader would
    otherwise stop every write to the table for its whole C(lock_timeout).
  - C(CONCURRENTLY) statements run outside a transaction with C(statement_timeout = 0); an INVALID
    index left by a failed concurrent build is dropped and rebuilt.
  - One run at a time per ledger (a session advisory lock); a second concurrent run fails at once.
  - A ledger table records version, name, checksum, start, end, duration, who applied it and how
    many steps committed; an applied file whose checksum changed is refused; an interrupted
    migration resumes at the first step that did not commit.
  - In check mode the module reads the ledger and returns the plan (pending migrations, each
    statement, the lock it takes, the rewrites) without changing anything.
version_added: "1.0.0"
author:
  - gradual.rollout contributors (@gradual-rollout)
options:
  path:
    description:
      - Directory holding the migrations, named C(NNN_name.up.sql) and C(NNN_name.down.sql).
    type: path
    required: true
  target:
    description:
      - Version to go to (C(003) or C(3)). Higher than the current version applies up files, lower
        runs down files of the applied versions above it. C(0) rolls everything back.
      - Default is the latest version found in O(path).
    type: str
  ledger_schema:
    description: Schema of the ledger table (created when missing).
    type: str
    default: gradual
  ledger_table:
    description: Name of the ledger table (created when missing).
    type: str
    default: schema_migrations
  autofix:
    description:
      - Apply the safe rewrites instead of refusing, for findings that have one
        (C(CREATE/DROP INDEX) and C(REINDEX) become C(CONCURRENTLY); C(ADD FOREIGN KEY/CHECK) become
        C(NOT VALID) then C(VALIDATE CONSTRAINT) in a separate transaction, also when written on the
        column of an C(ADD COLUMN) (the column is added bare first); C(SET NOT NULL) becomes
        C(CHECK ... NOT VALID), C(VALIDATE), C(SET NOT NULL), drop the C(CHECK); C(ADD UNIQUE/PRIMARY
        KEY) becomes a concurrent unique index then C(USING INDEX), a primary key's columns made
        C(NOT NULL) by that C(CHECK) sequence first).
    type: bool
    default: false
  backup:
    description:
      - Take a backup point before changing anything (only when there is work to do), the way
        O(backup_method) says; by default a dump with C(pg_dump -Fc).
      - The dump is written to C(<backup_dir>/<db>/<db>_<YYYYmmddTHHMMSSZ>.dump), mode 0600, with
        C(<dump>.sha256) beside it in C(sha256sum) format (the backup role's convention).
    type: bool
    default: false
  backup_method:
    description:
      - What O(backup=true) takes. Without O(backup=true) this option does nothing.
      - C(pg_dump) (the default, the behaviour before this option existed) dumps the database as
        O(backup) describes.
      - C(restore_point) first checks that the server archives WAL and that archiving is healthy, that is
        C(archive_mode) C(on) (or C(always)), C(archive_command) or C(archive_library) set,
        C(wal_level) above C(minimal), the login allowed to call C(pg_create_restore_point), and
        C(pg_stat_archiver) showing a success and no failure newer than it (when C(archive_timeout) is
        set, a last success older than twice C(archive_timeout), at least 60 s, while completed
        segments wait counts as stalled). Any of these wrong fails the task before any change (in
        check mode too), naming what is wrong. Right before the first migration of the run it then
        creates a named restore point, C(gradual_before_<version>_<YYYYmmddTHHMMSSZ>)
        (C(gradual_before_down_<version>_...) before a rollback), returned in RV(restore_point) and
        recorded with its LSN in the C(restore_point) and C(restore_lsn) columns of the ledger rows of
        the migrations this run starts. A migration resumed from an earlier run keeps the restore
        point of the run that started it.
      - C(both) does the C(restore_point) checks first, then the dump, then the restore point.
      - A restore point is a recovery target, not a backup; recovering to it needs a base backup
        taken before it and every archived WAL segment from that backup up to it. To go back to just
        before a migration, restore a base backup older than the restore point into a new data
        directory and recover with C(recovery_target_name) set to the name in the ledger (and
        C(recovery_target_action = promote) or C(pause) to inspect first); the archiving tool's
        restore command usually takes the same name (for example a C(--type=name --target=<name>)
        option). Recovery rewinds the whole cluster, every database in it, not only the migrated one;
        rehearse it in a restore drill before relying on it.
    type: str
    choices: [pg_dump, restore_point, both]
    default: pg_dump
  backup_dir:
    description: Root directory of the dumps taken when O(backup=true).
    type: path
    default: /var/backups/postgresql
  pg_dump_path:
    description: The C(pg_dump) binary; default is the one in PATH or C(/usr/lib/postgresql/15/bin).
    type: path
  lock_timeout_ms:
    description: C(lock_timeout) of the first attempt of a transactional step, in milliseconds.
    type: int
    default: 100
  lock_timeout_max_ms:
    description: Highest C(lock_timeout) of the ladder, in milliseconds.
    type: int
    default: 3000
  lock_timeout_factor:
    description: Each retry multiplies the C(lock_timeout) by this factor (capped by O(lock_timeout_max_ms)).
    type: float
    default: 2.0
  lock_retries:
    description: Attempts per step before the module fails cleanly.
    type: int
    default: 10
  retry_sleep_ms:
    description: Mean pause between attempts, in milliseconds (jittered by +/- 50%).
    type: int
    default: 1000
  session_settings:
    description:
      - Settings for the migration's session, set with C(set_config) before anything runs, for
        example C(maintenance_work_mem) or C(max_parallel_maintenance_workers) (C(0) keeps a
        concurrent index build on one core, leaving the others to the traffic).
      - C(max_parallel_maintenance_workers) is C(0) unless given here, so that a concurrent index
        build takes one core and leaves the others to the traffic (slower build, gentler on writes;
        in C(bench/migration_stall) on a busy 2-core host, runs with parallel builds showed 1.0 to
        1.9 s write latency spikes, single-worker runs mostly 0.1 to 0.4 s, with one 1.9 s outlier).
      - C(lock_timeout) and C(statement_timeout) are the runner's and are refused here.
    type: dict
    default: {}
  blocker_wait_s:
    description:
      - Before each attempt of a step that takes a lock stronger than C(SHARE UPDATE EXCLUSIVE), the
        runner looks in C(pg_locks) for other sessions holding a conflicting lock on the tables the
        step touches. While one of them keeps the same transaction open across two looks 0.1 s
        apart (a long report, a session idle in transaction), the runner waits without asking for
        the lock, so nothing queues behind it; each blocker is named once in RV(log).
      - Seconds this waiting may take per step in all; after that the attempts go on under the
        C(lock_timeout) ladder as usual. C(0) turns the waiting off.
      - Autovacuum workers are not waited for (see O(cancel_autovacuum)).
    type: int
    default: 60
  cancel_autovacuum:
    description:
      - Before an attempt of a step that takes a strong lock, cancel (C(pg_cancel_backend)) the
        autovacuum workers holding a conflicting lock on its tables. PostgreSQL cancels such a worker
        by itself once a lock request has waited C(deadlock_timeout) (1 s by default), which the
        ladder's short C(lock_timeout) never reaches, so without this every attempt can time out
        behind a long vacuum of a big table. Workers that prevent transaction ID wraparound are
        never cancelled; autovacuum processes the table again on a later round.
      - On PostgreSQL 15 only a superuser may cancel an autovacuum worker (C(pg_signal_backend) is
        not enough), and a role without C(pg_read_all_stats) cannot see whether the worker prevents
        wraparound. The runner then says why in RV(log), and relies on PostgreSQL, which cancels a
        routine autovacuum worker once a lock request has waited C(deadlock_timeout). A role that
        may set it (PostgreSQL 15 C(GRANT SET ON PARAMETER deadlock_timeout TO role); the example
        inventories grant it to the owner role) runs that attempt with C(deadlock_timeout) at half
        its C(lock_timeout), 20 to 100 ms; any other role waits at least C(deadlock_timeout) + 200 ms
        per attempt, within O(lock_timeout_max_ms).
    type: bool
    default: true
  concurrent_lock_timeout_ms:
    description:
      - C(lock_timeout) of C(CONCURRENTLY) statements; C(0) waits (they do not block reads or writes
        while they wait, and a build would otherwise be left INVALID).
    type: int
    default: 0
extends_documentation_fragment:
  - community.postgresql.postgres
  - gradual.rollout.postgres
requirements:
  - pglast
  - psycopg2
notes:
  - Supports C(check_mode) (plan only) and C(diff) (version before and after).
  - The ledger has C(restore_point) and C(restore_lsn) columns; a ledger made before they existed
    is given them (nullable, no default, so a catalog change only) by the first run that has
    work to do. Check mode says so in RV(log) and changes nothing.
  - Lock timeouts are the runner's job; the SQL files do not need C(SET lock_timeout).
  - No statement queues writes behind it for longer than a rung of the ladder, but an index build
    or a C(VALIDATE) scan of a large table uses CPU and WAL for its whole length, and PostgreSQL
    has no throttle for either. Run such migrations when the primary has headroom (see the README's
    figures from C(bench/migration_stall)).
attributes:
  check_mode:
    description: Reads the ledger and returns the plan; changes nothing.
    support: full
  diff_mode:
    description: Shows the ledger version before and after.
    support: full
"""

EXAMPLES = r"""
- name: Apply every pending migration, rewriting unsafe DDL into its online form
  gradual.rollout.pg_migrate:
    path: /srv/app/migrations
    db: app
    login_host: 127.0.0.1
    login_user: migrator
    login_password: "{{ vault_pg_migrator_password }}"
    autofix: true
    backup: true

- name: Apply pending migrations after a named restore point (archiving checked first)
  gradual.rollout.pg_migrate:
    path: /srv/app/migrations
    db: app
    backup: true
    backup_method: restore_point
  register: migrated
  # migrated.restore_point.name is the recovery_target_name of "just before this run"

- name: Roll back to version 001
  gradual.rollout.pg_migrate:
    path: /srv/app/migrations
    db: app
    target: "001"

- name: Show the plan only
  gradual.rollout.pg_migrate:
    path: /srv/app/migrations
    db: app
  check_mode: true
  register: migration_plan
"""

RETURN = r"""
applied:
  description: Versions applied (up) by this run, in order.
  returned: always
  type: list
  elements: str
  sample: ["002", "003"]
rolled_back:
  description: Versions rolled back (down) by this run, in order.
  returned: always
  type: list
  elements: str
version_before:
  description: Highest fully applied version before the run (C(0) when none).
  returned: always
  type: str
version_after:
  description: Highest fully applied version after the run (planned version in check mode).
  returned: always
  type: str
statements:
  description: One entry per executed statement.
  returned: always
  type: list
  elements: dict
  contains:
    version: {description: Migration version., type: str}
    sql: {description: "The statement as run, rewritten when autofix applied.", type: str}
    lock: {description: Strongest table lock it takes., type: str}
    duration_ms: {description: Time of the successful execution., type: int}
    attempts: {description: Executions including lock-timeout retries., type: int}
    lock_wait_ms: {description: Time lost in attempts that timed out on a lock., type: int}
    blocker_wait_ms:
      description: Time spent waiting, without queueing, for sessions that held a conflicting lock (see O(blocker_wait_s)).
      type: int
      returned: on statements that take a strong lock
plan:
  description:
    - Per migration to run, its statements (sql, lock, transactional, rewritten_from), the blocking
      findings, and C(dropped), the BEGIN/COMMIT and SET lock_timeout/statement_timeout statements of
      the file (the runner owns transactions and timeouts).
  returned: always
  type: list
  elements: dict
findings:
  description: Lint findings of the files to run, including ignored ones (with their reason).
  returned: always
  type: list
  elements: dict
backup_file:
  description: Path of the dump taken when O(backup=true) and there was work to do.
  returned: when a dump was taken
  type: str
restore_point:
  description:
    - The restore point created before the first migration of the run (O(backup_method)); in check
      mode the one a run would create now, with C(lsn) and C(time) null.
    - Recover to it with C(recovery_target_name) set to C(name).
  returned: when O(backup=true), O(backup_method) is C(restore_point) or C(both), and there was work to do
  type: dict
  contains:
    name: {description: "Restore point name, C(gradual_before_<version>_<YYYYmmddTHHMMSSZ>).", type: str}
    lsn: {description: "WAL position returned by C(pg_create_restore_point), e.g. C(0/3000090).", type: str}
    time: {description: Server time of its creation (ISO 8601)., type: str}
  sample: {name: gradual_before_003_20261206T232130Z, lsn: 0/3000090, time: "2026-12-06T23:21:30.512+00:00"}
log:
  description: Retries, kept indexes, rebuilt INVALID indexes.
  returned: always
  type: list
  elements: str
"""

import datetime
import hashlib
import os
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.gradual.rollout.plugins.module_utils.pg import (
    HAS_PSYCOPG2, PSYCOPG2_IMPORT_ERROR, conn_params, pg_argument_spec, pg_connect)
from ansible_collections.gradual.rollout.plugins.module_utils.migration import options

try:
    from ansible_collections.gradual.rollout.plugins.module_utils.migration import lint
    from ansible_collections.gradual.rollout.plugins.module_utils.migration import plan as mplan
    from ansible_collections.gradual.rollout.plugins.module_utils.migration import runner as mrun
    HAS_PGLAST = lint.HAS_PGLAST
    PGLAST_IMPORT_ERROR = lint.PGLAST_IMPORT_ERROR
except ImportError:  # pragma: no cover
    HAS_PGLAST = False
    PGLAST_IMPORT_ERROR = traceback.format_exc()


def argument_spec() -> dict:
    spec = pg_argument_spec()
    spec.update(options.argument_spec())
    return spec


def check_ladder(module) -> "mrun.Ladder":
    p = module.params
    problems = options.ladder_problems(p)
    if problems:
        module.fail_json(msg="; ".join(problems))
    return mrun.Ladder(start_ms=p["lock_timeout_ms"], max_ms=p["lock_timeout_max_ms"],
                       factor=p["lock_timeout_factor"], attempts=p["lock_retries"],
                       sleep_ms=p["retry_sleep_ms"])


def parse_target(module, migrations: list) -> int:
    target = module.params["target"]
    if target is None:
        return migrations[-1].number if migrations else 0
    try:
        number = int(str(target).strip())
    except ValueError:
        module.fail_json(msg="target=%s is not a version number: give e.g. 3 or 003" % target)
    known = {m.number for m in migrations}
    if number != 0 and number not in known:
        module.fail_json(msg="target=%s: no migration with that version in %s (known: %s)"
                         % (target, module.params["path"], ", ".join(m.version for m in migrations) or "none"))
    return number


def verify_checksums(module, migrations: list, rows: dict) -> list:
    """Refuse applied files that changed; warn about applied versions without a file."""
    by_number = {m.number: m for m in migrations}
    warnings = []
    for number, row in sorted(rows.items()):
        mig = by_number.get(number)
        if mig is None:
            warnings.append("version %s is in the ledger but has no file in %s" % (row["version"], module.params["path"]))
            continue
        actual = mig.checksum()
        if actual != row["checksum"]:
            module.fail_json(msg="migration %s (%s) changed after it was applied: ledger sha256 %s, file "
                             "sha256 %s. Restore the applied file and put the change in a new migration"
                             % (row["version"], mig.up_path, row["checksum"], actual),
                             version=row["version"], file=mig.up_path)
    return warnings


def version_label(number: int, migrations: list) -> str:
    for mig in migrations:
        if mig.number == number:
            return mig.version
    return str(number)


def work_to_do(migrations: list, rows: dict, target: int) -> tuple[list, list]:
    """(migrations to apply up, ascending; migrations to roll back, descending)."""
    up = [m for m in migrations if m.number <= target and not (rows.get(m.number) or {}).get("complete")]
    by_number = {m.number: m for m in migrations}
    down = []
    for number in sorted((n for n in rows if n > target), reverse=True):
        down.append(by_number.get(number) or mplan.Migration(rows[number]["version"], rows[number]["name"]))
    return up, down


def plan_all(module, up: list, down: list, conn=None) -> tuple[list, list]:
    """FilePlans for every file to run, judged on CONN's live catalog (column types, NOT NULL,
    validated checks, the session TimeZone)."""
    catalog = lint.Catalog(conn) if conn is not None else None
    plans = []
    for direction, migs in (("up", up), ("down", down)):
        for mig in migs:
            path = mig.up_path if direction == "up" else mig.down_path
            if path is None:
                module.fail_json(msg="cannot roll back version %s: %s has no %s_%s.down.sql; write one or "
                                 "choose a target at or above %s" % (mig.version, module.params["path"],
                                                                     mig.version, mig.name, mig.version))
            try:
                fplan = mplan.plan_file(path, autofix=module.params["autofix"], catalog=catalog)
            except lint.MigrationParseError as exc:
                module.fail_json(msg="parse error in %s line %d: %s" % (exc.filename, exc.line, exc.message))
            plans.append((direction, mig, fplan))
    return plans, [f.to_dict() for _d, _m, p in plans for f in p.findings]


def describe(plans: list) -> list:
    return [dict(version=mig.version, name=mig.name, direction=direction, file=fplan.path,
                 steps=len(fplan.steps), statements=[s.to_dict() for s in fplan.statements],
                 dropped=fplan.dropped,
                 blocking=[f.to_dict() for f in fplan.blocking])
            for direction, mig, fplan in plans]


def fail_on_blocking(module, plans: list, result: dict) -> None:
    blocking = [f for _d, _m, p in plans for f in p.blocking]
    if not blocking:
        return
    lines = ["%s:%d %s: %s (fix: %s)" % (f.file, f.line, f.rule, f.message, f.suggestion) for f in blocking]
    hint = "" if module.params["autofix"] else "; autofix=true rewrites the fixable ones"
    module.fail_json(msg="refusing %d unsafe statement(s): %s. Rewrite them, or silence one with "
                     "'-- gradual:ignore <rule-id> <reason>'%s" % (len(blocking), " | ".join(lines), hint),
                     **result)


def take_backup(module) -> str:
    """pg_dump -Fc into the backup role's layout; returns the dump path."""
    params = conn_params(module)
    dbname = params.get("dbname") or module.params["db"]
    binary = module.params["pg_dump_path"] or module.get_bin_path(
        "pg_dump", required=True, opt_dirs=["/usr/lib/postgresql/15/bin"])
    directory = os.path.join(module.params["backup_dir"], dbname)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    dump = os.path.join(directory, "%s_%s.dump" % (dbname, stamp))
    os.close(os.open(dump, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    env = {"PGHOST": str(params.get("host", "")), "PGPORT": str(params.get("port", "")),
           "PGUSER": str(params.get("user", "")), "PGPASSWORD": str(params.get("password", "")),
           "PGSSLMODE": str(params.get("sslmode", "prefer")), "PGDATABASE": dbname}
    env = dict((k, v) for k, v in env.items() if v)
    rc, _out, err = module.run_command([binary, "-Fc", "-f", dump, dbname], environ_update=env)
    if rc != 0:
        os.unlink(dump)
        module.fail_json(msg="backup failed, nothing migrated: %s exited %d: %s" % (binary, rc, err.strip()))
    os.chmod(dump, 0o600)
    digest = hashlib.sha256()
    with open(dump, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    sha_path = dump + ".sha256"
    with os.fdopen(os.open(sha_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        handle.write("%s  %s\n" % (digest.hexdigest(), os.path.basename(dump)))
    return dump


def check_archiving(module, conn, result: dict) -> None:
    """Fail, before any change, unless the server archives WAL healthily (backup_method
    restore_point or both)."""
    try:
        facts = mrun.read_archiving(conn)
    except mrun.psycopg2.Error as exc:
        module.fail_json(msg="cannot read the archiving state (pg_stat_archiver, archive settings), nothing"
                         " migrated: %s" % str(exc).strip(), **result)
    problems = mrun.archiving_problems(facts)
    if problems:
        module.fail_json(msg="backup_method=%s: refusing to migrate, nothing changed: %s"
                         % (module.params["backup_method"], "; ".join(problems)), **result)
    result["log"].append("archiving healthy: archive_mode %s, last archived %s at %s, %d failure(s) since %s"
                         % (facts["archive_mode"], facts["last_archived_wal"], mrun.when_text(facts["last_archived_time"]),
                            facts["failed_count"] or 0, mrun.when_text(facts["stats_reset"])))


def wants(module, method: str) -> bool:
    """Whether backup=true asks for METHOD (pg_dump or restore_point)."""
    return bool(module.params["backup"]) and module.params["backup_method"] in (method, "both")


RUNNER_SETTINGS = ("lock_timeout", "statement_timeout")


DEFAULT_SESSION_SETTINGS = {"max_parallel_maintenance_workers": "0"}


def apply_session_settings(module, conn) -> None:
    """set_config each of session_settings (over the defaults); fail naming a bad one."""
    settings = dict(DEFAULT_SESSION_SETTINGS)
    settings.update(module.params["session_settings"])
    for name, value in sorted(settings.items()):
        if name.lower() in RUNNER_SETTINGS:
            module.fail_json(msg="session_settings.%s: the runner sets %s itself (see lock_timeout_ms and "
                             "the ladder options); remove it" % (name, name))
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT set_config(%s, %s, false)", (name, str(value)))
        except mrun.psycopg2.Error as exc:
            module.fail_json(msg="session_settings.%s=%s rejected by PostgreSQL: %s"
                             % (name, value, str(exc).strip()))


def current_version(rows: dict) -> int:
    complete = [n for n, r in rows.items() if r["complete"]]
    return max(complete) if complete else 0


def execute(module, conn, ledger, plans: list, rows: dict, result: dict) -> None:
    runner = mrun.Runner(conn=conn, ledger=ledger, ladder=check_ladder(module),
                         concurrent_lock_timeout_ms=module.params["concurrent_lock_timeout_ms"],
                         blocker_wait_s=module.params["blocker_wait_s"],
                         cancel_autovacuum=module.params["cancel_autovacuum"])
    result["statements"] = runner.records
    runner.log[:0] = result["log"]
    result["log"] = runner.log
    try:
        added = ledger.ensure(conn)
        if added:
            runner.log.append("ledger %s.%s upgraded: added column(s) %s"
                              % (ledger.schema, ledger.table, ", ".join(added)))
        if wants(module, "restore_point"):
            direction, first, _plan = plans[0]
            try:
                point = mrun.create_restore_point(conn, mrun.restore_point_name(first.version, direction))
            except mrun.psycopg2.Error as exc:
                module.fail_json(msg="pg_create_restore_point failed, nothing migrated: %s" % str(exc).strip(),
                                 **result)
            runner.restore_point = result["restore_point"] = point
            runner.log.append("restore point %s at %s before %s %s (recovery_target_name = '%s')"
                              % (point["name"], point["lsn"], direction, first.version, point["name"]))
        for direction, mig, fplan in plans:
            if direction == "up":
                runner.apply(mig, fplan, mig.checksum(), rows.get(mig.number))
                result["applied"].append(mig.version)
            else:
                runner.revert(mig, fplan)
                result["rolled_back"].append(mig.version)
            result["changed"] = True
    except mrun.MigrationError as exc:
        result.update(exc.details)
        module.fail_json(msg=str(exc), **result)
    except mrun.psycopg2.Error as exc:
        module.fail_json(msg="PostgreSQL error while migrating: %s" % str(exc).strip(), **result)


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    if not HAS_PGLAST:
        module.fail_json(msg=missing_required_lib("pglast"), exception=PGLAST_IMPORT_ERROR)
    if not HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"), exception=PSYCOPG2_IMPORT_ERROR)
    check_ladder(module)
    if module.check_mode and not os.path.exists(module.params["path"]):
        module.warn("path %s does not exist yet (in check mode the task that copies the migrations did "
                    "not run): no plan" % module.params["path"])
        module.exit_json(changed=False, applied=[], rolled_back=[], statements=[], log=[], findings=[],
                         plan=[], version_before="unknown", version_after="unknown")
    try:
        migrations = mplan.discover(module.params["path"])
    except mplan.PlanError as exc:
        module.fail_json(msg=str(exc))
    target = parse_target(module, migrations)
    ledger = mrun.Ledger(module.params["ledger_schema"], module.params["ledger_table"])
    conn = pg_connect(module, autocommit=True)
    apply_session_settings(module, conn)
    if not module.check_mode and not ledger.try_lock(conn):
        module.fail_json(msg="another pg_migrate holds the advisory lock of %s.%s (key '%s'): wait for it "
                         "to finish, or find its session in pg_stat_activity" % (
                             ledger.schema, ledger.table, ledger.lock_key()))
    rows = ledger.rows(conn)
    warnings = verify_checksums(module, migrations, rows)
    up, down = work_to_do(migrations, rows, target)
    plans, findings = plan_all(module, up, down, conn)
    before = version_label(current_version(rows), migrations)
    after = version_label(target, migrations) if (up or down) else before
    result = dict(changed=False, applied=[], rolled_back=[], statements=[], log=[], findings=findings,
                  plan=describe(plans), version_before=before, version_after=after)
    for warning in warnings:
        module.warn(warning)
    if module._diff:
        result["diff"] = dict(before="version: %s\n" % before, after="version: %s\n" % after,
                              before_header="%s.%s" % (ledger.schema, ledger.table),
                              after_header="%s.%s" % (ledger.schema, ledger.table))
    fail_on_blocking(module, plans, result)
    if not module.params["backup"] and module.params["backup_method"] != "pg_dump":
        module.warn("backup_method=%s does nothing without backup=true: no restore point is created"
                    % module.params["backup_method"])
    if plans and module.check_mode:
        missing = ledger.missing_columns(conn) if ledger.exists(conn) else []
        if missing:
            result["log"].append("ledger %s.%s lacks column(s) %s: a run adds them" % (
                ledger.schema, ledger.table, ", ".join(missing)))
    if plans and wants(module, "restore_point"):
        check_archiving(module, conn, result)
        if module.check_mode:
            direction, first, _plan = plans[0]
            result["restore_point"] = dict(name=mrun.restore_point_name(first.version, direction), lsn=None, time=None)
            result["log"].append("would create restore point %s before %s %s" % (
                result["restore_point"]["name"], direction, first.version))
    if module.check_mode or not plans:
        result["changed"] = bool(plans)
        module.exit_json(**result)
    if wants(module, "pg_dump"):
        result["backup_file"] = take_backup(module)
    execute(module, conn, ledger, plans, rows, result)
    result["version_after"] = version_label(current_version(ledger.rows(conn)), migrations)
    conn.close()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
