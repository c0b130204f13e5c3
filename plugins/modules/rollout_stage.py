#!/usr/bin/python
# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation of the rollout_stage action plugin (plugins/action/rollout_stage.py)."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: rollout_stage
short_description: Decide what a rollout run does - check the plan, read the state, start the due stage
version_added: "0.1.0"
description:
  - Runs on the controller (an action plugin) and calls M(gradual.rollout.rollout_state) on the host
    the task is delegated to (the state database's host).
  - Checks O(plan) first, types and meaning (unknown keys, gate types, thresholds, stage names,
    flags without a baseline value); an invalid plan fails with every problem named and nothing
    changed.
  - O(action=status) and O(action=report) return the state as a table (RV(table)). O(action=reset)
    forgets the plan's state rows.
  - O(action=run) chooses the due stage (the next stage not passed whose predecessor's bake time has
    elapsed, or O(stage) when given, refused unless its predecessors passed) and records its start.
    A stage that is not due fails the task with the reason; a plan whose stages have all passed
    returns RV(stop) true. After a stage with C(watch) gates, the next stage is due only when the
    last watch of that stage passed and is younger than its C(max_age_hours).
  - O(action=watch) chooses the stage a watch re-measures (RV(watch)) - the last of the leading
    passed stages, when it has C(watch) gates. Nothing to watch (no stage passed, no watch gates)
    returns RV(stop) true; a stage left running fails the task. The playbook measures the gates,
    records the watch with M(gradual.rollout.rollout_state) and rolls the stage back when it fails.
  - With O(result_path), the result of the run (RV(result)) is written there as JSON; a run that goes
    on to change hosts leaves the outcome C(started) until M(gradual.rollout.rollout_report) writes
    the final one.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
  - gradual.rollout.controller
  - community.postgresql.postgres
  - gradual.rollout.postgres
options:
  plan:
    description: The rollout plan (name, baseline, stages, metrics, cleanup); see examples/rollout/plan.yml.
    type: dict
    required: true
  action:
    description: What the run does.
    type: str
    choices: [run, status, report, reset, watch]
    default: run
  stage:
    description: A stage to run by name instead of the next due one. Empty means the next due stage.
    type: str
    default: ""
  ignore_bake:
    description: Run the next stage even if the bake time of its predecessor has not elapsed.
    type: bool
    default: false
  bake_scale:
    description: Factor applied to every bake time (C(0.001) in a demo).
    type: float
    default: 1.0
  rerun_passed:
    description:
      - Run O(stage) again although it has passed. The later stages that set what it sets are marked
        C(superseded) before anything changes, so they run again after it.
    type: bool
    default: false
  actor:
    description: Who runs the rollout, kept with the stage's state.
    type: str
  awx_job_id:
    description: The AWX job id, kept with the stage's state.
    type: str
  hosts:
    description:
      - The app hosts the stage runs on (the play's hosts, after C(--limit)), in play order.
      - Their number turns the stage's C(serial) and C(max_unavailable) into host counts (RV(serial)).
      - Required by O(action=run) when a stage is due.
    type: list
    elements: str
    default: []
  result_path:
    description: File on the controller that receives RV(result) as JSON. Not written in check mode.
    type: path
attributes:
  check_mode:
    support: full
    details: The state is read; the start of a stage is reported, not recorded.
author:
  - gradual.rollout contributors (@gradual-rollout)
"""

EXAMPLES = r"""
- name: Check the plan, read the state, choose and start the stage
  gradual.rollout.rollout_stage:
    plan: "{{ rollout_plan }}"
    login_host: 127.0.0.1
    login_user: app_owner
    login_password: "{{ vault_app_owner_password }}"
    db: app
    hosts: "{{ ansible_play_hosts }}"
  delegate_to: "{{ groups['postgresql_primary'][0] }}"
  run_once: true
  register: rollout
"""

RETURN = r"""
stop:
  description: True when no stage runs now (status, report, reset, or every stage has passed).
  returned: success
  type: bool
reason:
  description: Why this stage was chosen, or why nothing runs.
  returned: always
  type: str
watch:
  description:
    - With O(action=watch), the watch to make - C(run_id) (the passed run watched), C(gates) (the
      stage's watch gates), C(max_age_hours), C(target) (the app host a gate's path URL is on, the
      last host the stage changed); absent when there is nothing to watch.
  returned: when action is watch and a stage is watched
  type: dict
stage:
  description: The chosen stage as the plan defines it.
  returned: success
  type: dict
run_id:
  description: The state row of the stage's attempt (the same row when an interrupted run resumes).
  returned: success
  type: int
serial:
  description:
    - The chunks of app hosts that go through the host cycle together, in play order (the apply
      play's C(serial)) - each batch of the stage's C(serial) split into chunks of at most
      RV(max_unavailable) hosts.
  returned: when a stage runs
  type: list
  elements: int
  sample: [1, 2, 2, 2, 1]
gate_after:
  description: How many hosts are done when a batch of the stage ends; the gates are measured then.
  returned: when a stage runs
  type: list
  elements: int
  sample: [1, 8]
batches:
  description: The host count of each batch of the stage's C(serial).
  returned: when a stage runs
  type: list
  elements: int
  sample: [1, 7]
max_unavailable:
  description:
    - How many app hosts are out of nginx at once - the stage's (or the plan's) C(max_unavailable)
      as a host count, at least 1 and never every host, so nginx keeps an upstream.
    - C(0) for a stage that sets no flags (it drains no host; its batches stay whole).
  returned: when a stage runs
  type: int
flags:
  description: The flags the stage sets on every app host.
  returned: success
  type: dict
snapshot:
  description: Flag values recorded by the first attempt of a resumed stage (host name -> previous values).
  returned: success
  type: dict
table:
  description: The state of every stage as text lines, for O(action=status) and O(action=report).
  returned: when action is status or report
  type: list
  elements: str
result:
  description: The machine-readable result of the run so far.
  returned: always
  type: dict
  sample: {"plan": "p1", "action": "run", "stage": "w1", "outcome": "started", "reason": "first stage",
           "run_id": 7, "at": "2026-12-07T06:00:00+00:00"}
"""
