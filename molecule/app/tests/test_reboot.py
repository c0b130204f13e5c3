"""A power loss on each app host (docker kill, then start: no clean shutdown, stale PM2 sockets and
pid files left behind): the app comes back at boot by itself, under PM2 from the list `pm2 save`
stored, under systemd from the enabled unit. Runs after test_lifecycle.py (file order)."""
from __future__ import annotations

import json
import subprocess
import time

import pytest

from test_app import APP, get, manager

testinfra_hosts = ["docker://gr-app-pm2", "docker://gr-app-systemd"]
BOOT_TIMEOUT_S = 90


def app_pids(host) -> set:
    out = host.run("pgrep -u %s -f server.js" % APP).stdout
    return set(out.split())


def wait_for_boot(host) -> None:
    """systemd up (running or degraded) in the restarted container."""
    deadline = time.monotonic() + BOOT_TIMEOUT_S
    while time.monotonic() < deadline:
        state = host.run("systemctl is-system-running").stdout.strip()
        if state in ("running", "degraded"):
            return
        time.sleep(1)
    pytest.fail("the container did not finish booting within %d s" % BOOT_TIMEOUT_S)


def wait_for_health(host) -> dict:
    deadline = time.monotonic() + BOOT_TIMEOUT_S
    last = None
    while time.monotonic() < deadline:
        try:
            last = get(host, "/health")
            if last["status"] == 200:
                return last
        except AssertionError as exc:  # check_output raises AssertionError while nothing listens
            last = str(exc)[-300:]
        time.sleep(1)
    pytest.fail("the app did not answer /health with 200 within %d s of boot: %s" % (BOOT_TIMEOUT_S, last))


def test_app_comes_back_after_power_loss(host):
    name = host.backend.get_hostname()
    version = get(host, "/health")["body"]["version"]
    before = app_pids(host)
    assert before, "no app process before the power loss"
    subprocess.run(["docker", "kill", name], check=True, capture_output=True, timeout=60)
    subprocess.run(["docker", "start", name], check=True, capture_output=True, timeout=60)
    wait_for_boot(host)
    health = wait_for_health(host)
    assert health["body"]["version"] == version
    after = app_pids(host)
    assert after and not after & before, "the processes after boot must be new ones"
    if manager(host) == "pm2":
        assert host.service(f"pm2-{APP}").is_running
        out = host.check_output("runuser -u %s -- env PM2_HOME=/srv/%s/.pm2 pm2 jlist" % (APP, APP))
        apps = json.loads(out[out.index("["):])
        mine = [a for a in apps if a["name"] == APP]
        assert len(mine) >= 2 and all(a["pm2_env"]["status"] == "online" for a in mine)
    else:
        assert host.service(APP).is_running
