"""bench/scale: one flag stage of the rollout on 2, 4 and 8 app hosts of the lab, cycled one host at
a time (max_unavailable 1) and a quarter of them at once (max_unavailable 25 %), with requests
through nginx at a steady bounded rate meanwhile. Used by bench/scale/run (the figures) and by the
molecule rollout scenario (one 4-host run, asserted), so both drive the same code.

The extra app hosts are copies of app1 (docker commit of the provisioned container, started as
app3..app8 on the lab network with their own address): the same app, PM2 and flags file, up in
seconds instead of a provisioning run each. They are lab containers (label gradual.lab=1), so
`make lab-down` removes them too; `remove_clones` does at the end of a run.

The stage is a copy of the example plan's pool-limit stage (flags, then the api_slo and pool gates,
serial [1, "100%"]) in a plan of its own (bench_scale), so the example plan's state is untouched;
each run sets MATCH_ENRICHER_CONCURRENCY to a value no host has yet, so every host really changes.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NET = "gradual-lab"
SUBNET_PREFIX = "172.28.87."
CLONE_IMAGE = "gradual/lab-app-clone:bench"
RUN_OPTS = ["--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN", "--security-opt", "seccomp=unconfined",
            "--security-opt", "apparmor=unconfined", "--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
            "--tmpfs", "/run", "--tmpfs", "/run/lock"]
FLAG = "MATCH_ENRICHER_CONCURRENCY"
PLAN = "bench_scale"


def env() -> dict:
    return dict(os.environ, PATH="%s:%s" % (ROOT / ".venv" / "bin", os.environ["PATH"]),
                ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
                ANSIBLE_VAULT_PASSWORD_FILE=str(ROOT / "tests" / "harness" / "vault-pass.sh"))


def docker(*args: str, check: bool = True) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check).stdout


def app_hosts(count: int) -> list:
    return ["app%d" % index for index in range(1, count + 1)]


def address(host: str) -> str:
    return SUBNET_PREFIX + str(40 + int(host[3:]))


class Lab:
    """The lab's app tier widened to COUNT hosts (app1, app2 and copies of app1)."""

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.inventory = self.workdir / "inventory"
        self.clones: list = []

    # -- hosts -------------------------------------------------------------------------------
    def clone(self, count: int) -> None:
        wanted = [h for h in app_hosts(count) if h not in ("app1", "app2")]
        missing = [h for h in wanted if h not in self.clones]
        if missing:
            docker("commit", "gr-lab-app1", CLONE_IMAGE)
            for host in missing:
                docker("rm", "-f", "gr-lab-" + host, check=False)
                docker("run", "-d", "--name", "gr-lab-" + host, "--hostname", host, "--network", NET,
                       "--ip", address(host), "--label", "gradual.lab=1", *RUN_OPTS, CLONE_IMAGE,
                       "/lib/systemd/systemd")
                self.clones.append(host)
        self.write_inventory(count)
        deadline = time.monotonic() + 180
        for host in wanted:
            while app_get(host, "/health")[0] != 200:
                if time.monotonic() > deadline:
                    raise RuntimeError("the copy %s of app1 does not answer /health" % host)
                time.sleep(1)

    def remove_clones(self) -> None:
        for host in self.clones:
            docker("rm", "-f", "gr-lab-" + host, check=False)
        self.clones = []
        docker("rmi", CLONE_IMAGE, check=False)

    def write_inventory(self, count: int) -> None:
        """An inventory source layered on inventories/lab: the copies in group app (PM2, as app1)."""
        self.inventory.mkdir(parents=True, exist_ok=True)
        # the lab's key path is relative to the inventory that defines a host: this one
        key = str(ROOT / ".lab" / "id_ed25519")
        hosts = {h: {"ansible_host": address(h), "app_manager": "pm2", "ansible_ssh_private_key_file": key}
                 for h in app_hosts(count) if h not in ("app1", "app2")}
        (self.inventory / "hosts.yml").write_text(json.dumps({"all": {"children": {"app": {"hosts": hosts}}}}))

    def ansible(self, *args: str, timeout: int = 1200) -> subprocess.CompletedProcess:
        return subprocess.run(["ansible-playbook", "-i", str(ROOT / "inventories" / "lab"), "-i", str(self.inventory),
                               *args], cwd=ROOT, env=env(), capture_output=True, text=True, timeout=timeout, check=False)

    def upstream(self, count: int) -> None:
        """nginx on web1 in front of exactly app1..appCOUNT (the nginx role, checked and reloaded)."""
        servers = [{"name": h, "address": "%s:3000" % address(h)} for h in app_hosts(count)]
        extra = self.workdir / "upstream.json"
        extra.write_text(json.dumps({"nginx_upstream_servers": servers}))
        proc = self.ansible(str(ROOT / "bench" / "scale" / "nginx.yml"), "-e", "@%s" % extra)
        if proc.returncode != 0:
            raise RuntimeError("the nginx role failed on web1:\n" + proc.stdout[-4000:])

    # -- one measured stage --------------------------------------------------------------------
    def run_stage(self, count: int, max_unavailable, value: int, gate_duration: str = "") -> dict:
        """The stage on app1..appCOUNT with MAX_UNAVAILABLE (and the gates' GATE_DURATION, the
        inventory's when empty); the request loop and a watch of nginx's drained set run meanwhile.
        Returns the figures."""
        plan = self.workdir / "plan.json"
        plan.write_text(json.dumps({"rollout_plan": stage_plan(max_unavailable, value)}))
        limit = ",".join(app_hosts(count))
        reset = self.ansible("rollout.yml", "-l", limit, "-e", "@%s" % plan, "-e", "rollout_action=reset")
        if reset.returncode != 0:
            raise RuntimeError("cannot reset the state of plan %s:\n%s" % (PLAN, reset.stdout[-3000:]))
        result_file = self.workdir / "result.json"
        with RequestLoop() as loop, DrainWatch() as watch:
            start = time.monotonic()
            extra = ["-e", "rollout_gate_duration=%s" % gate_duration] if gate_duration else []
            proc = self.ansible("rollout.yml", "-l", limit, "-e", "@%s" % plan, "-e", "rollout_ignore_bake=true",
                                "-e", "rollout_result_file=%s" % result_file, *extra)
            seconds = round(time.monotonic() - start, 1)
        name = "rollout-%d-hosts-%s-%s.log" % (count, str(max_unavailable).replace("%", "pct"), gate_duration or "inv")
        (self.workdir / name).write_text(proc.stdout)
        result = json.loads(result_file.read_text()) if result_file.exists() else {}
        return {
            "app_hosts": count,
            "max_unavailable": max_unavailable,
            "gate_duration": gate_duration or "the inventory's",
            "stage_seconds": seconds,
            "outcome": result.get("outcome"),
            "rc": proc.returncode,
            "max_hosts_drained_at_once": watch.most,
            "drained_in_turn": watch.order,
            "requests": loop.figures(),
            "hosts_serving_the_value": [h for h in app_hosts(count) if served(h).get(FLAG) == str(value)],
            "log_tail": proc.stdout[-3000:] if proc.returncode else "",
        }

    def baseline(self, count: int) -> None:
        """FLAG back to the baseline on app1..appCOUNT (playbooks/rollback.yml with the bench's plan,
        whose baseline is the example plan's value of FLAG alone)."""
        plan = self.workdir / "baseline.json"
        plan.write_text(json.dumps({"rollout_plan": stage_plan(1, 999)}))
        proc = self.ansible("playbooks/rollback.yml", "-l", ",".join(app_hosts(count)), "-e", "@%s" % plan,
                            "-e", "rollback_reason=bench/scale: back to the baseline")
        if proc.returncode != 0:
            raise RuntimeError("the rollback to the baseline failed:\n" + proc.stdout[-3000:])


def stage_plan(max_unavailable, value: int) -> dict:
    """The example plan's pool-limit stage (w2d10) alone, setting FLAG to VALUE."""
    return {
        "name": PLAN,
        "baseline": {FLAG: "999"},
        "stages": [{
            "name": "scale_flag",
            "description": "bench/scale: one flag on every app host, gated like the pool-limit stage",
            "serial": [1, "100%"],
            "max_unavailable": max_unavailable,
            "actions": {"flags": {FLAG: str(value)}},
            "gates": [
                {"name": "api_slo", "type": "http_slo", "args": "{{ rollout_gate_slo }}"},
                {"name": "pool", "type": "pool_check",
                 "args": "{{ rollout_gate_pool | combine({'max_utilization': 90}) }}"},
            ],
        }],
    }


def app_get(host: str, path: str) -> tuple:
    """(status, body) of GET PATH on HOST's app port, (0, b"") when it does not answer."""
    try:
        with urllib.request.urlopen("http://%s:3000%s" % (address(host), path), timeout=3) as resp:
            return resp.status, resp.read()
    except (OSError, urllib.error.URLError):
        return 0, b""


def served(host: str) -> dict:
    """The flags HOST's app serves (name -> value as text)."""
    status, body = app_get(host, "/api/flags")
    try:
        flags = json.loads(body).get("flags", {}) if status == 200 else {}
    except ValueError:
        return {}
    return {name: str(entry.get("value")) for name, entry in flags.items()}


class RequestLoop:
    """bench/reload/loop.py on web1 (keep-alive HTTPS through nginx, 2 workers, 20 ms apart) for the
    length of a `with` block."""

    def __enter__(self):
        docker("cp", str(ROOT / "bench" / "reload" / "loop.py"), "gr-lab-web1:/opt/gr-loop.py")
        docker("exec", "gr-lab-web1", "sh", "-c",
               "rm -f /tmp/gr-scale.stop /tmp/gr-scale.json; nohup python3 /opt/gr-loop.py "
               "--url https://127.0.0.1/health --workers 2 --pause 0.02 --duration 900 "
               "--out /tmp/gr-scale.json --stop-file /tmp/gr-scale.stop >/tmp/gr-scale.log 2>&1 &")
        time.sleep(2)
        self._figures = None
        return self

    def __exit__(self, *exc):
        time.sleep(2)
        docker("exec", "gr-lab-web1", "touch", "/tmp/gr-scale.stop")
        for _attempt in range(40):
            out = docker("exec", "gr-lab-web1", "cat", "/tmp/gr-scale.json", check=False)
            if out.strip():
                self._figures = json.loads(out)
                break
            time.sleep(0.5)
        return False

    def figures(self) -> dict:
        data = self._figures or {}
        return {key: data.get(key) for key in ("sent", "failed", "seconds", "latency_ms", "first_failures")}


class DrainWatch:
    """How many app hosts nginx had drained at once, and the drained sets in the order they came
    (the chunks, canary first), read from web1's drained-set files every 0.2 s for the length of
    a `with` block."""

    def __enter__(self):
        self.most = 0
        self.order = []
        self._proc = subprocess.Popen(
            ["docker", "exec", "gr-lab-web1", "sh", "-c",
             "while :; do cat /etc/nginx/gradual/*.drained.json 2>/dev/null | tr -d '\\n'; echo; sleep 0.2; done"],
            stdout=subprocess.PIPE, text=True)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def _read(self):
        for line in self._proc.stdout:
            try:
                drained = sorted(json.loads(line.strip() or "[]"))
            except ValueError:
                continue
            self.most = max(self.most, len(drained))
            if drained and (not self.order or self.order[-1] != drained):
                self.order.append(drained)

    def __exit__(self, *exc):
        self._proc.kill()
        self._proc.wait()
        return False


def workdir() -> Path:
    # tests/output exists under run-tests.sh; a direct pytest run of the scenario makes it
    output = ROOT / "tests" / "output"
    output.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="gr-scale-", dir=str(output)))
