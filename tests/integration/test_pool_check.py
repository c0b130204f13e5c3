"""pool_check against real PostgreSQL, PgBouncer (transaction mode) and a local JSON endpoint:
a pool saturated by held connections fails the gate, an idle one passes."""
from __future__ import annotations

import contextlib
import threading
import time

import psycopg2
import pytest

from ansible_run import run_module
from json_http import JsonHandler, serve


def pg_args(postgres, port=None):
    return {"login_host": postgres.host, "login_port": port or postgres.port,
            "login_user": postgres.user, "login_password": postgres.password}


@contextlib.contextmanager
def held_transactions(count, **conninfo):
    """COUNT connections each inside an open transaction (psycopg2 opens one on the first query)."""
    conns = []
    try:
        for _conn in range(count):
            conn = psycopg2.connect(**conninfo)
            conn.cursor().execute("SELECT 1")
            conns.append(conn)
        yield conns
    finally:
        for conn in conns:
            conn.close()


def test_postgres_idle_passes_and_reads_in_check_mode(postgres):
    res = run_module("pool_check", dict(pg_args(postgres), source="postgres", duration=1, interval=0.5,
                                        min_samples=3, max_utilization=50, max_waiting=0), check=True)
    assert res["rc"] == 0 and res["gate"]["passed"] is True, res.get("msg")
    assert res["sample_count"] == 3 and len(res["samples"]) == 3
    assert res["samples"][0]["total"] == 57  # max_connections 60 - 3 reserved for superusers
    assert res["utilization_max"] < 50 and res["inconclusive"] is False


def test_postgres_saturated_by_held_connections_fails(postgres):
    with held_transactions(35, **postgres.conninfo()):
        res = run_module("pool_check", dict(pg_args(postgres), source="postgres", max_utilization=50,
                                            max_idle_in_transaction=10))
    assert res.get("failed") is True and res["rc"] != 0
    assert res["utilization_max"] >= 35 * 100 / 57 - 0.01
    assert res["idle_in_transaction_max"] >= 35
    assert "utilization_max" in res["msg"] and "max_utilization 50%" in res["msg"]
    assert "max_idle_in_transaction 10" in res["msg"]
    assert res["gate"]["passed"] is False and len(res["gate"]["failures"]) == 2


def test_pgbouncer_idle_passes(pgbouncer, postgres):
    res = run_module("pool_check", dict(pg_args(postgres, pgbouncer.port), source="pgbouncer",
                                        duration=0.5, interval=0.25, max_utilization=50, max_waiting=0))
    assert res["rc"] == 0 and res["gate"]["passed"] is True, res.get("msg")
    assert res["waiting_max"] == 0 and res["sample_count"] == 3


def test_pgbouncer_saturated_pool_fails_on_utilization_and_waiting(pgbouncer, postgres):
    info = dict(postgres.conninfo(), port=pgbouncer.port)
    with held_transactions(pgbouncer.pool_size, **info):
        blocked = psycopg2.connect(**info)  # a 6th client: its query waits for a server connection
        waiter = threading.Thread(target=lambda: blocked.cursor().execute("SELECT 1"), daemon=True)
        waiter.start()
        res = run_module("pool_check", dict(pg_args(postgres, pgbouncer.port), source="pgbouncer",
                                            pool_database="postgres", duration=1, interval=0.5,
                                            max_utilization=80, max_waiting=0))
    waiter.join(10)
    blocked.close()
    assert res.get("failed") is True
    assert res["utilization_max"] == 100.0 and res["waiting_max"] >= 1
    assert "utilization_max 100% exceeds max_utilization 80%" in res["msg"]
    assert "waiting_max" in res["msg"] and "max_waiting 0" in res["msg"]


class PoolHandler(JsonHandler):
    bodies: list = []
    served = 0

    def do_GET(self):  # noqa: N802
        cls = type(self)
        index = min(cls.served, len(cls.bodies) - 1)
        cls.served += 1
        self.reply(*cls.bodies[index])


@pytest.fixture
def pool_endpoint():
    PoolHandler.served = 0
    server = serve(PoolHandler)
    yield server, f"http://127.0.0.1:{server.server_address[1]}/health/pool"
    server.shutdown()
    server.server_close()


def test_http_seed_shape_passes(pool_endpoint):
    _server, url = pool_endpoint
    PoolHandler.bodies = [(200, {"active": 8, "idle": 12, "waiting": 0, "total": 20, "utilization": 40})]
    res = run_module("pool_check", {"source": "http", "url": url, "duration": 1, "interval": 0.5,
                                    "max_utilization": 50, "max_waiting": 0})
    assert res["rc"] == 0 and res["gate"]["passed"], res.get("msg")
    assert res["utilization_max"] == 40 and res["sample_count"] == 3
    assert PoolHandler.served == 3  # one request per sample


def test_http_fields_by_jmespath_and_a_saturated_sample_fails(pool_endpoint):
    _server, url = pool_endpoint
    PoolHandler.bodies = [(200, {"pool": {"inUse": 8, "size": 20, "queue": 0}}),
                          (200, {"pool": {"inUse": 19, "size": 20, "queue": 4}}),
                          (200, {"pool": {"inUse": 6, "size": 20, "queue": 0}})]
    res = run_module("pool_check", {"source": "http", "url": url, "duration": 1, "interval": 0.5,
                                    "fields": {"active": "pool.inUse", "total": "pool.size",
                                               "waiting": "pool.queue"},
                                    "max_utilization": 70, "max_waiting": 0})
    assert res.get("failed") is True
    assert [s["utilization"] for s in res["samples"]] == [40.0, 95.0, 30.0]
    assert res["utilization_max"] == 95.0 and res["utilization_mean"] == 55.0 and res["utilization_p95"] == 95.0
    assert "utilization_max 95% exceeds max_utilization 70%" in res["msg"]
    assert "waiting_max 4 exceeds max_waiting 0" in res["msg"]


def test_http_too_few_good_samples_is_inconclusive(pool_endpoint):
    _server, url = pool_endpoint
    PoolHandler.bodies = [(200, {"active": 1, "total": 20}), (500, {"error": "down"})]
    args = {"source": "http", "url": url, "duration": 1, "interval": 0.5, "min_samples": 3,
            "max_utilization": 50}
    res = run_module("pool_check", args)
    assert res.get("failed") is True and res["inconclusive"] is True
    assert "inconclusive: 1 successful sample(s), fewer than min_samples 3" in res["msg"]
    assert "HTTP 500" in res["samples"][1]["error"]
    PoolHandler.served = 0
    res = run_module("pool_check", dict(args, fail_on_inconclusive=False))
    assert res["rc"] == 0 and res["inconclusive"] is True and res["gate"]["passed"] is False


@pytest.mark.parametrize("args, message", [
    ({"source": "http"}, "source is http but all of the following are missing: url"),
    ({"source": "http", "url": "localhost:3000/health/pool"}, "is not an http:// or https:// URL"),
    ({"source": "postgres", "url": "http://x/"}, "url is only used with source: http"),
    ({"source": "postgres", "pool_database": "app"}, "pool_database is only used with source: pgbouncer"),
    ({"source": "postgres", "duration": "2 hours"}, "duration='2 hours' is not a duration"),
    ({"source": "postgres", "min_samples": 0}, "min_samples=0 must be at least 1"),
    ({"source": "http", "url": "http://127.0.0.1:9/", "fields": {"used": "x"}}, "unknown key(s) used"),
    ({"source": "http", "url": "http://127.0.0.1:9/", "fields": {"active": "a[["}}, "not a JMESPath expression"),
    ({"source": "kafka"}, "value of source must be one of"),
])
def test_bad_input_fails_clearly(args, message):
    res = run_module("pool_check", args)
    assert res.get("failed") is True and message in res["msg"], res.get("msg")


def test_unreachable_sources_fail_at_once(postgres):
    res = run_module("pool_check", {"source": "http", "url": "http://127.0.0.1:9/health/pool",
                                    "duration": 3600, "interval": 60})
    assert res.get("failed") and "could not read the http pool figures" in res["msg"]
    res = run_module("pool_check", dict(pg_args(postgres), source="postgres", login_password="bad",
                                        connect_timeout=2))
    assert res.get("failed") and "cannot connect to PostgreSQL" in res["msg"]


def test_postgres_watch_survives_a_terminated_connection(postgres):
    """A long watch keeps sampling after its connection is killed (restart, failover)."""
    conn = psycopg2.connect(**postgres.conninfo())
    conn.autocommit = True  # pg_stat_activity is a snapshot per transaction: see new backends
    cur = conn.cursor()
    mine = "SELECT pid FROM pg_stat_activity WHERE application_name = 'gradual.rollout/pool_check'"
    cur.execute(mine)
    earlier = {r[0] for r in cur.fetchall()}  # backends of earlier tests may still be exiting
    result = {}
    args = dict(pg_args(postgres), source="postgres", duration=3, interval=0.5, min_samples=3)
    thread = threading.Thread(target=lambda: result.update(run_module("pool_check", args)))
    thread.start()
    pids = []
    deadline = time.monotonic() + 60
    while not pids and time.monotonic() < deadline and thread.is_alive():
        # idle after its sampling query: between two samples
        cur.execute(mine + " AND query LIKE '%pg_stat_activity%' AND state = 'idle'")
        pids = [r[0] for r in cur.fetchall() if r[0] not in earlier]
        time.sleep(0.01)
    assert pids, "pool_check never took its first sample: %s" % result
    cur.execute("SELECT pg_terminate_backend(%s)", (pids[0],))
    conn.close()
    thread.join(60)
    errors = [s for s in result["samples"] if "error" in s]
    assert result["rc"] == 0, result.get("msg")
    assert len(errors) == 1 and "error" not in result["samples"][-1]
    assert result["sample_count"] == len(result["samples"]) - 1 >= 3
