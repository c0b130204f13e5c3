# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollout plan's one schema: typed dataclasses, and ``load_plan`` that checks plan data
against them and turns it into a ``Plan``.

Every key, type and choice of a plan is written here once, as a dataclass field: its annotation
is the type the loader checks (``Optional``, ``List``, ``Dict``, ``Union``, ``Literal`` for choices,
a nested dataclass), a field without a default is required, and a key no field names is unknown.
The gate types are those of ``rollout_gates.GATE_MODULES``; a stage's ``actions.migrate`` is a
dict of pg_migrate options, checked against pg_migrate's own argument spec
(``migration.options``), so an option is named only there.

``load_plan`` reports every problem at once, each a sentence naming the stage, the key and the
value: wrong types, unknown keys (with the known ones), missing keys, bad choices, and what no type
can say (an unknown gate, a negative threshold, a stage name used twice, a serial entry that is
not a count or a percentage, a flag without a baseline value, a metric pointing at a gate that
does not exist).

Pure Python, no Ansible import: used by the action plugin and filters on the controller and by
unit tests.
"""
from __future__ import annotations

import difflib
import re
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any, Dict, List, Literal, Optional, Union

from ansible_collections.gradual.rollout.plugins.module_utils.migration.options import (
    argument_spec as migrate_argument_spec,
    ladder_problems,
    stage_options,
)
from ansible_collections.gradual.rollout.plugins.module_utils import log_gate, sql_gate
from ansible_collections.gradual.rollout.plugins.module_utils.gates import GateInputError
from ansible_collections.gradual.rollout.plugins.module_utils.rollout_gates import (
    COMPARE_GATES,
    GATE_TYPES,
    HOST_GATES,
)

# The choices of a plan, as types: a gate's type and a metric's comparison.
GateType = Literal[GATE_TYPES]
MetricOp = Literal["<", "<=", ">", ">=", "=="]
METRIC_OPS = typing.get_args(MetricOp)
# What a stage's actions.migrate may set: the target and the pg_migrate options a plan tunes per
# stage (the rest - paths, ledger - belong to the inventory), with pg_migrate's types and choices.
MIGRATE_OPTIONS = stage_options()
MIGRATE_SPEC = {key: spec for key, spec in migrate_argument_spec().items() if key in MIGRATE_OPTIONS}
# Numeric gate arguments that make no sense below zero.
NON_NEGATIVE = ("duration", "interval", "requests", "concurrency", "min_samples", "timeout")
# Used with fullmatch(): "$" alone also matches before a final newline ("one\n" is no stage name).
STAGE_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
FLAG_NAME_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")
SERIAL_PCT_RE = re.compile(r"^([0-9]{1,3})%$")

FLAGS = "a mapping of flag name to value"


def _named(noun: str, data, index: int) -> str:
    """How a problem names a list entry: NOUN and its name, or its position when it has none."""
    name = data.get("name") if isinstance(data, dict) else None
    return "%s %r" % (noun, name) if isinstance(name, str) and name else "%s #%d" % (noun, index + 1)


def _meta(expect: str = "", choice: str = "") -> dict:
    """A field's wording: EXPECT replaces the type's own ("a mapping"), CHOICE the message of a
    value outside its choices (with {where}, {path}, {value} and {choices})."""
    return {"expect": expect, "choice": choice}


@dataclass
class Rollback:
    """What a stage's rollback puts back beyond the flags the stage set."""

    flags: Dict[str, Any] = field(default_factory=dict, metadata=_meta(FLAGS))


@dataclass
class Actions:
    """What a stage changes: flags in the app's flags.env, a migration, the migration linter."""

    flags: Dict[str, Any] = field(default_factory=dict, metadata=_meta(FLAGS))
    # {target, <pg_migrate options>}: passed to pg_migrate as it is (its spec checks the options)
    migrate: Optional[Dict[str, Any]] = field(default=None, metadata=_meta("a mapping with a target version"))
    lint: bool = False

    NOUN = "action"  # "unknown action 'deploy'; known actions: flags, migrate, lint"


@dataclass
class Gate:
    """One gate of a stage: its module's arguments are a free mapping the gate module checks.
    A ``url`` (in args or load) may be a path such as "/health": on the app host the batch just
    changed."""

    name: str
    type: GateType = field(metadata=_meta(choice="{where}: unknown gate type {value!r}; known gates: {choices}"))
    args: Dict[str, Any]
    # a bounded http_slo load that runs while the gate samples
    load: Optional[Dict[str, Any]] = None

    @staticmethod
    def label(parent: str, data, index: int) -> str:
        return _named(parent + " gate", data, index)


@dataclass
class Watch:
    """What a watch (``rollout_action=watch``, e.g. an AWX schedule every few hours) re-measures
    while the stage bakes, and how fresh a passed watch must be for the next stage to be due."""

    gates: List[Gate]
    # the next stage is due only when the last watch of this stage passed less than this ago
    max_age_hours: float = 6


@dataclass
class Stage:
    name: str
    description: Optional[str] = None
    # hours that must pass after the previous stage passed
    bake_hours: float = 0
    # host batches over the app group: counts and percentages
    serial: Optional[List[Union[int, str]]] = None
    # app hosts of a batch cycled at once (drain, flags, reload, verify, undrain): a count or a
    # percentage of the stage's app hosts; unset, the plan's max_unavailable
    max_unavailable: Optional[Union[int, str]] = None
    actions: Actions = field(default_factory=Actions)
    gates: List[Gate] = field(default_factory=list)
    rollback: Optional[Rollback] = None
    # gates re-measured through the bake that follows the stage; unset, nothing is watched
    watch: Optional[Watch] = None

    @staticmethod
    def label(parent: str, data, index: int) -> str:
        return _named("stage", data, index)


@dataclass
class Metric:
    """A row of the report's success metrics: where its actual value comes from (stage, gate,
    field of the gate's result) and what it is compared with. The gate is one of the stage's
    gates or of its watch's: the stage's own record of it first, else the latest watch of the
    stage's latest run that recorded the field (a passed watch before the others). A ``*`` step
    in the field (``figures.*.extractors.queries.max``: each host of a log_check gate) takes the
    worst of the numbers it finds."""

    name: str
    threshold: float
    target: Optional[str] = None
    op: MetricOp = field(default="<", metadata=_meta(choice="{where}: op {value!r} must be one of {choices}"))
    unit: Optional[str] = None
    stage: Optional[str] = None
    gate: Optional[str] = None
    field: Optional[str] = None
    scale: Optional[float] = None

    @staticmethod
    def label(parent: str, data, index: int) -> str:
        return _named("metric", data, index)


@dataclass
class Plan:
    name: str
    # emergency rollback values: every flag a stage sets must have one
    baseline: Dict[str, Any] = field(metadata=_meta(FLAGS))
    stages: List[Stage]
    # the stages' default max_unavailable; 1 cycles one host after the other
    max_unavailable: Union[int, str] = 1
    # flags to retire from the code once every stage is stable
    cleanup: List[str] = field(default_factory=list)
    metrics: List[Metric] = field(default_factory=list)


class PlanError(ValueError):
    """A plan that does not load; ``problems`` holds every problem, one sentence each."""

    def __init__(self, problems: list):
        super().__init__("the rollout plan has %d problem(s): %s" % (len(problems), "; ".join(problems)))
        self.problems = list(problems)


def load_plan(data) -> Plan:
    """The typed ``Plan`` of DATA (the plan as a mapping); raises ``PlanError`` with every problem."""
    plan, problems = check_plan(data)
    if problems:
        raise PlanError(problems)
    return plan


def check_plan(data) -> tuple:
    """(the ``Plan`` of DATA or None, every problem of DATA). DATA itself is not modified."""
    if not isinstance(data, dict):
        return None, ["the rollout plan must be a mapping, got %s" % type(data).__name__]
    problems = []
    plan = _load(Plan, data, "the plan", "", problems)
    problems += _semantic_problems(plan)
    return (None if problems else plan), problems


# ---- types: the loader reads the dataclasses' annotations ---------------------------------------

_INVALID = object()
_NONE = type(None)
_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
          dict: "a mapping", list: "a list"}
# pg_migrate's argument spec types -> the plan model's
_SPEC_TYPES = {"str": str, "path": str, "bool": bool, "int": int, "float": float, "dict": dict, "list": list,
               "raw": Any}


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _at(where: str, path: str) -> str:
    return "%s: %s" % (where, path) if path else where


def _did_you_mean(key, known) -> str:
    near = difflib.get_close_matches(str(key), known, n=1)
    return "; did you mean %s?" % near[0] if near else ""


def _describe(hint) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Union:
        # sorted: typing may hand back Union[int, str] as Union[str, int], whichever it made first
        return " or ".join(sorted(_describe(a) for a in args if a is not _NONE))
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin in (list, List):
        return "a list of mappings" if args and is_dataclass(args[0]) else "a list"
    if is_dataclass(hint):
        return "a mapping"
    return _NAMES.get(origin or hint, getattr(hint, "__name__", str(hint)))


def _matches(hint, value) -> bool:
    """VALUE is of the plain type HINT (str, int, float, bool, dict, list, Any)."""
    if hint is Any:
        return True
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, typing.get_origin(hint) or hint)


def _convert(hint, value, where: str, path: str, problems: list, meta=None, label=None):
    """VALUE checked against HINT (nested dataclasses loaded), or _INVALID after adding a problem."""
    meta = meta or {}
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Union:
        others = [a for a in args if a is not _NONE]
        if value is None and len(others) < len(args):
            return None
        if len(others) == 1:
            return _convert(others[0], value, where, path, problems, meta, label)
        if any(_matches(a, value) for a in others):
            return value
    elif origin is Literal:
        if isinstance(value, str) and value in args:
            return value
        message = meta.get("choice") or "{where}: {path} {value!r} must be one of {choices}"
        problems.append(message.format(where=where, path=path, value=value, choices=", ".join(args)))
        return _INVALID
    elif is_dataclass(hint):
        return _load(hint, value, where, path, problems)
    elif origin in (list, List) and isinstance(value, list):
        item = args[0] if args else Any
        out = []
        for index, entry in enumerate(value):
            if is_dataclass(item):
                # a list inside a nested mapping keeps its owner's name: "stage 'x' watch gate 'y'"
                owner = " ".join([where] + path.split(".")[:-1])
                loaded = _load(item, entry, item.label(owner, entry, index), "", problems)
            else:
                loaded = _convert(item, entry, where, "%s entry #%d" % (path, index + 1), problems)
            if loaded is not _INVALID:
                out.append(loaded)
        return out
    elif _matches(hint, value):
        return value
    problems.append("%s must be %s, got %s" % (_at(where, path), meta.get("expect") or _describe(hint), _short(value)))
    return _INVALID


def _required(spec) -> bool:
    return spec.default is MISSING and spec.default_factory is MISSING


def _load(cls, data, where: str, path: str, problems: list):
    """An instance of the dataclass CLS from the mapping DATA. Missing or invalid values are left
    at their default (None when required), so the semantic checks see only valid ones."""
    if not isinstance(data, dict):
        problems.append("%s must be a mapping, got %s" % (_at(where, path), _short(data)))
        return _INVALID
    hints = typing.get_type_hints(cls)
    specs = fields(cls)
    known = [spec.name for spec in specs]
    prefix = path + "." if path else ""
    for key in data:
        if key in known:
            continue
        noun = getattr(cls, "NOUN", None)
        if noun:
            message = "%s: unknown %s %r; known %ss: %s" % (where, noun, key, noun, ", ".join(known))
        else:
            message = "%s: unknown key %r; known keys%s: %s" % (where, prefix + str(key),
                                                                " of " + path if path else "", ", ".join(known))
        problems.append(message + _did_you_mean(key, known))
    values = {}
    for spec in specs:
        value = data.get(spec.name)
        if value is None:  # absent and null alike: the default applies
            if _required(spec):
                problems.append("%s: required key %r is missing" % (where, prefix + spec.name))
                values[spec.name] = None
            continue
        loaded = _convert(hints[spec.name], value, where, prefix + spec.name, problems, spec.metadata)
        if loaded is not _INVALID:
            values[spec.name] = loaded
        elif _required(spec):
            values[spec.name] = None
    return cls(**values)


# ---- semantics: what a type cannot say ---------------------------------------------------------

def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _flag_problems(where: str, flags: dict, baseline=None) -> list:
    """Names and values of FLAGS; with BASELINE, every flag must have a baseline value."""
    problems = []
    for flag, value in flags.items():
        if not FLAG_NAME_RE.fullmatch(str(flag)):
            problems.append("%s: flag name %r must be upper case letters, digits and _" % (where, flag))
        if isinstance(value, (dict, list)) or value is None:
            problems.append("%s: flag %s has value %r; use a string, number or boolean" % (where, flag, value))
        if baseline is not None and flag not in baseline:
            problems.append("%s: flag %s has no value in baseline, so an emergency rollback "
                            "could not restore it; add it to baseline" % (where, flag))
    return problems


def _threshold_problems(where: str, args: dict) -> list:
    problems = []
    for key, value in sorted(args.items(), key=lambda item: str(item[0])):
        key = str(key)
        if not (key.startswith(("max_", "min_")) or key in NON_NEGATIVE):
            continue
        given = value
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                # e.g. max_used_memory: "500mb" - sizes are checked by the gate module itself
                if value.strip().startswith("-"):
                    problems.append("%s: threshold %s=%r is negative; use a value >= 0" % (where, key, value))
                continue
        if _is_number(value) and value < 0:
            problems.append("%s: threshold %s=%r is negative; use a value >= 0" % (where, key, given))
        if key.endswith(("_rate", "_utilization")) and _is_number(value) and value > 100:
            problems.append("%s: %s=%r is above 100; rates and utilisations are percentages" % (where, key, given))
    return problems


def _url_problems(where: str, args: dict) -> list:
    url = args.get("url")
    if url is None or isinstance(url, str):
        return []
    return ["%s: url must be a string (a URL, or a path such as \"/health\" on the app host the batch "
            "just changed), got %s" % (where, _short(url))]


def _host_count_problem(where: str, key: str, entry) -> list:
    """A count of hosts (an integer > 0) or a percentage of them ("25%")."""
    if _is_number(entry) and int(entry) == entry and entry > 0:
        return []
    match = SERIAL_PCT_RE.fullmatch(entry) if isinstance(entry, str) else None
    if match and 0 < int(match.group(1)) <= 100:
        return []
    return ["%s: %s %r is neither a host count > 0 nor a percentage between 1%% and 100%%" % (where, key, entry)]


def _serial_problems(where: str, serial) -> list:
    if serial is None:
        return []
    if not serial:
        return ["%s: serial %r must be a non-empty list such as [1, \"50%%\", \"100%%\"]" % (where, serial)]
    problems = []
    for entry in serial:
        problems += _host_count_problem(where, "serial entry", entry)
    return problems


def _migrate_problems(where: str, migrate) -> list:
    """A stage's actions.migrate: a target and known pg_migrate options of pg_migrate's types and
    choices, whose values pg_migrate would accept (checked now, before the run changes anything)."""
    if migrate is None:
        return []
    if not migrate.get("target"):
        return ["%s: actions.migrate must be a mapping with a target version, got %s" % (where, _short(migrate))]
    problems = []
    valid = {}
    for key, value in migrate.items():
        spec = MIGRATE_SPEC.get(key)
        if spec is None:
            problems.append("%s: unknown actions.migrate option %r; known options: %s%s"
                            % (where, key, ", ".join(MIGRATE_OPTIONS), _did_you_mean(key, MIGRATE_OPTIONS)))
            continue
        hint = Literal[tuple(spec["choices"])] if spec.get("choices") else _SPEC_TYPES[spec.get("type", "str")]
        expect = "a mapping of setting to value" if key == "session_settings" else ""
        if value is not None and _convert(hint, value, where, "actions.migrate." + key, problems,
                                          _meta(expect)) is not _INVALID:
            valid[key] = value
    problems += ["%s: actions.migrate.%s" % (where, problem) for problem in ladder_problems(valid)]
    return problems


def _gate_problems(where: str, gates: list, names: set, watch: bool = False) -> list:
    """Problems of a list of GATES at WHERE; NAMES collects their names (a name used twice is one)."""
    problems = []
    for gindex, gate in enumerate(gates):
        gwhere = Gate.label(where, {"name": gate.name}, gindex)
        if gate.name is not None and gate.name in names:
            problems.append("%s: gate name %r is used twice in this stage" % (where, gate.name))
        names.add(gate.name)
        for part, args in (("", gate.args), (" load", gate.load)):
            if args:
                problems += _threshold_problems(gwhere + part, args)
                problems += _url_problems(gwhere + part, args)
        if gate.type in HOST_GATES:
            problems += _host_gate_problems(gwhere, gate.args or {})
        if gate.type == "sql_check":
            problems += _sql_gate_problems(gwhere, gate.args or {})
        if gate.type in COMPARE_GATES:
            problems += _compare_gate_problems(gwhere, gate.args or {}, watch)
    return problems


def _compare_gate_problems(where: str, args: dict, watch: bool) -> list:
    """A canary_compare gate: alpha in (0, 1), a ratio tolerance >= 1; in a stage only (a watch
    re-measures a stage whose hosts are all changed: there is no baseline to compare with)."""
    problems = []
    if watch:
        problems.append("%s: a canary_compare gate needs hosts not changed yet; a watch has none "
                        "(use it among the stage's gates)" % where)
    alpha = args.get("alpha")
    if alpha is not None and not (_is_number(alpha) and 0 < alpha < 1):
        problems.append("%s: alpha %r must be a number between 0 and 1 (exclusive)" % (where, alpha))
    ratio = args.get("max_median_ratio")
    if ratio is not None and not (_is_number(ratio) and ratio >= 1):
        problems.append("%s: max_median_ratio %r must be a number >= 1" % (where, ratio))
    if "canary_urls" in args or "baseline_urls" in args:
        problems.append("%s: canary_urls and baseline_urls are set by the rollout from the stage's hosts; "
                        "give url (a path such as \"/health\")" % where)
    return problems


def _host_gate_problems(where: str, args: dict) -> list:
    """A log gate reads a file (or a journald unit) on each app host from where the rollout last
    left it; its regexes compile before anything changes."""
    problems = []
    path, unit = args.get("path"), args.get("journal_unit")
    if unit is not None and path is not None:
        problems.append("%s: give args.path (a log file) or args.journal_unit (a journald unit), not both" % where)
    elif unit is not None:
        if not isinstance(unit, str) or not unit.strip():
            problems.append("%s: args.journal_unit %r must be the name of a systemd unit" % (where, unit))
    elif not isinstance(path, str) or not path.startswith("/"):
        problems.append("%s: args.path %r must be the absolute path of the log on the app hosts "
                        "(or give args.journal_unit)" % (where, path))
    for key in ("since_offset", "since_inode", "since_cursor", "position_only"):
        if key in args:
            problems.append("%s: args.%s is set by the rollout (the stage's start, then each watch's end); "
                            "remove it" % (where, key))
    patterns, extract = args.get("patterns") or [], args.get("extract") or []
    if not (isinstance(patterns, list) and isinstance(extract, list)
            and all(isinstance(rule, dict) for rule in patterns + extract)):
        problems.append("%s: args.patterns and args.extract must be lists of {name, regex, ...}" % where)
    else:
        try:
            log_gate.compile_rules(patterns, extract)
        except (GateInputError, KeyError) as exc:
            problems.append("%s: %s" % (where, exc if isinstance(exc, GateInputError) else "a rule without regex"))
    return problems


def _sql_gate_problems(where: str, args: dict) -> list:
    """The query of a sql_check gate is one read-only SELECT, parsed by PostgreSQL's own parser
    (pglast) before anything changes."""
    if args.get("mode") not in ("query", "explain") or not sql_gate.HAS_PGLAST:
        return []
    try:
        sql_gate.check_select(args.get("query"), "args.query")
    except sql_gate.SqlRefused as exc:
        return ["%s: %s" % (where, exc)]
    return []


def _semantic_problems(plan: Plan) -> list:
    problems = _flag_problems("baseline", plan.baseline or {})
    if plan.max_unavailable is not None:
        problems += _host_count_problem("plan", "max_unavailable", plan.max_unavailable)
    baseline = plan.baseline or {}
    if plan.stages is not None and not plan.stages:
        problems.append("the plan has no stages: give a non-empty list under stages")
    seen = {}
    gates_by_stage = {}
    for index, stage in enumerate(plan.stages or []):
        where = Stage.label("", {"name": stage.name}, index)
        name = stage.name
        if name is not None and not STAGE_NAME_RE.fullmatch(name):
            problems.append("%s: name %r must match %s" % (where, name, STAGE_NAME_RE.pattern))
        elif name in seen:
            problems.append("stage name %r is used twice (stages #%d and #%d); stage names must be unique"
                            % (name, seen[name] + 1, index + 1))
        elif name is not None:
            seen[name] = index
        if stage.bake_hours < 0:
            problems.append("%s: bake_hours %r must be a number >= 0" % (where, stage.bake_hours))
        problems += _serial_problems(where, stage.serial)
        if stage.max_unavailable is not None:
            problems += _host_count_problem(where, "max_unavailable", stage.max_unavailable)
        problems += _flag_problems(where, stage.actions.flags, baseline)
        if stage.rollback is not None:
            problems += _flag_problems(where + " rollback", stage.rollback.flags)
        problems += _migrate_problems(where, stage.actions.migrate)
        gate_names = set()
        problems += _gate_problems(where, stage.gates, gate_names)
        if stage.watch is not None:
            watch_where = where + " watch"
            if not stage.watch.gates:
                problems.append("%s: gates must list at least one gate to re-measure" % watch_where)
            if stage.watch.max_age_hours is not None and stage.watch.max_age_hours <= 0:
                problems.append("%s: max_age_hours %r must be a number > 0" % (watch_where, stage.watch.max_age_hours))
            problems += _gate_problems(watch_where, stage.watch.gates or [], set(), watch=True)
        if name is not None:
            # a migration's result (lock waits, versions) can feed a metric like a gate's, and so
            # can a gate the watch re-measures (the report reads it from the latest watch)
            gates_by_stage[name] = gate_names | ({"migrate"} if stage.actions.migrate else set()) | {
                gate.name for gate in (stage.watch.gates or [] if stage.watch is not None else []) if gate.name}
    for metric in plan.metrics:
        if metric.stage is None:
            continue
        if metric.stage not in gates_by_stage:
            if any(stage.name is None for stage in plan.stages or []):
                continue  # maybe the stage whose name is missing: that problem is named already
            problems.append("metric %r: stage %r is not in the plan" % (metric.name, metric.stage))
        elif metric.gate and metric.gate not in gates_by_stage[metric.stage]:
            problems.append("metric %r: stage %r has no gate %r" % (metric.name, metric.stage, metric.gate))
    for flag in plan.cleanup:
        if not FLAG_NAME_RE.fullmatch(flag):
            problems.append("cleanup: flag name %r must be upper case letters, digits and _" % (flag,))
    return problems
