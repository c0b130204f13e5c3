"""http_probe's pure parts: URL parsing, merging per-thread results, latency figures."""
from __future__ import annotations

import pytest

from ansible_collections.gradual.rollout.plugins.module_utils import http_probe as H


def test_target_parsing():
    t = H.Target("http://127.0.0.1:8080/health/pool?x=1")
    assert (t.scheme, t.host, t.port, t.path, t.host_header) == ("http", "127.0.0.1", 8080, "/health/pool?x=1", "127.0.0.1:8080")
    assert H.Target("https://app.internal").port == 443 and H.Target("https://app.internal").path == "/"
    assert H.Target("http://u:p@h/").host_header == "h"


@pytest.mark.parametrize("url", ["ftp://h/", "localhost:3000/health", "http:///x", "http://h:99999/"])
def test_target_rejects(url):
    with pytest.raises(ValueError, match="url="):
        H.Target(url)


def test_merge_and_figures():
    a, b = H._Worker(), H._Worker()
    a.latencies, a.statuses, a.failures = [1.0, 2.0, 3.0], {200: 3}, 0
    b.latencies, b.statuses, b.errors, b.failures = [4.0, 100.0], {503: 1}, {"ConnectionResetError": 1}, 2
    out = H._merge([a, b], 0.5)
    assert out["requests"] == 5 and out["failures"] == 2 and out["error_rate"] == 40.0
    assert out["status_counts"] == {"200": 3, "503": 1} and out["rps"] == 10.0
    fig = H.latency_figures(out["latencies_ms"])
    assert fig["p50_ms"] == 3.0 and fig["p95_ms"] == 100.0 and fig["max_ms"] == 100.0 and fig["mean_ms"] == 22.0
    assert H.latency_figures([])["p95_ms"] is None


def test_classify():
    assert H._classify(302, set()) and not H._classify(404, set())
    assert H._classify(404, {404}) and not H._classify(200, {404})


# ---- a load's settings (http_slo and a gate's `load:` share them) ---------------------------
def test_load_settings_defaults_to_a_bounded_request_count():
    opts = H.load_settings("http://127.0.0.1:9/health")
    assert opts["requests"] == H.DEFAULT_REQUESTS and opts["duration"] is None
    assert opts["concurrency"] == H.LOAD_DEFAULTS["concurrency"] and opts["timeout"] == H.LOAD_DEFAULTS["timeout"]
    assert H.load_settings("http://127.0.0.1:9/", duration="5s")["requests"] is None


@pytest.mark.parametrize("kwargs, message", [
    (dict(concurrency=0), "concurrency=0 must be between 1 and 256"),
    (dict(concurrency=257), "concurrency=257 must be between 1 and 256"),
    (dict(requests=0), "requests=0 must be between 1 and 1000000"),
    (dict(timeout=0), "timeout=0 must be > 0 seconds"),
    (dict(duration="soon"), "soon"),
    (dict(duration=0), "duration=0 must be > 0"),
])
def test_load_settings_refuses_values_out_of_bounds_naming_them(kwargs, message):
    with pytest.raises(ValueError, match=message):
        H.load_settings("http://127.0.0.1:9/health", **kwargs)
