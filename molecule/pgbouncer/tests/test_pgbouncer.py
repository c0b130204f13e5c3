"""PgBouncer: transaction pooling on 6432, scram logins, SHOW POOLS for the admin user; a
configuration PgBouncer does not take is put back."""
from __future__ import annotations

import time
from pathlib import Path

from molecule_check import run_playbook, unit_exposure

SCENARIO = Path(__file__).resolve().parents[1]
ADMIN = ("pgbouncer_admin", "molecule-pgbouncer-admin", "pgbouncer")


def bouncer(host, user, password, db, sql, sslmode="prefer", addr="127.0.0.1"):
    return host.run(
        f"PGPASSWORD='{password}' PGCONNECT_TIMEOUT=5 psql -XAtq "
        f"'host={addr} port=6432 user={user} dbname={db} sslmode={sslmode}' -c \"{sql}\""
    )


def test_service(host):
    svc = host.service("pgbouncer")
    assert svc.is_running and svc.is_enabled
    assert host.socket("tcp://127.0.0.1:6432").is_listening
    assert host.check_output("ps -o user= -C pgbouncer").strip() == "postgres"
    # the unix socket sits next to PostgreSQL's; the pidfile names the running process
    assert host.socket("unix:///var/run/postgresql/.s.PGSQL.6432").is_listening
    pid = host.file("/var/run/postgresql/pgbouncer.pid").content_string.strip()
    assert pid == host.check_output("pgrep -o -x pgbouncer").strip()
    users = host.file("/etc/pgbouncer/userlist.txt")
    assert users.mode == 0o600 and users.user == "postgres"


def test_show_pools_answers_for_admin(host):
    # Pools exist once a client used them.
    used = bouncer(host, "goalgpt_app", "molecule-app-secret", "goalgpt", "select 1")
    assert used.rc == 0, used.stderr
    res = bouncer(host, "pgbouncer_admin", "molecule-pgbouncer-admin", "pgbouncer", "SHOW POOLS")
    assert res.rc == 0, res.stderr
    assert any(line.startswith("goalgpt|goalgpt_app|") for line in res.stdout.splitlines()), res.stdout
    cfg = bouncer(host, "pgbouncer_admin", "molecule-pgbouncer-admin", "pgbouncer", "SHOW CONFIG")
    assert "pool_mode|transaction" in cfg.stdout
    assert "auth_type|hba" in cfg.stdout
    assert "default_pool_size|10" in cfg.stdout


def test_app_queries_through_pgbouncer(host):
    res = bouncer(host, "goalgpt_app", "molecule-app-secret", "goalgpt", "select current_user, current_database()")
    assert res.rc == 0, res.stderr
    assert res.stdout.strip() == "goalgpt_app|goalgpt"
    tls = bouncer(host, "goalgpt_app", "molecule-app-secret", "goalgpt", "select 1", sslmode="require")
    assert tls.rc == 0, tls.stderr


def test_wrong_password_and_non_admin_console_refused(host):
    res = bouncer(host, "goalgpt_app", "wrong", "goalgpt", "select 1")
    assert res.rc != 0
    con = bouncer(host, "goalgpt_app", "molecule-app-secret", "pgbouncer", "SHOW POOLS")
    assert con.rc != 0


def show_config(host) -> dict:
    res = bouncer(host, *ADMIN, "SHOW CONFIG")
    assert res.rc == 0, res.stderr
    return {line.split("|")[0]: line.split("|")[1] for line in res.stdout.splitlines() if "|" in line}


def main_pid(host) -> str:
    return host.check_output("systemctl show -p MainPID --value pgbouncer").strip()


def test_a_setting_pgbouncer_refuses_is_put_back_without_dropping_clients(host):
    """PgBouncer 1.18 answers the reload of a file with a bad line with success, and the lines
    after it fall back to built-in defaults (client TLS off); the next start refuses the file.
    The role reads PgBouncer's log, puts the previous files back (userlist.txt still readable by
    PgBouncer only, no password in the output), reloads them and fails."""
    before = host.file("/etc/pgbouncer/pgbouncer.ini").content_string
    users_before = host.file("/etc/pgbouncer/userlist.txt").content_string
    pid = main_pid(host)
    # the same run adds a user, so userlist.txt (password verifiers) is replaced and put back too
    users = [{"name": "goalgpt_app", "password": "molecule-app-secret"},
             {"name": "goalgpt_owner", "password": "molecule-owner-secret"},
             {"name": "molecule_extra", "password": "molecule-extra-secret"}]
    run = run_playbook(SCENARIO / "converge.yml", {"pgbouncer_settings": {"max_prepared_statementz": 100},
                                                   "pgbouncer_users": users}, timeout=300)
    out = run.stdout + run.stderr
    assert run.returncode != 0
    assert "PgBouncer did not take the new configuration" in out, out[-3000:]
    assert "unknown parameter: pgbouncer/max_prepared_statementz" in out, out[-3000:]
    assert "The previous files are back and loaded again" in out
    assert "molecule-extra-secret" not in out
    ini = host.file("/etc/pgbouncer/pgbouncer.ini")
    assert ini.content_string == before
    assert ini.user == "postgres" and ini.mode == 0o640
    userlist = host.file("/etc/pgbouncer/userlist.txt")
    assert userlist.content_string == users_before
    assert userlist.user == "postgres" and userlist.mode == 0o600
    assert main_pid(host) == pid  # reloaded, not restarted: client connections were kept
    config = show_config(host)
    assert config["client_tls_sslmode"] == "prefer" and config["ignore_startup_parameters"] == "extra_float_digits"
    assert host.run("systemctl restart pgbouncer").rc == 0  # the file on disk starts again
    tls = bouncer(host, "goalgpt_app", "molecule-app-secret", "goalgpt", "select 1", sslmode="require")
    assert tls.rc == 0, tls.stderr


def test_a_listen_address_pgbouncer_cannot_bind_is_put_back(host):
    """PgBouncer starts even when it can bind no TCP address (it serves its unix socket only) and
    systemd calls that a success; app hosts could no longer connect."""
    before = host.file("/etc/pgbouncer/pgbouncer-listen.ini").content_string
    run = run_playbook(SCENARIO / "converge.yml", {"pgbouncer_listen_addr": "192.0.2.1"}, timeout=300)
    out = run.stdout + run.stderr
    assert run.returncode != 0
    assert "cannot listen on 192.0.2.1:6432" in out, out[-3000:]
    assert host.file("/etc/pgbouncer/pgbouncer-listen.ini").content_string == before
    assert host.socket("tcp://127.0.0.1:6432").is_listening
    res = bouncer(host, "goalgpt_app", "molecule-app-secret", "goalgpt", "select 1")
    assert res.rc == 0, res.stderr


def test_settings_the_role_cannot_apply_are_refused_before_any_change(host):
    """A listen setting in pgbouncer_settings would fight the role's own (and a reload would skip
    it); an empty logfile would leave the role blind to a refused file. Both named, nothing moves."""
    files = ["/etc/pgbouncer/pgbouncer.ini", "/etc/pgbouncer/pgbouncer-listen.ini"]
    before = {f: host.file(f).content_string for f in files}
    pid = main_pid(host)
    run = run_playbook(SCENARIO / "converge.yml",
                       {"pgbouncer_settings": {"listen_port": 6433, "logfile": ""}}, timeout=300)
    out = run.stdout + run.stderr
    assert run.returncode != 0
    assert "pgbouncer_settings sets listen_port: the role sets these itself; use pgbouncer_listen_addr" in out, out[-3000:]
    assert ("(unix_socket_dir /var/run/postgresql and pidfile /var/run/postgresql/pgbouncer.pid are fixed)"
            in out), out[-3000:]
    assert "pgbouncer_settings.logfile is empty" in out, out[-3000:]
    assert {f: host.file(f).content_string for f in files} == before
    assert main_pid(host) == pid


def test_a_setting_read_only_at_start_restarts_pgbouncer(host):
    """listen_backlog is one of the settings PgBouncer keeps across a reload: given in
    pgbouncer_settings it goes to the listen file, whose change restarts PgBouncer."""
    pid = main_pid(host)
    run = run_playbook(SCENARIO / "converge.yml", {"pgbouncer_settings": {"listen_backlog": 256}}, timeout=300)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert "listen_backlog = 256" in host.file("/etc/pgbouncer/pgbouncer-listen.ini").content_string
    assert "listen_backlog" not in host.file("/etc/pgbouncer/pgbouncer.ini").content_string
    assert main_pid(host) != pid
    assert show_config(host)["listen_backlog"] == "256"
    # back to the scenario's own settings: one more restart, the listen file as before
    pid = main_pid(host)
    run = run_playbook(SCENARIO / "converge.yml", timeout=300)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert "listen_backlog" not in host.file("/etc/pgbouncer/pgbouncer-listen.ini").content_string
    assert main_pid(host) != pid
    assert show_config(host)["listen_backlog"] == "128"


def test_clients_off_loopback_must_use_tls(host):
    """pgbouncer_client_tls_remote_required: the app's path from another host is never cleartext."""
    addr = host.check_output("hostname -I").split()[0]
    plain = bouncer(host, "goalgpt_app", "molecule-app-secret", "goalgpt", "select 1", sslmode="disable", addr=addr)
    assert plain.rc != 0, "a cleartext login from %s was accepted" % addr
    tls = bouncer(host, "goalgpt_app", "molecule-app-secret", "goalgpt", "select 1", sslmode="require", addr=addr)
    assert tls.rc == 0, tls.stderr
    local = bouncer(host, "goalgpt_app", "molecule-app-secret", "goalgpt", "select 1", sslmode="disable")
    assert local.rc == 0, local.stderr


def test_unit_is_sandboxed_and_restarts(host):
    assert unit_exposure(host, "pgbouncer.service") <= 5.0   # Debian's unit alone: 9.2
    pid = main_pid(host)
    host.run(f"kill -9 {pid}")
    for _attempt in range(40):
        time.sleep(0.5)
        res = bouncer(host, "goalgpt_app", "molecule-app-secret", "goalgpt", "select 1")
        if res.rc == 0:
            assert main_pid(host) != pid
            return
    raise AssertionError("PgBouncer did not come back within 20 s after SIGKILL (Restart=on-failure)")
