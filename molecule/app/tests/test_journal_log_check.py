"""log_check's journald source on the real journald of both containers (systemd as PID 1): a
position taken with position_only, a reading after that cursor that does not see the ERROR logged
before it, and a reading from the cursor the last one returned that fails on the new ERROR alone.
The playbook (journal_log_check.yml) asserts the readings; this runs it once."""
from __future__ import annotations

from pathlib import Path

from molecule_check import run_playbook

SCENARIO = Path(__file__).resolve().parents[1]
testinfra_hosts = ["docker://gr-app-pm2", "docker://gr-app-systemd"]


def test_log_check_reads_a_units_journal_from_a_cursor():
    run = run_playbook(SCENARIO / "journal_log_check.yml", timeout=300)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    assert "gr-app-pm2" in out and "gr-app-systemd" in out
