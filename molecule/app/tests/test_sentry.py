"""Error reporting (app_sentry_dsn): unset, the app runs and sends nothing; set to a DSN that points
at a small receiver started here in each container, a failing request reaches it, and the DSN
appears nowhere in Ansible's output. One run of the role's env and service tags for both hosts;
test_unhealthy.py's good converge (without the DSN) puts the hosts back."""
from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest

from molecule_check import run_playbook
from test_app import APP, get

SCENARIO = Path(__file__).resolve().parents[1]
testinfra_hosts = ["docker://gr-app-pm2", "docker://gr-app-systemd"]

PORT = 9411
KEY = "grmoleculesentrykey0123"
DSN = f"http://{KEY}@127.0.0.1:{PORT}/7"
POSTS = "/root/sentry-posts.jsonl"
UNIT = "gr-sentry-receiver"
# A league id beyond PostgreSQL's integer: the query fails, the request answers 500.
FAILING = "/api/standings/99999999999"

RECEIVER = """
import http.server, json, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with open(sys.argv[2], "a") as f:
            f.write(json.dumps({"path": self.path, "body": body.decode("utf-8", "replace")}) + "\\n")
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def fail_requests(host, count: int = 6) -> list:
    """COUNT failing requests (enough to reach both PM2 workers); their status codes."""
    out = host.check_output(
        "python3 -c \"import urllib.request as u, urllib.error as e\n"
        "for _ in range(%d):\n"
        "    try: print(u.urlopen('http://127.0.0.1:3000%s', timeout=5).status)\n"
        "    except e.HTTPError as x: print(x.code)\"" % (count, FAILING))
    return [int(code) for code in out.split()]


def posts(host) -> list:
    f = host.file(POSTS)
    return [json.loads(line) for line in f.content_string.splitlines()] if f.exists else []


@pytest.fixture(scope="module")
def receivers():
    """The receiver on both hosts (a transient systemd unit), stopped at the end."""
    import testinfra  # the hosts of this module, for setup before any test runs
    hosts = [testinfra.get_host(h) for h in testinfra_hosts]
    script = base64.b64encode(RECEIVER.encode()).decode()
    for h in hosts:
        h.run(f"systemctl stop {UNIT}; rm -f {POSTS}")
        h.check_output(f"echo {script} | base64 -d > /root/sentry_receiver.py")
        h.check_output(f"systemd-run --unit={UNIT} --collect python3 /root/sentry_receiver.py {PORT} {POSTS}")
    probe = f"python3 -c \"import socket; socket.create_connection(('127.0.0.1', {PORT}), 1)\""
    for h in hosts:
        deadline = time.monotonic() + 10
        while h.run(probe).rc != 0:
            if time.monotonic() > deadline:
                pytest.fail(f"the Sentry receiver on {h.backend.get_hostname()} did not listen within 10 s")
            time.sleep(0.2)
    yield hosts
    for h in hosts:
        h.run(f"systemctl stop {UNIT}")


@pytest.fixture(scope="module")
def with_dsn(receivers):
    """Failing requests without a DSN and what the receivers got; then one converge with the DSN."""
    before = {h.backend.get_hostname(): {"codes": fail_requests(h), "env": h.file(f"/etc/{APP}/app.env").content_string}
              for h in receivers}
    time.sleep(2)  # what an enabled SDK would have sent by now
    for h in receivers:
        before[h.backend.get_hostname()]["posts"] = posts(h)
    # Only what a DSN touches, the way the role's tags let an operator change one setting: the
    # environment file and the service (a full converge here cost 159 s of the scenario's time).
    run = run_playbook(SCENARIO / "converge.yml", {"app_sentry_dsn": DSN}, "--tags", "app_validate,app_env,app_service",
                       timeout=600)
    return before, run


def test_without_dsn_nothing_is_sent(host, with_dsn):
    before = with_dsn[0][host.backend.get_hostname()]
    assert before["codes"] and set(before["codes"]) == {500}, before["codes"]
    assert "SENTRY_DSN" not in before["env"]
    assert before["posts"] == []


def test_with_dsn_errors_reach_the_receiver(host, with_dsn):
    run = with_dsn[1]
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    assert KEY not in out and DSN not in out
    env = host.file(f"/etc/{APP}/app.env")
    assert env.mode == 0o600 and f'SENTRY_DSN="{DSN}"' in env.content_string
    assert get(host, "/health")["status"] == 200
    assert set(fail_requests(host)) == {500}
    deadline = time.monotonic() + 15
    while not posts(host) and time.monotonic() < deadline:
        time.sleep(0.5)
    received = posts(host)
    assert received, "no request reached the Sentry receiver within 15 s"
    assert received[0]["path"].startswith("/api/7/envelope/"), received[0]["path"]
    assert "out of range" in received[0]["body"] and '"route":"/api/standings/:id"' in received[0]["body"]
