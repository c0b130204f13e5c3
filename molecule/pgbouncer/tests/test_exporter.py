"""The PgBouncer and PostgreSQL exporters (gradual.rollout.exporters) beside PgBouncer: pool series
of the app's database from SHOW POOLS, a stats user that reads SHOW commands only, credentials in
root-only files and never in Ansible's output."""
from __future__ import annotations

from pathlib import Path

from metrics_text import series
from molecule_check import run_playbook

SCENARIO = Path(__file__).resolve().parents[1]
STATS = ("pgbouncer_stats", "molecule-pgbouncer-stats-secret")
PG_PASSWORD = "molecule-exporter-secret"
PGB_ENV = "/etc/gradual/pgbouncer-exporter.env"
PG_ENV = "/etc/default/prometheus-postgres-exporter"


def scrape(host, port):
    addr = host.check_output("ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1")
    url = f"http://{addr}:{port}/metrics"
    return host.check_output(
        f"python3 -c \"import urllib.request,sys; sys.stdout.write(urllib.request.urlopen('{url}', timeout=5).read().decode())\"")


def console(host, user, password, sql, db="pgbouncer"):
    return host.run(f"PGPASSWORD='{password}' PGCONNECT_TIMEOUT=5 psql -XAtq "
                    f"'host=127.0.0.1 port=6432 user={user} dbname={db}' -c \"{sql}\"")


def test_pool_series_of_the_app_database(host):
    used = console(host, "goalgpt_app", "molecule-app-secret", "select 1", db="goalgpt")
    assert used.rc == 0, used.stderr
    text = scrape(host, 9127)
    assert series(text, "pgbouncer_up") == [1.0]
    pool = {"database": "goalgpt", "user": "goalgpt_app"}
    for name in ("pgbouncer_pools_client_active_connections", "pgbouncer_pools_client_waiting_connections",
                 "pgbouncer_pools_server_active_connections", "pgbouncer_pools_server_idle_connections",
                 "pgbouncer_pools_client_maxwait_seconds"):
        assert len(series(text, name, **pool)) == 1, name
    # the server connection the select used stays in the pool, idle
    assert series(text, "pgbouncer_pools_server_idle_connections", **pool)[0] >= 1
    assert series(text, "pgbouncer_databases_pool_size", database="goalgpt") == [10.0]
    # the PostgreSQL exporter of the same host
    pg = scrape(host, 9187)
    assert series(pg, "pg_up") == [1.0]
    assert series(pg, "pg_replication_lag") == [0.0]


def test_the_stats_user_reads_show_commands_only(host):
    assert console(host, *STATS, "SHOW POOLS").rc == 0
    for sql in ("RELOAD", "PAUSE goalgpt", "SHUTDOWN"):
        res = console(host, *STATS, sql)
        assert res.rc != 0 and "admin" in res.stderr.lower(), (sql, res.stderr)
    # no PostgreSQL role behind it: no database through PgBouncer
    assert console(host, *STATS, "select 1", db="goalgpt").rc != 0
    assert host.service("pgbouncer").is_running


def test_credentials_in_root_only_files_and_never_in_ansible_output(host):
    # Loosen both files and change their content: the role's config tasks put them back, 0600,
    # with diff and verbose output on, and neither password shows in that output.
    for path in (PGB_ENV, PG_ENV):
        host.check_output(f"chmod 0644 {path} && echo '# edited' >> {path}")
    proc = run_playbook(SCENARIO / "converge.yml", None, "--tags", "exporters_config", "--diff", "-v")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "changed=0" not in out, out[-3000:]
    assert STATS[1] not in out and PG_PASSWORD not in out
    for path, secret in ((PGB_ENV, STATS[1]), (PG_ENV, PG_PASSWORD)):
        f = host.file(path)
        assert f.user == "root" and f.mode == 0o600, path
        assert secret in f.content_string and "# edited" not in f.content_string
    # the exporter runs as a user of its own (DynamicUser), not root or postgres
    pid = host.check_output("systemctl show gradual-pgbouncer-exporter -p MainPID --value")
    assert host.check_output(f"ps -o user= -p {pid}").strip() not in ("root", "postgres")
    assert STATS[1] not in host.check_output(f"tr '\\0' ' ' < /proc/{pid}/cmdline")
