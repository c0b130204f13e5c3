# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of gradual.rollout.rollout_stage: the decisions of a rollout run, made once on
the controller - the plan checked, the state read, the action carried out or the due stage chosen
and started. The documentation is in plugins/modules/rollout_stage.py."""
from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.gradual.rollout.plugins.module_utils.log_gate import source_key
from ansible_collections.gradual.rollout.plugins.module_utils.rollout_gates import HOST_GATES, positions_of
from ansible_collections.gradual.rollout.plugins.module_utils.rollout_plan import (
    DEFAULT_SERIAL,
    host_chunks,
    next_stage,
    plan_problems,
    stage_in_bake,
    status_table,
)
from ansible_collections.gradual.rollout.plugins.plugin_utils.rollout_action import (
    call_state,
    login_args,
    plan_name,
    run_result,
    state_spec,
    write_json,
)

ACTIONS = ("run", "status", "report", "reset", "watch")
# Where the state keeps each app host's log positions at the stage's start: host -> path -> {offset, inode}.
LOG_POSITIONS = "_log_positions"


def host_gates(gates) -> list:
    """The gates of GATES measured on the app hosts (their logs), not on the controller."""
    return [gate for gate in gates or [] if gate.get("type") in HOST_GATES]


def log_sources(gates) -> list:
    """The logs GATES read, each once, in order: {source, path} of a file, {source, journal_unit}
    of a journald unit; ``source`` (log_gate.source_key) is what the positions are kept under."""
    out = {}
    for gate in host_gates(gates):
        args = gate.get("args") or {}
        key = source_key(args.get("path"), args.get("journal_unit"))
        out.setdefault(key, {"source": key, "path": args["path"]} if args.get("path")
                       else {"source": key, "journal_unit": args.get("journal_unit")})
    return list(out.values())


def log_paths(gates) -> list:
    """The sources of the logs GATES read (file paths, journald:UNIT), each once, in order."""
    return [s["source"] for s in log_sources(gates)]


def log_gates(gates) -> list:
    """The host gates of GATES, each with the ``source`` its log's position is kept under."""
    out = []
    for gate in host_gates(gates):
        args = gate.get("args") or {}
        out.append(dict(gate, source=source_key(args.get("path"), args.get("journal_unit"))))
    return out


def argument_spec() -> dict:
    return state_spec(
        action=dict(type="str", default="run", choices=list(ACTIONS)),
        stage=dict(type="str", default=""),
        ignore_bake=dict(type="bool", default=False),
        bake_scale=dict(type="float", default=1.0),
        rerun_passed=dict(type="bool", default=False),
        actor=dict(type="str"),
        awx_job_id=dict(type="str"),
        hosts=dict(type="list", elements="str", default=[]),
    )


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        super().run(tmp, task_vars)
        _validation, args = self.validate_argument_spec(argument_spec=argument_spec())
        plan = args["plan"]
        name = plan_name(plan)
        check = bool(self._task.check_mode)

        def finish(outcome: str, reason: str, facts: dict, stage_name=None, failed=False) -> dict:
            result = run_result(name, args["action"], outcome, reason, stage_name, facts.get("run_id"))
            if args["result_path"] and not check:
                write_json(args["result_path"], result)
            out = dict(facts, result=result, reason=reason)
            out.setdefault("stop", True)
            if failed:
                out.update(failed=True, msg=reason)
            return out

        problems = plan_problems(plan)
        if problems:
            return finish("invalid", "The rollout plan is invalid, nothing was changed: %s" % " | ".join(problems),
                          {}, failed=True)
        login = login_args(self._task.args)
        state = call_state(self, task_vars, login, operation="read", plan=name)
        rows = state.get("rows") or []
        base = dict(action=args["action"], stage=None, run_id=None, changed=False)

        if args["action"] in ("status", "report"):
            return finish(args["action"], "the state of plan %s" % name, dict(base, table=status_table(plan, rows)))
        if args["action"] == "reset":
            reset = call_state(self, task_vars, login, operation="reset", plan=name)
            base.update(changed=reset.get("changed", False), removed=reset.get("removed", []))
            return finish("reset", "forgot %d state row(s) of plan %s" % (len(reset.get("removed") or []), name), base)

        if args["action"] == "watch":
            return self._watch(plan, rows, state.get("watches") or [], base, finish)
        try:
            choice = next_stage(plan, rows, requested=args["stage"] or None, ignore_bake=args["ignore_bake"],
                                bake_scale=args["bake_scale"], rerun_passed=args["rerun_passed"],
                                watches=state.get("watches") or [])
        except (KeyError, TypeError, ValueError) as exc:
            raise AnsibleActionFail("cannot choose the stage of plan %s: %s" % (name, exc)) from exc
        if choice["done"]:
            return finish("complete", choice["reason"], base)
        stage = choice["stage"]
        if choice["refuse"]:
            return finish("refused", choice["reason"], base, (stage or {}).get("name"), failed=True)
        if not args["hosts"]:
            return finish("refused", "stage %s has no app host to run on (check the inventory and --limit)"
                          % stage["name"], base, stage["name"], failed=True)
        flags = (stage.get("actions") or {}).get("flags") or {}
        watch_gates = (stage.get("watch") or {}).get("gates") or []
        cycle = host_chunks(stage.get("serial") or DEFAULT_SERIAL,
                            stage.get("max_unavailable") or plan.get("max_unavailable") or 1, len(args["hosts"]),
                            drains=bool(flags))

        started = call_state(self, task_vars, login, operation="start", plan=name, stage=stage["name"],
                             actor=args["actor"], awx_job_id=args["awx_job_id"] or None,
                             supersede=choice["supersedes"])
        run = started.get("run") or {}
        base.update(cycle)
        base.update(changed=bool(started.get("changed")), stage=stage, run_id=run.get("id"), stop=False,
                    resumed=bool(started.get("resumed")), supersedes=choice["supersedes"], flags=flags,
                    # a resumed stage restores what was there before its first attempt began
                    snapshot=((run.get("figures") or {}).get("_snapshot") or {}),
                    # the logs its gates and its watch read, from where they were when it began
                    log_gates=log_gates(stage.get("gates")),
                    log_paths=log_paths(list(stage.get("gates") or []) + list(watch_gates)),
                    log_sources=log_sources(list(stage.get("gates") or []) + list(watch_gates)),
                    log_positions=((run.get("figures") or {}).get(LOG_POSITIONS) or {}))
        if started.get("rollout_event"):
            base["rollout_event"] = started["rollout_event"]
        return finish("started", choice["reason"], base, stage["name"])

    @staticmethod
    def _watch(plan: dict, rows: list, watches: list, base: dict, finish) -> dict:
        """The watch of the stage in bake: its passed run, gates, snapshot (the rollback's) and where
        each host's logs are to be read from - the end of what the last watch read, else of what
        the stage's gates read, else the stage's start."""
        bake = stage_in_bake(plan, rows)
        stage = bake["stage"]
        if bake["refuse"]:
            return finish("refused", bake["reason"], base, failed=True)
        if stage is None:
            return finish("nothing", bake["reason"], base)
        row = bake["row"]
        figures = row.get("figures") or {}
        hosts = row.get("hosts_done") or []
        positions = {host: dict(paths) for host, paths in (figures.get(LOG_POSITIONS) or {}).items()}
        for source in [figures] + [w.get("gates") or {} for w in watches if w.get("state_id") == row["id"]]:
            for host, paths in positions_of(source).items():
                positions.setdefault(host, {}).update(paths)
        base.update(stage=stage, run_id=row["id"], stop=True, flags=(stage.get("actions") or {}).get("flags") or {},
                    snapshot=figures.get("_snapshot") or {},
                    log_gates=log_gates(stage["watch"]["gates"]), log_positions=positions,
                    watch=dict(run_id=row["id"], gates=stage["watch"]["gates"],
                               max_age_hours=stage["watch"].get("max_age_hours", 6),
                               target=hosts[-1] if hosts else None))
        return finish("watching", bake["reason"], base, stage["name"])
