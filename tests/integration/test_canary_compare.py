"""canary_compare against real HTTP servers on 127.0.0.1, each answering after its own delay: a
canary 3x slower than its baseline (while far under any absolute latency threshold) fails, equal
latency passes, a baseline that is not there is inconclusive, a failing canary fails on errors."""
from __future__ import annotations

import time

import pytest

from ansible_run import ansible_adhoc, run_module
from json_http import JsonHandler, serve


def server(delay_s: float, status: int = 200):
    handler = type("Delayed", (JsonHandler,), {})

    def do_get(self):  # noqa: N802
        time.sleep(delay_s)
        self.reply(status, {"ok": status < 400})

    handler.do_GET = do_get
    return serve(handler)


@pytest.fixture
def servers():
    started = []

    def start(delay_s, status=200):
        srv = server(delay_s, status)
        started.append(srv)
        return "http://127.0.0.1:%d/health" % srv.server_address[1]

    yield start
    for srv in started:
        srv.shutdown()
        srv.server_close()


def compare(canary, baseline, **extra):
    args = dict(canary_urls=canary, baseline_urls=baseline, requests=60, concurrency=2, timeout=5,
                max_median_increase_ms=5)
    args.update(extra)
    return run_module("canary_compare", args, timeout=120)


def test_a_canary_three_times_slower_fails_though_under_an_absolute_threshold(servers):
    out = compare([servers(0.030)], [servers(0.010), servers(0.010)])
    fig = out["figures"]
    assert out.get("failed") and not out["gate"]["inconclusive"], out
    assert "canary slower" in out["msg"]
    assert fig["canary_median_ms"] < 100  # an http_slo p50 threshold of 100 ms would have passed it
    assert 2.0 < fig["median_ratio"] < 4.0 and fig["p"] < 0.001 and fig["effect_size"] > 0.9
    assert fig["canary_n"] == 60 and fig["baseline_n"] == 120
    assert set(fig["hosts"]) and fig["requests_per_host"] == 60


def test_equal_latency_passes(servers):
    out = compare([servers(0.010)], [servers(0.010), servers(0.010)])
    assert not out.get("failed"), out
    assert out["gate"]["passed"] and abs(out["figures"]["median_diff_ms"]) < 5


def test_no_baseline_is_inconclusive(servers):
    out = compare([servers(0.010)], [])
    assert out.get("failed") and out["gate"]["inconclusive"] and "no baseline" in out["msg"]


def test_a_canary_answering_errors_fails(servers):
    out = compare([servers(0.005, status=500)], [servers(0.005)])
    assert out.get("failed") and not out["gate"]["inconclusive"] and "canary errors 60/60" in out["msg"]


def test_bad_settings_fail_before_any_request(servers):
    out = compare([servers(0.010)], [servers(0.010)], alpha=2)
    assert out.get("failed") and "alpha=2.0 must be between 0 and 1" in out["msg"]
    assert "figures" not in out


def test_rollout_gates_places_the_url_on_the_changed_and_unchanged_hosts(servers):
    url = servers(0.005)
    port = int(url.split(":")[2].split("/")[0])
    gate = {"name": "canary", "type": "canary_compare", "args": {"url": "/health", "requests": 30, "concurrency": 1}}
    # two names of one loopback server: the wiring, not the statistics, is under test here
    res = ansible_adhoc("rollout_gates", {"stage": "s1", "gates": [gate], "app_port": port,
                                          "changed_hosts": ["localhost"], "unchanged_hosts": ["127.0.0.1"]})
    record = res["gates"]["canary"]
    assert record["gate_type"] == "canary_compare" and record["passed"] is True, record
    expected = ["http://127.0.0.1:%d/health" % port, "http://localhost:%d/health" % port]
    assert sorted(record["figures"]["hosts"]) == expected
    # a watch passes no changed host: inconclusive, the watch holds the plan
    watch = ansible_adhoc("rollout_gates", {"stage": "s1", "gates": [gate], "app_port": port})
    assert watch["gates"]["canary"]["inconclusive"] is True and watch["verdict"] == "inconclusive"


def test_rollout_gates_leaves_the_canary_out_after_the_last_of_several_batches_only(servers):
    url = servers(0.005)
    port = int(url.split(":")[2].split("/")[0])
    gate = {"name": "canary", "type": "canary_compare", "args": {"url": "/health", "requests": 30, "concurrency": 1}}
    slo = {"name": "health", "type": "http_slo", "args": {"url": "/health", "requests": 5, "max_error_rate": 0}}
    last = {"stage": "s1", "gates": [slo, gate], "app_port": port, "target": "localhost",
            "changed_hosts": ["localhost", "127.0.0.1"], "unchanged_hosts": []}
    # the earlier batches judged the canary: after the last, only the other gates are measured
    several = ansible_adhoc("rollout_gates", dict(last, gated_batches=2))
    assert several.get("failed") is not True and several["passed"] is True, several.get("msg")
    assert list(several["gates"]) == ["health"]
    # one batch changing every host: the canary was never judged, and the record says so
    single = ansible_adhoc("rollout_gates", dict(last, gated_batches=1))
    assert single.get("failed") is True and single["gates"]["canary"]["inconclusive"] is True
    assert single["gates"]["health"]["passed"] is True
