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


def rollout_next_stage(plan, rows, requested=None, ignore_bake=False, bake_scale=1.0, now=None):
    try:
        return next_stage(plan, rows, now=now, requested=requested or None,
                          ignore_bake=_bool(ignore_bake), bake_scale=float(bake_scale))
    except (KeyError, TypeError, ValueError) as exc:
        raise AnsibleFilterError("rollout_next_stage: %s" % exc) from exc


class FilterModule:
    def filters(self):
        return {
            "rollout_plan_problems": plan_problems,
            "rollout_next_stage": rollout_next_stage,
            "rollout_status_table": status_table,
            "rollout_report": build_report,
            "rollout_report_markdown": render_markdown,
        }
