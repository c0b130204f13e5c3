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

import getpass
import random
import socket
import time
import traceback
from dataclasses import dataclass, field

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


class MigrationError(Exception):
    """A migration failed; ``details`` goes into the module result."""

    def __init__(self, msg: str, **details) -> None:
        super().__init__(msg)
        self.details = details


@dataclass
class Ladder:
    """lock_timeout per attempt: start, x factor each retry, capped; jittered sleeps between."""

    start_ms: int = 100
    max_ms: int = 3000
    factor: float = 2.0
    attempts: int = 10
    sleep_ms: int = 1000
    jitter: float = 0.5

    def timeout_ms(self, attempt: int) -> int:
        return int(min(self.max_ms, self.start_ms * (self.factor ** (attempt - 1))))

    def sleep_s(self) -> float:
        spread = self.sleep_ms * self.jitter
        return max(0.0, (self.sleep_ms + random.uniform(-spread, spread)) / 1000.0)


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
            " steps_done integer NOT NULL DEFAULT 0, steps_total integer NOT NULL)"
        ).format(schema=pgsql.Identifier(self.schema), tbl=self.ident())
        with conn.cursor() as cur:
            cur.execute(ddl)

    def rows(self, conn) -> dict:
        if not self.exists(conn):
            return {}
        query = pgsql.SQL("SELECT version, name, checksum, finished IS NOT NULL, steps_done, steps_total,"
                          " started::text, finished::text, duration_ms, applied_by FROM {}").format(self.ident())
        with conn.cursor() as cur:
            cur.execute(query)
            keys = ("version", "name", "checksum", "complete", "steps_done", "steps_total", "started",
                    "finished", "duration_ms", "applied_by")
            return {int(row[0]): dict(zip(keys, row)) for row in cur.fetchall()}

    def start(self, cur, mig, checksum: str, steps_total: int) -> None:
        cur.execute(pgsql.SQL("INSERT INTO {} (version, name, checksum, applied_by, steps_total)"
                              " VALUES (%s, %s, %s, %s, %s)").format(self.ident()),
                    (mig.version, mig.name, checksum, applied_by(), steps_total))

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


@dataclass
class Runner:
    """Runs the steps of a planned migration on CONN (autocommit connection)."""

    conn: object
    ledger: Ledger
    ladder: Ladder
    concurrent_lock_timeout_ms: int = 0
    records: list = field(default_factory=list)
    log: list = field(default_factory=list)

    # ----------------------------------------------------------------- up / down
    def apply(self, mig, plan, checksum: str, row: dict | None) -> None:
        """Run PLAN's steps from the ledger's ``steps_done``; the ledger row moves with them."""
        done = row["steps_done"] if row else 0
        if row is None:
            with self.conn.cursor() as cur:
                self.ledger.start(cur, mig, checksum, len(plan.steps))
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
        for attempt in range(1, self.ladder.attempts + 1):
            timeout = self.ladder.timeout_ms(attempt)
            failed = self._attempt(step, recs, timeout, after)
            if failed is None:
                return
            if failed.pgcode not in RETRYABLE:
                raise MigrationError("migration %s failed at line %s: %s" % (
                    version, failed.item.line, failed.message), version=version, sql=failed.item.sql)
            self.log.append("%s: %s on attempt %d (lock_timeout %d ms)" % (version, failed.message,
                                                                           attempt, timeout))
            if attempt < self.ladder.attempts:
                time.sleep(self.ladder.sleep_s())
        raise MigrationError(
            "migration %s: could not get the %s lock for '%s' in %d attempts (lock_timeout up to %d ms);"
            " nothing of this step was applied. Find the blocking session in pg_stat_activity, or raise"
            " lock_retries / lock_timeout_max_ms" % (version, failed.item.lock, failed.item.sql,
                                                     self.ladder.attempts, self.ladder.max_ms),
            version=version, sql=failed.item.sql)

    def _attempt(self, step, recs: list, timeout_ms: int, after):
        """One try of a transactional step; None on success, else the failure."""
        conn = self.conn
        conn.autocommit = False
        current = None
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT set_config('lock_timeout', %s, true)", ("%dms" % timeout_ms,))
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
