"""The files of rollout_report: Markdown, JSON and the HTML page beside them, each with the same
mode; without matplotlib the page is not written and the task says why."""
from __future__ import annotations

import os
import stat

from ansible_collections.gradual.rollout.plugins.action import rollout_report as action
from ansible_collections.gradual.rollout.plugins.module_utils.rollout_report import build_report, render_markdown

PLAN = {"name": "p", "stages": [{"name": "one"}], "metrics": []}
ROW = dict(id=1, stage="one", status="passed", started_at="2026-02-02T09:00:00+00:00",
           finished_at="2026-02-02T09:10:00+00:00", reason=None, actor="ops",
           figures={"slo": {"passed": True, "reason": "ok", "figures": {"p95_ms": 12}}})


def test_the_html_page_is_written_beside_the_markdown_and_the_json(tmp_path):
    report = build_report(PLAN, [ROW])
    base = str(tmp_path / "reports" / "rollout-p")
    files, warnings = action.write_report(base, report, render_markdown(report))
    assert files == [base + ".md", base + ".json", base + ".html"] and warnings == []
    assert {stat.S_IMODE(os.stat(f).st_mode) for f in files} == {0o644}
    assert "<svg" in (tmp_path / "reports" / "rollout-p.html").read_text()
    assert sorted(os.listdir(tmp_path / "reports")) == ["rollout-p.html", "rollout-p.json", "rollout-p.md"]


def test_without_matplotlib_the_markdown_and_json_are_written_and_an_old_page_goes(tmp_path, monkeypatch):
    report = build_report(PLAN, [ROW])
    base = str(tmp_path / "rollout-p")
    (tmp_path / "rollout-p.html").write_text("an earlier run's page")
    monkeypatch.setattr(action, "HAS_MATPLOTLIB", False)
    files, warnings = action.write_report(base, report, render_markdown(report))
    assert files == [base + ".md", base + ".json"] and not os.path.exists(base + ".html")
    assert len(warnings) == 1 and "(matplotlib)" in warnings[0] and "rollout-p.html" in warnings[0]
