#!/usr/bin/python
# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Gate on what Prometheus says: one instant query, every series held to thresholds."""
from __future__ import annotations

DOCUMENTATION = r"""
module: prometheus_check
short_description: Gate a rollout on a PromQL query answered by Prometheus
version_added: 0.1.0
description:
  - Sends O(query) to Prometheus' HTTP API (C(/api/v1/query), an instant query at the current time)
    and holds the value of every series it returns to O(min_value) and O(max_value). A failure
    names the series (metric name and labels) and the threshold.
  - The window is the query's own business, as in an alerting rule (a C(rate) or C(max_over_time)
    over C([10m]), for example; see the examples). A range vector (C(up[5m])) is refused with a hint
    to aggregate it.
  - Fewer series than O(min_series) (a metric that is not scraped, a selector that matches nothing)
    and a NaN value (a ratio over a window without traffic) are inconclusive, never a pass.
  - Prometheus that cannot be reached, answers 5xx (C(503) for a query that timed out) or refuses
    the credentials (401, 403) is inconclusive. A query Prometheus cannot parse or execute (400,
    422) fails, with Prometheus' own message.
options:
  url:
    description:
      - Base URL of Prometheus, for example V(http://prometheus.internal:9090); a path prefix
        (C(--web.external-url) behind a proxy) is kept. C(/api/v1/query) is appended.
    type: str
    required: true
  query:
    description:
      - The PromQL expression. It must evaluate to an instant vector or a scalar.
    type: str
    required: true
  min_value:
    description:
      - Lowest acceptable value of every series.
    type: float
  max_value:
    description:
      - Highest acceptable value of every series.
    type: float
  min_series:
    description:
      - Fewest series the answer must have to be judged; fewer is inconclusive.
      - V(0) accepts an empty answer, which suits a query that returns only what is wrong
        (C(up == 0)) together with O(max_series).
    type: int
    default: 1
  max_series:
    description:
      - Most series the answer may have; more fails, naming them. V(0) with a query that returns
        only what is wrong (C(up == 0), C(ALERTS{alertstate="firing"})) fails on any of them.
    type: int
  timeout:
    description:
      - Seconds to wait for the answer. Also sent to Prometheus as the query's evaluation timeout.
    type: float
    default: 10
  url_username:
    description:
      - User for HTTP basic authentication (Prometheus' C(--web.config.file)).
    type: str
  url_password:
    description:
      - Password for HTTP basic authentication. Never returned or logged.
    type: str
  force_basic_auth:
    description:
      - Send the credentials with the first request instead of waiting for a C(401) challenge.
    type: bool
    default: true
  validate_certs:
    description:
      - Verify the server's TLS certificate when O(url) is HTTPS.
    type: bool
    default: true
  ca_path:
    description:
      - PEM file of the CA that signed Prometheus' certificate, when it is not in the system's store.
    type: path
extends_documentation_fragment:
  - gradual.rollout.gate.verdict
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
    details: A gate only reads; it asks the live Prometheus in check mode too.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: none
notes:
  - Inconclusive here means no series (fewer than O(min_series)), a NaN value, Prometheus that
    cannot be reached or answers 5xx, or credentials it refuses.
  - Prometheus' answer is only as fresh as its last scrape and rule evaluation; a gate right after
    a change should use a window that starts after the change (a C(rate) over C([2m]) two minutes
    after it) or wait a scrape interval first.
  - A failed threshold fails the task with a message naming the series and the threshold; the
    result still carries every series.
seealso:
  - name: Prometheus HTTP API
    description: The instant query endpoint and its answer.
    link: https://prometheus.io/docs/prometheus/latest/querying/api/#instant-queries
author:
  - gradual.rollout contributors (@gradual-rollout)
"""

EXAMPLES = r"""
- name: p95 response time over the last 10 minutes stays under 3 seconds on every route
  gradual.rollout.prometheus_check:
    url: http://prometheus.internal:9090
    url_username: gate
    url_password: "{{ vault_prometheus_gate_password }}"
    query: >-
      histogram_quantile(0.95,
        sum by (route, le) (rate(http_request_duration_seconds_bucket{job="app"}[10m])))
    max_value: 3

- name: Error rate under 5 % (no traffic in the window is inconclusive)
  gradual.rollout.prometheus_check:
    url: http://prometheus.internal:9090
    query: >-
      sum(rate(http_request_duration_seconds_count{job="app",status_code=~"5.."}[5m]))
      / sum(rate(http_request_duration_seconds_count{job="app"}[5m]))
    max_value: 0.05

- name: No scrape target is down and no critical alert fires (an empty answer passes)
  gradual.rollout.prometheus_check:
    url: http://prometheus.internal:9090
    query: up == 0 or ALERTS{alertstate="firing", severity="critical"}
    min_series: 0
    max_series: 0
"""

RETURN = r"""
url:
  description: The query URL asked, without credentials.
  returned: always
  type: str
  sample: http://prometheus.internal:9090/api/v1/query
status:
  description: HTTP status of Prometheus' answer; -1 when there was none.
  returned: always
  type: int
  sample: 200
series:
  description: Every series of the answer, sorted, with its labels and value (null for NaN;
    infinities as the strings C(+Inf) and C(-Inf)).
  returned: when Prometheus answered the query
  type: list
  elements: dict
  sample: [{"series": "up{instance=\"app1:3000\",job=\"app\"}", "labels": {"__name__": "up", "instance": "app1:3000",
            "job": "app"}, "value": 1.0}]
series_count:
  description: How many series the answer had.
  returned: when Prometheus answered the query
  type: int
  sample: 2
value:
  description: The value when the answer has exactly one series, else null.
  returned: when Prometheus answered the query
  type: float
min:
  description: The lowest value among the series (null when none has a number).
  returned: when Prometheus answered the query
  type: float
max:
  description: The highest value among the series (null when none has a number).
  returned: when Prometheus answered the query
  type: float
elapsed_ms:
  description: Wall time of the query, milliseconds.
  returned: always
  type: float
inconclusive:
  description: Nothing could be judged (no series, NaN, Prometheus unreachable).
  returned: always
  type: bool
gate:
  description: The verdict.
  returned: always
  type: dict
  sample: {"passed": false, "inconclusive": false, "failures": ["value of {route=\"/api\"} 3.4 exceeds max_value 3"],
           "reason": "value of {route=\"/api\"} 3.4 exceeds max_value 3"}
"""

import json
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native
from ansible.module_utils.six.moves.urllib.parse import urlencode, urlsplit
from ansible.module_utils.urls import fetch_url
from ansible_collections.gradual.rollout.plugins.module_utils import gates as G
from ansible_collections.gradual.rollout.plugins.module_utils import prometheus_gate as P


def argument_spec() -> dict:
    return dict(
        url=dict(type="str", required=True),
        query=dict(type="str", required=True),
        min_value=dict(type="float"),
        max_value=dict(type="float"),
        min_series=dict(type="int", default=1),
        max_series=dict(type="int"),
        timeout=dict(type="float", default=10),
        url_username=dict(type="str"),
        url_password=dict(type="str", no_log=True),
        force_basic_auth=dict(type="bool", default=True),
        validate_certs=dict(type="bool", default=True),
        ca_path=dict(type="path"),
        **G.verdict_argument_spec()
    )


def check_options(p: dict) -> str:
    """The query endpoint's URL, once every option makes sense; raises GateInputError naming the bad value."""
    parts = urlsplit(p["url"])
    if parts.username is not None or parts.password is not None:
        # not echoed: it holds a secret
        raise G.GateInputError("url must not carry credentials: give them as url_username and url_password")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise G.GateInputError("url=%r is not an http(s) URL of Prometheus (e.g. http://prometheus:9090)" % p["url"])
    if parts.query or parts.fragment:
        raise G.GateInputError("url=%r must be Prometheus' base URL, without a query string" % p["url"])
    if not p["query"].strip():
        raise G.GateInputError("query is empty: give a PromQL expression")
    if p["min_series"] < 0:
        raise G.GateInputError("min_series=%d must be >= 0" % p["min_series"])
    if p["max_series"] is not None and p["max_series"] < 0:
        raise G.GateInputError("max_series=%d must be >= 0" % p["max_series"])
    if p["timeout"] <= 0:
        raise G.GateInputError("timeout=%s must be > 0: a gate's query must be bounded" % p["timeout"])
    if p["min_value"] is not None and p["max_value"] is not None and p["min_value"] > p["max_value"]:
        raise G.GateInputError("min_value=%s is above max_value=%s; no value could pass"
                               % (p["min_value"], p["max_value"]))
    if p["min_value"] is None and p["max_value"] is None and p["max_series"] is None:
        raise G.GateInputError("give min_value, max_value or max_series: a gate needs a threshold")
    return p["url"].rstrip("/") + "/api/v1/query"


def ask(module, endpoint: str) -> tuple:
    """(status, decoded answer or None, transport error or None) of one instant query."""
    p = module.params
    data = urlencode({"query": p["query"], "timeout": "%gs" % p["timeout"]})
    resp, info = fetch_url(module, endpoint, data=data, method="POST", timeout=p["timeout"],
                           headers={"Content-Type": "application/x-www-form-urlencoded"}, ca_path=p["ca_path"])
    status = int(info.get("status", -1))
    # an HTTP error's body (Prometheus' JSON with errorType) is in info; fetch_url has read it already
    if "body" in info:
        body = info["body"]
    else:
        body = resp.read() if resp is not None else None
    answer = None
    if body:
        try:
            answer = json.loads(to_native(body))
        except ValueError:
            answer = None
    error = None if status == 200 else (info.get("msg") or "HTTP %d" % status)
    return status, answer, error


def run(module, endpoint: str) -> dict:
    p = module.params
    out = {"url": endpoint}
    start = time.monotonic()
    status, answer, error = ask(module, endpoint)
    out["status"] = status
    out["elapsed_ms"] = round((time.monotonic() - start) * 1000, 2)
    failures, why = [], None
    if status in (400, 422) and answer is not None:
        failures = [P.read_answer(answer)[1]]
    elif status in (401, 403):
        why = "Prometheus at %s answered %d: the credentials (url_username, url_password) were refused" % (
            endpoint, status)
    elif status != 200 or answer is None:
        why = "no answer from Prometheus at %s: %s" % (endpoint, error or "the body is not JSON")
    else:
        series, refused = P.read_answer(answer)
        if refused:
            failures = [refused]
        else:
            out.update(P.figures(series))
            failures, why = P.judge(series, p["min_value"], p["max_value"], p["min_series"], p["max_series"])
    out["gate"] = G.gate(failures, why)
    out["inconclusive"] = out["gate"]["inconclusive"]
    return out


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    p = module.params
    try:
        endpoint = check_options(p)
    except G.GateInputError as exc:
        module.fail_json(msg=str(exc))
    out = run(module, endpoint)
    if G.fails_task(out, p["fail_on_inconclusive"]):
        module.fail_json(msg="prometheus_check gate failed: " + out["gate"]["reason"], **out)
    module.exit_json(changed=False, **out)


if __name__ == "__main__":
    main()
