"""nginx + app1 (PM2) + app2 (systemd): a bounded request loop through nginx during a rolling
reload of both app hosts (drain, reload, undrain, one at a time) sees 0 failed requests.

GR_RELOAD_RESULT=path also writes the loop's figures there (bench/reload/run uses it)."""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

SCENARIO = Path(__file__).resolve().parents[1]
ROOT = SCENARIO.parents[1]
LOOP = ROOT / "bench" / "reload" / "loop.py"

testinfra_hosts = ["docker://gr-web-web1"]


def test_through_nginx_both_apps_answer(host):
    seen = set()
    for _request in range(12):
        out = host.check_output("curl -sk https://127.0.0.1/health")
        seen.add(json.loads(out)["pid"])
    assert len(seen) >= 2  # PM2's workers on app1 and the systemd process on app2
    body = json.loads(host.check_output("curl -sk https://127.0.0.1/api/standings/39"))
    assert len(body["standings"]) == 20 and body["fromCache"] is False


@pytest.fixture(scope="module")
def rolling_reload(host):
    host.run("rm -f /tmp/gr-loop.stop /tmp/gr-loop.json")
    host.check_output("mkdir -p /opt/gr-bench")
    with open(LOOP, encoding="utf-8") as fh:
        script = fh.read()
    host.check_output("cat > /opt/gr-bench/loop.py <<'PYEOF'\n%s\nPYEOF" % script)
    host.check_output("nohup python3 /opt/gr-bench/loop.py --workers 4 --duration 240 --pause 0.005 "
                      "--out /tmp/gr-loop.json --stop-file /tmp/gr-loop.stop >/tmp/gr-loop.log 2>&1 &")
    time.sleep(3)  # the loop is running before the first drain
    cmd = ["ansible-playbook", str(SCENARIO / "reload.yml")]
    if os.environ.get("MOLECULE_INVENTORY_FILE"):
        cmd += ["-i", os.environ["MOLECULE_INVENTORY_FILE"]]
    started = time.monotonic()
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=os.environ.copy(), check=False)
    reload_seconds = round(time.monotonic() - started, 1)
    time.sleep(3)  # and still running after the last undrain
    host.run("touch /tmp/gr-loop.stop")
    for _poll in range(40):
        if host.file("/tmp/gr-loop.json").exists:
            break
        time.sleep(0.5)
    figures = json.loads(host.file("/tmp/gr-loop.json").content_string)
    figures["reload_playbook_seconds"] = reload_seconds
    figures["reload_playbook_rc"] = run.returncode
    out = os.environ.get("GR_RELOAD_RESULT")
    if out:
        figures["hosts"] = {"app1": "pm2 cluster (2 workers)", "app2": "systemd"}
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return run, figures


def test_rolling_reload_drops_nothing(rolling_reload):
    run, figures = rolling_reload
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    assert figures["sent"] > 200, figures
    assert figures["failed"] == 0, figures


def test_both_hosts_back_in_the_upstream(host):
    upstream = host.file("/etc/nginx/conf.d/goalgpt-upstream.conf").content_string
    assert " down;" not in upstream
    assert json.loads(host.file("/etc/nginx/gradual/goalgpt.drained.json").content_string) == []
