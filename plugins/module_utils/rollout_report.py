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

import html
import math
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


def _number(value):
    """VALUE as a number for the metrics (True counts 1), else None."""
    if isinstance(value, bool):
        return int(value)
    return value if isinstance(value, (int, float)) else None


def _watches_of(row: dict, watches) -> list:
    """The watches of the state ROW (one run of a stage), oldest first."""
    if not row:
        return []
    return [w for w in watches or () if w.get("state_id") == row.get("id")]


def dig_all(data, path: str) -> list:
    """Every value at PATH in DATA, where a ``*`` step is any key of a dict or item of a list
    (``figures.*.extractors.q.max``: one per host); [] when none."""
    head, _sep, rest = str(path).partition("*")
    if not _sep:
        found = dig(data, path)
        return [] if found is None else [found]
    base = dig(data, head.rstrip(".")) if head.rstrip(".") else data
    items = list(base.values()) if isinstance(base, dict) else base if isinstance(base, list) else []
    rest = rest.lstrip(".")
    out = []
    for item in items:
        out += dig_all(item, rest) if rest else [item]
    return out


def _metric_numbers(record, field: str) -> list:
    numbers = [_number(v) for v in dig_all(record, field)] if record is not None else []
    return [n for n in numbers if n is not None]


def _worst(numbers: list, op: str, threshold: float):
    """The one of NUMBERS (several with a ``*`` field, e.g. one per host) that the metric reports:
    the highest against a ceiling, the lowest against a floor, the first that differs for ``==``."""
    if op in ("<", "<="):
        return max(numbers)
    if op in (">", ">="):
        return min(numbers)
    return next((n for n in numbers if n != threshold), numbers[0])


def _metric_value(metric: dict, row: dict, watches) -> tuple:
    """(value, source) of METRIC: its field in the stage run ROW's own record of the gate, else,
    for a gate the stage's watch re-measures, in the latest watch of that run whose record of the
    gate has the field (the latest passed watch first). A value is None when nothing has it; a
    ``*`` field that finds several numbers gives the worst of them."""
    figures = row.get("figures") or {}
    gate, field = metric.get("gate"), metric.get("field")
    if not field:
        return None, None
    op, threshold = metric.get("op", "<"), float(metric["threshold"])
    if not gate or gate in figures:
        numbers = _metric_numbers(figures.get(gate) if gate else figures, field)
        source = "%s / %s / %s" % (metric["stage"], gate or "-", field)
    else:
        found = [w for w in _watches_of(row, watches) if _metric_numbers((w.get("gates") or {}).get(gate), field)]
        if not found:
            return None, None
        watch = ([w for w in found if w.get("verdict") == "passed"] or found)[-1]
        numbers = _metric_numbers(watch["gates"][gate], field)
        source = "%s / watch %s / %s (watch at %s, %s)" % (metric["stage"], gate, field, watch.get("at"),
                                                           watch.get("verdict"))
    if not numbers:
        return None, None
    if len(numbers) > 1:
        source += " (worst of %d)" % len(numbers)
    return _worst(numbers, op, threshold), source


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
            value, source = _metric_value(metric, row, watches)
            scale = metric.get("scale")
            if isinstance(value, (int, float)):
                if scale:
                    value = value * scale
                entry["value"] = value
                entry["actual"] = _fmt(value, metric.get("unit", ""))
                passed = _compare(float(value), metric.get("op", "<"), float(metric["threshold"]))
                entry["status"] = "PASS" if passed else "FAIL"
                if row.get("status") != "passed":
                    entry["status"] += " (stage %s)" % row.get("status")
                entry["source"] = source
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
                           records=_gate_records(row.get("figures") or {}),
                           watches=[dict(at=w.get("at"), verdict=w.get("verdict"), reason=w.get("reason"),
                                         actor=w.get("actor"), gates=_gate_summary(w.get("gates") or {}),
                                         records=_gate_records(w.get("gates") or {}))
                                    for w in _watches_of(row, watches)]))
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


def _each_gate(figures: dict):
    """(name, result, passed) of every gate in FIGURES (gate name -> record), sorted by name;
    "_snapshot" and other private keys are bookkeeping of the run, not gates."""
    for name, result in sorted(figures.items()):
        if isinstance(result, dict) and not name.startswith("_"):
            yield name, result, bool(result.get("passed", not result.get("failed", False)))


def _gate_summary(figures: dict) -> list:
    return [dict(name=name, type=result.get("gate_type"), passed=passed, msg=result.get("reason", result.get("msg")))
            for name, result, passed in _each_gate(figures)]


def _gate_records(figures: dict) -> list:
    """The gate records of a run or a watch with their figures, for the charts."""
    return [dict(name=name, type=result.get("gate_type"), passed=passed, inconclusive=bool(result.get("inconclusive")),
                 figures=result.get("figures") if isinstance(result.get("figures"), dict) else {})
            for name, result, passed in _each_gate(figures)]


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


# --- the HTML report: the same content, and per stage a chart of each gate's figures -------------

HTML_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1100px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #eee; }
.PASS, .passed { color: #1a7f37; }
.FAIL, .failed, .rolled_back { color: #c62828; font-weight: bold; }
.inconclusive, .NOT { color: #b26a00; }
figure { margin: 0 0 1.5em; }
figcaption { font-weight: bold; }
"""

# a figure's lines per chart: a gate measured on many hosts has many, and past this a chart says
# nothing more
MAX_SERIES = 8


def numeric_figures(figures, prefix: str = "") -> dict:
    """The finite numbers in FIGURES (nested dicts flattened to dotted keys, e.g. ``app1.max``);
    True/False, text, NaN and infinities are not figures to draw."""
    out = {}
    if not isinstance(figures, dict):
        return out
    for key, value in figures.items():
        name = "%s%s" % (prefix, key)
        if isinstance(value, dict):
            out.update(numeric_figures(value, name + "."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[name] = float(value)
    return out


def _when(value):
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def gate_series(stage: dict) -> dict:
    """Gate name -> points of the gate in STAGE (a stage of build_report): the stage's own record
    at the time the stage finished, then each watch's record of the same gate, oldest first. A
    point is (time, outcome, {figure: number}); gates without a number are left out."""
    readings = [(stage.get("finished_at"), rec) for rec in stage.get("records") or []]
    for watch in stage.get("watches") or []:
        readings += [(watch.get("at"), rec) for rec in watch.get("records") or []]
    out = {}
    for at, rec in readings:
        moment, numbers = _when(at), numeric_figures(rec.get("figures"))
        if moment is None or not numbers:
            continue
        outcome = "passed" if rec.get("passed") else ("inconclusive" if rec.get("inconclusive") else "failed")
        out.setdefault(rec["name"], []).append((moment, outcome, numbers))
    return {name: sorted(points, key=lambda p: p[0]) for name, points in sorted(out.items())}


def _plain(text: str) -> str:
    """TEXT as matplotlib draws it verbatim ("$" would start mathtext)."""
    return str(text).replace("$", r"\$")


def chart_svg(title: str, points: list, salt: str = "") -> str:
    """An SVG chart (inline, no external resource) of POINTS from gate_series: one panel per
    figure, one line through its values over time; a failed point is a red cross, an inconclusive
    one an orange diamond. Needs matplotlib (imported here: the caller reports it missing)."""
    import io
    import re

    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    keys = sorted({key for _at, _outcome, numbers in points for key in numbers})
    shown = keys[:MAX_SERIES]
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt or title}):
        fig, axes = pyplot.subplots(len(shown), 1, sharex=True, squeeze=False,
                                    figsize=(7.5, 0.4 + 1.5 * len(shown)))
        try:
            for ax, key in zip(axes[:, 0], shown):
                xs = [at for at, _outcome, numbers in points if key in numbers]
                ys = [numbers[key] for _at, _outcome, numbers in points if key in numbers]
                ax.plot(xs, ys, marker="o", markersize=4, linewidth=1.2, color="#1f5fa8")
                for style, outcome in (dict(marker="x", color="#c62828", s=60), "failed"), \
                        (dict(marker="D", color="#e08a00", s=36), "inconclusive"):
                    marked = [(at, numbers[key]) for at, out, numbers in points if out == outcome and key in numbers]
                    if marked:
                        ax.scatter([m[0] for m in marked], [m[1] for m in marked], zorder=3, label=outcome, **style)
                ax.set_ylabel(_plain(key), rotation=0, ha="right", va="center", fontsize=8)
                ax.tick_params(labelsize=8)
                ax.grid(True, alpha=0.3)
            locator = AutoDateLocator()
            axes[-1, 0].xaxis.set_major_locator(locator)
            axes[-1, 0].xaxis.set_major_formatter(ConciseDateFormatter(locator))
            title_text = title if len(keys) <= MAX_SERIES else "%s (%d of %d figures)" % (title, len(shown), len(keys))
            axes[0, 0].set_title(_plain(title_text), fontsize=9)
            handles = {}
            for ax in axes[:, 0]:
                for handle, label in zip(*ax.get_legend_handles_labels()):
                    handles.setdefault(label, handle)
            if handles:
                axes[0, 0].legend(handles.values(), handles.keys(), fontsize=7, loc="best")
            fig.tight_layout()
            buf = io.StringIO()
            fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
        finally:
            pyplot.close(fig)
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    # the metadata block names the RDF/Dublin Core vocabularies by URL; an inline chart needs none
    return re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)


def render_html(report: dict, chart=chart_svg) -> str:
    """REPORT (from build_report) as one self-contained HTML page: the metrics, the stages, and per
    stage its watches and a chart per gate of its figures over the stage and its bake. Every text
    from the state is escaped; the charts are inline SVG (CHART draws them), so the page reads
    without a network."""
    esc = html.escape

    def cell(value, css=None):
        text = "-" if value is None or value == "" else str(value)
        cls = ' class="%s"' % esc(css.split(" ")[0]) if css else ""
        return "<td%s>%s</td>" % (cls, esc(text))

    def table(head, rows):
        out = ["<table>", "<tr>" + "".join("<th>%s</th>" % esc(h) for h in head) + "</tr>"]
        out += ["<tr>%s</tr>" % "".join(r) for r in rows]
        return out + ["</table>"]

    title = "Rollout report: %s" % report["plan"]
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             "<title>%s</title>" % esc(title), "<style>%s</style>" % HTML_STYLE, "</head>", "<body>",
             "<h1>%s</h1>" % esc(title),
             "<p>Generated %s. Overall: <strong>%s</strong>.</p>" % (
                 esc(str(report["generated_at"])), esc(report["overall"])),
             "<h2>Success metrics</h2>"]
    parts += table(["Metric", "Target", "Actual", "Status", "Source"], [
        [cell(m["metric"]), cell(m["target"]), cell(m["actual"]), cell(m["status"], m["status"]), cell(m["source"])]
        for m in report["metrics"]])
    parts.append("<h2>Stages</h2>")
    parts += table(["Stage", "Status", "Started", "Finished", "Duration (s)", "Actor", "Reason"], [
        [cell(s["name"]), cell(s["status"], s["status"]), cell(s["started_at"]), cell(s["finished_at"]),
         cell(s["duration_s"]), cell(s["actor"] if not s.get("awx_job_id") else "%s (AWX job %s)" % (
             s["actor"] or "-", s["awx_job_id"])), cell(s["reason"])]
        for s in report["stages"]])
    for index, stage in enumerate(report["stages"]):
        if stage["status"] == "pending" and not stage.get("records"):
            continue
        parts.append("<h2>Stage %s: %s</h2>" % (esc(stage["name"]), esc(stage["status"])))
        if stage.get("description"):
            parts.append("<p>%s</p>" % esc(stage["description"]))
        if stage.get("gates"):
            parts.append("<h3>Gates</h3>")
            parts += table(["Gate", "Type", "Outcome", "Detail"], [
                [cell(g["name"]), cell(g["type"]),
                 cell("passed", "passed") if g["passed"] else cell("FAILED", "failed"), cell(g["msg"])]
                for g in stage["gates"]])
        if stage.get("watches"):
            parts.append("<h3>Watch history</h3>")
            parts += table(["At", "Verdict", "Reason", "Actor"], [
                [cell(w["at"]), cell(w["verdict"], w["verdict"]), cell(w["reason"]), cell(w["actor"])]
                for w in stage["watches"]])
        series = gate_series(stage)
        if series:
            parts.append("<h3>Gate figures over the stage and its bake</h3>")
        for gate, points in series.items():
            caption = "%s: %d reading(s)" % (gate, len(points))
            parts += ["<figure>", chart("%s / %s" % (stage["name"], gate), points, salt="s%d-%s" % (index, gate)),
                      "<figcaption>%s</figcaption>" % esc(caption), "</figure>"]
    if report.get("cleanup"):
        parts.append("<h2>Flags to retire (the plan's cleanup list)</h2>")
        parts.append("<ul>%s</ul>" % "".join("<li><code>%s</code></li>" % esc(f) for f in report["cleanup"]))
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"
