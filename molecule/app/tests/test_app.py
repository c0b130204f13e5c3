"""The app role under PM2 and systemd: the converged state (test_lifecycle.py then changes it)."""
from __future__ import annotations

import json

from molecule_check import unit_exposure

APP = "goalgpt-api"
# docker exec rather than one Ansible task per command: the same checks in a fraction of the time.
testinfra_hosts = ["docker://gr-app-pm2", "docker://gr-app-systemd"]


def get(host, path):
    out = host.check_output(
        "python3 -c \"import json,urllib.request as u;r=u.urlopen('http://127.0.0.1:3000%s',timeout=5);"
        "print(json.dumps({'status':r.status,'body':json.load(r)}))\"" % path)
    return json.loads(out)


def manager(host):
    return "systemd" if "systemd" in host.backend.get_hostname() else "pm2"


def test_user_is_dedicated_and_nologin(host):
    user = host.user(APP)
    assert user.shell == "/usr/sbin/nologin"
    assert user.uid < 1000


def test_env_files_private(host):
    for name in ("app.env", "flags.env"):
        f = host.file(f"/etc/{APP}/{name}")
        assert f.mode == 0o600 and f.user == APP
    assert 'PGPASSWORD="molecule-db-secret"' in host.file(f"/etc/{APP}/app.env").content_string


def test_release_layout(host):
    current = host.file(f"/srv/{APP}/current")
    assert current.is_symlink and current.linked_to == f"/srv/{APP}/releases/1.0.0"
    assert host.file(f"/srv/{APP}/releases/1.0.0/node_modules/pg").is_directory


def test_health_and_pool(host):
    health = get(host, "/health")
    assert health["status"] == 200
    assert health["body"]["checks"] == {"db": "ok", "redis": "ok"}
    assert health["body"]["version"] == "1.0.0"
    pool = get(host, "/health/pool")["body"]
    assert set(pool) >= {"active", "idle", "waiting", "total", "utilization"}


def test_manager_specifics(host):
    if manager(host) == "pm2":
        unit = host.service(f"pm2-{APP}")
        assert unit.is_enabled and unit.is_running
        assert host.file(f"/srv/{APP}/.pm2/dump.pm2").exists
        workers = host.check_output("pgrep -u %s -f server.js | wc -l" % APP)
        assert int(workers) >= 2
    else:
        svc = host.service(APP)
        assert svc.is_enabled and svc.is_running
        props = host.check_output(f"systemctl show {APP} -p NoNewPrivileges -p ProtectSystem -p PrivateTmp -p Restart")
        assert "NoNewPrivileges=yes" in props and "ProtectSystem=strict" in props
        assert "PrivateTmp=yes" in props and "Restart=on-failure" in props


def test_unit_is_sandboxed(host):
    """systemd-analyze security of the app's unit: PM2's was 9.2 UNSAFE before its hardening."""
    unit = f"pm2-{APP}.service" if manager(host) == "pm2" else f"{APP}.service"
    assert unit_exposure(host, unit) <= 5.0
