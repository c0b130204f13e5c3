"""prometheus_check against a real Prometheus (Debian's binary, started on loopback behind basic
auth) that scrapes, every second, a /metrics page this test serves and changes: thresholds per
series, max_series, no series and NaN (inconclusive), a query Prometheus refuses and a range vector
(failed), range queries (every sample judged: a peak inside the range fails, an empty range is
inconclusive), wrong credentials and no server (inconclusive, the password never printed), and the
gate measured by rollout_gates as a plan's gate type."""
from __future__ import annotations

import shutil
import threading
import time
import urllib.parse
import urllib.request

import pytest

import services
from ansible_run import ansible_adhoc, run_module
from json_http import JsonHandler, serve

# the /metrics page: what the test sets is what Prometheus scrapes next
PAGE = {"latency": {"/fast": 0.2, "/slow": 0.9}, "errors": 0, "requests": 0}
LOCK = threading.Lock()


class Metrics(JsonHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        with LOCK:
            lines = ["# TYPE gr_test_latency_seconds gauge"]
            lines += ['gr_test_latency_seconds{route="%s"} %s' % (r, v) for r, v in sorted(PAGE["latency"].items())]
            lines += ["# TYPE gr_test_errors gauge", "gr_test_errors %s" % PAGE["errors"],
                      "# TYPE gr_test_requests gauge", "gr_test_requests %s" % PAGE["requests"]]
        body = ("\n".join(lines) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def prom():
    target = serve(Metrics)
    base = services.tempbase("prom")
    server = services.Prometheus(base, "127.0.0.1:%d" % target.server_address[1]).start()
    try:
        wait_value(server, 'gr_test_latency_seconds{route="/slow"}', 0.9)
        yield server
    finally:
        server.stop()
        target.shutdown()
        target.server_close()
        shutil.rmtree(base, ignore_errors=True)


def ask(server, query: str) -> dict:
    """The API's answer, read directly (the test's own view, not the module's)."""
    import base64
    import json
    req = urllib.request.Request(server.url + "/api/v1/query?" + urllib.parse.urlencode({"query": query}))
    req.add_header("Authorization", "Basic " + base64.b64encode(
        ("%s:%s" % (server.user, server.password)).encode()).decode())
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.load(resp)


def wait_value(server, query: str, value: float, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = ask(server, query)["data"]["result"]
            if result and float(result[0]["value"][1]) == value:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("Prometheus did not see %s = %s within %s s" % (query, value, timeout))


def args(server, **given):
    out = {"url": server.url, "url_username": server.user, "url_password": server.password}
    out.update(given)
    return out


def test_every_series_within_the_threshold_passes_in_check_mode(prom):
    res = run_module("prometheus_check", args(prom, query="gr_test_latency_seconds", max_value=3), check=True)
    assert res["rc"] == 0 and res["gate"]["passed"] is True, res.get("msg")
    assert res["series_count"] == 2 and res["max"] == 0.9 and res["status"] == 200
    assert [s["labels"]["route"] for s in res["series"]] == ["/fast", "/slow"]
    assert res["series"][0]["labels"]["job"] == "target"


def test_a_series_over_the_threshold_fails_naming_it(prom):
    with LOCK:
        PAGE["latency"]["/slow"] = 3.4
    try:
        wait_value(prom, 'gr_test_latency_seconds{route="/slow"}', 3.4)
        res = run_module("prometheus_check", args(prom, query="gr_test_latency_seconds", max_value=3))
    finally:
        with LOCK:
            PAGE["latency"]["/slow"] = 0.9
        wait_value(prom, 'gr_test_latency_seconds{route="/slow"}', 0.9)
    assert res.get("failed") is True and res["inconclusive"] is False
    assert 'route="/slow"' in res["msg"] and "3.4 exceeds max_value 3" in res["msg"]
    assert 'route="/fast"' not in res["msg"]


def test_max_series_zero_passes_on_an_empty_answer_and_fails_on_any_series(prom):
    quiet = run_module("prometheus_check", args(prom, query="up == 0", min_series=0, max_series=0))
    assert quiet["rc"] == 0 and quiet["gate"]["passed"] is True and quiet["series_count"] == 0
    loud = run_module("prometheus_check", args(prom, query='up{job="target"} == 1', min_series=0, max_series=0))
    assert loud.get("failed") is True and "1 series, more than max_series 0" in loud["msg"]
    assert 'up{instance="127.0.0.1:' in loud["msg"]


def test_no_series_and_nan_are_inconclusive_never_a_pass(prom):
    none = run_module("prometheus_check", args(prom, query="gr_test_not_scraped", max_value=1))
    assert none.get("failed") is True and none["inconclusive"] is True
    assert "returned 0 series, min_series is 1" in none["msg"]
    nan = run_module("prometheus_check", args(prom, query="gr_test_errors / gr_test_requests", max_value=0.05,
                                              fail_on_inconclusive=False))
    assert nan["rc"] == 0 and nan["inconclusive"] is True and nan["gate"]["passed"] is False
    assert nan["gate"]["reason"].startswith("inconclusive: NaN")


@pytest.mark.parametrize("query, words", [
    ("sum(gr_test_errors", "Prometheus refused the query 'sum(gr_test_errors' (bad_data): "),
    ("gr_test_latency_seconds[1m]", "range vector"),
])
def test_a_query_that_cannot_be_judged_fails_with_the_reason(prom, query, words):
    res = run_module("prometheus_check", args(prom, query=query, max_value=1))
    assert res.get("failed") is True and res["inconclusive"] is False
    assert words in res["msg"]


def test_a_range_query_judges_every_series_over_the_range(prom):
    # another test may have raised /slow to 3.4 within the range: max_value 5 passes either way
    res = run_module("prometheus_check", args(prom, query="gr_test_latency_seconds", range="20s", step="1s",
                                              max_value=5, min_value=0.1))
    assert res["rc"] == 0 and res["gate"]["passed"] is True, res.get("msg")
    assert res["url"].endswith("/api/v1/query_range") and res["step"] == 1
    assert res["end"] - res["start"] == pytest.approx(20, abs=0.01)
    assert [s["labels"]["route"] for s in res["series"]] == ["/fast", "/slow"]
    slow = res["series"][1]
    assert slow["high"] in (0.9, 3.4) and slow["value"] == 0.9 and slow["samples"] > 1
    assert res["max"] == slow["high"] and res["min"] == 0.2


def test_a_peak_inside_the_range_fails_though_the_last_value_is_back_under_the_threshold(prom):
    with LOCK:
        PAGE["latency"]["/slow"] = 3.4
    try:
        wait_value(prom, 'gr_test_latency_seconds{route="/slow"}', 3.4)
        time.sleep(2)
    finally:
        with LOCK:
            PAGE["latency"]["/slow"] = 0.9
        wait_value(prom, 'gr_test_latency_seconds{route="/slow"}', 0.9)
    # the instant query sees only the value now, which passes
    now = run_module("prometheus_check", args(prom, query="gr_test_latency_seconds", max_value=3))
    assert now["rc"] == 0 and now["gate"]["passed"] is True, now.get("msg")
    res = run_module("prometheus_check", args(prom, query="gr_test_latency_seconds", range="1m", step="1s",
                                              max_value=3))
    assert res.get("failed") is True and res["inconclusive"] is False
    assert 'peak of gr_test_latency_seconds{instance="127.0.0.1:' in res["msg"]
    assert 'route="/slow"} in the range (at ' in res["msg"] and ") 3.4 exceeds max_value 3" in res["msg"]
    assert 'route="/fast"' not in res["msg"]
    slow = res["series"][1]
    assert slow["labels"]["route"] == "/slow" and slow["high"] == 3.4 and slow["value"] == 0.9


def test_a_range_without_data_is_inconclusive(prom):
    res = run_module("prometheus_check", args(prom, query="gr_test_not_scraped", range="5m", max_value=1))
    assert res.get("failed") is True and res["inconclusive"] is True and res["series_count"] == 0
    assert "returned 0 series, min_series is 1" in res["msg"]


@pytest.mark.parametrize("query", ["sum(gr_test_errors", "gr_test_latency_seconds[1m]"])
def test_a_range_query_prometheus_refuses_fails_naming_the_query_and_its_message(prom, query):
    res = run_module("prometheus_check", args(prom, query=query, range="5m", max_value=1))
    assert res.get("failed") is True and res["inconclusive"] is False and res["status"] == 400
    assert ("Prometheus refused the query %r (bad_data): " % query) in res["msg"]
    # Prometheus' own words follow
    assert len(res["msg"].split("(bad_data): ", 1)[1]) > 10, res["msg"]


def test_refused_credentials_and_no_server_are_inconclusive_and_the_password_is_not_printed(prom):
    wrong = ansible_adhoc("prometheus_check", args(prom, query="up", min_value=1, url_password="not-the-password"))
    assert wrong.get("failed") is True and wrong["inconclusive"] is True and wrong["status"] == 401
    assert "credentials" in wrong["msg"] and "not-the-password" not in str(wrong)
    gone = run_module("prometheus_check", args(prom, query="up", min_value=1, timeout=2,
                                               url="http://127.0.0.1:%d" % services.free_port()))
    assert gone.get("failed") is True and gone["inconclusive"] is True and "no answer from Prometheus" in gone["msg"]


def test_rollout_gates_measures_a_prometheus_check_gate_of_a_plan(prom):
    gate = {"name": "targets_up", "type": "prometheus_check",
            "args": args(prom, query='up{job="target"}', min_value=1)}
    res = ansible_adhoc("rollout_gates", {"stage": "s1", "gates": [gate]})
    assert res.get("failed") is not True and res["passed"] is True, res.get("msg")
    record = res["gates"]["targets_up"]
    assert record["gate_type"] == "prometheus_check" and record["passed"] is True
    assert record["figures"]["value"] == 1.0 and prom.password not in str(res)
