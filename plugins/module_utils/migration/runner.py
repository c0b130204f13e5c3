# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Execute migration plans against PostgreSQL: ledger, lock_timeout ladder, resumable steps.

The ledger row of a migration is written when it starts (``finished`` NULL) and moves forward with
``steps_done`` in the same transaction as each transactional step, so a connection lost at any
point leaves a ledger that says exactly which steps committed; a rerun resumes from there.
CONCURRENTLY steps cannot share a transaction with the ledger: they are made idempotent instead
(an existing valid index is kept, an INVALID leftover is dropped and rebuilt).
"""
from __future__ import annotations

import datetime
import getpass
import random
import socket
import time
import traceback
from dataclasses import dataclass, field
from typing import NamedTuple

from ansible_collections.gradual.rollout.plugins.module_utils.migration import options

try:
    import psycopg2
    import psycopg2.errors
    from psycopg2 import sql as pgsql
    HAS_PSYCOPG2 = True
    PSYCOPG2_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - exercised by the sanity import test
    psycopg2 = None
    pgsql = None
    HAS_PSYCOPG2 = False
    PSYCOPG2_IMPORT_ERROR = traceback.format_exc()

# SQLSTATEs worth another attempt: lock_not_available (lock_timeout), deadlock_detected.
RETRYABLE = {"55P03", "40P01"}

# deadlock_timeout of an attempt that waits behind an autovacuum worker the runner may not cancel:
# half the attempt's lock_timeout, within these bounds (ms). PostgreSQL cancels a routine worker
# once a lock request has waited that long.
DEADLOCK_PROBE_MIN_MS = 20
DEADLOCK_PROBE_MAX_MS = 100


def deadlock_probe_ms(timeout_ms: int, server_ms: int) -> int | None:
    """deadlock_timeout for an attempt of TIMEOUT_MS blocked by an autovacuum worker: half the
    attempt, within the DEADLOCK_PROBE bounds; None when the server's own SERVER_MS is no longer."""
    probe = min(DEADLOCK_PROBE_MAX_MS, max(DEADLOCK_PROBE_MIN_MS, timeout_ms // 2))
    return probe if probe < server_ms else None


# pg_locks modes, weakest first, and the ones each strong table lock conflicts with (PostgreSQL
# manual, "Conflicting Lock Modes"). Weaker locks do not stop ordinary reads or writes while queued.
PG_LOCK_MODES = ("AccessShareLock", "RowShareLock", "RowExclusiveLock", "ShareUpdateExclusiveLock",
                 "ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock")
CONFLICTS = {
    "ACCESS EXCLUSIVE": PG_LOCK_MODES,
    "EXCLUSIVE": PG_LOCK_MODES[1:],
    "SHARE ROW EXCLUSIVE": PG_LOCK_MODES[2:],
    "SHARE": ("RowExclusiveLock", "ShareUpdateExclusiveLock") + PG_LOCK_MODES[5:],
}

# Granted locks on RELATIONS in MODES held by other sessions of this database, with their virtual
# transaction (the same one seen twice is a transaction that stays open). Without pg_read_all_stats
# a role sees neither the backend type nor the query of other users' sessions; client sessions
# always show their user, so a hidden one without a user is a background process (autovacuum).
HOLDERS_QUERY = """
SELECT l.pid, l.virtualtransaction, l.mode, l.relation::regclass::text,
       coalesce(a.application_name, ''), coalesce(a.state, ''),
       (extract(epoch FROM clock_timestamp() - a.xact_start) * 1000)::bigint,
       coalesce(a.backend_type, CASE WHEN a.usesysid IS NULL THEN 'background process' ELSE 'client backend' END),
       CASE WHEN a.query LIKE 'autovacuum:%%to prevent wraparound%%' THEN 'wraparound'
            WHEN a.query LIKE 'autovacuum:%%' THEN 'routine' ELSE 'unknown' END
  FROM pg_locks l
  LEFT JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_backend_pid()
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND l.relation = ANY (ARRAY(SELECT to_regclass(name)::oid FROM unnest(%s::text[]) AS name))
   AND l.mode = ANY (%s)
"""


class Holder(NamedTuple):
    """A session holding a lock that conflicts with the one a step needs."""

    pid: int
    vxid: str
    mode: str
    relation: str
    application: str
    state: str
    age_ms: int | None
    backend_type: str = "client backend"
    # for autovacuum workers: 'routine', 'wraparound', or 'unknown' when the role may not read the
    # query of other sessions (pg_read_all_stats)
    vacuum_kind: str = "unknown"


class MigrationError(Exception):
    """A migration failed; ``details`` goes into the module result."""

    def __init__(self, msg: str, **details) -> None:
        super().__init__(msg)
        self.details = details


@dataclass
class Ladder:
    """lock_timeout per attempt: start, x factor each retry, capped; jittered sleeps between."""

    start_ms: int = options.LOCK_TIMEOUT_MS
    max_ms: int = options.LOCK_TIMEOUT_MAX_MS
    factor: float = options.LOCK_TIMEOUT_FACTOR
    attempts: int = options.LOCK_RETRIES
    sleep_ms: int = options.RETRY_SLEEP_MS
    jitter: float = 0.5

    def timeout_ms(self, attempt: int) -> int:
        return int(min(self.max_ms, self.start_ms * (self.factor ** (attempt - 1))))

    def sleep_s(self) -> float:
        spread = self.sleep_ms * self.jitter
        return max(0.0, (self.sleep_ms + random.uniform(-spread, spread)) / 1000.0)


# Ledger columns added after 1.0.0 (name, type), nullable and without default so that adding them to
# an existing ledger is a catalog change only: the restore point taken before the run that applied
# the migration (pg_migrate backup_method=restore_point) and its WAL position.
LEDGER_UPGRADE = (("restore_point", "text"), ("restore_lsn", "pg_lsn"))


@dataclass
class Ledger:
    schema: str = "gradual"
    table: str = "schema_migrations"

    def ident(self):
        return pgsql.SQL("{}.{}").format(pgsql.Identifier(self.schema), pgsql.Identifier(self.table))

    def exists(self, conn) -> bool:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass(%s) IS NOT NULL", (self.ident().as_string(conn),))
            return bool(cur.fetchone()[0])

    def create(self, conn) -> None:
        ddl = pgsql.SQL(
            "CREATE SCHEMA IF NOT EXISTS {schema};"
            "CREATE TABLE IF NOT EXISTS {tbl} ("
            " version text PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
            " started timestamptz NOT NULL DEFAULT now(), finished timestamptz,"
            " duration_ms bigint, applied_by text NOT NULL DEFAULT current_user,"
            " steps_done integer NOT NULL DEFAULT 0, steps_total integer NOT NULL,"
            " restore_point text, restore_lsn pg_lsn)"
        ).format(schema=pgsql.Identifier(self.schema), tbl=self.ident())
        with conn.cursor() as cur:
            cur.execute(ddl)

    def missing_columns(self, conn) -> list:
        """Columns of LEDGER_UPGRADE a ledger made by an older version lacks (none when absent)."""
        with conn.cursor() as cur:
            cur.execute("SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0"
                        " AND NOT attisdropped", (self.ident().as_string(conn),))
            have = {row[0] for row in cur.fetchall()}
        return [name for name, _type in LEDGER_UPGRADE if have and name not in have]

    def ensure(self, conn) -> list:
        """Create the ledger, or give one made by an older version the columns it lacks (a nullable
        column without default: a catalog change, taken under a short lock_timeout). Returns the
        columns added."""
        if not self.exists(conn):  # CREATE SCHEMA IF NOT EXISTS needs CREATE on the database
            self.create(conn)
            return []
        missing = self.missing_columns(conn)
        if missing:
            types = dict(LEDGER_UPGRADE)
            alter = pgsql.SQL("ALTER TABLE {} ").format(self.ident()) + pgsql.SQL(", ").join(
                pgsql.SQL("ADD COLUMN IF NOT EXISTS {} " + types[name]).format(pgsql.Identifier(name))
                for name in missing)
            autocommit = conn.autocommit
            conn.autocommit = False  # one transaction: the lock_timeout lasts for it alone
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT set_config('lock_timeout', '5s', true)")
                    cur.execute(alter)
                conn.commit()
            except psycopg2.Error:
                conn.rollback()
                raise
            finally:
                conn.autocommit = autocommit
        return missing

    def rows(self, conn) -> dict:
        if not self.exists(conn):
            return {}
        missing = self.missing_columns(conn)
        extra = "".join(", NULL" if name in missing else ", %s::text" % name for name, _type in LEDGER_UPGRADE)
        query = pgsql.SQL("SELECT version, name, checksum, finished IS NOT NULL, steps_done, steps_total,"
                          " started::text, finished::text, duration_ms, applied_by%s FROM {}" % extra).format(self.ident())
        with conn.cursor() as cur:
            cur.execute(query)
            keys = ("version", "name", "checksum", "complete", "steps_done", "steps_total", "started",
                    "finished", "duration_ms", "applied_by") + tuple(name for name, _type in LEDGER_UPGRADE)
            return {int(row[0]): dict(zip(keys, row)) for row in cur.fetchall()}

    def start(self, cur, mig, checksum: str, steps_total: int, restore_point: dict | None = None) -> None:
        point = restore_point or {}
        cur.execute(pgsql.SQL("INSERT INTO {} (version, name, checksum, applied_by, steps_total, restore_point,"
                              " restore_lsn) VALUES (%s, %s, %s, %s, %s, %s, %s::pg_lsn)").format(self.ident()),
                    (mig.version, mig.name, checksum, applied_by(), steps_total, point.get("name"), point.get("lsn")))

    def advance(self, cur, version: str, steps_done: int, finished: bool) -> None:
        query = ("UPDATE {} SET steps_done = %s, finished = CASE WHEN %s THEN clock_timestamp() END,"
                 " duration_ms = CASE WHEN %s THEN (extract(epoch FROM clock_timestamp() - started)"
                 " * 1000)::bigint END WHERE version = %s")
        cur.execute(pgsql.SQL(query).format(self.ident()), (steps_done, finished, finished, version))

    def try_lock(self, conn) -> bool:
        """Session advisory lock keyed on the ledger: one migrator at a time per ledger."""
        with conn.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (self.lock_key(),))
            return bool(cur.fetchone()[0])

    def lock_key(self) -> str:
        return "gradual.rollout/pg_migrate/%s.%s" % (self.schema, self.table)

    def forget(self, cur, version: str) -> None:
        cur.execute(pgsql.SQL("DELETE FROM {} WHERE version = %s").format(self.ident()), (version,))


def applied_by() -> str:
    try:
        user = getpass.getuser()
    # no passwd entry for the uid in some containers
    except Exception:  # pylint: disable=broad-except
        user = "unknown"
    return "%s@%s" % (user, socket.gethostname())


# ----------------------------------------------------------------- point-in-time recovery
# What the server says about WAL archiving, in one read: the settings, pg_stat_archiver, the WAL
# segment being written, and whether this login may create a restore point.
ARCHIVING_QUERY = """
SELECT current_setting('archive_mode'), current_setting('archive_command'),
       coalesce(current_setting('archive_library', true), ''),
       (SELECT setting::int FROM pg_settings WHERE name = 'archive_timeout'),
       current_setting('wal_level'),
       (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'),
       pg_is_in_recovery(),
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END,
       has_function_privilege('pg_create_restore_point(text)', 'EXECUTE'),
       s.archived_count, s.last_archived_wal, s.last_archived_time, s.failed_count, s.last_failed_wal,
       s.last_failed_time, s.stats_reset, now(), current_user
  FROM pg_stat_archiver s
"""
ARCHIVING_KEYS = ("archive_mode", "archive_command", "archive_library", "archive_timeout_s", "wal_level",
                  "wal_segment_size", "in_recovery", "current_wal", "may_create", "archived_count",
                  "last_archived_wal", "last_archived_time", "failed_count", "last_failed_wal",
                  "last_failed_time", "stats_reset", "now", "user")

# How old the last archived segment may be, in archive_timeouts, while completed segments wait.
STALE_TIMEOUTS = 2
STALE_MIN_S = 60


def read_archiving(conn) -> dict:
    """ARCHIVING_QUERY's answer as a dict (ARCHIVING_KEYS)."""
    with conn.cursor() as cur:
        cur.execute(ARCHIVING_QUERY)
        return dict(zip(ARCHIVING_KEYS, cur.fetchone()))


def _segno(name, segment_size: int):
    """Segment number of a WAL file name (24 hex digits first; .partial/.backup suffixes allowed)."""
    head = (name or "")[:24]
    try:
        log, seg = int(head[8:16], 16), int(head[16:24], 16)
    except ValueError:
        return None
    if len(head) < 24 or not segment_size:
        return None
    return log * (0x100000000 // segment_size) + seg


def when_text(value) -> str:
    if value is None:
        return "never"
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value)


def archiving_problems(facts: dict) -> list:
    """What makes the archive unfit to recover to a restore point, each naming what is wrong and
    what to do; [] when archiving is healthy. FACTS: read_archiving(). Pure."""
    fix = ("fix archive_command/archive_library before migrating (the archiver's errors are in the"
           " server log; the archiving tool's own check, e.g. pgbackrest check, tests the whole path)")
    if facts["in_recovery"]:
        return ["the server is in recovery (a standby): run pg_migrate on the primary"]
    problems = []
    if facts["archive_mode"] not in ("on", "always"):
        problems.append("archive_mode is %s: WAL is not archived, so a restore point cannot be recovered to;"
                        " set archive_mode = on and an archive_command or archive_library (a restart),"
                        " or use backup_method=pg_dump" % facts["archive_mode"])
    elif not (facts["archive_command"] or "").strip() and not (facts["archive_library"] or "").strip():
        problems.append("archive_mode is on but neither archive_command nor archive_library is set: WAL"
                        " accumulates in pg_wal and nothing is archived; set one (a reload)")
    if facts["wal_level"] == "minimal":
        problems.append("wal_level is minimal: restore points need wal_level = replica or logical (a restart)")
    if not facts["may_create"]:
        problems.append("role %s may not call pg_create_restore_point(text): GRANT EXECUTE ON FUNCTION"
                        " pg_create_restore_point(text) TO %s (or run as a superuser)" % (facts["user"], facts["user"]))
    if problems:
        return problems
    last_ok, last_bad = facts["last_archived_time"], facts["last_failed_time"]
    if last_bad is not None and (last_ok is None or last_bad >= last_ok):
        problems.append("archiving is failing: last failed WAL %s at %s, last archived %s at %s (%d failure(s)"
                        " since %s); %s" % (facts["last_failed_wal"], when_text(last_bad),
                                            facts["last_archived_wal"] or "none", when_text(last_ok),
                                            facts["failed_count"] or 0, when_text(facts["stats_reset"]), fix))
    elif last_ok is None:
        problems.append("no WAL segment has been archived since %s (pg_stat_archiver.archived_count = 0),"
                        " so nothing shows that the archive works: archive one (SELECT pg_switch_wal(), or"
                        " the archiving tool's check) and migrate once pg_stat_archiver shows it"
                        % when_text(facts["stats_reset"]))
    elif facts["archive_timeout_s"]:
        age = (facts["now"] - last_ok).total_seconds()
        limit = max(STALE_MIN_S, STALE_TIMEOUTS * facts["archive_timeout_s"])
        last, current = (_segno(facts["last_archived_wal"], facts["wal_segment_size"]),
                         _segno(facts["current_wal"], facts["wal_segment_size"]))
        waiting = current - last - 1 if last is not None and current is not None else 0
        if age > limit and waiting > 0:
            problems.append("archiving is stalled: the last WAL archived, %s, was at %s (%d s ago, over %d x"
                            " archive_timeout = %d s) and %d completed segment(s) wait up to %s; a hung"
                            " archive_command fails nothing; %s"
                            % (facts["last_archived_wal"], when_text(last_ok), age, STALE_TIMEOUTS,
                               facts["archive_timeout_s"], waiting, facts["current_wal"], fix))
    return problems


# A restore point name is at most 63 bytes (MAXFNAMELEN - 1).
RESTORE_POINT_MAX = 63


def restore_point_name(version: str, direction: str = "up", when: datetime.datetime | None = None) -> str:
    """gradual_before_<version>_<YYYYmmddTHHMMSSZ> (gradual_before_down_<version>_... before a
    rollback): says which migration it precedes and when; at most RESTORE_POINT_MAX bytes."""
    when = when or datetime.datetime.now(datetime.timezone.utc)
    stamp = when.astimezone(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    middle = version if direction == "up" else "down_" + version
    name = "gradual_before_%s_%s" % (middle, stamp)
    if len(name) > RESTORE_POINT_MAX:
        name = "gradual_before_%s_%s" % (middle[:RESTORE_POINT_MAX - len(stamp) - 16], stamp)
    return name


def create_restore_point(conn, name: str) -> dict:
    """pg_create_restore_point(NAME): {name, lsn, time} (the server's clock, ISO 8601)."""
    with conn.cursor() as cur:
        cur.execute("SELECT pg_create_restore_point(%s)::text, clock_timestamp()", (name,))
        lsn, when = cur.fetchone()
    return dict(name=name, lsn=lsn, time=when.isoformat())


@dataclass
class Runner:
    """Runs the steps of a planned migration on CONN (autocommit connection)."""

    conn: object
    ledger: Ledger
    ladder: Ladder
    concurrent_lock_timeout_ms: int = 0
    blocker_wait_s: float = 60.0
    cancel_autovacuum: bool = True
    probe_s: float = 0.1
    restore_point: dict | None = None  # {name, lsn, time}: recorded in the rows this run starts
    records: list = field(default_factory=list)
    _noted: set = field(default_factory=set)  # autovacuum pids already reported as not cancelled
    _may_set_deadlock: bool | None = None  # may this login SET deadlock_timeout (read once)
    _server_deadlock_ms: int | None = None  # the server's deadlock_timeout (read once)
    _told: set = field(default_factory=set)  # autovacuum pids whose wait path was already logged
    log: list = field(default_factory=list)

    # ----------------------------------------------------------------- up / down
    def apply(self, mig, plan, checksum: str, row: dict | None) -> None:
        """Run PLAN's steps from the ledger's ``steps_done``; the ledger row moves with them."""
        done = row["steps_done"] if row else 0
        if row is None:
            with self.conn.cursor() as cur:
                self.ledger.start(cur, mig, checksum, len(plan.steps), self.restore_point)
        total = len(plan.steps)
        try:
            for index in range(done, total):
                last = index == total - 1
                self._run_step(mig.version, plan.steps[index],
                               lambda cur, i=index, end=last: self.ledger.advance(cur, mig.version, i + 1, end))
            if total == 0:
                with self.conn.cursor() as cur:
                    self.ledger.advance(cur, mig.version, 0, True)
        except MigrationError:
            self._forget_if_untouched(mig.version)
            raise

    def revert(self, mig, plan) -> None:
        """Run a down migration's steps; the ledger row goes away with the last step."""
        total = len(plan.steps)
        for index, step in enumerate(plan.steps):
            last = index == total - 1
            self._run_step(mig.version, step,
                           (lambda cur: self.ledger.forget(cur, mig.version)) if last else None)
        if total == 0:
            with self.conn.cursor() as cur:
                self.ledger.forget(cur, mig.version)

    def _forget_if_untouched(self, version: str) -> None:
        """A migration that failed before its first step committed leaves no ledger row."""
        try:
            with self.conn.cursor() as cur:
                cur.execute(pgsql.SQL("DELETE FROM {} WHERE version = %s AND steps_done = 0")
                            .format(self.ledger.ident()), (version,))
        except psycopg2.Error:
            pass  # connection gone: the row says steps_done = 0, a rerun starts from the beginning

    # ----------------------------------------------------------------- steps
    def _run_step(self, version: str, step, after) -> None:
        if step.transactional:
            self._run_transaction(version, step, after)
        else:
            self._run_concurrent(version, step.statements[0])
            if after is not None:
                with self.conn.cursor() as cur:
                    after(cur)

    def _record(self, version: str, item) -> dict:
        rec = dict(version=version, sql=item.sql, lock=item.lock, duration_ms=0, attempts=0,
                   lock_wait_ms=0, transactional=not item.concurrent)
        if item.rewritten_from:
            rec["rewritten_from"] = item.rewritten_from
        self.records.append(rec)
        return rec

    def _run_transaction(self, version: str, step, after) -> None:
        recs = [self._record(version, item) for item in step.statements]
        strong = [(item, rec) for item, rec in zip(step.statements, recs) if item.lock in CONFLICTS]
        wanted = self._wanted_modes(strong)
        deadline = time.monotonic() + self.blocker_wait_s
        for attempt in range(1, self.ladder.attempts + 1):
            timeout = self.ladder.timeout_ms(attempt)
            seen_now = None
            if strong and self.blocker_wait_s > 0:
                seen_now = self._wait_for_blockers(version, strong, wanted, deadline)
            deadlock = None
            if strong and self.cancel_autovacuum:
                timeout, deadlock = self._clear_autovacuum(version, wanted, timeout, seen_now)
            failed = self._attempt(step, recs, timeout, after, deadlock)
            if failed is None:
                return
            if failed.pgcode not in RETRYABLE:
                raise MigrationError("migration %s failed at line %s: %s" % (
                    version, failed.item.line, failed.message), version=version, sql=failed.item.sql)
            holders = self._holders(wanted)
            self.log.append("%s: %s on attempt %d (lock_timeout %d ms)%s" % (
                version, failed.message, attempt, timeout, "; held by " + _describe(holders) if holders else ""))
            if attempt < self.ladder.attempts:
                time.sleep(self.ladder.sleep_s())
        holders = self._holders(wanted)
        raise MigrationError(
            "migration %s: could not get the %s lock for '%s' in %d attempts (lock_timeout up to %d ms);"
            " nothing of this step was applied. %s, or raise lock_retries / lock_timeout_max_ms"
            % (version, failed.item.lock, failed.item.sql, self.ladder.attempts, self.ladder.max_ms,
               "Blocking now: " + _describe(holders) if holders
               else "Find the blocking session in pg_stat_activity"),
            version=version, sql=failed.item.sql)

    def _wait_for_blockers(self, version: str, strong: list, wanted: tuple, deadline: float) -> list:
        """Wait, holding and queueing for nothing, while a transaction that stays open holds a lock
        that conflicts with the step's strong locks: an attempt now would queue every reader or
        writer of the table behind it for its whole lock_timeout. Waits until DEADLINE at most.
        Returns every conflicting holder of the last look, background processes included."""
        started = time.monotonic()
        seen: dict = {}
        reported: set = set()
        while True:
            current = self._holders(wanted)
            holders = [h for h in current if h.backend_type == "client backend"]
            staying = [h for h in holders if (h.pid, h.vxid) in seen]
            if not holders or (seen and not staying):
                break
            if time.monotonic() >= deadline:
                self.log.append("%s: still blocked by %s after waiting %d s (blocker_wait_s): trying"
                                " under the lock_timeout ladder" % (version, _describe(staying or holders),
                                                                    self.blocker_wait_s))
                break
            for holder in staying:
                if holder.pid not in reported:
                    reported.add(holder.pid)
                    self.log.append("%s: waiting for %s to end before taking %s (nothing queued)"
                                    % (version, _describe([holder]), strong[0][0].lock))
            seen = {(h.pid, h.vxid): h for h in holders}
            time.sleep(self.probe_s)
        waited = int((time.monotonic() - started) * 1000)
        strong[0][1]["blocker_wait_ms"] = strong[0][1].get("blocker_wait_ms", 0) + waited
        return current

    def _clear_autovacuum(self, version: str, wanted: tuple, timeout_ms: int,
                          holders: list | None = None) -> tuple:
        """Deal with autovacuum workers holding a conflicting lock before an attempt; returns the
        attempt's lock_timeout and, when the attempt should lower it, its deadlock_timeout (ms).

        PostgreSQL cancels a routine worker itself only once a lock request has waited
        deadlock_timeout (1 s by default), which a short lock_timeout never reaches. The runner
        cancels the worker (superuser); or, when the login may SET deadlock_timeout (superuser, or
        PostgreSQL 15's GRANT SET ON PARAMETER), lowers it for the attempt so PostgreSQL cancels
        the worker after a short wait; or else lets the attempt wait deadlock_timeout + 200 ms
        (within the ladder's top). Workers preventing wraparound are left alone: PostgreSQL never
        cancels them either. HOLDERS: the conflicting holders the blocker wait just read, if it ran."""
        if holders is None:
            holders = self._holders(wanted)
        left = [holder for holder in holders
                if holder.backend_type != "client backend" and not self._cancel(version, holder)]
        left = [holder for holder in left if holder.vacuum_kind != "wraparound"]
        if not left:
            return timeout_ms, None
        server_ms = self._deadlock_timeout_ms()
        settable = self._deadlock_timeout_settable()
        deadlock_ms = deadlock_probe_ms(timeout_ms, server_ms) if settable else None
        fresh = [holder for holder in left if holder.pid not in self._told]  # say it once per worker
        self._told.update(holder.pid for holder in left)
        if deadlock_ms is not None:
            if fresh:
                self.log.append("%s: %s still holds a conflicting lock: attempts run with deadlock_timeout at"
                                " half their lock_timeout, %d-%d ms (%d ms now), so PostgreSQL cancels a"
                                " routine autovacuum after that long a wait"
                                % (version, _describe(fresh), DEADLOCK_PROBE_MIN_MS, DEADLOCK_PROBE_MAX_MS,
                                   deadlock_ms))
            return timeout_ms, deadlock_ms
        needed = server_ms + 200
        if timeout_ms >= needed or needed > self.ladder.max_ms:
            return timeout_ms, None
        if fresh:
            self.log.append("%s: %s still holds a conflicting lock: attempts wait up to %d ms (deadlock_timeout"
                            " + 200 ms), long enough for PostgreSQL to cancel a routine autovacuum%s"
                            % (version, _describe(fresh), needed, "" if settable else
                               " (GRANT SET ON PARAMETER deadlock_timeout to this role would shorten that wait)"))
        return needed, None

    def _deadlock_timeout_settable(self) -> bool:
        """Whether this login may SET deadlock_timeout (a superuser-only setting): a superuser, or
        on PostgreSQL 15 and later a role granted SET ON PARAMETER deadlock_timeout."""
        if self._may_set_deadlock is None:
            with self.conn.cursor() as cur:
                if self.conn.server_version >= 150000:  # psycopg2 read it when connecting
                    cur.execute("SELECT has_parameter_privilege('deadlock_timeout', 'SET')")
                else:
                    cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
                self._may_set_deadlock = bool(cur.fetchone()[0])
        return self._may_set_deadlock

    def _cancel(self, version: str, holder: Holder) -> bool:
        """pg_cancel_backend a routine autovacuum worker; say once why another is left running."""
        why = None
        if holder.vacuum_kind == "wraparound":
            why = "it prevents transaction ID wraparound"
        elif holder.vacuum_kind != "routine":
            why = ("its query is hidden from this role, so whether it prevents wraparound is unknown"
                   " (grant pg_read_all_stats)")
        else:
            try:
                with self.conn.cursor() as cur:
                    cur.execute("SELECT pg_cancel_backend(%s)", (holder.pid,))
                    signalled = bool(cur.fetchone()[0])
            except psycopg2.Error as exc:
                why = "PostgreSQL refused: %s" % str(exc).strip().splitlines()[0]
            else:
                if not signalled:  # it ended in between
                    return True
                self.log.append("%s: cancelled %s so the step's lock is not stuck behind it (autovacuum"
                                " runs again later)" % (version, _describe([holder])))
                return True
        if holder.pid not in self._noted:
            self._noted.add(holder.pid)
            self.log.append("%s: not cancelling %s: %s" % (version, _describe([holder]), why))
        return False

    def _deadlock_timeout_ms(self) -> int:
        """The server's deadlock_timeout (ms), read on first need and kept for the run."""
        if self._server_deadlock_ms is None:
            with self.conn.cursor() as cur:
                cur.execute("SELECT setting::int FROM pg_settings WHERE name = 'deadlock_timeout'")
                self._server_deadlock_ms = int(cur.fetchone()[0])
        return self._server_deadlock_ms

    @staticmethod
    def _wanted_modes(strong: list) -> tuple:
        relations: dict = {}
        modes: set = set()
        for item, _rec in strong:
            relations.update(dict.fromkeys(item.relations))
            modes.update(CONFLICTS[item.lock])
        return list(relations), sorted(modes)

    def _holders(self, wanted: tuple) -> list:
        relations, modes = wanted
        if not relations:
            return []
        quoted = [_quote_qualified(self.conn, name) for name in relations]
        with self.conn.cursor() as cur:
            cur.execute(HOLDERS_QUERY, (quoted, modes))
            return [Holder(*row) for row in cur.fetchall()]

    def _attempt(self, step, recs: list, timeout_ms: int, after, deadlock_ms: int | None = None):
        """One try of a transactional step; None on success, else the failure. DEADLOCK_MS lowers
        deadlock_timeout for this transaction only."""
        conn = self.conn
        conn.autocommit = False
        current = None
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT set_config('lock_timeout', %s, true)", ("%dms" % timeout_ms,))
                if deadlock_ms is not None:
                    cur.execute("SELECT set_config('deadlock_timeout', %s, true)", ("%dms" % deadlock_ms,))
                for item, rec in zip(step.statements, recs):
                    current = (item, rec, time.monotonic())
                    rec["attempts"] += 1
                    cur.execute(item.sql)
                    rec["duration_ms"] = int((time.monotonic() - current[2]) * 1000)
                current = None
                if after is not None:
                    after(cur)
            conn.commit()
            return None
        except psycopg2.Error as exc:
            if current is not None:
                current[1]["lock_wait_ms"] += int((time.monotonic() - current[2]) * 1000)
            if isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)) and conn.closed:
                raise MigrationError("connection lost during migration step '%s': %s; the ledger "
                                     "holds the steps that committed, rerun to resume"
                                     % (current[0].sql if current else "?", str(exc).strip()))
            conn.rollback()
            return _Failure(current[0] if current else step.statements[0], exc)
        finally:
            if not conn.closed:
                conn.autocommit = True

    def _run_concurrent(self, version: str, item) -> None:
        rec = self._record(version, item)
        with self.conn.cursor() as cur:
            cur.execute("SET statement_timeout = 0")
            cur.execute("SELECT set_config('lock_timeout', %s, false)", ("%dms" % self.concurrent_lock_timeout_ms,))
            if item.index_name and self._index_state(cur, item.index_name) == "valid":
                self.log.append("%s: index %s already exists and is valid: kept" % (version, item.index_name))
                rec["skipped"] = "index exists and is valid"
                return
            if item.index_name and self._index_state(cur, item.index_name) == "invalid":
                self._drop_invalid(cur, version, item.index_name)
            for attempt in range(1, self.ladder.attempts + 1):
                start = time.monotonic()
                rec["attempts"] = attempt
                try:
                    cur.execute(item.sql)
                    rec["duration_ms"] = int((time.monotonic() - start) * 1000)
                    return
                except psycopg2.Error as exc:
                    if self.conn.closed:
                        raise MigrationError("connection lost during '%s': %s; rerun to resume"
                                             % (item.sql, str(exc).strip()), version=version, sql=item.sql)
                    if item.index_name and self._index_state(cur, item.index_name) == "invalid":
                        self._drop_invalid(cur, version, item.index_name)
                    if exc.pgcode not in RETRYABLE or attempt == self.ladder.attempts:
                        raise MigrationError("migration %s failed at line %s: %s" % (
                            version, item.line, str(exc).strip()), version=version, sql=item.sql) from None
                    rec["lock_wait_ms"] += int((time.monotonic() - start) * 1000)
                    time.sleep(self.ladder.sleep_s())

    def _index_state(self, cur, name: str) -> str:
        cur.execute("SELECT CASE WHEN i.indisvalid THEN 'valid' ELSE 'invalid' END FROM pg_index i"
                    " WHERE i.indexrelid = to_regclass(%s)", (_quote_qualified(cur.connection, name),))
        row = cur.fetchone()
        return row[0] if row else "absent"

    def _drop_invalid(self, cur, version: str, name: str) -> None:
        self.log.append("%s: index %s is INVALID (a failed concurrent build): dropped, rebuilding"
                        % (version, name))
        cur.execute(pgsql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
            pgsql.SQL(_quote_qualified(cur.connection, name))))


def _describe(holders: list) -> str:
    """'pid 42 (application app, idle in transaction, transaction open 3.1 s) holding ...'."""
    parts = []
    for holder in holders[:3]:
        about = ", ".join(x for x in (
            holder.backend_type if holder.backend_type != "client backend" else "",
            "application %s" % holder.application if holder.application else "", holder.state,
            "transaction open %.1f s" % (holder.age_ms / 1000.0) if holder.age_ms is not None else "") if x)
        parts.append("pid %s%s holding %s on %s" % (holder.pid, " (%s)" % about if about else "",
                                                    holder.mode, holder.relation))
    more = " and %d more" % (len(holders) - 3) if len(holders) > 3 else ""
    return "; ".join(parts) + more


def _quote_qualified(conn, name: str) -> str:
    parts = name.split(".")
    return ".".join(pgsql.Identifier(p).as_string(conn) for p in parts)


@dataclass
class _Failure:
    item: object
    exc: Exception

    @property
    def pgcode(self) -> str | None:
        return getattr(self.exc, "pgcode", None)

    @property
    def message(self) -> str:
        return str(self.exc).strip().splitlines()[0] if str(self.exc).strip() else type(self.exc).__name__
