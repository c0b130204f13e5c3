"""AWX configuration as code: surveys map to variables the playbooks read, the workflow has an
approval before the rollout and a failure path to the rollback, and nothing can prompt."""
from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
AWX = ROOT / "awx"


def configure():
    return yaml.safe_load((AWX / "configure.yml").read_text())[0]


def test_job_templates_and_their_playbooks_exist():
    templates = {t["name"]: t for t in configure()["vars"]["awx_templates"]}
    assert set(templates) == {"rollout", "rollback", "migrate", "status", "watch"}
    for tpl in templates.values():
        assert (ROOT / tpl["playbook"]).is_file(), tpl["playbook"]
    assert templates["status"]["extra_vars"] == {"rollout_action": "status"}
    assert templates["watch"]["extra_vars"] == {"rollout_action": "watch"}


def test_every_survey_variable_is_read_by_its_playbook():
    templates = configure()["vars"]["awx_templates"]
    for tpl in templates:
        if not tpl["survey"]:
            continue
        spec = json.loads((AWX / tpl["survey"]).read_text())
        sources = (ROOT / tpl["playbook"]).read_text()
        sources += "".join(p.read_text() for p in (ROOT / "playbooks" / "vars").glob("*.yml"))
        sources += "".join(p.read_text() for p in (ROOT / "playbooks" / "tasks").glob("*.yml"))
        for question in spec["spec"]:
            assert question["required"] is False or question.get("default") is not None
            assert re.search(r"\b%s\b" % question["variable"], sources), (tpl["name"], question["variable"])


def test_workflow_approval_then_rollout_with_failure_path_to_rollback():
    task = next(t for t in configure()["tasks"] if "awx.awx.workflow_job_template" in t)
    nodes = {n["identifier"]: n for n in task["awx.awx.workflow_job_template"]["workflow_nodes"]}
    assert nodes["status"]["related"]["success_nodes"] == [{"identifier": "approve"}]
    assert nodes["approve"]["unified_job_template"]["type"] == "workflow_approval"
    assert nodes["approve"]["related"]["success_nodes"] == [{"identifier": "rollout"}]
    assert nodes["rollout"]["related"]["failure_nodes"] == [{"identifier": "rollback"}]
    assert nodes["rollback"]["unified_job_template"]["name"] == "rollback"


def test_no_interactive_prompt_in_any_playbook_or_role():
    offenders = []
    for path in list(ROOT.glob("*.yml")) + list((ROOT / "playbooks").rglob("*.yml")) + \
            list((ROOT / "roles").rglob("*.yml")) + list(AWX.rglob("*.yml")):
        text = path.read_text()
        if re.search(r"^\s*vars_prompt\s*:", text, re.M) or re.search(r"ansible\.builtin\.pause:\s*\n\s+prompt", text) \
                or re.search(r"^\s*pause\s*:\s*\n\s+prompt", text, re.M):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def _task(module: str) -> dict:
    return next(t for t in configure()["tasks"] if module in t)


def test_webhook_url_is_injected_by_a_credential_type_never_in_extra_vars():
    ctype = _task("awx.awx.credential_type")["awx.awx.credential_type"]
    field = ctype["inputs"]["fields"][0]
    assert field["secret"] is True and ctype["inputs"]["required"] == [field["id"]]
    # the name the callback reads (plugins/callback/rollout_notify.py)
    assert list(ctype["injectors"]["env"]) == ["GR_ROLLOUT_WEBHOOK_URL"]
    assert "GR_ROLLOUT_WEBHOOK_URL" in (ROOT / "plugins/callback/rollout_notify.py").read_text()
    template = _task("awx.awx.job_template")["awx.awx.job_template"]
    assert "{{ awx_webhook_credential }}" in template["credentials"]
    for tpl in configure()["vars"]["awx_templates"]:
        assert not any("webhook" in key or "url" in key for key in tpl["extra_vars"]), tpl


def test_notification_template_is_attached_to_every_template_and_the_workflow():
    notify = _task("awx.awx.notification_template")
    assert notify["no_log"] is True
    assert notify["awx.awx.notification_template"]["notification_type"] == "webhook"
    name = notify["awx.awx.notification_template"]["name"]
    assert yaml.safe_load((AWX / "vars.yml").read_text())["awx_notification_webhook"] == "rollout-webhook"
    for module in ("awx.awx.job_template", "awx.awx.workflow_job_template"):
        spec = _task(module)[module]
        for event in ("started", "success", "error"):
            assert spec["notification_templates_%s" % event] == [name], (module, event)
    assert _task("awx.awx.workflow_job_template")["awx.awx.workflow_job_template"]["notification_templates_approvals"] == [name]


def test_the_report_reaches_awx_as_job_artifacts():
    """An AWX job's container is discarded: the report and the run's result are handed over with set_stats."""
    tasks = yaml.safe_load((ROOT / "playbooks" / "tasks" / "report.yml").read_text())
    stats = [t["ansible.builtin.set_stats"] for t in tasks if "ansible.builtin.set_stats" in t]
    assert len(stats) == 1 and stats[0]["per_host"] is False
    assert set(stats[0]["data"]) == {"gradual_rollout_report", "gradual_rollout_report_markdown", "gradual_rollout_result"}


def test_the_watch_runs_every_four_hours_by_default():
    """Seed 003: "Monitor for 24 Hours - Check Every 4 Hours"; shorter than the default max age of
    a passed watch (6 h), so one missed watch does not hold the plan."""
    task = next(t for t in configure()["tasks"] if (t.get("awx.awx.schedule") or {}).get("unified_job_template") == "watch")
    settings = yaml.safe_load((AWX / "vars.yml").read_text())
    assert task["awx.awx.schedule"]["rrule"] == "{{ awx_watch_rrule }}"
    assert settings["awx_watch_every_hours"] == 4
    assert "FREQ=HOURLY;INTERVAL={{ awx_watch_every_hours }}" in settings["awx_watch_rrule"]
    model = (ROOT / "plugins" / "module_utils" / "rollout_model.py").read_text()
    assert re.search(r"max_age_hours: float = (\d+)", model).group(1) == "6"
