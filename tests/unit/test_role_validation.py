# Copyright: contributors to gradual.rollout
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every role refuses a bad size, duration, port or choice in its validation, before any change (#20).

One ``ansible-playbook --check`` run applies the roles to inventory aliases of localhost
(``ansible_connection: local``), one alias per bad value, each alias including the role named by
its ``role_under_test``: inventory variables override the role's defaults exactly as ``-e`` would.
Every alias must fail in the validation (the argument spec's task, or the role's
tasks/validate.yml), with one line that names the variable, and no other task of the role may have
run for it. A tripwire keeps this machine safe: ``ansible_python_interpreter`` points nowhere, so
a module that reached the host would fail instead of changing anything. A second run with good
values (``--tags <role>_validate``) passes validation; a third repeats issue #20's command line.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = ROOT / "build" / "collections"
PLAYBOOK_BIN = shutil.which("ansible-playbook",
                            path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
TRIPWIRE = "/nonexistent/gradual-rollout-tripwire/python"
SPEC_TASK = "Validating arguments against arg spec"
SPEC, ASSERT = "spec", "assert"
SENTRY_SECRET = "sentry-secret-0f3a9c-not-a-dsn"

# Variables every host of a role needs to get as far as validation, and a set of good values that
# are not the defaults (other units, other choices) and must pass.
ROLES = {
    "redis": ({}, {"redis_maxmemory": "2GB", "redis_port": 6380, "redis_timeout": 300,
                   "redis_maxmemory_policy": "volatile-lfu", "redis_save": ["900 1"]}),
    "postgresql": ({"postgresql_memory_mb": 2048},
                   {"postgresql_shared_buffers_mb": 512, "postgresql_port": 5433, "postgresql_log_statement": "mod",
                    "postgresql_users": [{"name": "app", "conn_limit": -1}]}),
    "pgbouncer": ({}, {"pgbouncer_listen_port": 6433, "pgbouncer_query_wait_timeout": 0, "pgbouncer_pool_mode": "session",
                       "pgbouncer_databases": [{"name": "app", "port": 5432, "pool_size": 10}]}),
    "backup": ({}, {"backup_randomized_delay": "1h 30min", "backup_pg_port": 5433, "backup_retention_days": 0,
                    "backup_schedule": "Mon..Fri *-*-* 02:00:00", "backup_methods": ["pg_dump", "pgbackrest"],
                    "backup_pgbackrest_repo_host": "redis__good", "backup_pgbackrest_cipher_pass": "a-long-enough-test-passphrase",
                    "backup_pgbackrest_full_schedule": "Sat *-*-* 23:00:00"}),
    "nginx": ({"nginx_upstream_servers": [{"name": "app1", "address": "127.0.0.1:3000"}]},
              {"nginx_client_max_body_size": "10M", "nginx_keepalive_timeout": "65s 60s", "nginx_https_port": 8443,
               "nginx_tls_protocols": ["TLSv1.3"], "nginx_proxy_read_timeout": "500ms", "nginx_worker_processes": 4,
               "nginx_upstream_servers": [{"name": "app1", "address": "127.0.0.1:3000", "weight": 2, "fail_timeout": "1m"}]}),
    "app": ({"app_db_password": "secret", "app_name": "my-api", "app_db_name": "my_api", "app_db_user": "my_api_app"},
            {"app_pm2_instances": "max", "app_port": 8080, "app_manager": "systemd", "app_pm2_listen_timeout": 8000,
             "app_sentry_dsn": "https://0123456789abcdef@o1.ingest.sentry.example/42"}),
    "service_dropin": ({"service_dropin_unit": "redis-server.service"},
                       {"service_dropin_restart_sec": 0, "service_dropin_restart": "always"}),
    "migrate": ({"migrate_src": "/srv/app/migrations"},
                {"migrate_target": "003", "migrate_lint": False, "migrate_apply": True, "migrate_dest": "/opt/migrations",
                 "migrate_options": {"backup": True, "lock_timeout_ms": 200, "session_settings": {"work_mem": "64MB"}}}),
}

# (role, class, bad variables, where it must fail, text of the one-line message)
CASES = [
    ("redis", "size", {"redis_maxmemory": "lots"}, ASSERT,
     "redis_maxmemory=lots: expected a size like 256mb, 2gb or 0 (no limit)"),
    ("redis", "duration", {"redis_timeout": -1}, ASSERT, "redis_timeout=-1: expected idle seconds"),
    ("redis", "duration_type", {"redis_timeout": "5m"}, SPEC, "argument 'redis_timeout' is of type str"),
    ("redis", "port", {"redis_port": 70000}, ASSERT, "redis_port=70000: expected a TCP port, 1 to 65535"),
    # a pattern ending in $ matched before a final newline (issue #20 item 5): full matches now
    ("redis", "size_newline", {"redis_maxmemory": "256mb\n"}, ASSERT, "expected a size like 256mb, 2gb or 0"),
    ("nginx", "size_newline", {"nginx_client_max_body_size": "10m\n"}, ASSERT, "nginx_client_max_body_size="),
    ("redis", "enum", {"redis_maxmemory_policy": "lru"}, SPEC, "redis_maxmemory_policy must be one of"),
    ("postgresql", "size", {"postgresql_shared_buffers_mb": 0}, ASSERT,
     "postgresql_shared_buffers_mb=0: expected 1 to 8388607 MiB as a plain number"),
    ("postgresql", "size_unit", {"postgresql_work_mem_mb": "4GB"}, SPEC, "argument 'postgresql_work_mem_mb' is of type str"),
    ("postgresql", "port", {"postgresql_port": 0}, ASSERT, "postgresql_port=0: expected a TCP port"),
    ("postgresql", "count", {"postgresql_max_connections": 300000}, ASSERT,
     "postgresql_max_connections=300000: expected 1 to 262143"),
    ("postgresql", "enum", {"postgresql_log_statement": "everything"}, SPEC, "postgresql_log_statement must be one of"),
    ("pgbouncer", "port", {"pgbouncer_listen_port": 0}, ASSERT, "pgbouncer_listen_port=0: expected a TCP port"),
    ("pgbouncer", "port_list", {"pgbouncer_databases": [{"name": "app", "port": 99999}]}, ASSERT,
     "pgbouncer_databases[].port=[99999]: expected TCP ports"),
    ("pgbouncer", "duration", {"pgbouncer_query_wait_timeout": -5}, ASSERT,
     "pgbouncer_query_wait_timeout=-5: expected whole seconds"),
    ("pgbouncer", "size", {"pgbouncer_default_pool_size": 0}, ASSERT, "pgbouncer_default_pool_size=0: expected a count"),
    ("pgbouncer", "enum", {"pgbouncer_pool_mode": "sometimes"}, SPEC, "pgbouncer_pool_mode must be one of"),
    ("backup", "port", {"backup_pg_port": 65536}, ASSERT, "backup_pg_port=65536: expected a TCP port"),
    ("backup", "duration", {"backup_randomized_delay": "lots"}, ASSERT,
     "backup_randomized_delay=lots: expected a systemd time span"),
    ("backup", "duration_days", {"backup_retention_days": -1}, ASSERT, "backup_retention_days=-1: expected a number of days"),
    ("backup", "duration_type", {"backup_retention_days": "two weeks"}, SPEC,
     "argument 'backup_retention_days' is of type str"),
    ("backup", "method", {"backup_methods": ["tarball"]}, SPEC, "tarball"),
    ("backup", "pgbackrest_repo", {"backup_methods": ["pgbackrest"], "backup_pgbackrest_repo_host": "nowhere",
                                   "backup_pgbackrest_cipher_pass": "a-long-enough-test-passphrase"}, ASSERT,
     "backup_pgbackrest_repo_host='nowhere': expected the inventory name of the repository host"),
    # The passphrase is named, never shown: only "(set)" or "(unset)".
    ("backup", "pgbackrest_pass", {"backup_methods": ["pgbackrest"], "backup_pgbackrest_repo_host": "backup__port",
                                   "backup_pgbackrest_cipher_pass": "short"}, ASSERT,
     "backup_pgbackrest_cipher_pass=(set): expected a passphrase of 20 characters or more"),
    ("backup", "pgbackrest_stanza", {"backup_methods": ["pgbackrest"], "backup_pgbackrest_repo_host": "backup__port",
                                     "backup_pgbackrest_cipher_pass": "a-long-enough-test-passphrase",
                                     "backup_pgbackrest_stanza": "main/../x"}, ASSERT,
     "backup_pgbackrest_stanza=main/../x: expected letters, digits"),
    ("nginx", "size", {"nginx_client_max_body_size": "1mb"}, ASSERT,
     "nginx_client_max_body_size=1mb: expected an nginx size"),
    ("nginx", "duration", {"nginx_proxy_read_timeout": "30 seconds"}, ASSERT,
     "nginx_proxy_read_timeout=30 seconds: expected an nginx time"),
    ("nginx", "port", {"nginx_https_port": 0}, ASSERT, "nginx_https_port=0: expected a TCP port"),
    ("nginx", "enum", {"nginx_tls_protocols": ["TLSv1.1"]}, SPEC, "nginx_tls_protocols must be one or more of"),
    ("nginx", "enum_words", {"nginx_proxy_next_upstream": "error sometimes"}, ASSERT,
     "nginx_proxy_next_upstream=error sometimes: expected words among"),
    ("app", "port", {"app_redis_port": 70000}, ASSERT, "app_redis_port=70000: expected a TCP port"),
    ("app", "duration", {"app_pm2_kill_timeout": 0}, ASSERT, "app_pm2_kill_timeout=0: expected milliseconds"),
    ("app", "enum", {"app_manager": "docker"}, SPEC, "app_manager must be one of"),
    ("app", "workers", {"app_pm2_instances": "lots"}, ASSERT, "app_pm2_instances=lots: expected max"),
    # A secret: named, never shown (test_secrets_never_in_output).
    ("app", "sentry_dsn", {"app_sentry_dsn": SENTRY_SECRET}, ASSERT,
     "app_sentry_dsn=(set): expected a DSN like https://<key>@<host>/<project>, or empty for none"),
    ("service_dropin", "duration", {"service_dropin_restart_sec": 7200}, ASSERT,
     "service_dropin_restart_sec=7200: expected seconds, 0 to 3600"),
    ("service_dropin", "enum", {"service_dropin_restart": "sometimes"}, SPEC, "service_dropin_restart must be one of"),
    ("service_dropin", "unit", {"service_dropin_unit": "nginx"}, ASSERT, "service_dropin_unit=nginx: expected a unit name"),
    ("migrate", "target", {"migrate_target": "latest"}, ASSERT,
     "migrate_target=latest: expected a version in digits like 003, or empty for the latest"),
    ("migrate", "target_newline", {"migrate_target": "003\n"}, ASSERT, "migrate_target=003"),
    ("migrate", "dest", {"migrate_dest": "migrations"}, ASSERT,
     "migrate_dest=migrations: expected an absolute path on the database host"),
    ("migrate", "options_path", {"migrate_options": {"path": "/tmp/elsewhere"}}, ASSERT,
     "migrate_options.path=/tmp/elsewhere: expected no path in migrate_options"),
    ("migrate", "options_type", {"migrate_options": ["backup"]}, SPEC, "argument 'migrate_options' is of type list"),
    ("migrate", "lint_type", {"migrate_lint": "sometimes"}, SPEC, "argument 'migrate_lint' is of type str"),
    ("migrate", "src_empty", {"migrate_src": ""}, ASSERT,
     "migrate_src=: expected the controller folder of the migration files"),
]


def _host(role: str, klass: str) -> str:
    return f"{role}__{klass}"


WRAPPER = "Apply the role under test"
PLAYBOOK = [{"hosts": "all", "gather_facts": False, "tasks": [
    {"name": WRAPPER, "ansible.builtin.include_role": {"name": "gradual.rollout.{{ role_under_test }}"}, "tags": ["always"]}]}]


def _run(workdir: Path, name: str, inventory: dict | str, args: list[str]) -> dict:
    """One ansible-playbook --check run; return the JSON callback's report (plus rc and stderr)."""
    playbook = workdir / "playbook.yml"
    if isinstance(inventory, dict):
        inv_file = workdir / f"{name}.inventory.yml"
        inv_file.write_text(yaml.safe_dump(inventory))
        inventory = str(inv_file)
    # None of the caller's ANSIBLE_* settings: ansible-test units sets some for its own runs (workers that
    # linger 10 s at exit for coverage made this 30 times slower).
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_CONFIG=str(workdir / "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS),
               ANSIBLE_LOCAL_TEMP=str(workdir / "tmp"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([PLAYBOOK_BIN, "-i", inventory, str(playbook), "--check", *args],
                          capture_output=True, text=True, env=env, cwd=workdir, timeout=180, check=False)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        report = {"plays": [], "stats": {}, "_stdout": proc.stdout}
    report["rc"] = proc.returncode
    report["_stderr"] = proc.stderr
    return report


def _inventory(hosts: dict[str, dict]) -> dict:
    return {"all": {"vars": {"ansible_connection": "local", "ansible_python_interpreter": TRIPWIRE}, "hosts": hosts}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, run_once) -> dict[str, dict]:
    """Three runs at once: every bad value, every role's good values, issue #20's command line.
    Once per pytest run, also under ansible-test units, which forks for every test (conftest.py)."""
    if PLAYBOOK_BIN is None:
        pytest.skip("ansible-playbook not found")
    return run_once("role_validation", lambda: _runs(tmp_path_factory.mktemp("role_validation")))


def _runs(workdir: Path) -> dict[str, dict]:
    (workdir / "ansible.cfg").write_text(
        "[defaults]\nstdout_callback = ansible.posix.json\ncallbacks_enabled = ansible.posix.json\n"
        "interpreter_python = auto_silent\nretry_files_enabled = False\n")
    (workdir / "playbook.yml").write_text(yaml.safe_dump(PLAYBOOK, sort_keys=False))
    bad = {_host(role, klass): {"role_under_test": role, **ROLES[role][0], **values} for role, klass, values, _where, _expected in CASES}
    good = {_host(role, "good"): {"role_under_test": role, **common, **values} for role, (common, values) in ROLES.items()}
    jobs = {
        "bad": (_inventory(bad), []),
        "good": (_inventory(good), ["--tags", ",".join(f"{role}_validate" for role in ROLES)]),
        # The report of issue #20, as it was typed: -e on the command line, localhost.
        "cli": ("localhost,", ["-c", "local", "-e", "role_under_test=redis", "-e", "redis_maxmemory=lots",
                               "-e", f"ansible_python_interpreter={TRIPWIRE}"]),
    }
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {name: pool.submit(_run, workdir, name, *job) for name, job in jobs.items()}
        return {name: future.result() for name, future in futures.items()}


def _is_validation(task: dict, role: str) -> bool:
    """The argument spec's task, a task of the role's tasks/validate.yml, or the include itself."""
    name, path = task["task"]["name"], task["task"].get("path") or ""
    return name == WRAPPER or SPEC_TASK in name or f"/roles/{role}/tasks/validate.yml:" in path


def _tasks(report: dict) -> list[dict]:
    return [task for play in report["plays"] for task in play["tasks"]]


def _check_refused(report: dict, role: str, host: str, where: str, expected: str, bad: dict | None = None) -> None:
    tasks = _tasks(report)
    assert tasks, f"no JSON report: {report.get('_stdout', '')[-2000:]} {report['_stderr'][-2000:]}"
    assert report["rc"] != 0
    ran = [task for task in tasks if host in task["hosts"]]
    assert ran, f"{host} ran no task"
    failing = ran[-1]
    result = failing["hosts"][host]
    assert result.get("failed") is True, f"{host}: the last task that ran did not fail: {failing['task']['name']}"
    # Nothing but validation ran for this host, the failure included, and nothing changed.
    assert [t["task"]["name"] for t in ran if not _is_validation(t, role)] == []
    assert report["stats"][host]["changed"] == 0 and report["stats"][host]["failures"] == 1
    if where == SPEC:
        assert SPEC_TASK in failing["task"]["name"]
        errors = result["argument_errors"]
        assert len(errors) == 1 and "\n" not in errors[0], errors
        assert expected in errors[0]
    else:
        assert f"/roles/{role}/tasks/validate.yml:" in failing["task"]["path"]
        message = result["msg"]
        # the message quotes the bad value, which may itself hold the newline under test
        assert message.count("\n") == sum(str(v).count("\n") for v in (bad or {}).values()) and expected in message, message
        assert message.endswith("Nothing was changed.")


@pytest.mark.parametrize(("role", "klass", "bad", "where", "expected"), CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_bad_value_refused_in_validation(runs, role, klass, bad, where, expected):
    _check_refused(runs["bad"], role, _host(role, klass), where, expected, bad)


def test_no_task_beyond_validation_ran(runs):
    """Every alias failed in validation: the run holds no other task of any role."""
    roles = {case[0] for case in CASES}
    assert [t["task"]["name"] for t in _tasks(runs["bad"]) if not any(_is_validation(t, r) for r in roles)] == []
    assert all(stats["changed"] == 0 and stats["failures"] == 1 for stats in runs["bad"]["stats"].values())
    assert len(runs["bad"]["stats"]) == len(CASES)


@pytest.mark.parametrize("role", list(ROLES))
def test_good_values_pass_validation(runs, role):
    report = runs["good"]
    host = _host(role, "good")
    assert report["rc"] == 0, (report.get("_stdout", "")[-2000:], report["_stderr"][-2000:])
    ran = [t for t in _tasks(report) if host in t["hosts"]]
    assert any(SPEC_TASK in t["task"]["name"] for t in ran)
    asserts = [t for t in ran if f"/roles/{role}/tasks/validate.yml:" in (t["task"].get("path") or "")]
    assert asserts and not any(t["hosts"][host].get("skipped") or t["hosts"][host].get("failed") for t in asserts)
    assert all(_is_validation(t, role) for t in ran)
    assert report["stats"][host]["failures"] == 0 and report["stats"][host]["changed"] == 0


def test_reported_command_line_fails_in_validation(runs):
    """Issue #20's report: ``-i localhost, -c local --check -e redis_maxmemory=lots``."""
    _check_refused(runs["cli"], "redis", "localhost", ASSERT,
                   "redis_maxmemory=lots: expected a size like 256mb, 2gb or 0 (no limit)")


def test_secrets_never_in_output(runs):
    """A refused secret is named in the failure, its value appears nowhere in the runs' output."""
    for name, report in runs.items():
        assert SENTRY_SECRET not in json.dumps(report), name
