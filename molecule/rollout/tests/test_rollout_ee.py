"""The execution environment, built and used (issue #19): `make ee` builds (or reuses) the image
with ansible-builder, then ansible-runner inside it runs rollout.yml against the lab the way an AWX
job does (tests/harness/ee-run.sh: a private data dir with the project, the lab's inventory, the
extravars and the vault password, on the lab's docker network).

Runs after test_rollout.py, whose last test leaves the plan reset and no stage run: status through
the EE, the first due stage through the EE (passed in the state on db1), then the state reset and
the same stage with ansible-playbook, for a side-by-side time. The seconds are printed and written
to reports/ee-timings.json, never asserted.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
LAB_RUN = str(ROOT / "tests" / "harness" / "lab-run.sh")  # the checkout's settings, no molecule ANSIBLE_*
EE_RUN = str(ROOT / "tests" / "harness" / "ee-run.sh")
PLAN = "post-p1"
FIRST = "w1d1_migration_safety"
STAGES = ["w1d1_migration_safety", "w1d4_daily_rewards", "w1d5_all_p1b", "w2d10_conservative_limits",
          "w2d11_optimised_limits", "w3d15_hot_path_indexes", "w3d17_standings_cache", "w3d18_all_caching",
          "w4_stabilisation"]
TIMINGS = ROOT / "reports" / "ee-timings.json"


def run(*args: str, timeout: int = 1800, env: dict | None = None) -> tuple[subprocess.CompletedProcess, float]:
    """A command from the checkout through lab-run.sh, its output kept (and shown on failure)."""
    start = time.monotonic()
    proc = subprocess.run([LAB_RUN, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          check=False, env=dict(os.environ, **(env or {})))
    seconds = time.monotonic() - start
    print("$ %s -> rc %s in %.1f s\n%s\n%s" % (" ".join(args), proc.returncode, seconds, proc.stdout[-6000:],
                                               proc.stderr[-3000:]))
    return proc, seconds


def rows() -> list:
    """Every state row of the plan, oldest first, read on db1 as postgres."""
    out = subprocess.run(["docker", "exec", "gr-lab-db1", "runuser", "-u", "postgres", "--", "psql", "-d", "goalgpt",
                          "-AtXc", "SELECT coalesce(json_agg(r ORDER BY id), '[]') FROM gradual.rollout_state r "
                          "WHERE plan = '%s'" % PLAN], capture_output=True, text=True, check=True, timeout=120).stdout
    return json.loads(out)


def latest(stage: str) -> dict:
    found = [r for r in rows() if r["stage"] == stage]
    return found[-1] if found else {}


def record(**figures) -> None:
    TIMINGS.parent.mkdir(exist_ok=True)
    known = json.loads(TIMINGS.read_text(encoding="utf-8")) if TIMINGS.exists() else {}
    known.update({k: round(v, 1) if isinstance(v, float) else v for k, v in figures.items()})
    TIMINGS.write_text(json.dumps(known, indent=2) + "\n", encoding="utf-8")


def image_facts() -> list:
    """[id, size in bytes] of gradual/rollout-ee:latest."""
    return subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}} {{.Size}}", "gradual/rollout-ee:latest"],
                          capture_output=True, text=True, check=True, timeout=60).stdout.split()


def test_make_ee_builds_or_reuses_the_execution_environment():
    TIMINGS.unlink(missing_ok=True)
    proc, seconds = run("make", "ee")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"^gradual/rollout-ee:[0-9a-f]{12}$", proc.stdout, re.M), proc.stdout
    proc2, warm = run("make", "ee")  # nothing changed in between: the content hash finds the image
    assert proc2.returncode == 0 and "reusing gradual/rollout-ee:" in proc2.stderr, proc2.stderr[-3000:]
    size = int(image_facts()[1])
    record(ee_build_s=seconds, ee_build_warm_s=warm, ee_image_mb=size // 1000000)
    # gradual.rollout comes from the image, the community collections from the ansible package.
    listing = subprocess.run(["docker", "run", "--rm", "gradual/rollout-ee:latest", "ansible-galaxy", "collection",
                              "list"], capture_output=True, text=True, check=True, timeout=120).stdout
    for name in ("gradual.rollout", "community.postgresql", "community.general", "ansible.posix"):
        assert name in listing, listing


def test_status_through_ansible_runner_in_the_ee():
    assert rows() == [], "test_rollout.py leaves the plan reset"
    proc, seconds = run(EE_RUN, "rollout.yml", "-e", "rollout_action=status")
    record(ee_status_s=seconds)
    assert proc.returncode == 0
    assert "ee-run: successful rc=0" in proc.stdout
    for stage in STAGES:
        assert stage in proc.stdout
    assert re.search(r"%s +pending" % FIRST, proc.stdout), proc.stdout[-3000:]


def test_the_first_due_stage_through_the_ee_passes(tmp_path):
    """... and hands AWX the run's result as a job artifact (set_stats), as AWX reads it: from the
    playbook_on_stats event ansible-runner keeps."""
    proc, seconds = run(EE_RUN, "rollout.yml", "-e", "rollout_ignore_bake=true", env={"EE_ARTIFACTS": str(tmp_path)})
    record(ee_stage=FIRST, ee_stage_s=seconds)
    assert proc.returncode == 0
    assert "ee-run: successful rc=0" in proc.stdout
    assert "rollout stage: %s" % FIRST in proc.stdout
    row = latest(FIRST)
    assert row.get("status") == "passed", row
    assert [r["stage"] for r in rows()] == [FIRST], "one stage ran"
    stats = [json.loads(p.read_text(encoding="utf-8")) for p in (tmp_path / "job_events").glob("*.json")]
    artifacts = [e["event_data"].get("artifact_data") or {} for e in stats if e.get("event") == "playbook_on_stats"]
    assert artifacts, "no playbook_on_stats event among %d events" % len(stats)
    result = artifacts[-1].get("gradual_rollout_result") or {}
    assert result.get("stage") == FIRST and result.get("outcome") == "passed" and result.get("run_id") == row["id"], result


def test_the_same_stage_with_ansible_playbook_side_by_side():
    """The state reset, the same stage with ansible-playbook from the checkout. The migration is
    applied by then, so pg_migrate has nothing to do in this run: its time is the lower bound."""
    reset = run("ansible-playbook", "rollout.yml", "-e", "rollout_action=reset")[0]
    assert reset.returncode == 0
    assert rows() == []
    proc, seconds = run("ansible-playbook", "rollout.yml", "-e", "rollout_ignore_bake=true")
    record(playbook_stage_s=seconds)
    assert proc.returncode == 0
    assert "rollout stage: %s" % FIRST in proc.stdout
    assert latest(FIRST).get("status") == "passed"
    print("timings: %s" % TIMINGS.read_text(encoding="utf-8"))
