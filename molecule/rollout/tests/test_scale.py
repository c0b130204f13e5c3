"""max_unavailable on real hosts: app1, app2 and two copies of app1 behind nginx, one flag stage
with serial [1, "100%"] and max_unavailable 2 - the canary alone, then two hosts out of nginx at
once, then the last one - while requests go through nginx. The same code as bench/scale (one
4-host run here; the 2/4/8-host figures are the benchmark's). The lab is left as it was: two app
hosts behind nginx, the flag back on its baseline value.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "bench" / "scale"))
import scale  # noqa: E402


def state_row() -> dict:
    out = subprocess.run(["docker", "exec", "gr-lab-db1", "runuser", "-u", "postgres", "--", "psql", "-d", "goalgpt",
                          "-AtXc", "SELECT coalesce(json_agg(r ORDER BY id DESC), '[]') FROM gradual.rollout_state r "
                          "WHERE plan = '%s'" % scale.PLAN], capture_output=True, text=True, check=True).stdout
    return json.loads(out)[0]


def test_a_batch_cycles_max_unavailable_hosts_at_once_and_nginx_keeps_serving():
    lab = scale.Lab(scale.workdir())
    try:
        lab.clone(4)
        lab.upstream(4)
        run = lab.run_stage(4, 2, 951)
        row = state_row()
    finally:
        lab.upstream(2)
        lab.remove_clones()
        lab.baseline(2)
    print(json.dumps(run, indent=2))
    assert run["rc"] == 0 and run["outcome"] == "passed", run["log_tail"]
    # [1, 2, 1]: two hosts were out of nginx together, never more
    assert run["max_hosts_drained_at_once"] == 2
    # the chunks in inventory order: the canary is the first app host, whichever host answered first
    assert run["drained_in_turn"] == [["app1"], ["app2", "app3"], ["app4"]], run["drained_in_turn"]
    assert run["requests"]["sent"] > 100 and run["requests"]["failed"] == 0, run["requests"]
    assert run["hosts_serving_the_value"] == scale.app_hosts(4)
    # the gates ran after each batch of the stage (the canary, then the other three), not per chunk
    assert row["status"] == "passed" and row["batches_done"] == 2, row
    assert sorted(row["hosts_done"]) == scale.app_hosts(4), row
    assert scale.served("app1")[scale.FLAG] == "999" and scale.served("app2")[scale.FLAG] == "999"
