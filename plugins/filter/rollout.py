# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for rollout.yml: plan validation, next due stage, status table and report."""
from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.gradual.rollout.plugins.module_utils.rollout_plan import (
    next_stage,
    plan_problems,
    status_table,
)
from ansible_collections.gradual.rollout.plugins.module_utils.rollout_report import (
    build_report,
    render_markdown,
)


def _bool(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def rollout_next_stage(plan, rows, requested=None, ignore_bake=False, bake_scale=1.0, now=None,
                       rerun_passed=False):
    try:
        return next_stage(plan, rows, now=now, requested=requested or None,
                          ignore_bake=_bool(ignore_bake), bake_scale=float(bake_scale),
                          rerun_passed=_bool(rerun_passed))
    except (KeyError, TypeError, ValueError) as exc:
        raise AnsibleFilterError("rollout_next_stage: %s" % exc) from exc


def rollout_flag_mismatches(expected, served) -> list:
    """Flags whose value the app does not serve: EXPECTED (name -> value) against the reply of
    the app's /api/flags ({flags: {NAME: {value, source}}}). Booleans compare as true/false."""
    flags = (served or {}).get("flags", served or {})
    out = []
    for name, want in sorted((expected or {}).items()):
        got = flags.get(name)
        if isinstance(got, dict):
            got = got.get("value")
        if str(got).lower() != str(want).lower():
            out.append("%s: expected %s, the app serves %s" % (name, want, "nothing" if got is None else got))
    return out


def rollout_lock_wait_seconds(result, kind: str = "lock") -> float:
    """Total wait in a pg_migrate result, wherever the per-statement entries put it.

    ``kind="lock"`` sums ``lock_wait_s`` / ``lock_wait_ms``: time spent queued for a table lock,
    during which the app's writes on that table queued behind the migration.
    ``kind="blocker"`` sums ``blocker_wait_s`` / ``blocker_wait_ms``: time the runner waited for
    a long transaction to end before asking for the lock, which blocks nobody."""
    if kind not in ("lock", "blocker"):
        raise AnsibleFilterError("rollout_lock_wait_seconds: kind=%r, expected 'lock' or 'blocker'" % (kind,))
    seconds, millis = (kind + "_wait_s", kind + "_wait_seconds"), kind + "_wait_ms"
    total = 0.0
    stack = [result]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key in seconds and isinstance(value, (int, float)):
                    total += float(value)
                elif key == millis and isinstance(value, (int, float)):
                    total += float(value) / 1000.0
                elif isinstance(value, (dict, list)):
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)
    return round(total, 3)


class FilterModule:
    def filters(self):
        return {
            "rollout_plan_problems": plan_problems,
            "rollout_next_stage": rollout_next_stage,
            "rollout_status_table": status_table,
            "rollout_report": build_report,
            "rollout_report_markdown": render_markdown,
            "rollout_flag_mismatches": rollout_flag_mismatches,
            "rollout_lock_wait_seconds": rollout_lock_wait_seconds,
        }
