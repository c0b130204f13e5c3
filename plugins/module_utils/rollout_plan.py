# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A rollout plan as data: its validation and the choice of the next due stage.

The plan's schema is the typed model in ``rollout_model`` (dataclasses: every key, type and
choice, written once); ``plan_problems`` loads a plan with it and returns every problem, types
and semantics alike, before anything changes.

Pure Python, no Ansible import: used by the action plugin and filters on the controller and by
unit tests.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from ansible_collections.gradual.rollout.plugins.module_utils.rollout_model import (
    GATE_TYPES,
    METRIC_OPS,
    MIGRATE_OPTIONS,
    Plan,
    PlanError,
    check_plan,
    load_plan,
)

__all__ = ["GATE_TYPES", "METRIC_OPS", "MIGRATE_OPTIONS", "STATUSES", "Plan", "PlanError", "load_plan",
           "plan_problems", "latest_by_stage", "superseded_by", "next_stage", "status_table",
           "DEFAULT_SERIAL", "host_count", "stage_batches", "host_chunks", "stage_in_bake", "watch_hold",
           "WATCH_VERDICTS"]

# superseded: the stage had passed, then an earlier stage was run again on request
# (rollout_rerun_passed) and put back its own flags or migration target over this stage's.
STATUSES = ("running", "passed", "failed", "rolled_back", "superseded")
# What a watch concluded: every gate passed; a gate failed (the stage is rolled back); or no gate
# failed but one could not judge (no data, a source down): the plan holds until a watch passes.
WATCH_VERDICTS = ("passed", "failed", "inconclusive")
# A stage without serial: one canary host, then the rest.
DEFAULT_SERIAL = (1, "100%")


def plan_problems(plan) -> list:
    """Every problem of PLAN (a mapping) as a sentence naming the stage, the key and the value:
    wrong types, unknown keys, missing keys, bad choices and the semantic checks. Empty: valid."""
    return check_plan(plan)[1]


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
               ignore_bake: bool = False, bake_scale: float = 1.0, rerun_passed: bool = False,
               watches=()) -> dict:
    """Decide which stage runs now.

    Returns ``{stage, index, done, refuse, reason, wait_seconds, due_at, supersedes}``. ``refuse``
    is true when a stage exists but may not run yet (bake time, an earlier stage not passed, or a
    requested stage that has passed already and RERUN_PASSED is not given). ``supersedes`` names
    the later stages a re-run of a passed stage overwrites: the caller marks them superseded
    before anything changes, so the state never claims flags the hosts no longer have.

    A stage after one that is watched (its ``watch``) is due only when the last of WATCHES (the
    plan's watch records, oldest first) of that stage's passed run passed and is younger than its
    ``max_age_hours``; rollout_ignore_bake skips the bake time, never this.
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
    if index > 0:
        held = watch_hold(stages[index - 1], latest.get(names[index - 1]) or {}, watches, now)
        if held:
            return _choice(stage, index, refuse=True, reason="stage %r is not due: %s" % (stage["name"], held))
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


def watch_hold(stage: dict, row: dict, watches, now) -> str:
    """Why the stage after STAGE (latest state ROW) is held by STAGE's watch, or "" when it is not:
    STAGE watches nothing, or the last watch of ROW's run passed and is younger than max_age_hours."""
    watch = stage.get("watch") or {}
    if not watch.get("gates") or row.get("status") != "passed":
        return ""
    mine = [w for w in watches or () if w.get("state_id") == row.get("id")]
    max_age = float(watch.get("max_age_hours", 6))
    if not mine:
        return ("stage %r is watched and no watch of it has run since it passed; run "
                "-e rollout_action=watch (a watch must pass within %s h)" % (stage["name"], max_age))
    last = mine[-1]
    if last.get("verdict") != "passed":
        return ("the last watch of stage %r (%s) was %s: %s; the plan holds until a watch passes"
                % (stage["name"], last.get("at"), last.get("verdict"), last.get("reason") or "no reason recorded"))
    age = (now - _parse_time(last.get("at"))).total_seconds()
    if age > max_age * 3600.0:
        return ("the last watch of stage %r passed at %s, %.1f h ago, older than its max_age_hours %s; run "
                "-e rollout_action=watch again" % (stage["name"], last.get("at"), age / 3600.0, max_age))
    return ""


def stage_in_bake(plan: dict, rows) -> dict:
    """The stage a watch re-measures: the last of the plan's leading passed stages (the change in
    effect while its successor waits). Returns ``{stage, index, row, refuse, reason}``: no stage
    when none has passed, or when that stage watches nothing (``refuse`` false: nothing to do);
    ``refuse`` when a later stage is running (resume or roll it back first)."""
    stages = plan["stages"]
    latest = latest_by_stage(rows)
    index = None
    for position, stage in enumerate(stages):
        if (latest.get(stage["name"]) or {}).get("status") != "passed":
            break
        index = position
    running = [s["name"] for s in stages if (latest.get(s["name"]) or {}).get("status") == "running"]
    if running:
        return dict(stage=None, index=None, row=None, refuse=True,
                    reason="stage %s is running; resume it (or roll it back) before a watch" % running[0])
    if index is None:
        return dict(stage=None, index=None, row=None, refuse=False, reason="no stage has passed: nothing to watch")
    stage = stages[index]
    if not (stage.get("watch") or {}).get("gates"):
        return dict(stage=None, index=index, row=latest[stage["name"]], refuse=False,
                    reason="stage %r, the last passed, has no watch gates: nothing to watch" % stage["name"])
    return dict(stage=stage, index=index, row=latest[stage["name"]], refuse=False,
                reason="watching stage %r (passed at %s)" % (stage["name"], latest[stage["name"]].get("finished_at")))


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


def host_count(entry, total: int) -> int:
    """ENTRY (a count, or a percentage such as "25%") as a number of hosts out of TOTAL, the way
    Ansible reads a play's serial (ansible.utils.helpers.pct_to_int): a percentage rounds down,
    and never below one host."""
    if isinstance(entry, str) and entry.endswith("%"):
        return max(int(int(entry[:-1]) / 100.0 * total), 1)
    return int(entry)


def stage_batches(serial, total: int) -> list:
    """The batch sizes Ansible makes of TOTAL hosts with SERIAL (a list of counts and percentages;
    the last entry repeats until every host had its batch)."""
    entries = list(serial) or [DEFAULT_SERIAL[-1]]
    sizes = []
    left = total
    index = 0
    while left > 0:
        size = min(host_count(entries[index], total), left)
        sizes.append(size)
        left -= size
        index = min(index + 1, len(entries) - 1)
    return sizes


def host_chunks(serial, max_unavailable, total: int, drains: bool = True) -> dict:
    """How a stage's TOTAL app hosts go through the host cycle: each batch of SERIAL split into
    chunks of at most MAX_UNAVAILABLE hosts (a count or a percentage of TOTAL) cycled at once.

    When the cycle DRAINS hosts (a stage that sets flags), a chunk never holds every host (at most
    TOTAL - 1, and at least one), so nginx keeps an upstream; a stage that drains nothing keeps
    its batches whole. Returns ``serial`` (the chunk sizes: the play's serial),
    ``gate_after`` (how many hosts are done when a batch ends: the gates are measured after those
    chunks only), ``batches`` (the batch sizes) and ``max_unavailable`` (the chunk size used)."""
    if total < 1:
        raise ValueError("a stage needs at least one app host, got %d" % total)
    batches = stage_batches(serial, total)
    if not drains:
        return dict(serial=batches, gate_after=[sum(batches[:index + 1]) for index in range(len(batches))],
                    batches=batches, max_unavailable=0)
    width = max(1, min(host_count(max_unavailable, total), total - 1))
    chunks = []
    gate_after = []
    for size in batches:
        chunks += [width] * (size // width) + ([size % width] if size % width else [])
        gate_after.append(sum(chunks))
    return dict(serial=chunks, gate_after=gate_after, batches=batches, max_unavailable=width)
