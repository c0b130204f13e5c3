"""The report's HTML page (charts of each gate's figures over a stage and its bake) and the metrics
that read a gate of the stage's watch."""
from __future__ import annotations

import re
from html.parser import HTMLParser

from ansible_collections.gradual.rollout.plugins.module_utils.rollout_report import (
    build_report,
    gate_series,
    numeric_figures,
    render_html,
    render_markdown,
)

PLAN = {
    "name": "p",
    "stages": [{"name": "one", "description": "first flag"}, {"name": "two"}],
    "metrics": [
        {"name": "Queries", "target": "<=3", "op": "<=", "threshold": 3, "stage": "one", "gate": "queries",
         "field": "figures.max"},
        {"name": "p95", "target": "<200 ms", "op": "<", "threshold": 200, "unit": " ms", "stage": "one",
         "gate": "slo", "field": "figures.p95_ms"},
    ],
}


def stage_row(figures, status="passed", run=1):
    return dict(id=run, stage="one", status=status, figures=figures, actor="ops", awx_job_id=None,
                reason="<b>bold</b> reason", started_at="2026-02-02T09:00:00+00:00",
                finished_at="2026-02-02T09:10:00+00:00")


def a_watch(hour, verdict, gates, run=1, reason="ok"):
    return dict(state_id=run, at="2026-02-02T%02d:00:00+00:00" % hour, verdict=verdict, reason=reason,
                actor="awx", gates=gates)


def slo(p95, passed=True, inconclusive=False):
    return {"gate_type": "http_slo", "passed": passed, "inconclusive": inconclusive, "reason": "p95 %s" % p95,
            "figures": {"p95_ms": p95, "error_rate": 0.0, "url": "http://app/health"}}


def queries(most, passed=True):
    return {"gate_type": "log_check", "passed": passed, "reason": "max %s" % most, "figures": {"max": most, "count": 7}}


# --- a metric read from a watch ---------------------------------------------------------------------

def test_a_metric_on_a_watch_gate_reads_the_latest_passed_watch():
    watches = [a_watch(11, "passed", {"queries": queries(2)}),
               a_watch(13, "passed", {"queries": queries(3)}),
               a_watch(15, "failed", {"queries": queries(9, passed=False)})]
    report = build_report(PLAN, [stage_row({"slo": slo(120)})], watches=watches)
    metric = report["metrics"][0]
    assert metric["value"] == 3 and metric["status"] == "PASS"
    assert metric["source"].startswith("one / watch queries / figures.max (watch at 2026-02-02T13:00:00")
    # the stage's own record comes first
    assert report["metrics"][1]["actual"] == "120 ms" and report["metrics"][1]["source"] == "one / slo / figures.p95_ms"


def test_without_a_passed_watch_the_latest_that_recorded_the_figure_counts():
    watches = [a_watch(11, "failed", {"queries": queries(5, passed=False)}),
               a_watch(13, "inconclusive", {"queries": {"passed": False, "inconclusive": True, "figures": {}}})]
    metric = build_report(PLAN, [stage_row({})], watches=watches)["metrics"][0]
    assert metric["value"] == 5 and metric["status"] == "FAIL" and "failed" in metric["source"]


def test_only_the_watches_of_the_latest_run_count():
    rows = [stage_row({}, status="rolled_back", run=1), stage_row({}, run=2)]
    metric = build_report(PLAN, rows, watches=[a_watch(11, "passed", {"queries": queries(1)}, run=1)])["metrics"][0]
    assert metric["status"] == "NOT MEASURED" and metric["source"] == "no figure figures.max in gate queries of stage one"


# --- the HTML page ------------------------------------------------------------------------------------

class Page(HTMLParser):
    """Tags, attributes and text of a page; fails on tags closed out of order."""

    VOID = {"meta", "br", "img", "hr", "input", "link"}

    def __init__(self):
        super().__init__()
        self.open, self.tags, self.attrs, self.text = [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(tag, k, v or "") for k, v in attrs]
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(tag, k, v or "") for k, v in attrs]

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, (tag, self.open[-5:])
        self.open.pop()

    def handle_data(self, data):
        self.text.append(data)


def parsed(text):
    page = Page()
    page.feed(text)
    page.close()
    assert page.open == [], page.open
    return page


def watched_report():
    watches = [a_watch(11, "passed", {"slo": slo(130), "queries": queries(2)}),
               a_watch(13, "failed", {"slo": slo(480, passed=False), "queries": queries(2)},
                       reason="<script>alert('x')</script> slo: p95 480"),
               a_watch(15, "inconclusive", {"slo": slo(0, passed=False, inconclusive=True),
                                            "notes": {"passed": True, "figures": {"text": "no numbers", "ok": True}}})]
    return build_report(PLAN, [stage_row({"slo": slo(120), "_snapshot": {"app1": {"present": {}}}})],
                        watches=watches, generated_at="2026-02-02T16:00:00+00:00")


def test_the_json_report_carries_the_records_the_charts_need():
    stage = watched_report()["stages"][0]
    assert [r["name"] for r in stage["records"]] == ["slo"] and stage["records"][0]["figures"]["p95_ms"] == 120
    assert [r["name"] for r in stage["watches"][1]["records"]] == ["queries", "slo"]
    assert stage["watches"][2]["records"][1]["inconclusive"] is True


def test_the_series_of_a_gate_start_at_the_stage_and_follow_its_watches():
    series = gate_series(watched_report()["stages"][0])
    assert sorted(series) == ["queries", "slo"]   # "notes" has no number to draw
    assert [(at.hour, outcome, numbers["p95_ms"]) for at, outcome, numbers in series["slo"]] == [
        (9, "passed", 120), (11, "passed", 130), (13, "failed", 480), (15, "inconclusive", 0)]
    assert numeric_figures({"a": {"max": 3, "ok": True}, "n": float("nan"), "i": float("inf"), "s": "x", "l": [1]}) == {"a.max": 3.0}


def test_the_html_page_has_a_chart_per_gate_with_numbers_and_escapes_the_state():
    report = watched_report()
    text = render_html(report)
    page = parsed(text)
    assert page.tags.count("svg") == 2   # slo and queries; "notes" has no numeric figure
    assert "script" not in page.tags and "<script>" not in text
    assert "<script>alert('x')</script> slo: p95 480" in "".join(page.text)
    assert "<b>" not in text and "&lt;b&gt;bold&lt;/b&gt; reason" in text
    # no resource is fetched: no link, no image, no URL in an attribute but the SVG namespaces
    assert not {"link", "img", "iframe", "object", "embed"} & set(page.tags)
    for tag, key, value in page.attrs:
        assert not re.match(r"\s*(https?:)?//", value) or key.startswith("xmlns"), (tag, key, value)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", text) and "@import" not in text
    # the metrics table with its sources, the stages and the watch history
    assert "one / watch queries / figures.max (watch at 2026-02-02T11:00:00+00:00, passed)" in text
    assert "Watch history" in text and text.count('<td class="inconclusive">inconclusive</td>') == 1
    assert text == render_html(report)   # the same report draws the same page


def test_the_html_page_without_charts_and_without_runs():
    calls = []
    text = render_html(watched_report(), chart=lambda title, points, salt="": calls.append(title) or "<svg></svg>")
    assert calls == ["one / queries", "one / slo"]
    empty = render_html(build_report(PLAN, []))
    parsed(empty)
    assert "<svg" not in empty and "not measured" in empty and "Stage one" not in empty
    assert "## Watches" in render_markdown(watched_report())


def test_a_star_in_the_field_reads_every_host_and_reports_the_worst():
    per_host = {"gate_type": "log_check", "passed": True, "reason": "ok", "figures": {
        "app1": {"extractors": {"q": {"max": 2, "count": 5}}, "passed": True},
        "app2": {"extractors": {"q": {"max": 3, "count": 4}}, "passed": True},
        "app3": {"extractors": {}, "passed": True}}}
    plan = dict(PLAN, metrics=[
        {"name": "Queries", "op": "<=", "threshold": 3, "stage": "one", "gate": "queries",
         "field": "figures.*.extractors.q.max"},
        {"name": "Lines", "op": ">=", "threshold": 5, "stage": "one", "gate": "queries",
         "field": "figures.*.extractors.q.count"}])
    ceiling, floor = build_report(plan, [stage_row({})], watches=[a_watch(11, "passed", {"queries": per_host})])["metrics"]
    assert ceiling["value"] == 3 and ceiling["status"] == "PASS" and ceiling["source"].endswith("(worst of 2)")
    assert floor["value"] == 4 and floor["status"] == "FAIL"
