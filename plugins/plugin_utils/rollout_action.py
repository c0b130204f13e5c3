# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the rollout's action plugins share: the state database's login options, a call of the
``rollout_state`` module on the task's host, and a report file written whole or not at all."""
from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone

from ansible.errors import AnsibleActionFail

from ansible_collections.gradual.rollout.plugins.module_utils.pg import pg_argument_spec

STATE_MODULE = "gradual.rollout.rollout_state"
# The options that reach rollout_state unchanged: community.postgresql's login options and db.
LOGIN_OPTIONS = tuple(sorted(pg_argument_spec()))


def state_spec(**options) -> dict:
    """The options of a plugin that reads the plan's state: the login (community.postgresql's
    options and db), the plan, where the run's result goes, and OPTIONS."""
    spec = pg_argument_spec()
    spec.update(plan=dict(type="dict", required=True), result_path=dict(type="path"), **options)
    return spec


def plan_name(plan: dict) -> str:
    """The plan's name, which keys its state rows and its files ("rollout" when it has none)."""
    name = plan.get("name")
    return name if isinstance(name, str) and name else "rollout"


def login_args(task_args: dict) -> dict:
    """The login options the task was given (by itself or by module_defaults), and only those:
    rollout_state applies its own defaults to the rest."""
    return {key: value for key, value in task_args.items() if key in LOGIN_OPTIONS and value is not None}


def call_state(action, task_vars: dict, login: dict, **args) -> dict:
    """Run rollout_state on the task's host (the state host the task is delegated to) and return
    its result; a failure stops the plugin with the module's own message."""
    result = action._execute_module(module_name=STATE_MODULE, module_args=dict(login, **args),
                                    task_vars=task_vars)
    if result.get("failed"):
        raise AnsibleActionFail("rollout_state %s failed: %s" % (args.get("operation", "read"),
                                                                 result.get("msg", "no message")),
                                result=result)
    return result


def write_text(path: str, text: str, mode: int = 0o644) -> None:
    """Write PATH on the controller through a temporary file in the same folder, so a reader never
    sees half a report."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, mode=0o755, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: str, data) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def run_result(plan: str, action: str, outcome: str, reason: str, stage=None, run_id=None) -> dict:
    """The machine-readable result of a run (what run-plan.sh and AWX read, not the log):
    outcome is started (the run stopped before its end: see the exit status), passed,
    rolled_back, failed, refused, invalid, complete (nothing left to run), status, report, reset,
    nothing (no stage to watch), watching (a watch stopped before its end) or watched."""
    return dict(plan=plan, action=action, stage=stage, outcome=outcome, reason=reason, run_id=run_id,
                at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
