"""The harness works: systemd is PID 1 and manages services Ansible put there."""


def test_systemd_is_pid1(host):
    assert host.check_output("ps -o comm= -p 1") == "systemd"


def test_cron_running(host):
    svc = host.service("cron")
    assert svc.is_running
    assert svc.is_enabled


def test_http_unit_serves(host):
    assert host.service("smoke-http").is_running
    assert host.socket("tcp://127.0.0.1:8080").is_listening
    out = host.check_output("python3 -c \"import urllib.request as u; print(u.urlopen('http://127.0.0.1:8080/').status)\"")
    assert out == "200"


def test_unit_not_root(host):
    user = host.check_output("ps -o user= -C python3 | head -n1")
    assert user != "root"
