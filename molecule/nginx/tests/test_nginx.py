"""nginx role: redirect, TLS profile, security headers on every response and location, CORS,
429 on a burst, a broken config refused while the old one serves, drain/undrain by reload."""
from __future__ import annotations

import json

from molecule_check import unit_exposure
import os
import subprocess
import time
from pathlib import Path

import pytest

SCENARIO = Path(__file__).resolve().parents[1]
# docker exec rather than one Ansible task per command: the same checks in a fraction of the time.
testinfra_hosts = ["docker://gr-nginx-web"]
SECURITY = ["x-content-type-options", "x-frame-options", "referrer-policy", "content-security-policy",
            "permissions-policy", "strict-transport-security"]


def fetch(host, url, extra=""):
    """(status, {header: value}) of one request made on the host with curl."""
    out = host.check_output(f"curl -sk -o /dev/null -D - {extra} '{url}'")
    lines = out.replace("\r", "").split("\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return status, headers


def main_pid(host):
    return host.check_output("systemctl show nginx -p MainPID --value")


def playbook(name, *extra):
    cmd = ["ansible-playbook", str(SCENARIO / name), *extra]
    if os.environ.get("MOLECULE_INVENTORY_FILE"):
        cmd += ["-i", os.environ["MOLECULE_INVENTORY_FILE"]]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=os.environ.copy(), check=False)


def test_default_site_removed_and_tokens_off(host):
    assert not host.file("/etc/nginx/sites-enabled/default").exists
    _status, headers = fetch(host, "https://127.0.0.1/")
    assert headers["server"] == "nginx"


def test_http_redirects_with_308_and_headers(host):
    status, headers = fetch(host, "http://127.0.0.1/api/ping?x=1")
    assert status == 308
    # the configured server name, never the request's Host header (nginx_redirect_host)
    assert headers["location"] == "https://gradual-rollout.test/api/ping?x=1"
    for name in SECURITY[:-1]:
        assert name in headers, name


def test_redirect_ignores_a_forged_host_header(host):
    target = host.check_output("curl -s -o /dev/null -w '%{redirect_url}' -H 'Host: evil.example' "
                               "http://127.0.0.1/login")
    assert target == "https://gradual-rollout.test/login"


@pytest.mark.parametrize("path,expected", [
    ("/", 200),                    # location /
    ("/api/ping", 200),            # location /api/
    ("/health", 200),              # location /health
    ("/nope", 404),                # the upstream's 404, passed through
    ("/.git/config", 404),         # nginx's own 404 through its error page
])
def test_security_headers_everywhere(host, path, expected):
    status, headers = fetch(host, "https://127.0.0.1" + path)
    assert status == expected
    missing = [h for h in SECURITY if h not in headers]
    assert not missing, f"{path}: missing {missing}"
    assert headers["strict-transport-security"].startswith("max-age=63072000")


def test_own_error_page_is_json_with_the_error_status(host):
    out = host.check_output("curl -sk -D - 'https://127.0.0.1/.git/config'").replace("\r", "")
    head, body = out.split("\n\n", 1)
    assert head.split("\n")[0].split()[1] == "404"
    assert "content-type: application/json" in head.lower()
    assert json.loads(body) == {"error": "not found"}


def test_tls_profile(host):
    tls11 = host.run("echo | openssl s_client -connect 127.0.0.1:443 -tls1_1 -cipher 'DEFAULT@SECLEVEL=0' 2>&1")
    assert tls11.rc != 0 or "Cipher is (NONE)" in tls11.stdout
    for flag in ("-tls1_2", "-tls1_3"):
        ok = host.run(f"echo | openssl s_client -connect 127.0.0.1:443 {flag} 2>&1")
        assert ok.rc == 0 and "Cipher is (NONE)" not in ok.stdout, ok.stdout[-500:]
    weak = host.run("echo | openssl s_client -connect 127.0.0.1:443 -tls1_2 -cipher AES128-SHA 2>&1")
    assert weak.rc != 0


def test_cors_allow_list(host):
    _status, allowed = fetch(host, "https://127.0.0.1/api/ping", "-H 'Origin: https://app.example.test'")
    assert allowed["access-control-allow-origin"] == "https://app.example.test"
    _status, denied = fetch(host, "https://127.0.0.1/api/ping", "-H 'Origin: https://evil.example'")
    assert "access-control-allow-origin" not in denied
    assert "x-frame-options" in denied
    status, pre = fetch(host, "https://127.0.0.1/api/ping",
                        "-X OPTIONS -H 'Origin: https://app.example.test' -H 'Access-Control-Request-Method: GET'")
    assert status == 204 and pre["access-control-allow-origin"] == "https://app.example.test"
    assert "content-security-policy" in pre


def test_broken_config_refused_old_one_serves(host):
    pid = main_pid(host)
    run = playbook("broken.yml")
    assert run.returncode != 0
    assert "nginx -t rejected" in run.stdout + run.stderr, run.stdout[-3000:] + run.stderr[-2000:]
    assert "this_is_not_a_directive" not in host.file("/etc/nginx/conf.d/goalgpt.conf").content_string
    assert host.run("nginx -t").rc == 0
    assert fetch(host, "https://127.0.0.1/")[0] == 200
    assert main_pid(host) == pid
    assert host.check_output("ls /etc/nginx/conf.d/") == "goalgpt-upstream.conf\ngoalgpt.conf"


def test_drain_and_undrain_reload_only(host):
    pid = main_pid(host)
    run = playbook("drain.yml")  # asserts inside: stub2 down while drained, back afterwards
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " down;" not in host.file("/etc/nginx/conf.d/goalgpt-upstream.conf").content_string
    assert main_pid(host) == pid
    assert fetch(host, "https://127.0.0.1/health")[0] == 200


BURST = r"""
import http.client, json, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
conn = http.client.HTTPSConnection("127.0.0.1", 443, context=ctx, timeout=10)
codes, limited = [], None
for _ in range(100):
    conn.request("GET", "/api/ping")
    resp = conn.getresponse()
    body = resp.read().decode()
    codes.append(resp.status)
    if resp.status == 429 and limited is None:
        limited = {"headers": {k.lower(): v for k, v in resp.getheaders()}, "body": body}
print(json.dumps({"codes": codes, "limited": limited}))
"""


def test_burst_gets_429_with_headers(host):
    # Runs last: it uses up the rate limit. 100 requests back to back on one keep-alive
    # connection, far over 10r/s with a burst of 20.
    host.check_output("cat > /tmp/burst.py <<'PYEOF'\n%s\nPYEOF" % BURST)
    result = json.loads(host.check_output("python3 /tmp/burst.py"))
    assert 429 in result["codes"] and 200 in result["codes"]
    limited = result["limited"]
    assert all(h in limited["headers"] for h in SECURITY), limited["headers"]
    assert json.loads(limited["body"]) == {"error": "too many requests"}


def test_a_drain_fails_when_nginx_is_down_and_does_not_start_it(host):
    """A reload of a stopped unit would start it, hiding a crash in the middle of a rollout stage."""
    host.run("systemctl stop nginx")
    try:
        run = playbook("drain.yml")
        out = run.stdout + run.stderr
        assert run.returncode != 0
        assert "is inactive, not active" in out, out[-3000:]
        assert host.run("systemctl is-active nginx").stdout.strip() != "active"
    finally:
        host.run("systemctl start nginx")
    assert fetch(host, "https://127.0.0.1/health")[0] == 200


def test_an_nginx_crash_between_drain_and_undrain_fails_the_undrain(host):
    """Restart=on-failure brings nginx back within seconds: the undrain still notices it went down."""
    run = playbook("crash.yml")
    out = run.stdout + run.stderr
    assert run.returncode != 0
    assert "nginx was down and came back while ['stub2'] were drained" in out, out[-3000:]
    again = playbook("drain.yml")   # a fresh run: drains and undrains stub2 cleanly
    assert again.returncode == 0, again.stdout[-3000:]
    assert " down;" not in host.file("/etc/nginx/conf.d/goalgpt-upstream.conf").content_string


def test_unit_is_sandboxed_and_a_killed_master_comes_back(host):
    assert unit_exposure(host, "nginx.service") <= 5.0   # Debian's unit alone: 9.6
    pid = main_pid(host)
    host.run(f"kill -9 {pid}")
    for _attempt in range(40):
        time.sleep(0.5)
        if host.run("curl -sk -o /dev/null -w '%{http_code}' https://127.0.0.1/health").stdout == "200":
            assert main_pid(host) != pid
            return
    raise AssertionError("nginx did not come back within 20 s after its master was killed")
