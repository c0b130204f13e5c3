"""Redis: login required, app user without dangerous commands, hardened files and process."""
from __future__ import annotations

from pathlib import Path

from molecule_check import run_playbook

SCENARIO = Path(__file__).resolve().parents[1]

ADMIN = "--user admin --pass molecule-redis-admin --no-auth-warning"
APP = "--user app --pass molecule-redis-app --no-auth-warning"


def cli(host, args, cmd):
    return host.run(f"redis-cli -h 127.0.0.1 -p 6379 {args} {cmd}").stdout.strip()


def test_running_not_root(host):
    svc = host.service("redis-server")
    assert svc.is_running and svc.is_enabled
    assert host.check_output("ps -o user= -C redis-server").strip() == "redis"
    assert host.socket("tcp://127.0.0.1:6379").is_listening
    assert not host.socket("tcp://0.0.0.0:6379").is_listening


def test_config_file(host):
    conf = host.file("/etc/redis/redis.conf")
    assert conf.user == "redis" and conf.group == "redis" and conf.mode == 0o640
    assert "molecule-redis" not in conf.content_string  # only hashes


def test_unauthenticated_ping_is_refused(host):
    assert cli(host, "", "PING").startswith("NOAUTH")


def test_default_user_is_off(host):
    assert "off" in cli(host, ADMIN, "ACL GETUSER default")
    assert cli(host, "--user default --pass '' --no-auth-warning", "PING") != "PONG"


def test_app_user_works_but_not_dangerous_commands(host):
    assert cli(host, APP, "PING") == "PONG"
    assert cli(host, APP, "SET molecule:k v") == "OK"
    assert cli(host, APP, "GET molecule:k") == "v"
    for cmd in ("FLUSHALL", "FLUSHDB", "CONFIG GET maxmemory", "CONFIG SET maxmemory 0", "KEYS '*'", "SHUTDOWN",
                "ACL LIST", "MONITOR"):
        assert cli(host, APP, cmd).startswith("NOPERM"), cmd
    # DEBUG is switched off for everyone (enable-debug-command no), before ACLs are even checked.
    assert "not allowed" in cli(host, ADMIN, "DEBUG SLEEP 0")


def test_admin_and_settings(host):
    assert cli(host, ADMIN, "CONFIG GET maxmemory").splitlines()[1] == str(64 * 1024 * 1024)
    assert cli(host, ADMIN, "CONFIG GET maxmemory-policy").splitlines()[1] == "allkeys-lru"
    assert cli(host, ADMIN, "CONFIG GET appendonly").splitlines()[1] == "yes"
    assert cli(host, ADMIN, "CONFIG GET protected-mode").splitlines()[1] == "yes"


def test_container_workaround_only_in_container(host):
    dropin = host.file("/etc/systemd/system/redis-server.service.d/container.conf")
    assert dropin.exists and "PrivateUsers=false" in dropin.content_string


def apply_refused_directive(host) -> None:
    """Converge with a directive Redis refuses at start and check the undo: the previous
    redis.conf back with its owner and mode, Redis running with it (the AOF keeps the data), and
    the run failed saying so."""
    assert cli(host, ADMIN, "SET molecule:survivor kept") == "OK"
    before = host.file("/etc/redis/redis.conf").content_string
    run = run_playbook(SCENARIO / "bad_config.yml", {"redis_extra_config": {"maxclients": "gr-not-a-number"}},
                       timeout=300)
    out = run.stdout + run.stderr
    assert run.returncode != 0
    assert "Redis did not start with the new redis.conf; the previous file is back" in out, out[-3000:]
    conf = host.file("/etc/redis/redis.conf")
    assert conf.content_string == before
    assert conf.user == "redis" and conf.mode == 0o640
    assert host.service("redis-server").is_running
    assert cli(host, ADMIN, "GET molecule:survivor") == "kept"


def test_config_redis_cannot_start_with_is_undone(host):
    apply_refused_directive(host)


def test_undo_outlasts_systemd_start_limit(host):
    """The unit restarts a failed Redis by itself (Restart=always) and, after StartLimitBurst
    starts, refuses every start, the undo's included. Whether that happens before the role stops
    the unit depends on the host's speed (a CI run hit it with the default five starts in 10 s;
    another, with a burst of two, stopped the unit first). A runtime drop-in makes it certain: one
    start allowed (the role's restart) and the automatic restart at once, so the start limit is
    hit before the role's restart task has returned."""
    dropin = "/run/systemd/system/redis-server.service.d/gr-test-start-limit.conf"
    setup = host.run(f"mkdir -p {dropin.rsplit('/', 1)[0]} && printf '[Unit]\\nStartLimitIntervalSec=300\\n"
                     f"StartLimitBurst=1\\n[Service]\\nRestartSec=0\\n' > {dropin}"
                     " && systemctl daemon-reload && systemctl reset-failed redis-server")
    assert setup.rc == 0, setup.stderr
    try:
        apply_refused_directive(host)
        journal = host.run("journalctl -u redis-server --since -5min --no-pager").stdout
        assert "Start request repeated too quickly" in journal or "start-limit-hit" in journal, journal[-2000:]
    finally:
        host.run(f"rm -f {dropin} && systemctl daemon-reload && systemctl reset-failed redis-server")
