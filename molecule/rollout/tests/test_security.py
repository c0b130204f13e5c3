"""After the whole run (make demo, the faults, the dry run): no vaulted secret of the lab stands in
any log or report, on any lab host or on the controller. Runs last in the rollout scenario's verify
(pytest takes the files in name order)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
HOSTS = ["db1", "db2", "cache1", "web1", "app1", "app2"]
# Where services, the harness and the rollout write what they saw; the secrets' own homes (env
# files, userlist.txt, .pgpass, redis ACLs) are not logs and are checked for their modes elsewhere.
HOST_LOGS = "/var/log /srv/*/.pm2/logs /srv/*/.pm2/pm2.log /var/lib/postgresql/*/main/log /tmp/gr-*.log"


def vaulted() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    out = subprocess.run([str(ROOT / ".venv/bin/ansible-vault"), "view", "--vault-password-file",
                          str(ROOT / ".lab/vault-pass"), str(ROOT / "inventories/lab/group_vars/all/vault.yml")],
                         env=env, capture_output=True, text=True, check=True, timeout=60).stdout
    secrets = {k: str(v) for k, v in yaml.safe_load(out).items() if v}
    assert len(secrets) >= 8, sorted(secrets)
    return secrets


def test_no_vaulted_secret_in_any_log_or_report():
    secrets = vaulted()
    hits = []
    for host in HOSTS:
        text = subprocess.run(["docker", "exec", "gr-lab-%s" % host, "sh", "-c",
                               "journalctl --no-pager -q 2>/dev/null; for p in %s; do [ -e \"$p\" ] && "
                               "find \"$p\" -type f -exec cat {} + 2>/dev/null; done; true" % HOST_LOGS],
                              capture_output=True, check=True, timeout=300).stdout
        text = text.decode("utf-8", errors="replace")   # /var/log holds binary files too
        assert len(text) > 10000, "almost nothing read on %s: the check would prove nothing" % host
        hits += ["%s on %s" % (name, host) for name, value in secrets.items() if value in text]
    local = [p for p in (ROOT / "reports").rglob("*") if p.is_file()]
    assert any(p.name == "notify.jsonl" for p in local) and any(p.suffix == ".md" for p in local), local
    for path in local:
        text = path.read_text(encoding="utf-8", errors="replace")
        hits += ["%s in %s" % (name, path.relative_to(ROOT)) for name, value in secrets.items() if value in text]
    assert not hits, "vaulted secrets found (names only): %s" % hits


@pytest.mark.parametrize("host", HOSTS)
def test_secret_files_are_private(host):
    """The files that hold the secrets are not world-readable."""
    out = subprocess.run(["docker", "exec", "gr-lab-%s" % host, "sh", "-c",
                          "for f in /etc/*/app.env /etc/*/flags.env /etc/pgbouncer/userlist.txt /etc/redis/*.acl "
                          "/etc/redis/redis.conf /var/lib/postgresql/.pgpass /root/.pgpass; do [ -e \"$f\" ] && "
                          "stat -c '%a %n' \"$f\"; done; true"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    loose = [line for line in out.splitlines() if line and int(line.split()[0], 8) & 0o004]
    assert not loose, loose
