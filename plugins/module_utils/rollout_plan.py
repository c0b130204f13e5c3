# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A rollout plan as data: semantic validation and the choice of the next due stage.

Types and required keys are checked first by ``ansible.builtin.validate_argument_spec``
(playbooks/vars/rollout_plan_spec.yml). The checks here are the ones a type system cannot
express: an unknown gate, a negative threshold, a stage name used twice, a serial entry that is
not a count or a percentage, a flag without a baseline value (the emergency rollback would not
know what to restore), a metric that points at a gate that does not exist.

Pure Python, no Ansible import: used by the filter plugin on the controller and by unit tests.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from ansible_collections.gradual.rollout.plugins.module_utils.migration.options import ladder_problems, stage_options

GATE_TYPES = ("http_slo", "pool_check", "cache_check")
ACTION_KEYS = ("flags", "migrate", "lint")
# What a stage's actions.migrate may set: the target and the pg_migrate options a plan tunes per
# stage (the rest - paths, ledger - belong to the inventory); named once, in pg_migrate's spec.
MIGRATE_OPTIONS = stage_options()
# superseded: the stage had passed, then an earlier stage was run again on request
# (rollout_rerun_passed) and put back its own flags or migration target over this stage's.
STATUSES = ("running", "passed", "failed", "rolled_back", "superseded")
METRIC_OPS = ("<", "<=", ">", ">=", "==")
# Numeric gate arguments that make no sense below zero.
NON_NEGATIVE = ("duration", "interval", "requests", "concurrency", "min_samples", "timeout")
# Used with fullmatch(): "$" alone also matches before a final newline ("one\n" is no stage name).
STAGE_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
FLAG_NAME_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")
SERIAL_PCT_RE = re.compile(r"^([0-9]{1,3})%$")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _threshold_problems(where: str, args: dict) -> list:
    problems = []
    for key, value in sorted(args.items()):
        numeric = key.startswith(("max_", "min_")) or key in NON_NEGATIVE
        if not numeric:
            continue
        given = value
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                # e.g. max_used_memory: "500mb" - sizes are checked by the gate module itself
                if value.strip().startswith("-"):
                    problems.append("%s: threshold %s=%r is negative; use a value >= 0"
                                    % (where, key, value))
                continue
        if _is_number(value) and value < 0:
            problems.append("%s: threshold %s=%r is negative; use a value >= 0" % (where, key, given))
        if key.endswith(("_rate", "_utilization")) and _is_number(value) and value > 100:
            problems.append("%s: %s=%r is above 100; rates and utilisations are percentages"
                            % (where, key, given))
    return problems


def _serial_problems(where: str, serial) -> list:
    if serial is None:
        return []
    if not isinstance(serial, list) or not serial:
        return ["%s: serial %r must be a non-empty list such as [1, \"50%%\", \"100%%\"]" % (where, serial)]
    problems = []
    for entry in serial:
        if _is_number(entry) and int(entry) == entry and entry > 0:
            continue
        match = SERIAL_PCT_RE.fullmatch(str(entry)) if isinstance(entry, str) else None
        if match and 0 < int(match.group(1)) <= 100:
            continue
        problems.append("%s: serial entry %r is neither a host count > 0 nor a percentage "
                        "between 1%% and 100%%" % (where, entry))
    return problems


def plan_problems(plan) -> list:
    """Every semantic problem of PLAN as a sentence naming the stage, the key and the value."""
    if not isinstance(plan, dict):
        return ["the rollout plan must be a mapping, got %s" % type(plan).__name__]
    problems = []
    baseline = plan.get("baseline") or {}
    if not isinstance(baseline, dict):
        problems.append("baseline must be a mapping of flag name to value")
        baseline = {}
    for name in baseline:
        if not FLAG_NAME_RE.fullmatch(str(name)):
            problems.append("baseline: flag name %r must be upper case letters, digits and _" % name)
    stages = plan.get("stages")
    if not isinstance(stages, list) or not stages:
        return problems + ["the plan has no stages: give a non-empty list under stages"]
    seen = {}
    gates_by_stage = {}
    for index, stage in enumerate(stages):
        if not isinstance(stage, dict):
            problems.append("stage #%d must be a mapping, got %r" % (index + 1, stage))
            continue
        name = stage.get("name")
        where = "stage %r" % name if name else "stage #%d" % (index + 1)
        if not isinstance(name, str) or not STAGE_NAME_RE.fullmatch(name):
            problems.append("%s: name %r must match %s" % (where, name, STAGE_NAME_RE.pattern))
        elif name in seen:
            problems.append("stage name %r is used twice (stages #%d and #%d); stage names must be unique"
                            % (name, seen[name] + 1, index + 1))
        else:
            seen[name] = index
        bake = stage.get("bake_hours", 0)
        if not _is_number(bake) or bake < 0:
            problems.append("%s: bake_hours %r must be a number >= 0" % (where, bake))
        problems += _serial_problems(where, stage.get("serial"))
        actions = stage.get("actions") or {}
        if not isinstance(actions, dict):
            problems.append("%s: actions must be a mapping" % where)
            actions = {}
        for key in actions:
            if key not in ACTION_KEYS:
                problems.append("%s: unknown action %r; known actions: %s"
                                % (where, key, ", ".join(ACTION_KEYS)))
        for kind in ("actions", "rollback"):
            flags = ((stage.get(kind) or {}).get("flags") or {}) if isinstance(stage.get(kind) or {}, dict) else {}
            if not isinstance(flags, dict):
                problems.append("%s: %s.flags must be a mapping of flag name to value" % (where, kind))
                continue
            for flag, value in flags.items():
                if not FLAG_NAME_RE.fullmatch(str(flag)):
                    problems.append("%s: flag name %r must be upper case letters, digits and _"
                                    % (where, flag))
                if isinstance(value, (dict, list)) or value is None:
                    problems.append("%s: flag %s has value %r; use a string, number or boolean"
                                    % (where, flag, value))
                if kind == "actions" and flag not in baseline:
                    problems.append("%s: flag %s has no value in baseline, so an emergency rollback "
                                    "could not restore it; add it to baseline" % (where, flag))
        migrate = actions.get("migrate")
        problems += _migrate_problems(where, migrate)
        gate_names = set()
        for gindex, gate in enumerate(stage.get("gates") or []):
            if not isinstance(gate, dict):
                problems.append("%s: gate #%d must be a mapping" % (where, gindex + 1))
                continue
            gname = gate.get("name") or "#%d" % (gindex + 1)
            gwhere = "%s gate %r" % (where, gname)
            if gate.get("type") not in GATE_TYPES:
                problems.append("%s: unknown gate type %r; known gates: %s"
                                % (gwhere, gate.get("type"), ", ".join(GATE_TYPES)))
            if gname in gate_names:
                problems.append("%s: gate name %r is used twice in this stage" % (where, gname))
            gate_names.add(gname)
            args = gate.get("args") or {}
            if not isinstance(args, dict):
                problems.append("%s: args must be a mapping" % gwhere)
                continue
            problems += _threshold_problems(gwhere, args)
        if isinstance(name, str):
            # a migration's result (lock waits, versions) can feed a metric like a gate's
            gates_by_stage[name] = gate_names | ({"migrate"} if migrate else set())
    for metric in plan.get("metrics") or []:
        mname = metric.get("name", "?") if isinstance(metric, dict) else metric
        if not isinstance(metric, dict):
            problems.append("metric %r must be a mapping" % (mname,))
            continue
        if metric.get("op", "<") not in METRIC_OPS:
            problems.append("metric %r: op %r must be one of %s" % (mname, metric.get("op"), " ".join(METRIC_OPS)))
        if metric.get("stage") is not None:
            if metric["stage"] not in gates_by_stage:
                problems.append("metric %r: stage %r is not in the plan" % (mname, metric["stage"]))
            elif metric.get("gate") and metric["gate"] not in gates_by_stage[metric["stage"]]:
                problems.append("metric %r: stage %r has no gate %r" % (mname, metric["stage"], metric["gate"]))
    for flag in plan.get("cleanup") or []:
        if not FLAG_NAME_RE.fullmatch(str(flag)):
            problems.append("cleanup: flag name %r must be upper case letters, digits and _" % (flag,))
    return problems


def _migrate_problems(where: str, migrate) -> list:
    """A stage's actions.migrate: a mapping with a target and known pg_migrate options whose
    values pg_migrate would accept (checked now, before the run changes anything)."""
    if migrate is None:
        return []
    if not (isinstance(migrate, dict) and migrate.get("target")):
        return ["%s: actions.migrate must be a mapping with a target version, got %r" % (where, migrate)]
    problems = ["%s: unknown actions.migrate option %r; known options: %s" % (where, key, ", ".join(MIGRATE_OPTIONS))
                for key in migrate if key not in MIGRATE_OPTIONS]
    problems += ["%s: actions.migrate.%s" % (where, problem) for problem in ladder_problems(migrate)]
    settings = migrate.get("session_settings")
    if settings is not None and not isinstance(settings, dict):
        problems.append("%s: actions.migrate.session_settings must be a mapping of setting to value, got %r"
                        % (where, settings))
    return problems


def _parse_time(value):
    if value is None or isinstance(value, datetime):
        return value
    text = str(value).replace("Z", "+00:00")
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def latest_by_stage(rows) -> dict:
    """Newest state row per stage name (rows as returned by rollout_state: oldest first)."""
    latest = {}
    for row in rows or []:
        prev = latest.get(row["stage"])
        if prev is None or (row.get("id") or 0) >= (prev.get("id") or 0):
            latest[row["stage"]] = row
    return latest


def _touches(stage: dict) -> set:
    """What applying STAGE overwrites on the hosts and in the database: its flag names, and
    "(migration)" when it migrates (pg_migrate to its target runs the down files of later versions)."""
    actions = stage.get("actions") or {}
    touched = set(actions.get("flags") or {})
    if actions.get("migrate"):
        touched.add("(migration)")
    return touched


def superseded_by(plan: dict, rows, index: int) -> list:
    """The later stages whose passed state a re-run of stage INDEX would make untrue: those that set
    a flag (or migrate) it sets again - and, in turn, those that set what these will set again
    when they run once more. Stages that touch none of it keep their state."""
    stages = plan["stages"]
    latest = latest_by_stage(rows)
    touched = _touches(stages[index])
    out = []
    for later in stages[index + 1:]:
        theirs = _touches(later)
        if touched & theirs:
            touched |= theirs
            if (latest.get(later["name"]) or {}).get("status") == "passed":
                out.append(later["name"])
    return out


def _choice(stage=None, index=None, reason="", done=False, refuse=False, wait_seconds=0, due_at=None,
            supersedes=()) -> dict:
    return dict(stage=stage, index=index, done=done, refuse=refuse, reason=reason,
                wait_seconds=wait_seconds, due_at=due_at, supersedes=list(supersedes))


def next_stage(plan: dict, rows, now=None, requested: str | None = None,
               ignore_bake: bool = False, bake_scale: float = 1.0, rerun_passed: bool = False) -> dict:
    """Decide which stage runs now.

    Returns ``{stage, index, done, refuse, reason, wait_seconds, due_at, supersedes}``. ``refuse``
    is true when a stage exists but may not run yet (bake time, an earlier stage not passed, or a
    requested stage that has passed already and RERUN_PASSED is not given). ``supersedes`` names
    the later stages a re-run of a passed stage overwrites: the caller marks them superseded
    before anything changes, so the state never claims flags the hosts no longer have.
    """
    now = _parse_time(now) or datetime.now(timezone.utc)
    stages = plan["stages"]
    latest = latest_by_stage(rows)
    names = [s["name"] for s in stages]
    if requested:
        if requested not in names:
            return _choice(refuse=True, reason="stage %r is not in the plan; stages: %s"
                           % (requested, ", ".join(names)))
        index = names.index(requested)
        for earlier in names[:index]:
            if (latest.get(earlier) or {}).get("status") != "passed":
                return _choice(stages[index], index, refuse=True,
                               reason="stage %r cannot run before stage %r has passed (it is %s)"
                               % (requested, earlier, (latest.get(earlier) or {}).get("status", "not started")))
        if (latest.get(requested) or {}).get("status") == "passed":
            # never a silent re-apply: a passed stage runs again only by its own override
            supersedes = superseded_by(plan, rows, index)
            if not rerun_passed:
                return _choice(stages[index], index, refuse=True, supersedes=supersedes,
                               reason=_passed_reason(requested, latest[requested], supersedes))
            return _choice(stages[index], index, supersedes=supersedes,
                           reason="stage %r had passed and runs again by request (rollout_rerun_passed); %s"
                           % (requested, "later stages marked superseded, to run again after it: %s"
                              % ", ".join(supersedes) if supersedes else "no later stage sets what it sets"))
    else:
        index = next((i for i, n in enumerate(names) if (latest.get(n) or {}).get("status") != "passed"), None)
        if index is None:
            return _choice(done=True, reason="every stage of the plan has passed")
    stage = stages[index]
    if index == 0 or ignore_bake:
        return _choice(stage, index, reason="bake time ignored by request" if ignore_bake and index else "first stage")
    previous = latest.get(names[index - 1]) or {}
    finished = _parse_time(previous.get("finished_at"))
    bake_seconds = float(stage.get("bake_hours", 0)) * 3600.0 * float(bake_scale)
    wait = 0.0 if finished is None else bake_seconds - (now - finished).total_seconds()
    due_at = None if finished is None else (finished + timedelta(seconds=bake_seconds)).isoformat()
    if wait > 0:
        return _choice(stage, index, refuse=True, wait_seconds=int(wait + 0.999), due_at=due_at,
                       reason="stage %r is not due: stage %r passed at %s and needs %s h of bake time; "
                       "due at %s (override with -e rollout_ignore_bake=true or -e rollout_bake_scale=0)"
                       % (stage["name"], names[index - 1], previous.get("finished_at"),
                          stage.get("bake_hours", 0), due_at))
    return _choice(stage, index, due_at=due_at,
                   reason="due: bake time of %s h after %r has elapsed" % (stage.get("bake_hours", 0), names[index - 1]))


def _passed_reason(name: str, row: dict, supersedes: list) -> str:
    later = ("it would put its flags back over what later stages set (%s), while the state still "
             "showed them passed" % ", ".join(supersedes)) if supersedes else \
        "it would apply its flags again"
    return ("stage %r has already passed (finished %s); nothing was changed: running it again is not "
            "a resume, %s. -e rollout_ignore_bake=true only skips bake time. To run it again on "
            "purpose add -e rollout_rerun_passed=true: the stage is applied again and %s"
            % (name, row.get("finished_at") or "-", later,
               "the later stages %s are marked superseded, so status and the next run apply them again"
               % ", ".join(supersedes) if supersedes else "no later stage needs to run again"))


def status_table(plan: dict, rows) -> list:
    """One text line per stage: name, status, started, finished, actor, reason (a fixed-width table)."""
    latest = latest_by_stage(rows)
    header = ("STAGE", "STATUS", "STARTED", "FINISHED", "ACTOR", "DETAIL")
    table = [header]
    for stage in plan.get("stages") or []:
        row = latest.get(stage["name"]) or {}
        detail = row.get("reason") or ""
        if row.get("status") == "running":
            detail = "batches done: %s %s" % (row.get("batches_done", 0), detail)
        table.append((stage["name"], row.get("status", "pending"), _short(row.get("started_at")),
                      _short(row.get("finished_at")), str(row.get("actor") or ""), str(detail)[:60]))
    widths = [max(len(str(r[i])) for r in table) for i in range(len(header))]
    return ["  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(r)).rstrip() for r in table]


def _short(value) -> str:
    if not value:
        return "-"
    return str(value).replace("T", " ")[:19]
