"""http_slo against a real HTTP server on 127.0.0.1 with injected latency and errors: the right
threshold trips, the figures are exact where the server makes them so, assertions see the body."""
from __future__ import annotations

import http.server
import json
import ssl
import subprocess
import threading
import time

import pytest

from ansible_run import ansible_adhoc, run_module

SLOW_S = 0.15


class Handler(http.server.BaseHTTPRequestHandler):
    """/fast: 200 JSON. /slow: every 10th request sleeps SLOW_S. /errors: every 5th request is a 500.
    /cache: fromCache false on the first request, true after. Counters per path, under a lock."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    counts: dict = {}
    lock = threading.Lock()

    def do_GET(self):  # noqa: N802
        with self.lock:
            n = self.counts[self.path] = self.counts.get(self.path, 0) + 1
        status, doc = 200, {"ok": True, "n": n}
        if self.path == "/slow" and n % 10 == 0:
            time.sleep(SLOW_S)
        elif self.path == "/errors" and n % 5 == 0:
            status, doc = 500, {"ok": False}
        elif self.path == "/cache":
            doc["fromCache"] = n > 1
        elif self.path == "/text":
            self._send(200, b"not json", "text/plain")
            return
        elif self.path == "/hang" and n % 10 == 0:
            time.sleep(1.0)
        elif self.path == "/close":
            self.close_connection = True  # Connection: close on every response
        self._send(status, json.dumps(doc).encode(), "application/json")

    do_HEAD = do_GET  # noqa: N815

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))  # keep the connection in step
        with self.lock:
            self.counts["POST"] = self.counts.get("POST", 0) + 1
        self._send(201, b"{}", "application/json")

    def _send(self, status, body, ctype):
        self.send_response(status)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client that timed out and left makes the late write fail: expected here


def serve(context=None):
    srv = Server(("127.0.0.1", 0), Handler)
    if context is not None:
        srv.socket = context.wrap_socket(srv.socket, server_side=True)
    Handler.counts = {}
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@pytest.fixture
def server():
    srv = serve()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    folder = tmp_path_factory.mktemp("https")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    return cert, key


@pytest.fixture
def https_server(cert):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*cert)
    srv = serve(context)
    yield f"https://127.0.0.1:{srv.server_address[1]}", str(cert[0])
    srv.shutdown()
    srv.server_close()


def test_fast_endpoint_passes_with_exact_counts(server):
    res = run_module("http_slo", {"url": server + "/fast", "requests": 300, "concurrency": 6,
                                  "max_error_rate": 0, "max_p99_ms": 5000})
    assert res["rc"] == 0 and res["gate"]["passed"], res.get("msg")
    assert res["requests"] == 300 and res["status_counts"] == {"200": 300} and res["error_rate"] == 0
    assert Handler.counts["/fast"] == 300
    assert res["p50_ms"] <= res["p95_ms"] <= res["p99_ms"] <= res["max_ms"]


def test_injected_latency_trips_p99_not_error_rate(server):
    res = run_module("http_slo", {"url": server + "/slow", "requests": 200, "concurrency": 4,
                                  "max_p99_ms": 100, "max_error_rate": 0})
    assert res.get("failed") is True
    assert res["p99_ms"] >= SLOW_S * 1000  # 10% of requests sleep 150 ms: p99 is one of them
    assert res["error_rate"] == 0 and res["requests"] == 200
    # the gate prints a whole number without ".0": 151.0 ms reads "151"
    p99 = res["p99_ms"]
    shown = int(p99) if float(p99).is_integer() else p99
    assert res["gate"]["failures"] == [f"p99_ms {shown} exceeds max_p99_ms 100"]
    assert "http_slo gate failed: p99_ms" in res["msg"]


def test_injected_errors_trip_error_rate_not_latency(server):
    res = run_module("http_slo", {"url": server + "/errors", "requests": 100, "concurrency": 5,
                                  "max_error_rate": 5, "max_p95_ms": 10000})
    assert res.get("failed") is True
    assert res["status_counts"] == {"200": 80, "500": 20} and res["errors"] == 20
    assert res["error_rate"] == 20.0
    assert res["gate"]["failures"] == ["error_rate 20% exceeds max_error_rate 5%"]


def test_status_codes_decide_what_an_error_is(server):
    res = run_module("http_slo", {"url": server + "/errors", "requests": 50, "concurrency": 2,
                                  "status_codes": [200, 500], "max_error_rate": 0})
    assert res["rc"] == 0 and res["error_rate"] == 0


def test_assertions_on_numbered_requests(server):
    ok = run_module("http_slo", {"url": server + "/cache", "requests": 50, "concurrency": 5,
                                 "assertions": [{"expr": "fromCache", "equals": False, "request": 1},
                                                {"expr": "fromCache", "equals": True, "request": 2},
                                                {"expr": "ok"}]})
    assert ok["rc"] == 0 and ok["gate"]["passed"], ok.get("msg")
    assert [a["checked"] for a in ok["assertions"]] == [1, 1, 50]
    Handler.counts = {}
    bad = run_module("http_slo", {"url": server + "/cache", "requests": 10, "concurrency": 2,
                                  "assertions": [{"expr": "fromCache", "equals": True, "request": "first"}]})
    assert bad.get("failed") is True
    assert "assertion fromCache == true failed on 1 of 1 response(s) (first: request 1, got false)" in bad["msg"]


def test_assertion_on_every_response_and_non_json(server):
    res = run_module("http_slo", {"url": server + "/errors", "requests": 20, "concurrency": 2,
                                  "assertions": [{"expr": "ok", "equals": True}]})
    assert res.get("failed") and res["assertions"][0]["failed"] == 4 and res["assertions"][0]["checked"] == 20
    res = run_module("http_slo", {"url": server + "/text", "requests": 3, "concurrency": 1,
                                  "assertions": [{"expr": "ok"}]})
    assert res.get("failed") and "body is not JSON" in res["msg"]
    res = run_module("http_slo", {"url": server + "/fast", "requests": 1,
                                  "assertions": [{"expr": "ok", "request": 5}]})
    assert res.get("failed") and "request 5: no such response was received" in res["msg"]


def test_duration_mode_and_check_mode(server):
    res = run_module("http_slo", {"url": server + "/fast", "duration": "1s", "concurrency": 4}, check=True)
    assert res["rc"] == 0 and res["requests"] == Handler.counts["/fast"] > 0
    res = run_module("http_slo", {"url": server + "/fast", "method": "POST", "body": "{}"}, check=True)
    assert res["rc"] == 0 and res["skipped"] is True and "POST" not in Handler.counts
    res = run_module("http_slo", {"url": server + "/fast", "method": "POST", "body": "{}", "requests": 3,
                                  "status_codes": [201]})
    assert res["rc"] == 0 and Handler.counts["POST"] == 3 and res["status_counts"] == {"201": 3}


def test_full_stack_failure_keeps_figures(server):
    res = ansible_adhoc("http_slo", {"url": server + "/errors", "requests": 10, "concurrency": 1,
                                     "max_error_rate": 1})
    assert res["rc"] != 0 and res.get("failed") is True
    assert res["error_rate"] == 20.0 and res["status_counts"] == {"200": 8, "500": 2}


@pytest.mark.parametrize("args, message", [
    ({"url": "localhost:3000/health"}, "is not an http:// or https:// URL"),
    ({"url": "http://127.0.0.1:9/", "concurrency": 0}, "concurrency=0 must be between 1 and 256"),
    ({"url": "http://127.0.0.1:9/", "requests": 0}, "requests=0 must be between 1"),
    ({"url": "http://127.0.0.1:9/", "duration": "forever"}, "duration='forever' is not a duration"),
    ({"url": "http://127.0.0.1:9/", "max_p95_ms": -1}, "max_p95_ms=-1.0 must be >= 0"),
    ({"url": "http://127.0.0.1:9/", "assertions": [{"expr": "a[["}]}, "is not a JMESPath expression"),
    ({"url": "http://127.0.0.1:9/", "assertions": [{"expr": "a", "request": "second"}]},
     "assertions[0].request='second' must be 'all', 'first' or a request number"),
    ({"url": "http://127.0.0.1:9/", "method": "FETCH"}, "value of method must be one of"),
    ({"url": "http://127.0.0.1:9/", "requests": 5}, "no request to http://127.0.0.1:9/ got a response"),
])
def test_bad_input_fails_clearly(args, message):
    res = run_module("http_slo", args)
    assert res.get("failed") is True and message in res["msg"], res.get("msg")


def test_https_with_ca_and_without_verification(https_server):
    url, ca = https_server
    res = run_module("http_slo", {"url": url + "/fast", "requests": 100, "concurrency": 4, "ca_path": ca,
                                  "max_error_rate": 0})
    assert res["rc"] == 0 and res["status_counts"] == {"200": 100}, res.get("msg")
    res = run_module("http_slo", {"url": url + "/fast", "requests": 5, "concurrency": 1})
    assert res.get("failed") and "SSLCertVerificationError" in res["msg"]
    res = run_module("http_slo", {"url": url + "/fast", "requests": 20, "validate_certs": False,
                                  "max_error_rate": 0})
    assert res["rc"] == 0 and res["requests"] == 20


def test_server_closing_connections_is_not_an_error(server):
    res = run_module("http_slo", {"url": server + "/close", "requests": 60, "concurrency": 3,
                                  "max_error_rate": 0})
    assert res["rc"] == 0 and res["status_counts"] == {"200": 60}, res.get("msg")


def test_timeouts_count_as_errors(server):
    res = run_module("http_slo", {"url": server + "/hang", "requests": 100, "concurrency": 4,
                                  "timeout": 0.3, "max_error_rate": 1})
    assert res.get("failed") is True
    assert res["transport_errors"].get("TimeoutError", 0) >= 10  # every 10th request hangs 1 s
    assert res["error_rate"] >= 10 and "error_rate" in res["msg"]
