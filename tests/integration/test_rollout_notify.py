"""The rollout_notify callback in a real ansible-playbook run: events reach a local HTTP receiver
(Slack-compatible JSON) and the JSON-lines audit file; a dead webhook never fails the play."""
from __future__ import annotations

import json
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Start
      gradual.rollout.rollout_state: {args_start}
      register: run
    - name: Pass
      gradual.rollout.rollout_state: {args_finish}
"""


class Receiver(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 - http.server API
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Receiver.received.append((self.headers.get("Content-Type"), json.loads(body)))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    Receiver.received = []
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d/hook" % server.server_address[1]
    server.shutdown()


def run_playbook(tmp_path, postgres, db, webhook, status, check=False):
    conn = dict(login_host=postgres.host, login_port=postgres.port, login_user=postgres.user,
                login_password=postgres.password, db=db, plan="post-p1")
    start = dict(conn, operation="start", stage="w1d4_daily_rewards", actor="tester", awx_job_id="77")
    finish = dict(conn, operation="finish", run_id="{{ run.run.id | default(0, true) }}", status=status,
                  reason="gate pool: utilization 93 > 50")
    book = tmp_path / "play.yml"
    book.write_text(PLAYBOOK.format(args_start=json.dumps(start), args_finish=json.dumps(finish)))
    audit = tmp_path / "audit" / "notify.jsonl"
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
               ANSIBLE_CALLBACKS_ENABLED="gradual.rollout.rollout_notify",
               GR_ROLLOUT_WEBHOOK_URL=webhook, GR_ROLLOUT_AUDIT_FILE=str(audit),
               GR_ROLLOUT_WEBHOOK_TIMEOUT="2")
    import sys
    cmd = [str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", "localhost,", "-c", "local",
           "-e", "ansible_python_interpreter=%s" % sys.executable, str(book)] + (["--check"] if check else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, check=False)
    lines = [json.loads(x) for x in audit.read_text().splitlines()] if audit.exists() else []
    return proc, lines


def test_start_and_rollback_are_posted_and_audited(tmp_path, postgres, pg_db, receiver):
    proc, lines = run_playbook(tmp_path, postgres, pg_db, receiver, "rolled_back")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [line["event"] for line in lines] == ["start", "rolled_back"]
    assert all(line["webhook"]["posted"] for line in lines)
    assert len(Receiver.received) == 2
    ctype, body = Receiver.received[1]
    assert ctype == "application/json"
    assert "ROLLED BACK" in body["text"] and "utilization 93 > 50" in body["text"]
    assert "w1d4_daily_rewards" in body["text"] and "AWX job 77" in Receiver.received[0][1]["text"]
    assert lines[1]["stage"] == "w1d4_daily_rewards" and lines[1]["actor"] == "tester"


def test_pass_is_posted(tmp_path, postgres, pg_db, receiver):
    proc, lines = run_playbook(tmp_path, postgres, pg_db, receiver, "passed")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASSED" in Receiver.received[-1][1]["text"]
    assert lines[-1]["event"] == "passed"


def test_dead_webhook_warns_but_the_play_passes(tmp_path, postgres, pg_db):
    proc, lines = run_playbook(tmp_path, postgres, pg_db, "http://127.0.0.1:1/hook", "passed")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "webhook post failed" in proc.stdout + proc.stderr
    assert [line["webhook"]["posted"] for line in lines] == [False, False]


def test_check_mode_events_are_audited_not_posted(tmp_path, postgres, pg_db, receiver):
    proc, lines = run_playbook(tmp_path, postgres, pg_db, receiver, "passed", check=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert Receiver.received == []
    assert lines and all(line["check_mode"] for line in lines)


def test_a_start_that_supersedes_stages_says_so():
    from ansible_collections.gradual.rollout.plugins.callback.rollout_notify import summary
    text = summary({"event": "start", "stage": "one", "plan": "t", "actor": "ops", "superseded": ["two", "three"]})
    assert "stage one of t started by ops" in text and "two, three superseded" in text
