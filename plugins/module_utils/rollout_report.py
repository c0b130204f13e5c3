# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollout report: a "Metric | Target | Actual | Status" table from measured figures.

Input: the plan (its ``metrics`` say where each figure comes from: a stage, a gate of that stage
and a dotted field in the gate's recorded result) and the state rows kept by rollout_state (each
row carries ``figures``: gate name -> the gate module's result). Output: a JSON-able dict and its
Markdown rendering. A metric whose figure was never recorded is reported as "not measured", never
as a pass.
"""
from __future__ import annotations

from datetime import datetime, timezone

from ansible_collections.gradual.rollout.plugins.module_utils.rollout_plan import latest_by_stage


def dig(data, path: str):
    """``dig({'a': {'b': [5]}}, 'a.b.0') == 5``; None when any step is missing."""
    current = data
    for part in str(path).split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.lstrip("-").isdigit() and -len(current) <= int(part) < len(current):
            current = current[int(part)]
        else:
            return None
    return current


def _compare(actual: float, op: str, threshold: float) -> bool:
    return {"<": actual < threshold, "<=": actual <= threshold, ">": actual > threshold,
            ">=": actual >= threshold, "==": actual == threshold}[op]


def _fmt(value, unit: str = "") -> str:
    if isinstance(value, float):
        text = ("%.2f" % value).rstrip("0").rstrip(".")
    else:
        text = str(value)
    return text + (unit or "")


def build_report(plan: dict, rows, generated_at: str | None = None, watches=()) -> dict:
    """The report of PLAN from its state ROWS and WATCHES (each stage lists the watches of its
    latest run, oldest first)."""
    latest = latest_by_stage(rows)
    metrics = []
    for metric in plan.get("metrics") or []:
        entry = dict(metric=metric["name"], target=metric.get("target", ""), actual="not measured",
                     status="NOT MEASURED", stage=metric.get("stage"), source=None, value=None)
        row = latest.get(metric.get("stage")) if metric.get("stage") else None
        if row is None and metric.get("stage"):
            entry["source"] = "stage %s has not run" % metric["stage"]
        elif row is not None:
            figures = row.get("figures") or {}
            gate = figures.get(metric["gate"]) if metric.get("gate") else figures
            value = dig(gate, metric["field"]) if gate is not None and metric.get("field") else None
            scale = metric.get("scale")
            if isinstance(value, bool):
                value = int(value)
            if isinstance(value, (int, float)):
                if scale:
                    value = value * scale
                entry["value"] = value
                entry["actual"] = _fmt(value, metric.get("unit", ""))
                passed = _compare(float(value), metric.get("op", "<"), float(metric["threshold"]))
                entry["status"] = "PASS" if passed else "FAIL"
                if row.get("status") != "passed":
                    entry["status"] += " (stage %s)" % row.get("status")
                entry["source"] = "%s / %s / %s" % (metric["stage"], metric.get("gate", "-"), metric["field"])
            else:
                entry["source"] = "no figure %s in gate %s of stage %s" % (
                    metric.get("field"), metric.get("gate"), metric.get("stage"))
        metrics.append(entry)
    stages = []
    for stage in plan.get("stages") or []:
        row = latest.get(stage["name"]) or {}
        stages.append(dict(name=stage["name"], description=stage.get("description", ""),
                           status=row.get("status", "pending"), started_at=row.get("started_at"),
                           finished_at=row.get("finished_at"), duration_s=_duration(row),
                           actor=row.get("actor"), awx_job_id=row.get("awx_job_id"),
                           reason=row.get("reason"), gates=_gate_summary(row.get("figures") or {}),
                           watches=[dict(at=w.get("at"), verdict=w.get("verdict"), reason=w.get("reason"),
                                         actor=w.get("actor"), gates=_gate_summary(w.get("gates") or {}))
                                    for w in watches or () if row and w.get("state_id") == row.get("id")]))
    statuses = [s["status"] for s in stages]
    if any(s in ("rolled_back", "failed") for s in statuses):
        overall = "ROLLED BACK" if "rolled_back" in statuses else "FAILED"
    elif all(s == "passed" for s in statuses):
        overall = "COMPLETE"
    else:
        overall = "IN PROGRESS"
    return dict(plan=plan.get("name", "rollout"), overall=overall,
                generated_at=generated_at or datetime.now(timezone.utc).isoformat(timespec="seconds"),
                metrics=metrics, stages=stages, cleanup=list(plan.get("cleanup") or []))


def _duration(row: dict):
    start, end = row.get("started_at"), row.get("finished_at")
    if not start or not end:
        return None
    try:
        delta = datetime.fromisoformat(str(end).replace("Z", "+00:00")) - \
            datetime.fromisoformat(str(start).replace("Z", "+00:00"))
    except ValueError:
        return None
    return round(delta.total_seconds(), 1)


def _gate_summary(figures: dict) -> list:
    out = []
    for name, result in sorted(figures.items()):
        # "_snapshot" and other private keys are bookkeeping of the run, not gates.
        if not isinstance(result, dict) or name.startswith("_"):
            continue
        passed = result.get("passed", not result.get("failed", False))
        out.append(dict(name=name, type=result.get("gate_type"), passed=bool(passed),
                        msg=result.get("reason", result.get("msg"))))
    return out


def render_markdown(report: dict) -> str:
    lines = ["# Rollout report: %s" % report["plan"], "",
             "Generated %s. Overall: **%s**." % (report["generated_at"], report["overall"]), "",
             "## Success metrics", "",
             "| Metric | Target | Actual | Status |", "|--------|--------|--------|--------|"]
    for m in report["metrics"]:
        lines.append("| %s | %s | %s | %s |" % (m["metric"], m["target"], m["actual"], m["status"]))
    lines += ["", "## Stages", "", "| Stage | Status | Started | Duration (s) | Actor | Gates | Detail |",
              "|-------|--------|---------|--------------|-------|-------|--------|"]
    for s in report["stages"]:
        gates = ", ".join("%s %s" % (g["name"], "ok" if g["passed"] else "FAILED") for g in s["gates"]) or "-"
        actor = s["actor"] or "-"
        if s.get("awx_job_id"):
            actor += " (AWX job %s)" % s["awx_job_id"]
        lines.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            s["name"], s["status"], s["started_at"] or "-",
            "-" if s["duration_s"] is None else s["duration_s"], actor, gates,
            (s["reason"] or "").replace("|", "/")[:120]))
    watched = [s for s in report["stages"] if s.get("watches")]
    if watched:
        lines += ["", "## Watches (re-measured through the bake)", "",
                  "| Stage | At | Verdict | Gates | Detail |", "|-------|----|---------|-------|--------|"]
        for s in watched:
            for w in s["watches"]:
                gates = ", ".join("%s %s" % (g["name"], "ok" if g["passed"] else "FAILED") for g in w["gates"]) or "-"
                detail = (w["reason"] or "").replace("|", "/")[:120]
                lines.append("| %s | %s | %s | %s | %s |" % (s["name"], w["at"] or "-", w["verdict"], gates, detail))
    if report.get("cleanup"):
        lines += ["", "## Flags to retire (the plan's cleanup list)", ""]
        lines += ["- `%s`" % flag for flag in report["cleanup"]]
    return "\n".join(lines) + "\n"
