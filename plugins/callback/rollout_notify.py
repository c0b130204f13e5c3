# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Post rollout stage events to a Slack-compatible webhook and a JSON-lines audit file."""
from __future__ import annotations

DOCUMENTATION = r"""
name: rollout_notify
type: notification
short_description: Stage start, pass and rollback summaries to a webhook and an audit file
version_added: "0.1.0"
description:
  - Watches the results of C(gradual.rollout.rollout_state). Every write it makes (a stage
    started or resumed, a batch done, a stage passed, failed or rolled back, a watch and its verdict) becomes one event.
  - Each event is appended as one JSON line to O(audit_file) and posted as a Slack-compatible
    message (a JSON object with C(text) and C(attachments)) to O(webhook_url).
  - A webhook that does not answer never fails the play; the failure is shown as a warning and
    written to the audit file.
  - Events of a C(--check) run are marked as such and are not posted.
requirements:
  - enable in ansible.cfg (C(callbacks_enabled = gradual.rollout.rollout_notify)) or with
    C(ANSIBLE_CALLBACKS_ENABLED).
options:
  webhook_url:
    description: Slack-compatible incoming webhook. Nothing is posted when unset.
    type: str
    env:
      - name: GR_ROLLOUT_WEBHOOK_URL
    ini:
      - section: callback_rollout_notify
        key: webhook_url
  audit_file:
    description: JSON-lines file that every event is appended to.
    type: path
    default: ~/.ansible/gradual-rollout/notify.jsonl
    env:
      - name: GR_ROLLOUT_AUDIT_FILE
    ini:
      - section: callback_rollout_notify
        key: audit_file
  timeout:
    description: Seconds to wait for the webhook.
    type: float
    default: 5
    env:
      - name: GR_ROLLOUT_WEBHOOK_TIMEOUT
    ini:
      - section: callback_rollout_notify
        key: timeout
  batch_events:
    description: Post batch progress events too (they are always written to the audit file).
    type: bool
    default: false
    env:
      - name: GR_ROLLOUT_NOTIFY_BATCHES
    ini:
      - section: callback_rollout_notify
        key: batch_events
"""

import json
import os
import time
from urllib.error import URLError

from ansible.module_utils.urls import ConnectionError as UrlConnectionError, open_url
from ansible.plugins.callback import CallbackBase

ICONS = {"start": ":rocket:", "resume": ":arrows_counterclockwise:", "batch": ":small_blue_diamond:",
         "passed": ":white_check_mark:", "failed": ":x:", "rolled_back": ":rewind:", "watch": ":eyes:"}
COLORS = {"passed": "good", "failed": "danger", "rolled_back": "danger"}
WATCH_COLORS = {"passed": "good", "failed": "danger", "inconclusive": "warning"}


def summary(event: dict) -> str:
    """One line for a human: what happened to which stage, and why."""
    kind = event.get("event")
    stage = event.get("stage")
    plan = event.get("plan")
    who = event.get("actor") or "?"
    if event.get("awx_job_id"):
        who += " (AWX job %s)" % event["awx_job_id"]
    if kind in ("start", "resume"):
        text = "%s stage %s of %s %s by %s" % (ICONS[kind], stage, plan,
                                               "started" if kind == "start" else "resumed", who)
        if event.get("superseded"):
            text += " (a passed stage run again: %s superseded, to run again after it)" % ", ".join(event["superseded"])
    elif kind == "batch":
        hosts = ", ".join(event.get("hosts") or [])
        text = "%s stage %s of %s: batch done on %s" % (ICONS[kind], stage, plan, hosts)
    elif kind == "watch":
        verdict = event.get("verdict") or "?"
        text = "%s watch of stage %s of %s: %s" % (ICONS[kind], stage, plan, verdict.upper())
        if verdict != "passed":
            text += ": %s" % (event.get("reason") or "no reason recorded")
            text += (" - the stage is rolled back" if verdict == "failed" else
                     " - nothing rolled back; the next stage is held until a watch passes")
    elif kind == "passed":
        text = "%s stage %s of %s PASSED" % (ICONS[kind], stage, plan)
    else:
        outcome = "ROLLED BACK" if kind == "rolled_back" else "FAILED"
        reason = event.get("reason") or "no reason recorded"
        text = "%s stage %s of %s %s: %s" % (ICONS.get(kind, ""), stage, plan, outcome, reason)
    gates = []
    for name, fig in sorted((event.get("figures") or {}).items()):
        if isinstance(fig, dict) and "passed" in fig:
            gates.append("%s %s" % (name, "ok" if fig.get("passed") else "FAILED (%s)" % fig.get("reason")))
    if gates:
        text += " | gates: " + "; ".join(gates)
    return text


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "gradual.rollout.rollout_notify"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.webhook_url = None
        self.audit_file = None
        self.timeout = 5.0
        self.batch_events = False
        self.seen = set()

    def set_options(self, task_keys=None, var_options=None, direct=None):
        super().set_options(task_keys=task_keys, var_options=var_options, direct=direct)
        self.webhook_url = self.get_option("webhook_url")
        self.audit_file = os.path.expanduser(self.get_option("audit_file"))
        self.timeout = float(self.get_option("timeout"))
        self.batch_events = bool(self.get_option("batch_events"))

    def _audit(self, record: dict) -> None:
        try:
            folder = os.path.dirname(self.audit_file)
            if folder:
                os.makedirs(folder, exist_ok=True)
            with open(self.audit_file, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, sort_keys=True, default=str) + "\n")
        except OSError as exc:
            self._display.warning("rollout_notify: cannot append to %s: %s" % (self.audit_file, exc))

    def _post(self, event: dict, text: str) -> dict:
        payload = {"text": text, "attachments": [{
            "color": (WATCH_COLORS.get(event.get("verdict"), "#439FE0") if event.get("event") == "watch"
                      else COLORS.get(event.get("event"), "#439FE0")),
            "fields": [{"title": k, "value": str(event.get(k)), "short": True}
                       for k in ("plan", "stage", "event", "actor", "awx_job_id", "run_id") if event.get(k)],
        }]}
        try:
            resp = open_url(self.webhook_url, data=json.dumps(payload).encode("utf-8"), method="POST",
                            headers={"Content-Type": "application/json"}, timeout=self.timeout)
            with resp:
                return {"posted": True, "status": resp.status}
        except (URLError, UrlConnectionError, OSError, ValueError) as exc:
            self._display.warning("rollout_notify: webhook post failed: %s" % exc)
            return {"posted": False, "error": str(exc)}

    def v2_runner_on_ok(self, result):
        data = result._result or {}
        event = data.get("rollout_event")
        if not isinstance(event, dict):
            return
        key = (event.get("plan"), event.get("stage"), event.get("event"), event.get("run_id"),
               event.get("batch"), event.get("at"))
        if key in self.seen:  # a run_once result is reported once, not per host
            return
        self.seen.add(key)
        text = summary(event)
        record = dict(event, summary=text, host=result._host.get_name(), logged_at=time.time())
        if self.webhook_url and not event.get("check_mode") and (event.get("event") != "batch" or self.batch_events):
            record["webhook"] = self._post(event, text)
        self._audit(record)
