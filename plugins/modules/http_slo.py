#!/usr/bin/python
# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Gate on HTTP latency percentiles, error rate and JSON assertions under a bounded load."""
from __future__ import annotations

DOCUMENTATION = r"""
module: http_slo
short_description: Gate a rollout on HTTP latency percentiles, error rate and response content
version_added: 0.1.0
description:
  - Sends O(requests) requests, or requests for O(duration), at O(concurrency) to a URL from
    threads that each keep one connection alive, and measures every request from send to the last
    byte of the body.
  - Returns p50 / p95 / p99 latency, error rate, status counts and the achieved request rate;
    thresholds make it a gate that fails the task with a message naming the figure.
  - O(assertions) check the JSON body with JMESPath, on every response or on a given request
    (for example C(fromCache) is true on the second request).
options:
  url:
    description:
      - The http:// or https:// URL to call.
    type: str
    required: true
  method:
    description:
      - HTTP method.
    type: str
    default: GET
    choices: [GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS]
  headers:
    description:
      - Request headers.
    type: dict
  body:
    description:
      - Request body (sent as is; set the C(Content-Type) header yourself).
    type: str
  requests:
    description:
      - How many requests to send. Without O(requests) and O(duration), 100 requests are sent.
        With both, the load stops at whichever comes first.
    type: int
  duration:
    description:
      - How long to send requests; seconds, or a string such as V(30s), V(2m).
    type: raw
  concurrency:
    description:
      - Number of parallel connections (threads).
    type: int
    default: 10
  timeout:
    description:
      - Seconds to wait for each response.
    type: float
    default: 10.0
  validate_certs:
    description:
      - Verify the certificate of an https URL.
    type: bool
    default: true
  ca_path:
    description:
      - CA bundle to verify an https URL with.
    type: path
  status_codes:
    description:
      - Status codes that count as success. By default any status below 400.
    type: list
    elements: int
  assertions:
    description:
      - Checks on the JSON body. Each failing check fails the gate.
      - Requests numbered by an assertion (V(first) or a number) are sent one after the other on one
        connection before the concurrent load, so "request 2" really comes after request 1.
    type: list
    elements: dict
    suboptions:
      expr:
        description:
          - JMESPath expression evaluated on the JSON body.
        type: str
        required: true
      equals:
        description:
          - Expected value of O(assertions[].expr) (compared with its JSON type). Without it the
            result must be truthy.
        type: raw
      request:
        description:
          - Which response to check, V(all), V(first), or a request number starting at 1.
        type: raw
        default: all
  max_p50_ms:
    description:
      - Highest acceptable median latency in milliseconds.
    type: float
  max_p95_ms:
    description:
      - Highest acceptable 95th percentile latency in milliseconds.
    type: float
  max_p99_ms:
    description:
      - Highest acceptable 99th percentile latency in milliseconds.
    type: float
  max_error_rate:
    description:
      - Highest acceptable share of failed requests, in percent (V(1) = 1%). A request fails on a
        transport error, a timeout or a status outside O(status_codes).
    type: float
  min_rps:
    description:
      - Lowest acceptable achieved request rate (requests per second).
    type: float
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
    details:
      - A gate only reads; GET, HEAD and OPTIONS loads run in check mode too.
      - Other methods may change the server, so in check mode they are not sent and the result is
        RV(skipped).
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: none
requirements:
  - jmespath (for O(assertions))
notes:
  - Latency is measured on the machine that runs the module; run it near the service (the app host
    itself or its load balancer) for figures that mean what the SLO means.
author:
  - gradual.rollout contributors (@gradual-rollout)
"""

EXAMPLES = r"""
- name: Product page P95 under 200 ms, no errors; the second request comes from the cache
  gradual.rollout.http_slo:
    url: http://localhost:3000/api/products/42
    requests: 500
    concurrency: 10
    max_p95_ms: 200
    max_error_rate: 0
    assertions:
      - expr: fromCache
        equals: false
        request: 1
      - expr: fromCache
        equals: true
        request: 2

- name: One minute of load on the health endpoint
  gradual.rollout.http_slo:
    url: https://app1.internal/health
    duration: 60s
    concurrency: 20
    validate_certs: false
    max_p99_ms: 500
    max_error_rate: 0.1
"""

RETURN = r"""
p50_ms:
  description: Median latency, milliseconds.
  returned: unless skipped
  type: float
  sample: 4.1
p95_ms:
  description: 95th percentile latency (nearest rank), milliseconds.
  returned: unless skipped
  type: float
  sample: 12.5
p99_ms:
  description: 99th percentile latency (nearest rank), milliseconds.
  returned: unless skipped
  type: float
  sample: 30.2
mean_ms:
  description: Mean latency, milliseconds.
  returned: unless skipped
  type: float
max_ms:
  description: Highest latency, milliseconds.
  returned: unless skipped
  type: float
error_rate:
  description: Failed requests in percent.
  returned: unless skipped
  type: float
  sample: 0.0
errors:
  description: Failed requests (transport errors plus unexpected statuses).
  returned: unless skipped
  type: int
status_counts:
  description: Responses per status code.
  returned: unless skipped
  type: dict
  sample: {"200": 498, "503": 2}
transport_errors:
  description: Requests that got no response, per error class.
  returned: unless skipped
  type: dict
  sample: {"ConnectionRefusedError": 3}
requests:
  description: Requests sent.
  returned: unless skipped
  type: int
  sample: 500
rps:
  description: Achieved request rate.
  returned: unless skipped
  type: float
  sample: 812.3
elapsed_s:
  description: Wall time of the load, seconds.
  returned: unless skipped
  type: float
assertions:
  description: One entry per assertion with C(checked), C(failed) and the first mismatch.
  returned: unless skipped
  type: list
  elements: dict
gate:
  description: The verdict.
  returned: unless skipped
  type: dict
  sample: {"passed": false, "reason": "p95_ms 240.2 exceeds max_p95_ms 200", "failures": []}
skipped:
  description: True when check mode kept an unsafe method from being sent.
  returned: when skipped
  type: bool
"""

import json
import threading
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.gradual.rollout.plugins.module_utils import gates as G
from ansible_collections.gradual.rollout.plugins.module_utils.http_probe import (
    LOAD_DEFAULTS, latency_figures, load_settings, run_load)

try:
    import jmespath
    HAS_JMESPATH = True
    JMESPATH_ERROR = None
except ImportError:
    jmespath = None
    HAS_JMESPATH = False
    JMESPATH_ERROR = traceback.format_exc()

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class Assertion:
    """One JMESPath check; thread-safe counters (workers evaluate 'all' assertions inline)."""

    def __init__(self, index: int, spec: dict):
        self.spec = spec
        self.expr = jmespath.compile(spec["expr"])
        self.has_equals = "equals" in spec and spec["equals"] is not None
        which = spec.get("request", "all")
        if which in (None, "all"):
            self.request = None
        elif which == "first":
            self.request = 1
        else:
            self.request = _request_number(index, which)
        self.checked = 0
        self.failed = 0
        self.first_failure = None
        self.lock = threading.Lock()

    def check(self, seq: int, status: int, data: bytes) -> None:
        try:
            doc = json.loads(data.decode("utf-8"))
            got = self.expr.search(doc)
            ok = G.json_equal(got, self.spec["equals"]) if self.has_equals else bool(got)
            detail = "got %s" % json.dumps(got)
        except (UnicodeDecodeError, ValueError):
            ok, detail = False, "HTTP %s body is not JSON: %r" % (status, data[:80])
        with self.lock:
            self.checked += 1
            if not ok:
                self.failed += 1
                if self.first_failure is None:
                    self.first_failure = {"request": seq, "detail": detail}

    def report(self) -> dict:
        return {"expr": self.spec["expr"], "equals": self.spec.get("equals"),
                "request": self.request or "all", "checked": self.checked, "failed": self.failed,
                "first_failure": self.first_failure,
                "passed": self.checked > 0 and self.failed == 0}

    def failure(self) -> str | None:
        what = "%s == %s" % (self.spec["expr"], json.dumps(self.spec["equals"])) if self.has_equals \
            else "%s is truthy" % self.spec["expr"]
        where = "request %d" % self.request if self.request else "every response"
        if self.checked == 0:
            return "assertion %s on %s: no such response was received" % (what, where)
        if self.failed:
            return "assertion %s failed on %d of %d response(s) (first: request %s, %s)" % (
                what, self.failed, self.checked, self.first_failure["request"],
                self.first_failure["detail"])
        return None


def _request_number(index: int, which) -> int:
    try:
        number = int(which)
        if isinstance(which, bool) or number < 1 or str(number) != str(which).strip():
            raise ValueError
        return number
    except (TypeError, ValueError):
        raise ValueError("assertions[%d].request=%r must be 'all', 'first' or a request number >= 1"
                         % (index, which)) from None


def load_options(module) -> dict:
    p = module.params
    try:
        opts = load_settings(p["url"], p["requests"], p["duration"], p["concurrency"], p["timeout"])
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    for name in ("max_p50_ms", "max_p95_ms", "max_p99_ms", "max_error_rate", "min_rps"):
        if p[name] is not None and p[name] < 0:
            module.fail_json(msg="%s=%s must be >= 0" % (name, p[name]))
    return opts


def build_assertions(module) -> list:
    specs = module.params["assertions"] or []
    if specs and not HAS_JMESPATH:
        module.fail_json(msg=missing_required_lib("jmespath"), exception=JMESPATH_ERROR)
    out = []
    for index, spec in enumerate(specs):
        try:
            out.append(Assertion(index, spec))
        except jmespath.exceptions.JMESPathError as exc:
            module.fail_json(msg="assertions[%d].expr=%r is not a JMESPath expression: %s"
                             % (index, spec["expr"], exc))
        except ValueError as exc:
            module.fail_json(msg=str(exc))
    return out


def inspector(assertions: list):
    """The callback run_load calls per response: 'all' assertions are checked inline; numbered
    ones keep their response for a check after the load."""
    every = [a for a in assertions if a.request is None]
    numbered = {}
    for a in assertions:
        if a.request is not None:
            numbered.setdefault(a.request, []).append(a)
    if not assertions:
        return None, 0

    def inspect(seq: int, status: int, data: bytes) -> bool:
        for a in every:
            a.check(seq, status, data)
        for a in numbered.get(seq, ()):
            a.check(seq, status, data)
        return False

    return inspect, max(numbered) if numbered else 0


def thresholds(p: dict, out: dict) -> list:
    return [
        G.check_max("p50_ms", out["p50_ms"], "max_p50_ms", p["max_p50_ms"]),
        G.check_max("p95_ms", out["p95_ms"], "max_p95_ms", p["max_p95_ms"]),
        G.check_max("p99_ms", out["p99_ms"], "max_p99_ms", p["max_p99_ms"]),
        G.check_max("error_rate", out["error_rate"], "max_error_rate", p["max_error_rate"], "%"),
        G.check_min("rps", out["rps"], "min_rps", p["min_rps"]),
    ]


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type="str", required=True),
            method=dict(type="str", default="GET", choices=["GET", "HEAD", "POST", "PUT", "PATCH",
                                                            "DELETE", "OPTIONS"]),
            headers=dict(type="dict"), body=dict(type="str"),
            requests=dict(type="int"), duration=dict(type="raw"),
            concurrency=dict(type="int", default=LOAD_DEFAULTS["concurrency"]),
            timeout=dict(type="float", default=LOAD_DEFAULTS["timeout"]),
            validate_certs=dict(type="bool", default=LOAD_DEFAULTS["validate_certs"]), ca_path=dict(type="path"),
            status_codes=dict(type="list", elements="int"),
            assertions=dict(type="list", elements="dict", options=dict(
                expr=dict(type="str", required=True), equals=dict(type="raw"),
                request=dict(type="raw", default="all"))),
            max_p50_ms=dict(type="float"), max_p95_ms=dict(type="float"),
            max_p99_ms=dict(type="float"), max_error_rate=dict(type="float"),
            min_rps=dict(type="float"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    opts = load_options(module)
    assertions = build_assertions(module)
    if module.check_mode and p["method"] not in SAFE_METHODS:
        module.exit_json(changed=False, skipped=True,
                         msg="check mode: %s requests may change the server; not sent" % p["method"])
    inspect, sequential = inspector(assertions)
    raw = run_load(opts["target"], p["method"], p["headers"],
                   p["body"].encode("utf-8") if p["body"] is not None else None,
                   p["timeout"], p["validate_certs"], opts["requests"], opts["duration"],
                   p["concurrency"], sequential, set(p["status_codes"] or ()), inspect, p["ca_path"])
    out = latency_figures(raw["latencies_ms"])
    out.update(requests=raw["requests"], errors=raw["failures"], error_rate=raw["error_rate"],
               status_counts=raw["status_counts"], transport_errors=raw["transport_errors"],
               rps=raw["rps"], elapsed_s=raw["elapsed_s"], url=p["url"], concurrency=p["concurrency"],
               assertions=[a.report() for a in assertions])
    if raw["requests"] and raw["failures"] == raw["requests"] and raw["transport_errors"] \
            and not raw["status_counts"]:
        module.fail_json(msg="http_slo: no request to %s got a response (%s); is the service up "
                         "and the URL right?" % (p["url"], ", ".join(sorted(raw["transport_errors"]))), **out)
    out["gate"] = G.gate(thresholds(p, out) + [a.failure() for a in assertions])
    if not out["gate"]["passed"]:
        module.fail_json(msg="http_slo gate failed: " + out["gate"]["reason"], **out)
    module.exit_json(changed=False, **out)


if __name__ == "__main__":
    main()
