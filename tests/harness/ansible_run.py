"""Run the collection's modules for real from pytest.

``run_module`` executes a module file the way Ansible does on a target (a JSON argument file,
the real AnsibleModule), in a subprocess: fast, and the module's own code path end to end.
``ansible_adhoc`` goes through ``ansible localhost -m gradual.rollout.NAME`` for the full stack
(action plugins, no_log filtering, check/diff flags as a user passes them).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = ROOT / "build" / "collections"


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(COLLECTIONS), env.get("PYTHONPATH")]))
    env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    return env


def run_module(name: str, args: dict, check: bool = False, diff: bool = False,
               timeout: float = 300) -> dict:
    """Run plugins/modules/NAME.py with ARGS; return its JSON result (``rc`` added)."""
    payload = dict(args)
    payload.update({"_ansible_check_mode": check, "_ansible_diff": diff,
                    "_ansible_module_name": f"gradual.rollout.{name}",
                    "_ansible_tmpdir": tempfile.gettempdir(), "_ansible_remote_tmp": tempfile.gettempdir()})
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump({"ANSIBLE_MODULE_ARGS": payload}, fh)
        argfile = fh.name
    try:
        proc = subprocess.run([sys.executable, "-m",
                               f"ansible_collections.gradual.rollout.plugins.modules.{name}", argfile],
                              capture_output=True, text=True, env=_env(), timeout=timeout, cwd=ROOT, check=False)
    finally:
        os.unlink(argfile)
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else {}
    except json.JSONDecodeError:
        result = {"failed": True, "msg": "module printed no JSON", "stdout": proc.stdout}
    result["rc"] = proc.returncode
    if proc.stderr:
        result.setdefault("_stderr", proc.stderr)
    return result


def ansible_adhoc(name: str, args: dict, check: bool = False, diff: bool = False,
                  extra: list[str] | None = None, timeout: float = 300) -> dict:
    """``ansible localhost -m gradual.rollout.NAME -a JSON``; return the host's result."""
    env = _env()
    env.update(ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               # an empty list fails on ansible-core 2.19 ("A non-empty plugin name is required");
               # naming the stdout callback itself keeps ansible.cfg's profile_tasks out of the JSON
               ANSIBLE_CALLBACKS_ENABLED="ansible.posix.json")
    cmd = [str(ROOT / ".venv" / "bin" / "ansible") if (ROOT / ".venv").exists() else "ansible",
           "localhost", "-i", "localhost,", "-c", "local", "-m", f"gradual.rollout.{name}",
           "-a", json.dumps(args), "-e", f"ansible_python_interpreter={sys.executable}"]
    cmd += (["--check"] if check else []) + (["--diff"] if diff else []) + (extra or [])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT, check=False)
    data = json.loads(proc.stdout)
    host = data["plays"][0]["tasks"][0]["hosts"]["localhost"]
    host["rc"] = proc.returncode
    host["_stdout"] = proc.stdout
    return host
