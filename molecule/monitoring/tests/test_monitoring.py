"""The monitoring tier on real services: every target up, web endpoints behind basic auth on the
private address, exporters reachable from the monitoring host only, credentials out of reach, an
alert round trip Redis stopped -> webhook -> Redis back -> resolved (latency printed), a silence
through amtool, and a rule file Prometheus refuses kept out while the previous rules keep running."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import testinfra
from molecule_check import run_playbook

SCENARIO = Path(__file__).resolve().parents[1]
MON = testinfra.get_host("docker://gr-mon-mon1")
CACHE = testinfra.get_host("docker://gr-mon-cache1")
testinfra_hosts = ["docker://gr-mon-mon1"]

ADMIN = ("molecule-admin", "molecule-mon-secret")
VIEWER = ("molecule-viewer", "molecule-viewer-secret")
SECRETS = ("molecule-mon-secret", "molecule-viewer-secret", "molecule-redis-exporter")
# vars/monitoring.yml and the rule's for:
SCRAPE = EVAL = 2.0
GROUP_WAIT = 1.0
GROUP_INTERVAL = 2.0
REDIS_DOWN_FOR = 60.0

# A small HTTP client run on a host (the image has python3, no curl): prints status and body.
CLIENT = r"""
import base64, sys, urllib.request, urllib.error
url, user, password = sys.argv[1], sys.argv[2], sys.argv[3]
data = open(sys.argv[4], "rb").read() if len(sys.argv) > 4 else None
req = urllib.request.Request(url, data=data)
if data:
    req.add_header("Content-Type", "application/json")
if user:
    req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
try:
    with urllib.request.urlopen(req, timeout=5) as r:
        print(r.status); print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code)
"""

# The webhook receiver: every POST body, with the time it arrived, one JSON line in /tmp/hook.jsonl.
RECEIVER = r"""
import http.server, json, time
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open("/tmp/hook.jsonl", "a") as f:
            f.write(json.dumps({"at": time.time(), "path": self.path, "body": json.loads(body)}) + "\n")
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", 18080), H).serve_forever()
"""


def say(capsys, line: str) -> None:
    """A figure for the scenario's log (pytest captures plain prints)."""
    with capsys.disabled():
        print("\n" + line)


def ip(host) -> str:
    return host.check_output("hostname -i").split()[0]


def http(host, url: str, auth: tuple[str, str] | None = None, post: str = "") -> tuple[int, str]:
    """GET URL, or POST the JSON file POST (a path on HOST)."""
    host.check_output(f"cat > /tmp/gr_client.py <<'PY'\n{CLIENT}\nPY")
    user, password = auth or ("", "")
    out = host.check_output(f"python3 /tmp/gr_client.py '{url}' '{user}' '{password}' {post}")
    status, body = (out.split("\n", 1) + [""])[:2]
    return int(status), body


def prom(path: str) -> dict:
    status, body = http(MON, f"http://{ip(MON)}:9090{path}", ADMIN)
    assert status == 200, body
    return json.loads(body)["data"]


def wait_for(what: str, check, timeout: float, step: float = 0.5):
    end = time.time() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.time() < end, f"{what}: not within {timeout:.0f} s"
        time.sleep(step)


def targets() -> list[dict]:
    return prom("/api/v1/targets")["activeTargets"]


def test_every_target_is_up():
    expected = {("prometheus", "gr-mon-mon1:9090"), ("alertmanager", "gr-mon-mon1:9093"),
                ("node", "gr-mon-mon1:9100"), ("node", "gr-mon-cache1:9100"), ("redis", "gr-mon-cache1:9121"),
                ("blackbox_http_2xx", "http://gr-mon-cache1:9100/")}
    found = {(t["labels"]["job"], t["labels"]["instance"]) for t in targets()}
    assert found == expected
    wait_for("every target up", lambda: all(t["health"] == "up" for t in targets()), 30)
    assert prom("/api/v1/query?query=probe_success")["result"][0]["value"][1] == "1"
    assert prom("/api/v1/query?query=redis_up")["result"][0]["value"][1] == "1"


def test_rules_of_the_role_are_loaded():
    groups = {g["name"]: g for g in prom("/api/v1/rules")["groups"]}
    assert {"gradual-app", "gradual-backup", "gradual-cache", "gradual-database", "gradual-host",
            "gradual-meta", "gradual-probes"} <= set(groups)
    alerts = {r["name"] for g in groups.values() for r in g["rules"] if r["type"] == "alerting"}
    assert "RedisDown" in alerts and len(alerts) >= 13


@pytest.mark.parametrize("port", [9090, 9093])
def test_web_endpoints_need_a_login(port):
    url = f"http://{ip(MON)}:{port}" + ("/api/v1/status/buildinfo" if port == 9090 else "/api/v2/status")
    assert http(MON, url)[0] == 401
    assert http(MON, url, (ADMIN[0], "wrong"))[0] == 401
    assert http(MON, url, VIEWER)[0] == 200
    # bound to the private address only
    assert MON.socket(f"tcp://{ip(MON)}:{port}").is_listening
    assert not MON.socket(f"tcp://0.0.0.0:{port}").is_listening
    assert MON.socket("tcp://127.0.0.1:9115").is_listening  # blackbox: loopback only


def test_credentials_stay_out_of_reach():
    for path in ("/etc/prometheus/prometheus.yml", "/etc/prometheus/web.yml", "/etc/prometheus/alertmanager.yml"):
        f = MON.file(path)
        assert (f.user, f.group, f.mode) == ("root", "prometheus", 0o640), path
    web = MON.file("/etc/prometheus/web.yml").content_string
    assert web.count("$2b$10$") == 2 and not any(s in web for s in SECRETS)
    env = CACHE.file("/etc/default/prometheus-redis-exporter")
    assert (env.user, env.mode) == ("root", 0o600)
    cmdline = CACHE.check_output("cat /proc/$(pidof prometheus-redis-exporter)/cmdline | tr '\\0' ' '")
    assert "molecule-redis-exporter" not in cmdline


def test_exporters_answer_the_monitoring_host_only():
    for port in (9100, 9121):
        assert http(MON, f"http://{ip(CACHE)}:{port}/metrics")[0] == 200
    # From any other source (here the Redis host itself, over its private address) the packets
    # are dropped: the connection times out.
    probe = CACHE.run(f"python3 -c \"import socket; socket.create_connection(('{ip(CACHE)}', 9100), timeout=3)\"")
    assert probe.rc != 0 and "timed out" in probe.stderr, probe.stderr
    assert int(CACHE.check_output("nft list table inet gradual_exporters | grep -o 'packets [0-9]*' | tail -1 | cut -d' ' -f2")) > 0


def test_redis_exporter_user_reads_no_key():
    cli = "redis-cli -h 127.0.0.1 --user exporter --pass molecule-redis-exporter --no-auth-warning"
    assert CACHE.check_output(f"{cli} PING") == "PONG"
    for cmd in ("GET k", "SET k v", "KEYS '*'", "CONFIG SET maxmemory 0", "FLUSHALL"):
        assert CACHE.check_output(f"{cli} {cmd}").startswith("NOPERM"), cmd


# The alert round trip takes a minute (RedisDown's for:); the tests that change nothing run
# while it waits: test_redis_is_stopped starts the receiver and stops Redis, the tests after it
# run meanwhile, and test_redis_down_alert_reaches_the_webhook_and_resolves reads what arrived
# (the receiver stamps each notification on arrival, so the figures do not depend on the order).
ROUND_TRIP: dict[str, float] = {}


@pytest.fixture(scope="module")
def receiver():
    MON.check_output(f"cat > /tmp/gr_hook.py <<'PY'\n{RECEIVER}\nPY")
    MON.check_output("rm -f /tmp/hook.jsonl && systemd-run --unit gr-test-hook python3 /tmp/gr_hook.py")
    wait_for("receiver listening", lambda: MON.socket("tcp://127.0.0.1:18080").is_listening, 10)
    yield
    MON.run("systemctl stop gr-test-hook")
    CACHE.run("systemctl start redis-server")


def notifications() -> list[dict]:
    f = MON.file("/tmp/hook.jsonl")
    if not f.exists:
        return []
    return [json.loads(line) for line in f.content_string.splitlines() if line]


def redis_down(status: str, since: float):
    for n in notifications():
        title = n["body"]["attachments"][0]["title"]
        if n["at"] >= since and "RedisDown" in title and title.startswith(f"[{status}"):
            return n
    return None


def test_redis_is_stopped(receiver):
    ROUND_TRIP["stopped"] = float(CACHE.check_output("date +%s.%N && systemctl stop redis-server").split()[0])
    assert not CACHE.service("redis-server").is_running


def test_an_operator_silences_a_planned_restart():
    """The README's amtool commands, with the login in an http config file (a matcher other than
    RedisDown's, whose notification the round trip waits for)."""
    MON.check_output(f"umask 077 && printf 'basic_auth:\\n  username: {ADMIN[0]}\\n  password: {ADMIN[1]}\\n' > /root/amtool-http.yml")
    am = f"amtool --alertmanager.url=http://{ip(MON)}:9093 --http.config.file=/root/amtool-http.yml"
    sid = MON.check_output(f"{am} silence add alertname=ScrapeTargetDown instance=gr-mon-cache1:9100 "
                           f"--duration=15m --author=molecule --comment='planned restart'")
    assert MON.check_output(f"{am} silence query -q alertname=ScrapeTargetDown") == sid
    MON.check_output(f"{am} silence expire {sid}")
    assert MON.check_output(f"{am} silence query -q alertname=ScrapeTargetDown") == ""


@pytest.mark.parametrize("extra, named", [
    # tasks/validate.yml: a value the types allow but Prometheus would refuse at start
    ({"monitoring_retention_time": "15 days"}, ("monitoring_retention_time=", "15 days", "expected Prometheus durations",
                                                "Nothing was changed")),
    # meta/argument_specs.yml: a user without its password
    ({"monitoring_web_users": [{"name": "molecule-admin"}]}, ("missing required arguments: password", "monitoring_web_users")),
], ids=["retention", "web-user"])
def test_bad_input_fails_naming_it_and_changes_nothing(extra, named):
    files = "md5sum /etc/prometheus/rules/* /etc/prometheus/*.yml /etc/default/prometheus*"
    before = MON.check_output(files)
    run = run_playbook(SCENARIO / "rules.yml", extra, timeout=300)
    out = run.stdout + run.stderr
    assert run.returncode != 0
    assert all(part in out for part in named), out[-3000:]
    assert not any(s in out for s in SECRETS)
    assert MON.check_output(files) == before


def test_redis_down_alert_reaches_the_webhook_and_resolves(receiver, capsys):
    stopped = ROUND_TRIP["stopped"]
    try:
        bound = REDIS_DOWN_FOR + 2 * SCRAPE + EVAL + GROUP_WAIT + 2
        fired = wait_for("RedisDown at the webhook", lambda: redis_down("FIRING", stopped),
                         max(stopped + bound + 20 - time.time(), 1))
    finally:
        started = float(CACHE.check_output("systemctl start redis-server && date +%s.%N"))
    latency = fired["at"] - stopped
    say(capsys, f"RedisDown: Redis stopped -> webhook {latency:.1f} s (for: {REDIS_DOWN_FOR:.0f} s, scrape and "
                f"evaluation every {SCRAPE:.0f} s, group_wait {GROUP_WAIT:.0f} s; bound {bound:.0f} s)")
    body = fired["body"]
    assert body["channel"] == "#molecule"
    assert "gr-mon-cache1:9121" in body["attachments"][0]["title"] + body["attachments"][0]["text"]
    assert latency <= bound, f"{latency:.1f} s > {bound:.0f} s"
    # the alert waits its for: (never before 60 s)
    assert latency >= REDIS_DOWN_FOR

    resolve_bound = 2 * SCRAPE + EVAL + GROUP_INTERVAL + 4
    resolved = wait_for("RedisDown resolved at the webhook", lambda: redis_down("RESOLVED", started), resolve_bound + 20)
    back = resolved["at"] - started
    say(capsys, f"RedisDown: Redis started -> resolved at the webhook {back:.1f} s (bound {resolve_bound:.0f} s)")
    assert back <= resolve_bound


@pytest.mark.parametrize("labels, receiver_name", [
    ("severity=critical", "critical"), ("severity=warning", "warning"), ("alertname=NoSeverity", "warning")])
def test_alerts_are_routed_by_severity(labels, receiver_name):
    out = MON.check_output(f"amtool config routes test --config.file=/etc/prometheus/alertmanager.yml {labels}")
    assert out.split() == [receiver_name]


def test_a_critical_alert_inhibits_the_warning_of_its_target():
    """Three alerts posted to Alertmanager: the warning that shares job and instance with the
    critical is suppressed (inhibited by it), the warning of another instance is not."""
    now = time.time()
    ends = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 120))

    def alert(name, severity, instance):
        return {"labels": {"alertname": name, "severity": severity, "job": "molecule", "instance": instance},
                "endsAt": ends}
    posted = [alert("MoleculeCritical", "critical", "x:1"), alert("MoleculeWarning", "warning", "x:1"),
              alert("MoleculeWarningElsewhere", "warning", "y:1")]
    MON.check_output(f"cat > /tmp/gr_alerts.json <<'JSON'\n{json.dumps(posted)}\nJSON")
    status, body = http(MON, f"http://{ip(MON)}:9093/api/v2/alerts", ADMIN, post="/tmp/gr_alerts.json")
    assert status == 200, body

    def states():
        status, body = http(MON, f"http://{ip(MON)}:9093/api/v2/alerts?filter=job%3D%22molecule%22", ADMIN)
        assert status == 200, body
        return {a["labels"]["alertname"]: a["status"] for a in json.loads(body)}

    def all_three():
        found = states()
        return found if len(found) == 3 else None

    found = wait_for("the three alerts", all_three, 10)
    assert found["MoleculeWarning"]["state"] == "suppressed" and found["MoleculeWarning"]["inhibitedBy"]
    assert found["MoleculeCritical"]["state"] == "active"
    assert found["MoleculeWarningElsewhere"]["state"] == "active"


def rules_run(extra):
    run = run_playbook(SCENARIO / "rules.yml", {"monitoring_rules_extra": extra}, timeout=300)
    out = run.stdout + run.stderr
    assert not any(s in out for s in SECRETS)
    return run, out


def group_names() -> set[str]:
    return {g["name"] for g in prom("/api/v1/rules")["groups"]}


EXTRA = [{"name": "molecule-extra", "groups": [{"name": "molecule-extra", "rules": [
    {"alert": "MoleculeAlwaysQuiet", "expr": "vector(1) == 0", "labels": {"severity": "warning"}}]}]}]
BROKEN = [{"name": "molecule-broken", "groups": [{"name": "molecule-broken", "rules": [
    {"alert": "Broken", "expr": "up ==", "labels": {"severity": "warning"}}]}]}]


def test_a_valid_extra_rule_file_is_loaded():
    run, out = rules_run(EXTRA)
    assert run.returncode == 0, out[-3000:]
    wait_for("the extra group loaded", lambda: "molecule-extra" in group_names(), 20)


def test_a_rule_file_prometheus_refuses_never_goes_live():
    """Runs after the test above: the running rules are the role's and molecule-extra."""
    pid = MON.check_output("systemctl show -p MainPID --value prometheus")
    before = MON.check_output("md5sum /etc/prometheus/rules/* /etc/prometheus/*.yml")
    loads = prom("/api/v1/query?query=prometheus_config_last_reload_success_timestamp_seconds")["result"][0]["value"][1]
    run, out = rules_run(EXTRA + BROKEN)
    assert run.returncode != 0
    assert "The new monitoring configuration was refused" in out, out[-3000:]
    assert "molecule-broken.rules.yml" in out
    assert not MON.file("/etc/prometheus/rules/molecule-broken.rules.yml").exists
    assert MON.check_output("md5sum /etc/prometheus/rules/* /etc/prometheus/*.yml") == before
    # the same process, never reloaded, still evaluating the previous rules
    assert MON.check_output("systemctl show -p MainPID --value prometheus") == pid
    time.sleep(2 * EVAL)
    assert prom("/api/v1/query?query=prometheus_config_last_reload_success_timestamp_seconds")["result"][0]["value"][1] == loads
    assert {"gradual-cache", "molecule-extra"} <= group_names() and "molecule-broken" not in group_names()
    assert prom("/api/v1/query?query=prometheus_config_last_reload_successful")["result"][0]["value"][1] == "1"
