"""PostgreSQL primary + streaming replica: behaviour and hardening."""
from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import pytest
import testinfra

from molecule_check import run_playbook, unit_exposure

PRIMARY = testinfra.get_host("docker://gr-postgresql-primary")
REPLICA = testinfra.get_host("docker://gr-postgresql-replica")
UNIT = "postgresql@15-main"
SCENARIO = Path(__file__).resolve().parents[1]
CONF = "/etc/postgresql/15/main/postgresql.conf"


def psql(host, sql, db="postgres"):
    return host.check_output(f"su postgres -c \"psql -XAtq -d {db} -c \\\"{sql}\\\"\"")


def remote(host, conninfo, sql, password):
    """Run psql over TCP; returns the command result (rc, stdout, stderr)."""
    return host.run(f"PGPASSWORD='{password}' PGCONNECT_TIMEOUT=5 psql -XAtq '{conninfo}' -c \"{sql}\"")


@pytest.mark.parametrize("h", [PRIMARY, REPLICA], ids=["primary", "replica"])
def test_service_and_hardening(h):
    assert h.service(UNIT).is_running
    assert h.service(UNIT).is_enabled
    assert psql(h, "show data_checksums") == "on"
    assert psql(h, "show ssl") == "on"
    assert psql(h, "show ssl_min_protocol_version") == "TLSv1.2"
    assert psql(h, "show password_encryption") == "scram-sha-256"
    assert psql(h, "show log_connections") == "on"
    assert psql(h, "show log_statement") == "ddl"
    data = h.file("/var/lib/postgresql/15/main")
    assert data.mode == 0o700 and data.user == "postgres"
    hba = h.file("/etc/postgresql/15/main/pg_hba.conf")
    assert hba.mode == 0o600
    assert "trust" not in hba.content_string.replace("# Local sockets: peer. Remote: TLS and scram-sha-256 only; anything else is rejected. Never trust.", "")
    # Nothing unexpected: the server reports no error in either file.
    assert psql(h, "select count(*) from pg_file_settings where error is not null") == "0"
    assert psql(h, "select count(*) from pg_hba_file_rules where error is not null") == "0"


def test_tuning_from_memory():
    # postgresql_memory_mb: 1024 in converge.yml → a quarter for shared_buffers.
    assert psql(PRIMARY, "show shared_buffers") == "256MB"
    assert psql(PRIMARY, "show effective_cache_size") == "768MB"


def test_roles_and_database():
    assert psql(PRIMARY, "select rolconnlimit from pg_roles where rolname = 'goalgpt_app'") == "40"
    assert psql(PRIMARY, "select pg_get_userbyid(datdba) from pg_database where datname = 'goalgpt'") == "goalgpt_owner"
    assert psql(PRIMARY, "select rolsuper from pg_roles where rolname = 'goalgpt_owner'") == "f"
    # postgresql_users[].settings: ALTER ROLE goalgpt_app SET statement_timeout = '5s'
    assert psql(PRIMARY, "select array_to_string(setconfig, ',') from pg_db_role_setting "
                         "where setrole = 'goalgpt_app'::regrole and setdatabase = 0") == "statement_timeout=5s"
    # type=parameter grant: the migrating owner may lower deadlock_timeout, the app may not
    assert psql(PRIMARY, "select has_parameter_privilege('goalgpt_owner', 'deadlock_timeout', 'SET'),"
                         " has_parameter_privilege('goalgpt_app', 'deadlock_timeout', 'SET')") == "t|f"


def test_replica_is_streaming_and_read_only():
    assert psql(REPLICA, "select pg_is_in_recovery()") == "t"
    assert psql(PRIMARY, "select active from pg_replication_slots where slot_name = 'gr_postgresql_replica'") == "t"
    state = psql(PRIMARY, "select state from pg_stat_replication where application_name = 'gr_postgresql_replica'")
    assert state == "streaming"
    # Lag is observable on the primary.
    psql(PRIMARY, "select coalesce(replay_lag, '0'::interval) from pg_stat_replication")
    res = REPLICA.run("su postgres -c \"psql -XAtq -c 'create table nope (i int)'\"")
    assert res.rc != 0 and "read-only" in res.stderr


def test_replica_is_marked_as_cloned():
    mark = REPLICA.file("/var/lib/postgresql/15/main.gradual-replica")
    assert mark.exists and mark.mode == 0o600
    assert "gr-postgresql-primary" in mark.content_string


def test_row_written_on_primary_is_read_on_replica():
    token = uuid.uuid4().hex
    conn = "host=gr-postgresql-primary dbname=goalgpt user=goalgpt_owner sslmode=require"
    res = remote(REPLICA, conn, "create table if not exists molecule_probe (token text); "
                 f"insert into molecule_probe values ('{token}')", "molecule-owner-secret")
    assert res.rc == 0, res.stderr
    for _attempt in range(50):
        got = REPLICA.run(f"su postgres -c \"psql -XAtq -d goalgpt -c \\\"select count(*) from molecule_probe where token = '{token}'\\\"\"")
        if got.rc == 0 and got.stdout.strip() == "1":
            return
        time.sleep(0.2)
    pytest.fail("row written on the primary never appeared on the replica")


def test_remote_requires_ssl():
    base = "host=gr-postgresql-primary dbname=goalgpt user=goalgpt_app"
    plain = remote(REPLICA, base + " sslmode=disable", "select 1", "molecule-app-secret")
    assert plain.rc != 0
    assert "no encryption" in plain.stderr or "rejects connection" in plain.stderr
    tls = remote(REPLICA, base + " sslmode=require", "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
                 "molecule-app-secret")
    assert tls.rc == 0, tls.stderr
    assert tls.stdout.strip() == "t"
    wrong = remote(REPLICA, base + " sslmode=require", "select 1", "not-the-password")
    assert wrong.rc != 0 and "password authentication failed" in wrong.stderr


def test_analytics_reads_the_application_schema_only_and_makes_no_temp_table():
    owner = "host=gr-postgresql-primary dbname=goalgpt user=goalgpt_owner sslmode=require"
    res = remote(REPLICA, owner, "create schema if not exists gradual; create table if not exists gradual.state (i int); "
                 "create table if not exists public.report (i int)", "molecule-owner-secret")
    assert res.rc == 0, res.stderr
    rights = psql(PRIMARY, "select has_table_privilege('goalgpt_analytics', 'public.report', 'SELECT'),"
                           " has_table_privilege('goalgpt_analytics', 'gradual.state', 'SELECT'),"
                           " has_table_privilege('goalgpt_app', 'gradual.state', 'UPDATE')", db="goalgpt")
    assert rights == "t|f|f", rights
    analytics = "host=gr-postgresql-primary dbname=goalgpt user=goalgpt_analytics sslmode=require"
    temp = remote(REPLICA, analytics, "create temp table t (i int)", "molecule-analytics-secret")
    assert temp.rc != 0 and "permission denied" in temp.stderr, temp.stderr
    app = "host=gr-postgresql-primary dbname=goalgpt user=goalgpt_app sslmode=require"
    assert remote(REPLICA, app, "create temp table t (i int)", "molecule-app-secret").rc == 0


def test_analytics_is_read_only_and_owner_can_create_schemas():
    owner = "host=gr-postgresql-primary dbname=goalgpt user=goalgpt_owner sslmode=require"
    res = remote(REPLICA, owner, "create schema if not exists gradual; "
                 "create table if not exists gradual.probe (i int); insert into gradual.probe values (1)",
                 "molecule-owner-secret")
    assert res.rc == 0, res.stderr
    analytics = "host=gr-postgresql-primary dbname=goalgpt user=goalgpt_analytics sslmode=require"
    ok = remote(REPLICA, analytics, "select count(*) from molecule_probe", "molecule-analytics-secret")
    assert ok.rc == 0, ok.stderr
    denied = remote(REPLICA, analytics, "insert into molecule_probe values ('x')", "molecule-analytics-secret")
    assert denied.rc != 0 and "permission denied" in denied.stderr
    app = "host=gr-postgresql-primary dbname=goalgpt user=goalgpt_app sslmode=require"
    w = remote(REPLICA, app, "insert into molecule_probe values ('from-app')", "molecule-app-secret")
    assert w.rc == 0, w.stderr


def bad_settings(settings: dict) -> subprocess.CompletedProcess:
    """Converge the primary with postgresql_settings=SETTINGS (bad_settings.yml); the run's result."""
    return run_playbook(SCENARIO / "bad_settings.yml", {"postgresql_settings": settings}, timeout=300)


def postmaster_pid() -> str:
    return PRIMARY.check_output("head -n 1 /var/lib/postgresql/15/main/postmaster.pid")


def test_invalid_setting_is_refused_and_previous_file_kept():
    before, pid = PRIMARY.file(CONF).content_string, postmaster_pid()
    run = bad_settings({"work_mem": "lots"})
    out = run.stdout + run.stderr
    assert run.returncode != 0
    assert "PostgreSQL rejected the new configuration, previous files restored" in out, out[-3000:]
    assert "work_mem" in out
    assert PRIMARY.file(CONF).content_string == before
    assert postmaster_pid() == pid, "an invalid value must not restart the server"
    assert psql(PRIMARY, "select count(*) from pg_file_settings where error is not null") == "0"


def test_failed_restart_is_undone():
    """A postmaster setting that parses but stops the server from starting: the previous files come
    back, the server runs again with them, and the run fails saying so."""
    before = PRIMARY.file(CONF).content_string
    run = bad_settings({"shared_preload_libraries": "gr_no_such_library"})
    out = run.stdout + run.stderr
    assert run.returncode != 0
    assert "did not start with the new settings (shared_preload_libraries)" in out, out[-3000:]
    assert PRIMARY.file(CONF).content_string == before
    assert "gr_no_such_library" not in PRIMARY.file(CONF).content_string
    assert PRIMARY.service(UNIT).is_running
    assert psql(PRIMARY, "show shared_preload_libraries") == ""
    assert psql(PRIMARY, "select count(*) from pg_file_settings where error is not null") == "0"
    # The replica follows the restarted primary again.
    for _attempt in range(60):
        state = psql(PRIMARY, "select coalesce(max(state), 'none') from pg_stat_replication "
                              "where application_name = 'gr_postgresql_replica'")
        if state == "streaming":
            return
        time.sleep(0.5)
    pytest.fail("the replica did not stream again after the primary came back (state %s)" % state)


# ---- hardening ----------------------------------------------------------------------------------
VARS = SCENARIO / "vars" / "postgresql.yml"


def secrets() -> list:
    """Every password of the scenario's variables."""
    import yaml
    data = yaml.safe_load(VARS.read_text(encoding="utf-8"))
    found = [value for key, value in data.items() if key.endswith("_password") and value]
    found += [user["password"] for user in data.get("postgresql_users", []) if user.get("password")]
    assert len(found) >= 5, found
    return found


@pytest.mark.parametrize("h", [PRIMARY, REPLICA], ids=["primary", "replica"])
def test_no_secret_in_any_log(h):
    """The statements that set passwords are not logged (log_statement=ddl would log them)."""
    logs = h.run("journalctl --no-pager -q 2>/dev/null; find /var/log /var/lib/postgresql -type f "
                 "\\( -name '*.log' -o -path '/var/log/*' \\) -exec cat {} + 2>/dev/null")
    text = logs.stdout_bytes.decode("utf-8", errors="replace")   # /var/log holds binary files too
    assert "LOG:" in text, "no server log read: the test would prove nothing"
    leaked = [s for s in secrets() if s in text]
    assert not leaked, "secrets found in the logs of %s: %d" % (h.backend.get_hostname(), len(leaked))


def test_superuser_and_replication_user_refused_over_the_network():
    su = remote(REPLICA, "host=gr-postgresql-primary dbname=postgres user=postgres sslmode=require",
                "select 1", "molecule-superuser-secret")
    assert su.rc != 0 and "rejects connection" in su.stderr, su.stderr
    repl = remote(REPLICA, "host=gr-postgresql-primary dbname=postgres user=replicator sslmode=require",
                  "select 1", "molecule-replication-secret")
    assert repl.rc != 0 and "rejects connection" in repl.stderr, repl.stderr
    # over loopback on the primary itself the superuser still logs in
    local = remote(PRIMARY, "host=127.0.0.1 dbname=postgres user=postgres", "select 1", "molecule-superuser-secret")
    assert local.rc == 0, local.stderr


def test_tls12_offers_forward_secret_suites_only():
    cmd = ("echo | timeout 10 openssl s_client -connect 127.0.0.1:5432 -starttls postgres -tls1_2 -cipher %s "
           "2>&1 | grep -c 'Cipher is %s'")
    assert PRIMARY.run(cmd % ("ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384")).stdout.strip() == "1"
    assert PRIMARY.run(cmd % ("AES256-GCM-SHA384", "AES256-GCM-SHA384")).stdout.strip() == "0"


@pytest.mark.parametrize("h", [PRIMARY, REPLICA], ids=["primary", "replica"])
def test_unit_is_sandboxed(h):
    # Debian's postgresql@.service scores 9.6 (UNSAFE) here without the role's drop-in.
    assert unit_exposure(h, UNIT + ".service") <= 5.0


def test_a_killed_postmaster_comes_back():
    """Restart=on-failure: SIGKILL to the postmaster, and systemd starts it again."""
    before = postmaster_pid()
    PRIMARY.run(f"kill -9 {before}")
    for _attempt in range(60):
        time.sleep(1)
        now = PRIMARY.run("head -n 1 /var/lib/postgresql/15/main/postmaster.pid")
        if now.rc == 0 and now.stdout.strip() not in ("", before) and PRIMARY.run(
                "su postgres -c \"psql -XAtq -c 'select 1'\"").rc == 0:
            return
    pytest.fail("PostgreSQL did not come back within 60 s after its postmaster was killed")
