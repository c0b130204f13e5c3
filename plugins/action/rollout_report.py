# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of gradual.rollout.rollout_report: the report of a plan from its state (the
Target/Actual table, the stages and their watches), written on the controller as Markdown, JSON and
HTML (with a chart of each gate's figures, drawn by matplotlib), and the machine-readable result of
the run. The documentation is in plugins/modules/rollout_report.py."""
from __future__ import annotations

import os

from ansible.module_utils.basic import missing_required_lib
from ansible.plugins.action import ActionBase

from ansible_collections.gradual.rollout.plugins.module_utils.rollout_report import (
    build_report,
    render_html,
    render_markdown,
)
from ansible_collections.gradual.rollout.plugins.plugin_utils.rollout_action import (
    call_state,
    login_args,
    plan_name,
    run_result,
    state_spec,
    write_json,
    write_text,
)

try:
    import matplotlib  # noqa: F401  pylint: disable=unused-import
    HAS_MATPLOTLIB = True
except ImportError:
    HAS_MATPLOTLIB = False


def argument_spec() -> dict:
    return state_spec(
        report_dir=dict(type="path", required=True),
        outcome=dict(type="dict", options=dict(
            action=dict(type="str", default="run"),
            stage=dict(type="str"),
            outcome=dict(type="str", required=True),
            reason=dict(type="str", default=""),
            run_id=dict(type="int"),
        )),
    )


def write_report(base: str, report: dict, markdown: str) -> tuple:
    """(files, warnings): REPORT written as BASE.md, BASE.json and, with matplotlib, BASE.html."""
    write_text(base + ".md", markdown)
    write_json(base + ".json", report)
    files = [base + ".md", base + ".json"]
    if HAS_MATPLOTLIB:
        write_text(base + ".html", render_html(report))
        return files + [base + ".html"], []
    # the page of an earlier run would pass for this run's
    if os.path.exists(base + ".html"):
        os.unlink(base + ".html")
    return files, ["%s: %s.html (the report with its charts) is not written, only the Markdown and the JSON"
                   % (missing_required_lib("matplotlib"), base)]


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        super().run(tmp, task_vars)
        _validation, args = self.validate_argument_spec(argument_spec=argument_spec())
        plan = args["plan"]
        name = plan_name(plan)
        state = call_state(self, task_vars, login_args(self._task.args), operation="read", plan=name)
        report = build_report(plan, state.get("rows") or [], watches=state.get("watches") or [])
        markdown = render_markdown(report)
        out = dict(changed=False, report=report, markdown=markdown, files=[])
        if args["outcome"]:
            o = args["outcome"]
            out["result"] = run_result(name, o["action"], o["outcome"], o["reason"], o["stage"], o["run_id"])
        if self._task.check_mode:
            return out
        base = os.path.join(args["report_dir"], "rollout-%s" % name)
        out["files"], warnings = write_report(base, report, markdown)
        if warnings:
            out["warnings"] = warnings
        if out.get("result") and args["result_path"]:
            write_json(args["result_path"], out["result"])
            out["files"].append(args["result_path"])
        return out
