"""The PostgreSQL exporter (gradual.rollout.exporters) on the primary and the replica: real series
from both, its login a member of pg_monitor only, its password in a root-only file, its port open
to the allowed source (the primary's address) only."""
from __future__ import annotations

import time

import testinfra
from metrics_text import series

PRIMARY = testinfra.get_host("docker://gr-postgresql-primary")
REPLICA = testinfra.get_host("docker://gr-postgresql-replica")
ENV_FILE = "/etc/default/prometheus-postgres-exporter"
PASSWORD = "molecule-exporter-secret"


def address(host):
    return host.check_output("ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1")


def scrape(from_host, target_host, timeout=5):
    """The exporter's /metrics of TARGET_HOST fetched on FROM_HOST (the command's result)."""
    url = f"http://{address(target_host)}:9187/metrics"
    return from_host.run(
        f"python3 -c \"import urllib.request,sys; sys.stdout.write(urllib.request.urlopen('{url}', timeout={timeout}).read().decode())\""
    )


def test_primary_and_replica_series():
    # The primary reads its own exporter (its address is the allowed source) and the replica's.
    primary = scrape(PRIMARY, PRIMARY)
    assert primary.rc == 0, primary.stderr
    assert series(primary.stdout, "pg_up") == [1.0]
    assert series(primary.stdout, "pg_replication_is_replica") == [0.0]
    # the replica's walsender, seen on the primary with its byte lag
    assert series(primary.stdout, "pg_stat_replication_pg_wal_lsn_diff", application_name="gr_postgresql_replica")
    replica = scrape(PRIMARY, REPLICA)
    assert replica.rc == 0, replica.stderr
    assert series(replica.stdout, "pg_up") == [1.0]
    assert series(replica.stdout, "pg_replication_is_replica") == [1.0]
    lag = series(replica.stdout, "pg_replication_lag")
    assert len(lag) == 1 and 0 <= lag[0] < 30, lag
    # the default metrics the alert rules and dashboards read are there
    assert series(replica.stdout, "pg_stat_activity_count")
    assert series(primary.stdout, "pg_stat_database_xact_commit", datname="goalgpt")


def test_a_slow_query_shows_with_its_user_and_application():
    PRIMARY.run("su postgres -c \"PGAPPNAME=slow-probe psql -XAtq -c 'select pg_sleep(30)'\" >/dev/null 2>&1 &")
    try:
        deadline = time.time() + 20
        while True:
            out = scrape(PRIMARY, PRIMARY)
            assert out.rc == 0, out.stderr
            slow = series(out.stdout, "pg_session_max_query_duration_seconds", usename="postgres",
                          application_name="slow-probe", state="active", datname="postgres")
            if slow and slow[0] >= 2:
                break
            assert time.time() < deadline, f"no slow-probe session >= 2 s in {slow}"
            time.sleep(1)
        assert series(out.stdout, "pg_session_max_tx_duration_seconds", application_name="slow-probe")[0] >= 2
    finally:
        PRIMARY.run("su postgres -c \"psql -XAtq -c \\\"select pg_cancel_backend(pid) from pg_stat_activity "
                    "where application_name = 'slow-probe'\\\"\"")


def test_the_exporter_port_is_closed_to_other_sources():
    # The replica is not an allowed source: the primary's exporter drops its packets.
    res = scrape(REPLICA, PRIMARY, timeout=3)
    assert res.rc != 0
    assert "timed out" in res.stderr or "refused" in res.stderr, res.stderr


def test_the_login_is_pg_monitor_only_and_reads_no_table():
    PRIMARY.check_output(
        "su postgres -c \"psql -XAtq -d goalgpt -c 'create table if not exists public.exporter_probe (i int); "
        "alter table public.exporter_probe owner to goalgpt_owner'\"")
    login = f"PGPASSWORD='{PASSWORD}' psql -XAtq 'host=127.0.0.1 user=metrics dbname=goalgpt'"
    member = PRIMARY.check_output(
        f"{login} -c \"select string_agg(roleid::regrole::text, ',') from pg_auth_members where member = 'metrics'::regrole\"")
    assert member == "pg_monitor"
    flags = PRIMARY.check_output(
        f"{login} -c \"select rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls from pg_roles where rolname = current_user\"")
    assert flags == "f|f|f|f|f"
    denied = PRIMARY.run(f"{login} -c 'select count(*) from public.exporter_probe'")
    assert denied.rc != 0 and "permission denied" in denied.stderr, denied.stderr
    # the replica has the same login, by replication
    assert REPLICA.run(f"PGPASSWORD='{PASSWORD}' psql -XAtq 'host=127.0.0.1 user=metrics dbname=postgres' -c 'select 1'").rc == 0


def test_the_password_is_in_a_root_only_file_only():
    for h in (PRIMARY, REPLICA):
        f = h.file(ENV_FILE)
        assert f.user == "root" and f.mode == 0o600
        assert PASSWORD in f.content_string
        # not on the exporter's command line
        pid = h.check_output("systemctl show prometheus-postgres-exporter -p MainPID --value")
        assert pid != "0"
        assert PASSWORD not in h.check_output(f"tr '\\0' ' ' < /proc/{pid}/cmdline")
        assert h.check_output(f"ps -o user= -p {pid}").strip() == "prometheus"
