#!/usr/bin/python
# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Gate a canary batch on its latency and errors against the hosts not yet changed."""
from __future__ import annotations

DOCUMENTATION = r"""
module: canary_compare
short_description: Compare the canary hosts' latency and errors with the unchanged hosts'
version_added: 0.1.0
description:
  - Sends O(requests) requests to every URL of O(canary_urls) (the hosts a stage's first batch
    changed) and of O(baseline_urls) (the stage's hosts not changed yet), all at the same time,
    and compares the two sides.
  - Latency uses a one-sided Mann-Whitney U test (scipy C(mannwhitneyu), alternative C(greater)).
    The gate fails only when the canary is slower with p < O(alpha) B(and) its median exceeds the
    baseline's by more than O(max_median_increase_ms) (and, when set, by more than O(max_median_ratio)).
  - Errors use a one-sided Fisher exact test on errors against answers; the gate fails when the
    canary's error proportion is higher with p < O(alpha).
  - Inconclusive, never a pass, when there is no baseline, a side answered nothing, or a side has
    fewer than O(min_samples) answers.
  - In a plan, give the gate C(url) (a path such as C(/health)); M(gradual.rollout.rollout_gates)
    places it on each canary and baseline host's address. A watch has no baseline, so the plan
    refuses this gate among a watch's gates.
options:
  canary_urls:
    description: [The URLs of the changed hosts.]
    type: list
    elements: str
    required: true
  baseline_urls:
    description: [The URLs of the hosts not changed yet; empty makes the gate inconclusive.]
    type: list
    elements: str
    default: []
  requests:
    description: [Requests per host.]
    type: int
    default: 200
  concurrency:
    description: [Concurrent connections per host.]
    type: int
    default: 2
  timeout:
    description: [Seconds per request.]
    type: float
    default: 5
  alpha:
    description: [Significance level of both one-sided tests, between 0 and 1.]
    type: float
    default: 0.05
  max_median_increase_ms:
    description: [Tolerance, in milliseconds, the canary's median may exceed the baseline's by.]
    type: float
    default: 5
  max_median_ratio:
    description: [Optional further tolerance as the canary's median over the baseline's (>= 1).]
    type: float
  min_samples:
    description: [Answers each side needs for a verdict.]
    type: int
    default: 20
  validate_certs:
    description: [Verify TLS certificates of https URLs.]
    type: bool
    default: true
requirements: [scipy]
author:
  - gradual.rollout contributors (@gradual-rollout)
"""

EXAMPLES = r"""
- name: Canary against baseline
  gradual.rollout.canary_compare:
    canary_urls: ["http://app1.example.com:3000/health"]
    baseline_urls: ["http://app2.example.com:3000/health", "http://app3.example.com:3000/health"]
    requests: 200
    max_median_increase_ms: 5
"""

RETURN = r"""
gate:
  description: The verdict.
  returned: always
  type: dict
  contains:
    passed:
      description: The comparison passed.
      type: bool
    inconclusive:
      description: No verdict could be reached (no baseline, a side answered nothing, too few answers).
      type: bool
    reason:
      description: Why.
      type: str
figures:
  description:
    - C(canary_median_ms), C(baseline_median_ms), C(median_diff_ms), C(median_ratio), C(u),
      C(effect_size) (U over n1*n2, the probability a canary request is slower), C(p),
      C(canary_n), C(baseline_n), C(canary_errors), C(baseline_errors), the error rates, C(error_p)
      and C(hosts) (per URL p50, requests and errors).
  returned: always
  type: dict
"""

import threading
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.gradual.rollout.plugins.module_utils.http_probe import (
    latency_figures, load_settings, run_load)

try:
    from ansible_collections.gradual.rollout.plugins.module_utils.canary_compare import check_settings, compare
    import scipy  # noqa: F401  pylint: disable=unused-import
    HAS_SCIPY, SCIPY_ERROR = True, None
except ImportError:
    HAS_SCIPY, SCIPY_ERROR = False, traceback.format_exc()


def measure(urls: list, params: dict) -> dict:
    """URL -> raw run_load result, every URL loaded at once (one thread each)."""
    out = {}

    def one(url):
        try:
            opts = load_settings(url, params["requests"], None, params["concurrency"], params["timeout"])
            out[url] = run_load(opts["target"], timeout=opts["timeout"], validate_certs=params["validate_certs"],
                                requests=opts["requests"], concurrency=opts["concurrency"])
        except (ValueError, OSError) as exc:
            out[url] = {"error": str(exc), "latencies_ms": [], "failures": 0}

    threads = [threading.Thread(target=one, args=(url,), daemon=True) for url in urls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return out


def main() -> None:
    module = AnsibleModule(argument_spec=dict(
        canary_urls=dict(type="list", elements="str", required=True),
        baseline_urls=dict(type="list", elements="str", default=[]),
        requests=dict(type="int", default=200),
        concurrency=dict(type="int", default=2),
        timeout=dict(type="float", default=5),
        alpha=dict(type="float", default=0.05),
        max_median_increase_ms=dict(type="float", default=5),
        max_median_ratio=dict(type="float"),
        min_samples=dict(type="int", default=20),
        validate_certs=dict(type="bool", default=True),
    ), supports_check_mode=True)
    if not HAS_SCIPY:
        module.fail_json(msg=missing_required_lib("scipy"), exception=SCIPY_ERROR)
    p = module.params
    try:
        check_settings(p["alpha"], p["max_median_increase_ms"], p["max_median_ratio"], p["min_samples"])
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    if not p["canary_urls"]:
        module.fail_json(msg="canary_urls is empty: no changed host to compare")
    raw = measure(list(p["canary_urls"]) + list(p["baseline_urls"]), p)
    hosts = {url: dict(latency_figures(r["latencies_ms"]), requests=len(r["latencies_ms"]),
                       errors=r.get("failures", 0), **({"error": r["error"]} if r.get("error") else {}))
             for url, r in raw.items()}

    def side(urls):
        lat, errs = [], 0
        for url in urls:
            r = raw[url]
            # a URL whose load could not run counts as failures, not as missing data
            lat.extend(r["latencies_ms"])
            errs += r.get("failures", 0) + (p["requests"] if r.get("error") else 0)
        return lat, errs

    c_lat, c_err = side(p["canary_urls"])
    b_lat, b_err = side(p["baseline_urls"])
    result = compare(c_lat, b_lat, c_err, b_err, alpha=p["alpha"], max_median_increase_ms=p["max_median_increase_ms"],
                     max_median_ratio=p["max_median_ratio"], min_samples=p["min_samples"])
    figures = dict(result["figures"], hosts=hosts, requests_per_host=p["requests"])
    gate = {key: result[key] for key in ("passed", "inconclusive", "reason")}
    if not result["passed"]:
        module.fail_json(msg=result["reason"], gate=gate, figures=figures)
    module.exit_json(changed=False, gate=gate, figures=figures)


if __name__ == "__main__":
    main()
