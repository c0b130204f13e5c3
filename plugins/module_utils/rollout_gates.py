# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The gates of a rollout stage: which module measures each gate type, and the one record every
gate result becomes before the state stores it and the report reads it.

A new gate type is its module plus one line in ``GATE_MODULES``: the plan's validation, the
``rollout_gates`` action plugin and the report all read this table.

Pure Python, no Ansible import: used by the action plugin on the controller and by unit tests.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

# gate type (the plan's ``type:``) -> the module that measures it, run on the controller - or, for
# the HOST_GATES, on every app host the gate judges (the playbook runs them; rollout_gates folds
# their results into one record per gate).
GATE_MODULES = {
    "http_slo": "gradual.rollout.http_slo",
    "pool_check": "gradual.rollout.pool_check",
    "cache_check": "gradual.rollout.cache_check",
    "sql_check": "gradual.rollout.sql_check",
    "prometheus_check": "gradual.rollout.prometheus_check",
    "log_check": "gradual.rollout.log_check",
    "canary_compare": "gradual.rollout.canary_compare",
}
GATE_TYPES = tuple(GATE_MODULES)
HOST_GATES = ("log_check",)
# Gates that compare the hosts a stage changed with those it has not changed yet: they need both
# host lists (rollout_gates' changed_hosts / unchanged_hosts), so a watch cannot have them.
COMPARE_GATES = ("canary_compare",)
# What a host gate's next reading starts from, per host: the fields of its result to keep, when the
# result has no ``position`` (log_check's own: a file's offset and inode, a journald unit's cursor).
LOG_POSITION = ("offset", "inode")

# Keys of a module result that are bookkeeping, not measurements.
RESULT_NOISE = frozenset(("invocation", "changed", "failed", "failed_when_result", "samples", "msg",
                          "gate", "warnings", "deprecations", "skipped", "skip_reason", "exception"))
# What the probe of the public path keeps: enough to say why nginx failed, no samples.
PUBLIC_PATH_FIELDS = ("url", "requests", "errors", "error_rate", "p95_ms", "status_counts", "transport_errors")
PUBLIC_PATH = "public_path"


@dataclass
class GateRecord:
    """One gate's verdict and figures, as the state keeps it (figures[gate name]) and the
    report's metrics dig into it (``<gate>.figures.<field>``)."""

    name: str
    gate_type: str
    passed: bool
    reason: str
    figures: dict = field(default_factory=dict)
    inconclusive: bool = False
    load: dict | None = None

    def as_dict(self) -> dict:
        out = asdict(self)
        del out["name"]
        return out


def plain(value):
    """VALUE as JSON data (the state stores it as jsonb): anything else becomes its text."""
    return json.loads(json.dumps(value, default=str))


def figures_of(result: dict, keep=None) -> dict:
    """The measurements in a module RESULT: its ``figures`` when it has them, else every key that
    is not bookkeeping (or only the KEEP keys), as JSON data."""
    if isinstance(result.get("figures"), dict):
        return plain(result["figures"])
    return plain({key: value for key, value in result.items()
                  if not key.startswith("_ansible") and key not in RESULT_NOISE and (keep is None or key in keep)})


def record_from_result(name: str, gate_type: str, result: dict, load: dict | None = None,
                       keep=None) -> GateRecord:
    """The record of a gate module's RESULT. A module that failed without a verdict (bad
    arguments, nothing answered) is a failed gate whose reason is the module's message; so is a
    gate whose LOAD did not run (what it measured was not the situation it was meant to judge)."""
    result = result or {}
    verdict = result.get("gate") if isinstance(result.get("gate"), dict) else {}
    if result.get("skipped") and not verdict:
        reason = "skipped: %s" % (result.get("msg") or result.get("skip_reason") or "no reason given")
    else:
        reason = verdict.get("reason") or result.get("msg") or "the gate returned no result"
    if load and load.get("error"):
        return GateRecord(name=name, gate_type=gate_type, passed=False, reason=str(load["error"]),
                          figures=figures_of(result, keep), load=load)
    return GateRecord(name=name, gate_type=gate_type, passed=bool(verdict.get("passed")),
                      reason=str(reason), figures=figures_of(result, keep),
                      inconclusive=bool(verdict.get("inconclusive")), load=load)


def host_gate_record(name: str, gate_type: str, results: dict) -> GateRecord:
    """One record of a gate measured on several hosts (RESULTS: host -> module result): passed when
    every host passed; failed when one failed outright; else inconclusive (a host that could not
    judge, or no host at all). The figures are per host."""
    per_host = {host: record_from_result(name, gate_type, result) for host, result in sorted(results.items())}
    figures = {host: dict(record.figures, passed=record.passed, inconclusive=record.inconclusive)
               for host, record in per_host.items()}
    if not per_host:
        return GateRecord(name, gate_type, False, "no app host returned a reading", {}, inconclusive=True)
    outcome, reason = judge(per_host.items())
    if outcome != "passed":
        return GateRecord(name, gate_type, False, reason, figures, inconclusive=outcome == "inconclusive")
    return GateRecord(name, gate_type, True, "passed on %d host(s): %s" % (len(per_host), ", ".join(per_host)),
                      figures)


def judge(labelled) -> tuple:
    """(outcome, reason) of LABELLED (label, record) pairs: ``failed`` when a record failed outright,
    ``inconclusive`` when the only records that did not pass could not judge, else ``passed``
    (reason None); the reason names each record behind the outcome by its label."""
    labelled = list(labelled)
    failed = ["%s: %s" % (label, r.reason) for label, r in labelled if not r.passed and not r.inconclusive]
    unsure = ["%s: %s" % (label, r.reason) for label, r in labelled if not r.passed and r.inconclusive]
    if failed or unsure:
        return ("failed" if failed else "inconclusive"), "; ".join(failed or unsure)
    return "passed", None


def positions_of(figures: dict) -> dict:
    """Host -> log source -> position: where the host gates' readings in FIGURES (gate name ->
    record dict, its figures per host) ended, i.e. where the next reading of each log starts. The
    source is a file's path ({offset, inode}) or ``journald:UNIT`` ({cursor}), as log_check names
    it in its result's ``source`` and ``position``."""
    out = {}
    for record in (figures or {}).values():
        if not isinstance(record, dict) or record.get("gate_type") not in HOST_GATES:
            continue
        for host, fig in (record.get("figures") or {}).items():
            if not isinstance(fig, dict):
                continue
            if fig.get("source") and isinstance(fig.get("position"), dict):
                if fig["position"].get("offset") is not None or fig["position"].get("cursor"):
                    out.setdefault(host, {})[fig["source"]] = dict(fig["position"])
            elif fig.get("path") and fig.get("offset") is not None:
                out.setdefault(host, {})[fig["path"]] = {key: fig.get(key) for key in LOG_POSITION}
    return out


def verdict(stage: str, records: list) -> tuple:
    """(passed, message) of a batch: every gate must pass; the message names each failed gate."""
    failed = [r for r in records if not r.passed]
    if failed:
        return False, "gate(s) failed in stage %s: %s" % (
            stage, "; ".join("%s: %s" % (r.name, r.reason) for r in failed))
    return True, "all %d gate(s) of %s passed" % (len(records), stage)


def watch_outcome(records: list) -> tuple:
    """(verdict, reason) of a watch's RECORDS: ``failed`` when a gate failed outright (the stage is
    rolled back), ``inconclusive`` when the only gates that did not pass could not judge (no data,
    a source down: the plan holds), ``passed`` otherwise. A stage's batch knows no such middle:
    there an inconclusive gate fails (``verdict``)."""
    outcome, reason = judge((r.name, r) for r in records)
    return outcome, reason or "all %d gate(s) passed" % len(records)


def target_url(url: str, base: str) -> str:
    """A gate's URL: an absolute URL as given; a path ("/health") on BASE, the app host the batch
    just changed (so the plan's gate presets need no runtime fact)."""
    if isinstance(url, str) and url.startswith("/"):
        return base.rstrip("/") + url
    return url


def resolve_args(args: dict, base: str) -> dict:
    """ARGS of a gate (or of its load) with a path ``url`` placed on BASE."""
    out = dict(args or {})
    if "url" in out:
        out["url"] = target_url(out["url"], base)
    return out


def compare_args(args: dict, changed_bases: list, unchanged_bases: list) -> dict:
    """A compare gate's module arguments: its ``url`` path placed on every changed host's base
    (``canary_urls``) and every unchanged host's (``baseline_urls``)."""
    out = dict(args or {})
    url = out.pop("url", "/health")
    out["canary_urls"] = [target_url(url, base) for base in changed_bases]
    out["baseline_urls"] = [target_url(url, base) for base in unchanged_bases]
    return out


def gates_to_measure(gates: list, changed_hosts: list, unchanged_hosts: list, gated_batches: int = 1) -> list:
    """The GATES measured after a batch. A compare gate (canary_compare) judges the hosts changed
    so far against those left unchanged; after the last of several gated batches no host is left
    unchanged, and the earlier batches have judged the change already: the gate is left out (it
    would be inconclusive and fail the stage). A stage gated once (one batch changing every host)
    keeps it: it was never judged, and its record says so (inconclusive)."""
    if changed_hosts and not unchanged_hosts and gated_batches > 1:
        return [gate for gate in gates if gate.get("type") not in COMPARE_GATES]
    return list(gates)
