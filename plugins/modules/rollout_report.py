#!/usr/bin/python
# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation of the rollout_report action plugin (plugins/action/rollout_report.py)."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: rollout_report
short_description: Write the report of a rollout plan and the result of the run
version_added: "0.1.0"
description:
  - Runs on the controller (an action plugin) and reads the plan's state with
    M(gradual.rollout.rollout_state) on the host the task is delegated to.
  - Builds the plan's C(Metric | Target | Actual | Status) table (a metric whose figure was never
    recorded is C(NOT MEASURED), never a pass) and the stages' table, and writes them to
    O(report_dir) as C(rollout-<plan>.md) and C(rollout-<plan>.json), each replaced whole.
  - A metric's C(gate) is a gate of its stage, or a gate of the stage's C(watch); the value is taken
    from the stage's own record of the gate when it has one, else from the latest watch of the
    stage's latest run whose record of that gate has the C(field), a passed watch before any
    other. Its C(source) (in the JSON and the HTML page) says which. A C(*) step in the field
    (C(figures.*.extractors.q.max), each host of a C(log_check) gate) reports the worst of the
    numbers found (the highest against C(<) or C(<=), the lowest against C(>) or C(>=)).
  - Also writes C(rollout-<plan>.html), one self-contained page (no script, no external resource,
    readable offline) with the same tables, each stage's watch history and, per stage, a chart of
    each gate's numeric figures over the stage and its bake (the stage's record, then each
    watch's), failed and inconclusive readings marked. The charts need matplotlib on the
    controller; without it the HTML page is not written (one of an earlier run is removed) and
    the task warns.
  - With O(outcome) and O(result_path), writes the run's machine-readable result there.
  - In check mode nothing is written; the report is returned.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
  - gradual.rollout.controller
  - community.postgresql.postgres
  - gradual.rollout.postgres
options:
  plan:
    description: The rollout plan.
    type: dict
    required: true
  report_dir:
    description: Folder on the controller for the report files; created when missing.
    type: path
    required: true
  outcome:
    description: How the run ended, for RV(result).
    type: dict
    suboptions:
      action:
        description: The run's action.
        type: str
        default: run
      stage:
        description: The stage the run worked on.
        type: str
      outcome:
        description: C(passed), C(rolled_back) or C(failed).
        type: str
        required: true
      reason:
        description: Why.
        type: str
        default: ""
      run_id:
        description: The stage attempt's state row.
        type: int
  result_path:
    description: File on the controller that receives RV(result) as JSON.
    type: path
requirements:
  - matplotlib (for the HTML page only)
attributes:
  check_mode:
    support: full
    details: Reads the state; writes no file.
author:
  - gradual.rollout contributors (@gradual-rollout)
"""

EXAMPLES = r"""
- name: Write the report
  gradual.rollout.rollout_report:
    plan: "{{ rollout_plan }}"
    report_dir: reports
    login_host: 127.0.0.1
    login_user: app_owner
    login_password: "{{ vault_app_owner_password }}"
    db: app
  delegate_to: "{{ groups['postgresql_primary'][0] }}"
  run_once: true
"""

RETURN = r"""
report:
  description:
    - The report (plan, overall, metrics, stages, cleanup).
    - Each stage carries its gate records (C(records), with their figures) and its watches, each
      with its own C(records).
  returned: always
  type: dict
markdown:
  description: The report as Markdown.
  returned: always
  type: str
files:
  description: The files written.
  returned: always
  type: list
  elements: str
result:
  description: The machine-readable result of the run (plan, action, stage, outcome, reason, run_id, at).
  returned: when outcome is given
  type: dict
"""
