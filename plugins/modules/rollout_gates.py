#!/usr/bin/python
# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation of the rollout_gates action plugin (plugins/action/rollout_gates.py)."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: rollout_gates
short_description: Measure the gates of a rollout stage after a batch, and the public path
version_added: "0.1.0"
description:
  - Runs on the controller (an action plugin; delegate the task to C(localhost)). Each gate of
    O(gates) is measured by its module (M(gradual.rollout.http_slo), M(gradual.rollout.pool_check),
    M(gradual.rollout.cache_check), M(gradual.rollout.sql_check), M(gradual.rollout.prometheus_check)), with the gate's bounded C(load)
    running alongside when it has one; then the public path (O(public_url), or the health path on
    the first of O(public_hosts)) is probed, and must answer every request.
  - Every gate is measured and recorded before the verdict, so a failed gate's figures are kept. The
    task fails, naming each failed gate and its reason, when any gate did not pass; an
    inconclusive gate is not a pass.
  - A gate's C(url) (or its load's) that is a path, such as C(/health), is taken on O(target), the app
    host the batch changed last, at O(app_port).
  - Measurements are live in check mode too.
options:
  stage:
    description: Name of the stage, for the messages.
    type: str
    required: true
  gates:
    description: The stage's gates, each C({name, type, args, load}).
    type: list
    elements: dict
    default: []
  target:
    description: Inventory name of the app host that path URLs point at.
    type: str
  app_port:
    description: Port of the app on O(target).
    type: int
    default: 3000
  public_url:
    description: URL of the public path (through nginx). Defaults to O(public_path) on the first O(public_hosts).
    type: str
  public_hosts:
    description: The nginx hosts; the first one's address is used when O(public_url) is not given.
    type: list
    elements: str
    default: []
  public_path:
    description: Health path probed on the first of O(public_hosts).
    type: str
    default: /health
  public_requests:
    description: Requests of the public path probe, one at a time.
    type: int
    default: 10
  public_validate_certs:
    description: Verify the TLS certificate of the public path.
    type: bool
    default: true
  host_results:
    description:
      - The readings of the gates measured on the app hosts (type C(log_check)) - the registered
        C(results) of a loop whose items are C([host, gate]) pairs (the host, the plan's gate). Each
        such gate becomes one record, its figures per host - passed when every host passed, failed
        when one failed, else inconclusive (also when no host returned a reading).
    type: list
    elements: dict
    default: []
  changed_hosts:
    description:
      - The stage's hosts changed so far (the canary after the first batch), for gates of type
        C(canary_compare) (M(gradual.rollout.canary_compare)); each host's address is its
        C(rollout_address), else C(ansible_host), else its name, with O(app_port).
      - Empty (as in a watch), such a gate is inconclusive.
    type: list
    elements: str
    default: []
  unchanged_hosts:
    description:
      - The stage's hosts not changed yet (the baseline of a C(canary_compare) gate). Empty, that
        gate is inconclusive (the batch changed every host), unless O(gated_batches) says earlier
        batches have judged it.
    type: list
    elements: str
    default: []
  gated_batches:
    description:
      - How many batches of the stage are gated (the stage's gate points). After the last of
        several (O(changed_hosts) given, O(unchanged_hosts) empty), the C(canary_compare) gates are
        not measured - the earlier batches judged the change, and with no unchanged host left
        they could only be inconclusive. With V(1), a stage whose one batch changes every host,
        such a gate is measured and inconclusive.
    type: int
    default: 1
attributes:
  check_mode:
    support: full
    details: Gates only read; they measure live in check mode.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
  - gradual.rollout.controller
author:
  - gradual.rollout contributors (@gradual-rollout)
"""

EXAMPLES = r"""
- name: Measure the stage's gates after the batch
  gradual.rollout.rollout_gates:
    stage: canary
    target: "{{ ansible_play_batch | last }}"
    gates:
      - name: api_slo
        type: http_slo
        args: {url: /health, requests: 200, concurrency: 4, max_p95_ms: 500, max_error_rate: 0}
    public_hosts: "{{ groups['nginx'] }}"
  delegate_to: localhost
  run_once: true
  register: gates
"""

RETURN = r"""
passed:
  description: Whether every gate passed.
  returned: always
  type: bool
gates:
  description:
    - One record per gate (and C(public_path)), the form the state keeps and the report reads -
      C(gate_type), C(passed), C(inconclusive), C(reason), C(figures) (the module's measurements) and
      C(load) (the figures of the gate's load, when it had one).
  returned: always
  type: dict
  sample: {"api_slo": {"gate_type": "http_slo", "passed": true, "inconclusive": false,
           "reason": "all thresholds met", "figures": {"p95_ms": 8.1, "error_rate": 0.0}, "load": null}}
target:
  description: The app host that path URLs pointed at.
  returned: always
  type: str
verdict:
  description:
    - What a watch concludes from the same records - C(failed) when a gate failed outright,
      C(inconclusive) when the only gates that did not pass could not judge (no data, a source
      down), C(passed) otherwise. A batch fails on both (RV(passed) is false).
  returned: always
  type: str
  choices: [passed, failed, inconclusive]
verdict_reason:
  description: The gates behind RV(verdict), each with its reason.
  returned: always
  type: str
"""
