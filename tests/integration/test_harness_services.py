"""The loopback servers the integration tests rely on are real and reachable."""
import psycopg2


def test_postgres_scram_over_tcp(postgres):
    with psycopg2.connect(**postgres.conninfo()) as conn, conn.cursor() as cur:
        cur.execute("SHOW password_encryption")
        assert cur.fetchone()[0] == "scram-sha-256"
        cur.execute("SELECT current_setting('server_version_num')::int")
        assert cur.fetchone()[0] >= 150000


def test_pgbouncer_show_pools(pgbouncer, postgres):
    conn = psycopg2.connect(host="127.0.0.1", port=pgbouncer.port, user=postgres.user,
                            password=postgres.password, dbname="pgbouncer")
    conn.autocommit = True  # the admin console speaks only the simple protocol, no transactions
    with conn.cursor() as cur:
        cur.execute("SHOW POOLS")
        assert "cl_active" in [d[0] for d in cur.description]
    conn.close()


def test_redis_acl(redis_server):
    import redis
    import pytest
    assert redis_server.client("admin").ping()
    with pytest.raises(redis.exceptions.NoPermissionError):
        redis_server.client("app").flushall()
