"""pm2_app: pure decision logic, and the module end to end against a fake `pm2` executable."""
from __future__ import annotations

import json
import stat
import sys
import textwrap
from pathlib import Path

import pytest

from ansible_collections.gradual.rollout.plugins.modules import pm2_app

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "harness"))
from ansible_run import run_module  # noqa: E402


def proc(name="goalgpt-api", pm_id=0, status="online", pid=100, restarts=0, env=None):
    return {"name": name, "pm_id": pm_id, "pid": pid,
            "pm2_env": {"status": status, "restart_time": restarts, "unstable_restarts": 0, "env": env or {}}}


def test_parse_env_text_handles_quotes_comments_export():
    text = "# c\n\nA=1\nexport B = 'two words'\nC=\"x=y\"\nbad line\nD=\n"
    assert pm2_app.parse_env_text(text) == {"A": "1", "B": "two words", "C": "x=y", "D": ""}


def test_fingerprint_ignores_volatile_keys_and_order():
    a = pm2_app.fingerprint({"A": "1", "B": "2", "pm_id": 0, "unique_id": "x"})
    b = pm2_app.fingerprint({"B": "2", "A": "1", "pm_id": 3, "unique_id": "y"})
    assert a == b
    assert a != pm2_app.fingerprint({"A": "1", "B": "3"})
    assert pm2_app.fingerprint({"A": "1", "Z": "9"}, ["A"]) == pm2_app.fingerprint({"A": "1"}, ["A"])


def test_parse_jlist_skips_daemon_notices():
    out = "[PM2] Spawning PM2 daemon with pm2_home=/x\n[PM2] PM2 Successfully daemonized\n" + json.dumps([proc()])
    assert pm2_app.parse_jlist(out)[0]["name"] == "goalgpt-api"
    assert pm2_app.parse_jlist("") == []
    with pytest.raises(ValueError):
        pm2_app.parse_jlist("garbage")


def test_summarize_mixed_and_absent():
    assert pm2_app.summarize([])["status"] == "absent"
    s = pm2_app.summarize([proc(pid=1, restarts=2), proc(pm_id=1, pid=2, status="stopped", restarts=1)])
    assert s == {"status": "mixed", "pids": [1, 2], "instances": 2, "restarts": 3, "unstable_restarts": 0}


@pytest.mark.parametrize("state,status,verb", [
    ("started", "absent", "start"), ("started", "online", None), ("started", "stopped", "restart"),
    ("started", "errored", "restart"), ("reloaded", "online", "reload"), ("reloaded", "absent", "start"),
    ("restarted", "online", "restart"), ("stopped", "online", "stop"), ("stopped", "stopped", None),
    ("stopped", "absent", None), ("absent", "online", "delete"), ("absent", "absent", None),
])
def test_decide(state, status, verb):
    summary = {"status": status}
    assert pm2_app.decide(state, summary) == verb


def test_build_args():
    p = {"name": "a", "ecosystem": "/e.js", "update_env": True}
    assert pm2_app.build_args("start", p) == ["start", "/e.js", "--only", "a"]
    assert pm2_app.build_args("reload", p) == ["reload", "/e.js", "--only", "a", "--update-env"]
    assert pm2_app.build_args("restart", dict(p, ecosystem=None, update_env=False)) == ["restart", "a"]
    assert pm2_app.build_args("delete", p) == ["delete", "a"]


FAKE_PM2 = textwrap.dedent("""\
    #!{python}
    # A stand-in for pm2: keeps its process list in $PM2_HOME/state.json and logs every call.
    import json, os, sys
    home = os.environ["PM2_HOME"]
    path = os.path.join(home, "state.json")
    state = json.load(open(path)) if os.path.exists(path) else []
    with open(os.path.join(home, "calls.log"), "a") as fh:
        fh.write(" ".join(sys.argv[1:]) + "\\n")
    verb = sys.argv[1]
    def env():
        out = {{}}
        for f in ("app.env", "flags.env"):
            p = os.path.join(home, f)
            if os.path.exists(p):
                for line in open(p):
                    if "=" in line:
                        k, v = line.strip().split("=", 1)
                        out[k] = v
        return out
    if verb == "jlist":
        print(json.dumps(state))
    elif verb == "start":
        state = [{{"name": "app", "pm_id": i, "pid": 1000 + i,
                   "pm2_env": {{"status": "online", "restart_time": 0, "unstable_restarts": 0, "env": env()}}}}
                 for i in range(2)]
    elif verb in ("reload", "restart"):
        for p in state:
            p["pid"] += 10
            p["pm2_env"]["status"] = "online"
            p["pm2_env"]["restart_time"] += 1
            if "--update-env" in sys.argv:
                p["pm2_env"]["env"] = env()
    elif verb == "stop":
        for p in state:
            p["pid"] = 0
            p["pm2_env"]["status"] = "stopped"
    elif verb == "delete":
        state = []
    json.dump(state, open(path, "w"))
""")


@pytest.fixture()
def fake(tmp_path):
    exe = tmp_path / "pm2"
    exe.write_text(FAKE_PM2.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    (tmp_path / "app.env").write_text("PORT=3000\n")
    (tmp_path / "flags.env").write_text("USE_REDIS_CACHE=false\n")
    (tmp_path / "eco.js").write_text("module.exports = {}\n")
    base = {"name": "app", "executable": str(exe), "pm2_home": str(tmp_path), "ecosystem": str(tmp_path / "eco.js"),
            "env_files": [str(tmp_path / "app.env"), str(tmp_path / "flags.env")], "wait_timeout": 2}
    return tmp_path, base


def calls(home: Path) -> list[str]:
    log = home / "calls.log"
    return [c for c in log.read_text().splitlines() if c != "jlist"] if log.exists() else []


def test_started_is_idempotent_and_check_mode_changes_nothing(fake):
    home, base = fake
    r = run_module("pm2_app", base, check=True)
    assert r["changed"] and r["status"] == "absent" and calls(home) == []
    r = run_module("pm2_app", base)
    assert r["changed"] and r["status"] == "online" and r["pids"] == [1000, 1001] and r["env_in_sync"] is True
    assert calls(home) == [f"start {home}/eco.js --only app"]
    r = run_module("pm2_app", base)
    assert not r["changed"] and len(calls(home)) == 1


def test_reload_applies_changed_env_and_fingerprint_moves(fake):
    home, base = fake
    first = run_module("pm2_app", base)
    (home / "flags.env").write_text("USE_REDIS_CACHE=true\n")
    stale = run_module("pm2_app", base)
    assert not stale["changed"] and stale["env_in_sync"] is False
    r = run_module("pm2_app", dict(base, state="reloaded"))
    assert r["changed"] and r["env_in_sync"] is True and r["restarts"] == 2
    assert r["env_fingerprint"] != first["env_fingerprint"]
    assert calls(home)[-1] == f"reload {home}/eco.js --only app --update-env"


def test_stop_and_absent(fake):
    home, base = fake
    run_module("pm2_app", base)
    r = run_module("pm2_app", dict(base, state="stopped"))
    assert r["changed"] and r["status"] == "stopped"
    assert not run_module("pm2_app", dict(base, state="stopped"))["changed"]
    r = run_module("pm2_app", dict(base, state="absent"), check=True)
    assert r["changed"] and r["status"] == "stopped"
    r = run_module("pm2_app", dict(base, state="absent"))
    assert r["changed"] and r["status"] == "absent"


def test_errors_name_the_fix(fake, tmp_path):
    home, base = fake
    r = run_module("pm2_app", dict(base, ecosystem=None))
    assert r["failed"] and "ecosystem" in r["msg"]
    r = run_module("pm2_app", dict(base, executable=str(tmp_path / "nope")))
    assert r["failed"] and "npm install -g pm2" in r["msg"]
    r = run_module("pm2_app", dict(base, env_files=[str(tmp_path / "missing.env")]))
    assert r["failed"] and "missing.env" in r["msg"]


def test_parse_env_text_unescapes_like_the_role_renders():
    # app.env.j2 writes KEY="value" with \ and " escaped; systemd and the ecosystem file undo it.
    assert pm2_app.parse_env_text('P="a\\\\b\\"c"\n') == {"P": 'a\\b"c'}
