#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pm2_app
short_description: Manage the state of a PM2 application by name
version_added: "0.1.0"
description:
  - Brings a PM2 application to C(started), C(reloaded), C(restarted), C(stopped) or C(absent),
    deciding what to do from C(pm2 jlist) so that repeated runs change nothing.
  - C(reloaded) is the zero-downtime cluster reload (C(pm2 reload --update-env)). With an
    ecosystem file that reads its environment files at load time, changed values really apply.
  - Returns the processes' pids, status and restart counts, and a fingerprint of the environment
    the processes run with (never the values themselves).
author:
  - gradual.rollout maintainers (@gradual-rollout)
options:
  name:
    description: The PM2 application name (C(name) in the ecosystem file).
    type: str
    required: true
  state:
    description:
      - C(started) starts the app when it is absent or not online, and otherwise changes nothing.
      - C(reloaded) and C(restarted) always act (they start the app when it is absent).
      - C(stopped) stops online instances; C(absent) deletes the app from PM2.
    type: str
    choices: [started, reloaded, restarted, stopped, absent]
    default: started
  ecosystem:
    description:
      - Path of the ecosystem file that declares the app. Needed to start an app PM2 does not know
        yet; used for reload and restart too so that the file is read again.
    type: path
  pm2_home:
    description: PM2_HOME of the PM2 daemon that runs the app.
    type: path
  run_as:
    description:
      - Run C(pm2) as this user (through C(runuser)) when the module runs as root. The app's PM2
        daemon then runs as that user.
    type: str
  executable:
    description: Path or name of the C(pm2) executable.
    type: path
    default: pm2
  update_env:
    description: Pass C(--update-env) on reload and restart so the new environment applies.
    type: bool
    default: true
  env_files:
    description:
      - KEY=VALUE files whose keys make up the environment fingerprint. When given, the result
        also says whether the running processes use the values now in these files
        (RV(env_in_sync)).
    type: list
    elements: path
  save:
    description: Run C(pm2 save) after a change, so PM2's boot unit resurrects the new process list.
    type: bool
    default: false
  wait_timeout:
    description: Seconds to wait, after an action, for every instance to be C(online) (0 skips).
    type: int
    default: 30
notes:
  - Supports check mode; the result then tells what would be done.
  - Environment values are never returned, only a SHA-256 fingerprint.
"""

EXAMPLES = r"""
- name: Start myapp from its ecosystem file (no change when already online)
  gradual.rollout.pm2_app:
    name: myapp
    ecosystem: /srv/myapp/ecosystem.config.js
    pm2_home: /srv/myapp/.pm2
    run_as: myapp
    save: true

- name: Zero-downtime cluster reload that applies changed env files
  gradual.rollout.pm2_app:
    name: myapp
    state: reloaded
    ecosystem: /srv/myapp/ecosystem.config.js
    pm2_home: /srv/myapp/.pm2
    run_as: myapp
    env_files: [/etc/myapp/app.env, /etc/myapp/flags.env]
  register: reload

- name: The reload applied the files
  ansible.builtin.assert:
    that: reload.env_in_sync
"""

RETURN = r"""
status:
  description: C(online), C(stopped), C(errored), C(mixed) (instances disagree) or C(absent), after the action.
  returned: always
  type: str
  sample: online
pids:
  description: Process ids of the app's instances (0 for an instance that is not running).
  returned: always
  type: list
  elements: int
  sample: [4242, 4243]
instances:
  description: Number of instances PM2 knows for the app.
  returned: always
  type: int
  sample: 2
restarts:
  description: Sum of PM2's restart counters over the instances.
  returned: always
  type: int
  sample: 0
unstable_restarts:
  description: Sum of PM2's unstable restart counters.
  returned: always
  type: int
  sample: 0
env_fingerprint:
  description: SHA-256 of the sorted KEY=VALUE pairs the first instance runs with (keys of O(env_files) when given).
  returned: always
  type: str
  sample: 3f1c0e5e2b0c9b8d4c4c0d2f7f5b1a1e0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a
env_in_sync:
  description: Whether the running environment matches O(env_files) (null without them or when absent).
  returned: always
  type: bool
  sample: true
commands:
  description: The pm2 commands run (or that would run in check mode).
  returned: always
  type: list
  elements: str
  sample: ["pm2 reload /srv/myapp/ecosystem.config.js --only myapp --update-env"]
"""

import hashlib
import json
import os
import pwd
import re
import time

from ansible.module_utils.basic import AnsibleModule

# Keys PM2 adds to a process environment by itself; they differ between runs, not between configs.
VOLATILE_KEYS = frozenset({
    "pm_id", "unique_id", "NODE_APP_INSTANCE", "PM2_HOME", "PM2_USAGE", "PM2_JSON_PROCESSING",
    "PM2_INTERACTOR_PROCESSING", "PM2_DISCRETE_MODE", "PM2_PROGRAMMATIC", "SUDO_USER", "SUDO_UID",
    "SUDO_GID", "SUDO_COMMAND", "OLDPWD", "PWD", "SHLVL", "_", "status", "name", "vizion_running",
    "km_link", "pm_uptime", "axm_actions", "axm_monitor", "axm_options", "axm_dynamic", "restart_time",
    "unstable_restarts", "created_at", "version", "node_version", "versioning", "exit_code",
})
ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


def parse_env_text(text: str) -> dict[str, str]:
    """KEY=VALUE lines (optional `export`, optional quotes, \\" and \\\\ unescaped in double quotes)."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = ENV_LINE.fullmatch(line)
        if not m:
            continue
        key, value = m.group(1), m.group(2)
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = re.sub(r'\\(["\\])', r"\1", value[1:-1])
        elif len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        env[key] = value
    return env


def fingerprint(env: dict, keys: list[str] | None = None) -> str:
    if keys is None:
        keys = [k for k in env if k not in VOLATILE_KEYS]
    pairs = [f"{k}={'' if env.get(k) is None else env.get(k)}" for k in sorted(set(keys))]
    return hashlib.sha256("\n".join(pairs).encode("utf-8")).hexdigest()


def parse_jlist(out: str) -> list[dict]:
    """`pm2 jlist` prints JSON, sometimes after notices (daemon spawn, version warnings)."""
    text = out.strip()
    if not text:
        return []
    try:
        return json.loads(text)
    except ValueError:
        pass
    for i, line in enumerate(text.splitlines()):
        if line.lstrip().startswith("["):
            try:
                return json.loads("\n".join(text.splitlines()[i:]))
            except ValueError:
                continue
    raise ValueError("no JSON list in pm2 jlist output")


def summarize(procs: list[dict]) -> dict:
    statuses = sorted({p.get("pm2_env", {}).get("status", "unknown") for p in procs})
    if not procs:
        status = "absent"
    elif len(statuses) == 1:
        status = statuses[0]
    else:
        status = "mixed"
    return {
        "status": status,
        "pids": [int(p.get("pid") or 0) for p in procs],
        "instances": len(procs),
        "restarts": sum(int(p.get("pm2_env", {}).get("restart_time") or 0) for p in procs),
        "unstable_restarts": sum(int(p.get("pm2_env", {}).get("unstable_restarts") or 0) for p in procs),
    }


def process_env(proc: dict) -> dict:
    pm2_env = proc.get("pm2_env", {}) or {}
    env = pm2_env.get("env")
    return env if isinstance(env, dict) else {}


def decide(state: str, summary: dict) -> str | None:
    """The pm2 verb to run for STATE given the current SUMMARY, or None when nothing is to do."""
    status = summary["status"]
    if state == "started":
        if status == "absent":
            return "start"
        return None if status == "online" else "restart"
    if state in ("reloaded", "restarted"):
        if status == "absent":
            return "start"
        return "reload" if state == "reloaded" else "restart"
    if state == "stopped":
        return None if status in ("absent", "stopped") else "stop"
    if state == "absent":
        return None if status == "absent" else "delete"
    raise ValueError(state)


class Pm2:
    def __init__(self, module: AnsibleModule):
        self.module = module
        p = module.params
        exe = p["executable"]
        self.exe = exe if os.path.isabs(exe) else module.get_bin_path(exe, required=False)
        self.prefix: list[str] = []
        self.env: dict[str, str] = {"FORCE_COLOR": "0", "PM2_DISCRETE_MODE": "true"}
        if p["pm2_home"]:
            self.env["PM2_HOME"] = p["pm2_home"]
        if p["run_as"] and os.geteuid() == 0:
            try:
                pw = pwd.getpwnam(p["run_as"])
            except KeyError:
                module.fail_json(msg=f"run_as: user {p['run_as']!r} does not exist; create it first")
            if pw.pw_uid != 0:
                runuser = module.get_bin_path("runuser", required=True)
                self.prefix = [runuser, "-u", p["run_as"], "--"]
                self.env["HOME"] = pw.pw_dir
                self.env.setdefault("PM2_HOME", os.path.join(pw.pw_dir, ".pm2"))

    def available(self) -> bool:
        return bool(self.exe) and os.path.exists(self.exe)

    def run(self, args: list[str], check_rc: bool = True) -> str:
        cmd = self.prefix + [self.exe] + args
        rc, out, err = self.module.run_command(cmd, environ_update=self.env)
        if rc != 0 and check_rc:
            self.module.fail_json(msg=f"'pm2 {' '.join(args)}' failed with rc={rc}: {(err or out).strip()[-2000:]}",
                                  rc=rc, stdout=out, stderr=err)
        return out

    def procs(self, name: str) -> list[dict]:
        out = self.run(["jlist"])
        try:
            data = parse_jlist(out)
        except ValueError as exc:
            self.module.fail_json(msg=f"cannot read 'pm2 jlist': {exc}", stdout=out)
        return sorted((p for p in data if p.get("name") == name), key=lambda p: p.get("pm_id", 0))


def read_env_files(module: AnsibleModule, paths: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for path in paths:
        try:
            with open(path, encoding="utf-8") as fh:
                env.update(parse_env_text(fh.read()))
        except OSError as exc:
            module.fail_json(msg=f"env_files: cannot read {path}: {exc.strerror}; render the file first or drop it from env_files")
    return env


def build_args(verb: str, p: dict) -> list[str]:
    name, eco = p["name"], p["ecosystem"]
    if verb == "start":
        return ["start", eco, "--only", name]
    if verb in ("reload", "restart"):
        args = [verb, eco, "--only", name] if eco else [verb, name]
        return args + (["--update-env"] if p["update_env"] else [])
    return [verb, name]


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", default="started", choices=["started", "reloaded", "restarted", "stopped", "absent"]),
            ecosystem=dict(type="path"),
            pm2_home=dict(type="path"),
            run_as=dict(type="str"),
            executable=dict(type="path", default="pm2"),
            update_env=dict(type="bool", default=True),
            env_files=dict(type="list", elements="path"),
            save=dict(type="bool", default=False),
            wait_timeout=dict(type="int", default=30),
        ),
        supports_check_mode=True,
    )
    p = module.params
    pm2 = Pm2(module)
    result: dict = {"changed": False, "commands": [], "env_in_sync": None}

    if not pm2.available():
        if module.check_mode and p["state"] in ("started", "reloaded", "restarted"):
            result.update(changed=True, status="absent", pids=[], instances=0, restarts=0, unstable_restarts=0,
                          env_fingerprint="", msg="pm2 is not installed yet; the app would be started")
            module.exit_json(**result)
        if p["state"] in ("stopped", "absent") and module.check_mode:
            result.update(status="absent", pids=[], instances=0, restarts=0, unstable_restarts=0, env_fingerprint="")
            module.exit_json(**result)
        module.fail_json(msg=f"executable: pm2 not found ({p['executable']!r}); install it (npm install -g pm2) or set executable")

    wanted_env = read_env_files(module, p["env_files"]) if p["env_files"] else None
    procs = pm2.procs(p["name"])
    verb = decide(p["state"], summarize(procs))
    if verb in ("start",) and not p["ecosystem"]:
        module.fail_json(msg=f"ecosystem: PM2 does not know app {p['name']!r}; give the ecosystem file that declares it")
    if verb is not None and verb != "start" and p["ecosystem"] and not os.path.exists(p["ecosystem"]) and verb in ("reload", "restart"):
        module.fail_json(msg=f"ecosystem: {p['ecosystem']} does not exist")

    if verb is not None:
        args = build_args(verb, p)
        result["commands"].append("pm2 " + " ".join(args))
        result["changed"] = True
        if not module.check_mode:
            pm2.run(args)
            if p["save"]:
                result["commands"].append("pm2 save")
                pm2.run(["save", "--force"])
            procs = pm2.procs(p["name"])
            if p["state"] in ("started", "reloaded", "restarted") and p["wait_timeout"] > 0:
                deadline = time.monotonic() + p["wait_timeout"]
                while summarize(procs)["status"] != "online" and time.monotonic() < deadline:
                    time.sleep(0.5)
                    procs = pm2.procs(p["name"])
                summary = summarize(procs)
                if summary["status"] != "online":
                    module.fail_json(msg=f"{p['name']} is {summary['status']} after 'pm2 {' '.join(args)}' "
                                         f"(waited {p['wait_timeout']} s); read its log with 'pm2 logs {p['name']}'",
                                     **summary)

    result.update(summarize(procs))
    running = process_env(procs[0]) if procs else {}
    keys = sorted(wanted_env) if wanted_env is not None else None
    result["env_fingerprint"] = fingerprint(running, keys) if procs else ""
    if wanted_env is not None and procs and not (module.check_mode and verb is not None):
        result["env_in_sync"] = all(str(running.get(k, "")) == v for k, v in wanted_env.items())
    module.exit_json(**result)


if __name__ == "__main__":
    main()
