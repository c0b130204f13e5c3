# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of gradual.rollout.rollout_gates: every gate of a stage measured after a batch
(each by its module, on the controller, with its bounded load alongside), then the public path
through nginx, each reading kept as one GateRecord before the verdict. The documentation is in
plugins/modules/rollout_gates.py."""
from __future__ import annotations

import threading

from ansible.plugins.action import ActionBase

from ansible_collections.gradual.rollout.plugins.module_utils.http_probe import (
    LOAD_DEFAULTS,
    latency_figures,
    load_settings,
    run_load,
)
from ansible_collections.gradual.rollout.plugins.module_utils.rollout_gates import (
    COMPARE_GATES,
    GATE_MODULES,
    HOST_GATES,
    PUBLIC_PATH,
    PUBLIC_PATH_FIELDS,
    GateRecord,
    compare_args,
    gates_to_measure,
    host_gate_record,
    record_from_result,
    resolve_args,
    verdict,
    watch_outcome,
)

ARGUMENT_SPEC = dict(
    stage=dict(type="str", required=True),
    gates=dict(type="list", elements="dict", default=[]),
    target=dict(type="str"),
    app_port=dict(type="int", default=3000),
    public_url=dict(type="str"),
    public_hosts=dict(type="list", elements="str", default=[]),
    public_path=dict(type="str", default="/health"),
    public_requests=dict(type="int", default=10),
    public_validate_certs=dict(type="bool", default=True),
    host_results=dict(type="list", elements="dict", default=[]),
    changed_hosts=dict(type="list", elements="str", default=[]),
    unchanged_hosts=dict(type="list", elements="str", default=[]),
    gated_batches=dict(type="int", default=1),
)


class Load(threading.Thread):
    """A gate's bounded load (url, duration or requests, concurrency, timeout), run beside the gate
    with the library http_slo uses; its figures go into the gate's record."""

    def __init__(self, args: dict):
        super().__init__(daemon=True)
        self.args = args
        self.figures = None

    def run(self):
        a = dict(LOAD_DEFAULTS, **{key: value for key, value in self.args.items() if value is not None})
        try:
            opts = load_settings(a.get("url"), a.get("requests"), a.get("duration"), int(a["concurrency"]),
                                 float(a["timeout"]))
            raw = run_load(opts["target"], timeout=opts["timeout"], validate_certs=bool(a["validate_certs"]),
                           requests=opts["requests"], duration=opts["duration"], concurrency=opts["concurrency"])
            self.figures = latency_figures(raw["latencies_ms"])
            self.figures.update(requests=raw["requests"], errors=raw["failures"], error_rate=raw["error_rate"],
                                url=a["url"])
        except (ValueError, TypeError, OSError) as exc:
            self.figures = {"error": "load on %s did not run: %s" % (a.get("url"), exc)}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def _address(self, host: str, task_vars: dict) -> str:
        hostvars = (task_vars.get("hostvars") or {}).get(host) or {}
        return str(hostvars.get("rollout_address") or hostvars.get("ansible_host") or host)

    def _compare(self, gate: dict, args: dict, task_vars: dict) -> GateRecord:
        """A gate comparing the changed hosts with the unchanged ones, each on its own address."""
        if not args["changed_hosts"]:
            return GateRecord(gate["name"], gate["type"], False, "no changed host to compare (a watch, or "
                              "no batch done): the comparison cannot judge", {}, inconclusive=True)
        bases = {host: "http://%s:%d" % (self._address(host, task_vars), args["app_port"])
                 for host in args["changed_hosts"] + args["unchanged_hosts"]}
        module_args = compare_args(gate.get("args"), [bases[h] for h in args["changed_hosts"]],
                                   [bases[h] for h in args["unchanged_hosts"]])
        result = self._execute_module(module_name=GATE_MODULES[gate["type"]], module_args=module_args,
                                      task_vars=task_vars)
        return record_from_result(gate["name"], gate["type"], result)

    def _gate(self, gate: dict, base: str, task_vars: dict) -> GateRecord:
        load = Load(resolve_args(gate["load"], base)) if gate.get("load") else None
        if load:
            load.start()
        result = self._execute_module(module_name=GATE_MODULES[gate["type"]],
                                      module_args=resolve_args(gate.get("args"), base), task_vars=task_vars)
        if load:
            load.join()
        return record_from_result(gate["name"], gate["type"], result, load=load.figures if load else None)

    def run(self, tmp=None, task_vars=None):
        super().run(tmp, task_vars)
        _validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        unknown = [g.get("type") for g in args["gates"] if g.get("type") not in GATE_MODULES]
        if unknown:
            return dict(failed=True, msg="unknown gate type(s) %s; known: %s" % (
                ", ".join(map(str, unknown)), ", ".join(GATE_MODULES)))
        gates = gates_to_measure(args["gates"], args["changed_hosts"], args["unchanged_hosts"],
                                 args["gated_batches"])
        target = args["target"]
        base = "http://%s:%d" % (self._address(target, task_vars), args["app_port"]) if target else ""
        by_gate = {}
        for entry in args["host_results"]:
            # a reading of a loop over [host, gate] pairs (tasks/log_gates.yml)
            item = entry.get("item")
            if isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[1], dict):
                by_gate.setdefault(item[1].get("name"), {})[str(item[0])] = entry
        records = [host_gate_record(gate["name"], gate["type"], by_gate.get(gate["name"]) or {})
                   if gate["type"] in HOST_GATES
                   else self._compare(gate, args, task_vars) if gate["type"] in COMPARE_GATES
                   else self._gate(gate, base, task_vars) for gate in gates]

        public_url = args["public_url"] or (
            "https://%s%s" % (self._address(args["public_hosts"][0], task_vars), args["public_path"])
            if args["public_hosts"] else None)
        if public_url:
            # every stage, beside the plan's gates: a batch that left nginx down or failing fails here
            probe = self._execute_module(module_name=GATE_MODULES["http_slo"], task_vars=task_vars, module_args=dict(
                url=public_url, requests=args["public_requests"], concurrency=1, timeout=5,
                validate_certs=args["public_validate_certs"], max_error_rate=0))
            records.append(record_from_result(PUBLIC_PATH, "http_slo", probe, keep=PUBLIC_PATH_FIELDS))

        passed, message = verdict(args["stage"], records)
        watch_verdict, watch_reason = watch_outcome(records)
        out = dict(changed=False, passed=passed, msg=message, target=target, verdict=watch_verdict,
                   verdict_reason=watch_reason, gates={r.name: r.as_dict() for r in records})
        if not passed:
            out["failed"] = True
        return out
