# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options shared by the gate modules, in two parts.

- ``gradual.rollout.gate`` (DOCUMENTATION): the sampling options of the gates that observe over a
  window (pool_check, cache_check).
- ``gradual.rollout.gate.verdict`` (VERDICT): fail_on_inconclusive, which every gate module takes
  (pool_check, cache_check, sql_check, log_check); its argument spec is
  gates.verdict_argument_spec() and the rule gates.fails_task().
"""
from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  duration:
    description:
      - How long to observe. Seconds as a number, or a string with a unit such as V(500ms),
        V(90s), V(5m), V(2h).
      - Samples are taken at the start, every O(interval), and at the end of the window.
      - When omitted, M(gradual.rollout.pool_check) takes a single sample and
        M(gradual.rollout.cache_check) observes V(10s).
    type: raw
  interval:
    description:
      - Time between two samples; same forms as O(duration).
      - When omitted, M(gradual.rollout.pool_check) samples every V(5s) and
        M(gradual.rollout.cache_check) takes two samples, at the start and at the end.
    type: raw
notes:
  - A gate only reads; it samples the live system even in check mode.
  - A failed threshold fails the task with a message naming the figure and the threshold; the
    result still carries every figure and the samples.
"""

    VERDICT = r"""
options:
  fail_on_inconclusive:
    description:
      - When there was too little to judge (the result is inconclusive; the module's description,
        options and notes say when), fail the task. This is the default because a gate that cannot
        decide must not let a rollout go on.
      - With V(false) the task succeeds and returns C(inconclusive=true) and
        C(gate.passed=false) for the caller to decide.
    type: bool
    default: true
"""
