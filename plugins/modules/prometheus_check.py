#!/usr/bin/python
# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Gate on what Prometheus says: one instant or range query, every series held to thresholds."""
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
  - With O(range), the query is a range query instead (C(/api/v1/query_range)) from O(range) ago
    until now, evaluated every O(step). Every sample of every series is held to the thresholds (the
    worst sample decides, not an average), so a peak anywhere in the range fails, and the failure
    names the series, the value and when it was seen. A range that returns no series at all is
    inconclusive, as an instant query's empty answer.
  - Fewer series than O(min_series) (a metric that is not scraped, a selector that matches nothing)
    and a NaN value (a ratio over a window without traffic) are inconclusive, never a pass.
  - Prometheus that cannot be reached, answers 5xx (C(503) for a query that timed out) or refuses
    the credentials (401, 403) is inconclusive. A query Prometheus cannot parse or execute (400,
    422) fails at once, naming the query and with Prometheus' own message.
options:
  url:
    description:
      - Base URL of Prometheus, for example V(http://prometheus.internal:9090); a path prefix
        (C(--web.external-url) behind a proxy) is kept. C(/api/v1/query) (C(/api/v1/query_range)
        with O(range)) is appended.
    type: str
    required: true
  query:
    description:
      - The PromQL expression. It must evaluate to an instant vector or a scalar.
    type: str
    required: true
  range:
    description:
      - Make the query a range query over this much time until now, for example V(10m), V(1h) or
        V(90) (seconds); every sample of every series is then held to the thresholds.
      - Unset, the query is an instant query at the current time.
    type: str
  step:
    description:
      - With O(range), the interval between two evaluations of the query, for example V(15s).
      - A step evaluates the query at that instant only, so a peak between two steps that is shorter
        than the series' scrape interval plus the step can be missed; to catch every peak, use a
        step no longer than the scrape interval, or C(max_over_time(...[STEP])) in the query.
      - Unset, V(15s), or longer when the range would hold more than 11000 steps (Prometheus'
        limit per series).
    type: str
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
  - Inconclusive here means no series (fewer than O(min_series)), a NaN value (with O(range), a
    series with no sample but NaN), Prometheus that cannot be reached or answers 5xx, or
    credentials it refuses.
  - Prometheus' answer is only as fresh as its last scrape and rule evaluation; a gate right after
    a change should use a window that starts after the change (a C(rate) over C([2m]) two minutes
    after it) or wait a scrape interval first.
  - A failed threshold fails the task with a message naming the series and the threshold; the
    result still carries every series.
seealso:
  - name: Prometheus HTTP API
    description: The instant query endpoint and its answer.
    link: https://prometheus.io/docs/prometheus/latest/querying/api/#instant-queries
  - name: Prometheus HTTP API, range queries
    description: The range query endpoint and its answer (a matrix).
    link: https://prometheus.io/docs/prometheus/latest/querying/api/#range-queries
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

- name: No instance served more than 2 % errors at any minute of the last 30 minutes
  gradual.rollout.prometheus_check:
    url: http://prometheus.internal:9090
    query: >-
      sum by (instance) (rate(http_request_duration_seconds_count{job="app",status_code=~"5.."}[1m]))
      / sum by (instance) (rate(http_request_duration_seconds_count{job="app"}[1m]))
    range: 30m
    step: 1m
    max_value: 0.02

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
start:
  description: With O(range), the start of the range, Unix seconds.
  returned: with range
  type: float
end:
  description: With O(range), the end of the range (the time of the query), Unix seconds.
  returned: with range
  type: float
step:
  description: With O(range), the step used, seconds.
  returned: with range
  type: float
status:
  description: HTTP status of Prometheus' answer; -1 when there was none.
  returned: always
  type: int
  sample: 200
series:
  description:
    - Every series of the answer, sorted, with its labels and value (null for NaN; infinities as
      the strings C(+Inf) and C(-Inf)).
    - With O(range), C(value) is the series' last sample, and C(low), C(high) (its lowest and
      highest samples), C(low_at), C(high_at) (when, UTC) and C(samples) (how many) are added.
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
  description: The lowest value among the series (with O(range), the lowest sample); null when none has a number.
  returned: when Prometheus answered the query
  type: float
max:
  description: The highest value among the series (with O(range), the highest sample); null when none has a number.
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
import math
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
        range=dict(type="str"),
        step=dict(type="str"),
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


# Prometheus refuses a range query of more points than this per series
MAX_STEPS = 11000
DEFAULT_STEP = 15.0


def range_window(p: dict):
    """(range, step) in seconds from O(range) and O(step), or None for an instant query; raises
    GateInputError naming the bad value."""
    if p["range"] is None:
        if p["step"] is not None:
            raise G.GateInputError("step=%r without range: give range (e.g. range: 10m) for a range query" % p["step"])
        return None
    span = G.parse_duration(p["range"], "range")
    if span <= 0:
        raise G.GateInputError("range=%r must be longer than 0" % p["range"])
    if p["step"] is None:
        step = max(DEFAULT_STEP, float(math.ceil(span / MAX_STEPS)))
    else:
        step = G.parse_duration(p["step"], "step")
        if step <= 0:
            raise G.GateInputError("step=%r must be longer than 0" % p["step"])
    if step > span:
        raise G.GateInputError("step=%r is longer than range=%r: the range would hold one sample at most"
                               % (p["step"], p["range"]))
    if span / step > MAX_STEPS:
        raise G.GateInputError("range=%r / step=%r is %d steps; Prometheus answers at most %d per series: "
                               "give a longer step" % (p["range"], p["step"], span / step, MAX_STEPS))
    return span, step


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
    ranged = range_window(p) is not None
    return p["url"].rstrip("/") + ("/api/v1/query_range" if ranged else "/api/v1/query")


def form(p: dict, now: float) -> dict:
    """The query's form fields: an instant query's, or a range query's ending at NOW."""
    fields = {"query": p["query"], "timeout": "%gs" % p["timeout"]}
    window = range_window(p)
    if window is not None:
        span, step = window
        fields.update(start="%.3f" % (now - span), end="%.3f" % now, step="%gs" % step)
    return fields


def ask(module, endpoint: str, fields: dict) -> tuple:
    """(status, decoded answer or None, transport error or None) of one query."""
    p = module.params
    data = urlencode(fields)
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
    fields = form(p, time.time())
    ranged = "step" in fields
    if ranged:
        out.update(start=float(fields["start"]), end=float(fields["end"]), step=range_window(p)[1])
    start = time.monotonic()
    status, answer, error = ask(module, endpoint, fields)
    out["status"] = status
    out["elapsed_ms"] = round((time.monotonic() - start) * 1000, 2)
    failures, why = [], None
    if status in (400, 422) and answer is not None:
        failures = [P.refusal(answer, p["query"])]
    elif status in (401, 403):
        why = "Prometheus at %s answered %d: the credentials (url_username, url_password) were refused" % (
            endpoint, status)
    elif status != 200 or answer is None:
        why = "no answer from Prometheus at %s: %s" % (endpoint, error or "the body is not JSON")
    else:
        series, refused = P.read_answer(answer, p["query"], ranged)
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
