# -*- coding: utf-8 -*-
# Copyright: contributors to gradual.rollout
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
name: concise
type: stdout
short_description: The default output, with an argument-spec failure in one line per error
description:
  - The output of C(ansible.builtin.default), except for a failed C(validate_argument_spec) task
    (the check a role runs against its C(meta/argument_specs.yml) before its first task). Each
    error is printed on one line, naming the role and the variable, instead of the whole result,
    which carries the role's entire argument spec (several KB for a role with many options).
  - Set it with C(stdout_callback = gradual.rollout.concise) in C(ansible.cfg).
author: gradual.rollout maintainers (@gradual-rollout)
extends_documentation_fragment:
  - default_callback
  - result_format_callback
"""

from ansible.plugins.callback.default import CallbackModule as DefaultCallback

SPEC_ACTIONS = frozenset(("validate_argument_spec", "ansible.builtin.validate_argument_spec",
                          "ansible.legacy.validate_argument_spec"))


class CallbackModule(DefaultCallback):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "gradual.rollout.concise"

    def v2_runner_on_failed(self, result, ignore_errors=False):
        if result.task.action not in SPEC_ACTIONS:
            super().v2_runner_on_failed(result, ignore_errors)
            return
        if self._last_task_banner != result.task._uuid:
            self._print_task_banner(result.task)
        res = result.result
        errors = res.get("argument_errors") or [res.get("msg", "argument validation failed")]
        context = res.get("validate_args_context") or {}
        where = " ".join(str(part) for part in (context.get("type", ""), context.get("name", "")) if part)
        for error in errors:
            line = "fatal: [%s]: FAILED! => %s%s" % (self.host_label(result), where + ": " if where else "", error)
            self._display.display(line, color="red", stderr=self.get_option("display_failed_stderr"))
        if ignore_errors:
            self._display.display("...ignoring", color="cyan")
