"""PgBouncer: transaction pooling on 6432, scram logins, SHOW POOLS for the admin user."""
from __future__ import annotations


def bouncer(host, user, password, db, sql, sslmode="prefer"):
    return host.run(
        f"PGPASSWORD='{password}' PGCONNECT_TIMEOUT=5 psql -XAtq "
        f"'host=127.0.0.1 port=6432 user={user} dbname={db} sslmode={sslmode}' -c \"{sql}\""
    )


def test_service(host):
    svc = host.service("pgbouncer")
    assert svc.is_running and svc.is_enabled
    assert host.socket("tcp://127.0.0.1:6432").is_listening
    assert host.check_output("ps -o user= -C pgbouncer").strip() == "postgres"
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
    assert "auth_type|scram-sha-256" in cfg.stdout
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
