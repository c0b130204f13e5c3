# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The options of ``pg_migrate`` beside the connection's (those are in ``module_utils/pg.py``):
their argument spec, the defaults of the lock_timeout ladder that ``runner.Ladder`` shares, and the
check of ladder values that ``pg_migrate`` and the rollout plan (a stage's ``actions.migrate``) run.
"""
from __future__ import annotations

BACKUP_METHODS = ("pg_dump", "restore_point", "both")

# The lock_timeout ladder: first lock_timeout, its cap, the factor between attempts, the attempts
# and the sleep between them.
LOCK_TIMEOUT_MS = 100
LOCK_TIMEOUT_MAX_MS = 3000
LOCK_TIMEOUT_FACTOR = 2.0
LOCK_RETRIES = 10
RETRY_SLEEP_MS = 1000

# Options of the lock_timeout ladder: positive integers, non-negative integers and the factor.
LADDER_POSITIVE = ("lock_timeout_ms", "lock_timeout_max_ms", "lock_retries")
LADDER_NON_NEGATIVE = ("retry_sleep_ms", "concurrent_lock_timeout_ms", "blocker_wait_s")

# Options that describe the site (where the migrations and the ledger are, where dumps go), set once
# in the inventory; every other option may be tuned per run, e.g. by a rollout stage.
SITE_OPTIONS = ("path", "ledger_schema", "ledger_table", "backup_dir", "pg_dump_path")


def argument_spec() -> dict:
    """pg_migrate's own options (a new dict each call: AnsibleModule may fill it in)."""
    return dict(
        path=dict(type="path", required=True),
        target=dict(type="str"),
        ledger_schema=dict(type="str", default="gradual"),
        ledger_table=dict(type="str", default="schema_migrations"),
        autofix=dict(type="bool", default=False),
        backup=dict(type="bool", default=False),
        backup_method=dict(type="str", default="pg_dump", choices=list(BACKUP_METHODS)),
        backup_dir=dict(type="path", default="/var/backups/postgresql"),
        pg_dump_path=dict(type="path"),
        lock_timeout_ms=dict(type="int", default=LOCK_TIMEOUT_MS),
        lock_timeout_max_ms=dict(type="int", default=LOCK_TIMEOUT_MAX_MS),
        lock_timeout_factor=dict(type="float", default=LOCK_TIMEOUT_FACTOR),
        lock_retries=dict(type="int", default=LOCK_RETRIES),
        retry_sleep_ms=dict(type="int", default=RETRY_SLEEP_MS),
        concurrent_lock_timeout_ms=dict(type="int", default=0),
        blocker_wait_s=dict(type="int", default=60),
        cancel_autovacuum=dict(type="bool", default=True),
        session_settings=dict(type="dict", default={}),
    )


def stage_options() -> tuple:
    """The options a rollout stage's ``actions.migrate`` may set, in pg_migrate's own order: all of
    pg_migrate's options but the site's."""
    return tuple(key for key in argument_spec() if key not in SITE_OPTIONS)


def ladder_problems(options: dict) -> list:
    """What is wrong with the ladder OPTIONS given (any subset of the options above and
    lock_timeout_factor), each naming the bad value and what is expected. Pure: the rollout plan
    checks a stage's migrate options with it before anything changes, pg_migrate its arguments."""
    problems = []
    numbers = {}
    for key in LADDER_POSITIVE + LADDER_NON_NEGATIVE + ("lock_timeout_factor",):
        if options.get(key) is None:
            continue
        value = options[key]
        try:
            if isinstance(value, bool):
                raise ValueError(value)
            number = float(value) if key == "lock_timeout_factor" else int(value)
        except (TypeError, ValueError):
            problems.append("%s=%r: expected %s" % (key, value, "a number" if key == "lock_timeout_factor"
                                                    else "an integer"))
            continue
        numbers[key] = number
        if key in LADDER_POSITIVE and number < 1:
            problems.append("%s=%s: expected a positive integer" % (key, value))
        elif key in LADDER_NON_NEGATIVE and number < 0:
            problems.append("%s=%s: expected an integer >= 0" % (key, value))
        elif key == "lock_timeout_factor" and number < 1:
            problems.append("%s=%s: expected a number >= 1 (each attempt's lock_timeout is the last one's"
                            " times the factor)" % (key, value))
    start = numbers.get("lock_timeout_ms", LOCK_TIMEOUT_MS)
    top = numbers.get("lock_timeout_max_ms", LOCK_TIMEOUT_MAX_MS)
    if 1 <= top < start:
        problems.append("lock_timeout_max_ms=%s is below lock_timeout_ms=%s: raise it" % (top, start))
    return problems
