"""The logs a stage's host gates read, as rollout_stage hands them to the playbook: each once,
under the name its position is kept by (a file's path, journald:UNIT)."""
from __future__ import annotations

from ansible_collections.gradual.rollout.plugins.action import rollout_stage

GATES = [
    {"name": "errors", "type": "log_check", "args": {"path": "/var/log/app/error.log", "patterns": []}},
    {"name": "unit", "type": "log_check", "args": {"journal_unit": "app.service", "patterns": []}},
    {"name": "again", "type": "log_check", "args": {"journal_unit": "app.service", "extract": []}},
    {"name": "slo", "type": "http_slo", "args": {"path": "/health"}},
]


def test_each_log_is_read_once_under_its_source():
    assert rollout_stage.log_paths(GATES) == ["/var/log/app/error.log", "journald:app.service"]
    assert rollout_stage.log_sources(GATES) == [
        {"source": "/var/log/app/error.log", "path": "/var/log/app/error.log"},
        {"source": "journald:app.service", "journal_unit": "app.service"}]


def test_each_host_gate_carries_its_source():
    assert [(g["name"], g["source"]) for g in rollout_stage.log_gates(GATES)] == [
        ("errors", "/var/log/app/error.log"), ("unit", "journald:app.service"), ("again", "journald:app.service")]
