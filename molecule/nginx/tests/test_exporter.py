"""The nginx exporter (gradual.rollout.exporters) reading the role's stub_status, which answers on
loopback only."""
from __future__ import annotations

import re

testinfra_hosts = ["docker://gr-nginx-web"]


def own_address(host):
    return host.check_output("ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1")


def series(text, name):
    return [float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)]


def test_exporter_reads_stub_status(host):
    # One request through nginx first, so the counters have something to count.
    host.check_output("curl -sk -o /dev/null https://127.0.0.1/health")
    text = host.check_output(f"curl -sf http://{own_address(host)}:9113/metrics")
    assert series(text, "nginx_up") == [1.0]
    assert series(text, "nginx_connections_active")[0] >= 1   # the exporter's own stub_status request
    assert series(text, "nginx_http_requests_total")[0] >= 1
    # the exporter listens on the private address only, not on every address
    assert not host.socket("tcp://0.0.0.0:9113").is_listening
    assert host.socket(f"tcp://{own_address(host)}:9113").is_listening


def test_stub_status_answers_loopback_only(host):
    ok = host.run("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/stub_status")
    assert ok.stdout == "200"
    # from the host's own private address: nothing listens there
    far = host.run(f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 3 http://{own_address(host)}:8080/stub_status")
    assert far.rc == 7 and far.stdout == "000", (far.rc, far.stdout)   # 7: connection refused
    # and it is not served on the public sites
    public = host.run("curl -sk -o /dev/null -w '%{http_code}' https://127.0.0.1/stub_status")
    assert public.stdout != "200"
