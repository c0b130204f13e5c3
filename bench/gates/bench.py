"""Cost of a gate sample and http_slo's achieved request rate, on loopback servers.

Per sample (the modules' own sampler code, called in-process N times):
  pool_check postgres   wall time per sample; statements per sample from pg_stat_statements and
                        transactions per sample from pg_stat_database (database used only here)
  pool_check pgbouncer  wall time; admin-console commands per sample (counted at the client: the
                        admin console keeps no statistics of its own commands)
  pool_check http       wall time; requests per sample, counted by the server
  cache_check           wall time; Redis commands per sample from INFO commandstats
Whole module runs (Ansible module process, one sample) are timed too, for the fixed overhead.
http_slo: the real module against the example app (examples/app, node) when its npm dependencies
can be installed, and against a stdlib Python server; requests per second at a few concurrencies.
Writes bench/results/gates.json. Loopback only; about one to two minutes.
"""
from __future__ import annotations

import contextlib
import http.server
import json
import os
import platform
import shutil
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "harness"))
sys.path.insert(0, str(ROOT / "build" / "collections"))
os.environ.setdefault("ANSIBLE_CONFIG", str(ROOT / "ansible.cfg"))

import example_app  # noqa: E402
import psycopg2  # noqa: E402
import services  # noqa: E402
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator  # noqa: E402
from ansible_run import run_module  # noqa: E402
from ansible_collections.gradual.rollout.plugins.module_utils.gates import percentile  # noqa: E402
from ansible_collections.gradual.rollout.plugins.module_utils.redis_conn import redis_connect  # noqa: E402
from ansible_collections.gradual.rollout.plugins.modules import cache_check, pool_check  # noqa: E402

N = int(os.environ.get("GR_BENCH_SAMPLES", "300"))
OUT = ROOT / "bench" / "results" / "gates.json"


class ModuleFailed(RuntimeError):
    pass


def stand_in(spec: dict, params: dict, name: str):
    """The smallest AnsibleModule stand-in the samplers need: validated params, fail_json."""
    result = ArgumentSpecValidator(spec).validate(params)
    if result.error_messages:
        raise ModuleFailed(result.error_messages)

    def fail_json(**kw):
        raise ModuleFailed(kw.get("msg"))
    return SimpleNamespace(params=result.validated_parameters, _name="gradual.rollout." + name,
                           check_mode=True, fail_json=fail_json, warn=print)


def timed(take, n: int) -> dict:
    for _warmup in range(5):
        take()  # warm-up: connection set-up and first-query costs are not per-sample costs
    times = []
    for _sample in range(n):
        t0 = time.perf_counter()
        take()
        times.append((time.perf_counter() - t0) * 1000.0)
    return {"samples": n, "mean_ms": round(sum(times) / n, 3), "p50_ms": round(percentile(times, 50), 3),
            "p95_ms": round(percentile(times, 95), 3), "max_ms": round(max(times), 3)}


def pg_one(pg, sql, db="postgres"):
    with contextlib.closing(psycopg2.connect(**pg.conninfo(db))) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchone()


def bench_pool_postgres(pg) -> dict:
    pg.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    pg.psql("CREATE DATABASE gates_bench")
    held = [psycopg2.connect(**pg.conninfo()) for _session in range(20)]  # some sessions to count
    for conn in held:
        conn.cursor().execute("SELECT 1")
    stmt_sql = ("SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements s JOIN pg_database d "
                "ON d.oid = s.dbid WHERE d.datname = 'gates_bench'")
    xact_sql = "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = 'gates_bench'"
    stmts0, xacts0 = pg_one(pg, stmt_sql)[0], pg_one(pg, xact_sql)[0]
    mod = stand_in(pool_check.argument_spec(), {
        "source": "postgres", "login_host": pg.host, "login_port": pg.port, "login_user": pg.user,
        "login_password": pg.password, "db": "gates_bench"}, "pool_check")
    sampler = pool_check.PostgresSampler(mod)
    figures = sampler.take()
    out = timed(sampler.take, N)
    sampler.close()
    time.sleep(1.5)  # a backend's statistics reach pg_stat_database when it exits
    calls = N + 6
    out["statements_per_sample"] = round((pg_one(pg, stmt_sql)[0] - stmts0) / calls, 3)
    out["transactions_per_sample"] = round((pg_one(pg, xact_sql)[0] - xacts0) / calls, 3)
    out["observed"] = {k: figures[k] for k in ("clients", "total", "utilization")}
    for conn in held:
        conn.close()
    return out


def bench_pool_pgbouncer(pg, pgb) -> dict:
    held = [psycopg2.connect(**dict(pg.conninfo(), port=pgb.port)) for _session in range(3)]
    for conn in held:
        conn.cursor().execute("SELECT 1")
    mod = stand_in(pool_check.argument_spec(), {
        "source": "pgbouncer", "login_host": pg.host, "login_port": pgb.port, "login_user": pg.user,
        "login_password": pg.password}, "pool_check")
    sampler = pool_check.PgBouncerSampler(mod)
    commands = []
    real_rows = sampler._rows
    sampler._rows = lambda command: commands.append(command) or real_rows(command)
    figures = sampler.take()
    commands.clear()
    out = timed(sampler.take, N)
    sampler.close()
    out["commands_per_sample"] = round(len(commands) / (N + 5), 3)
    out["command_mix"] = {c: commands.count(c) for c in sorted(set(commands))}
    out["observed"] = {k: figures[k] for k in ("sv_active", "total", "utilization")}
    for conn in held:
        conn.close()
    return out


class CountingPool(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    served = 0
    body = json.dumps({"active": 8, "idle": 12, "waiting": 0, "total": 20, "max": 20,
                       "utilization": 40}).encode()

    def do_GET(self):  # noqa: N802
        type(self).served += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


def bench_pool_http(url: str, counting: bool) -> dict:
    mod = stand_in(pool_check.argument_spec(), {"source": "http", "url": url}, "pool_check")
    sampler = pool_check.HttpSampler(mod)
    before = CountingPool.served
    figures = sampler.take()
    out = timed(sampler.take, N)
    sampler.close()
    if counting:
        out["requests_per_sample"] = round((CountingPool.served - before) / (N + 6), 3)
    out["url"] = url
    out["observed"] = figures
    return out


def bench_cache(redis_srv) -> dict:
    admin = redis_srv.client("admin")
    for i in range(2000):
        admin.set(f"goalgpt:standings:{i}:overall", "{}")
    mod = stand_in(cache_check.argument_spec(), {
        "redis_host": "127.0.0.1", "redis_port": redis_srv.port, "redis_username": "admin",
        "redis_password": redis_srv.admin_password}, "cache_check")
    client = redis_connect(mod)

    def commands() -> int:
        stats = admin.info("commandstats")
        return sum(v["calls"] for v in stats.values())
    cache_check.take_sample(client)
    before = commands()
    out = timed(lambda: cache_check.take_sample(client), N)
    after = commands()
    # the measuring INFO before the run is counted in `after`; the run did N + 5 samples
    out["commands_per_sample"] = round((after - before - 1) / (N + 5), 3)
    t0 = time.perf_counter()
    keys = cache_check.count_keys(client, "goalgpt:standings:*", 1000)
    scan_before = commands()
    cache_check.count_keys(client, "goalgpt:standings:*", 1000)
    out["key_count_scan"] = {"keys_total": admin.dbsize(), "matched": keys,
                             "wall_ms": round((time.perf_counter() - t0) * 1000.0 / 2, 3),
                             "scan_commands": commands() - scan_before - 1}
    client.close()
    return out


def module_run(name: str, args: dict) -> dict:
    t0 = time.perf_counter()
    res = run_module(name, args)
    return {"wall_s": round(time.perf_counter() - t0, 3), "ok": res.get("rc") == 0,
            "msg": res.get("msg")}


def start_stdlib_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CountingPool)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def prepare_app() -> Path | None:
    """The example app with its npm dependencies in build/ (examples/app stays untouched)."""
    app, why = example_app.prepare("bench-gates-app")
    if app is None:
        print("example app skipped:", why, file=sys.stderr)
    return app


def start_app(app: Path, pg, redis_srv):
    example_app.create_database(pg, "goalgpt", upto="001")
    return example_app.start(app, pg, redis_srv, "goalgpt", USE_REDIS_CACHE="true", CACHE_STANDINGS="true")


def slo_runs(url: str, label: str, requests: int = 5000, assertions: list | None = None) -> list:
    out = []
    for concurrency in (4, 8, 16):
        args = {"url": url, "requests": requests, "concurrency": concurrency}
        if assertions:
            args["assertions"] = assertions
        res = run_module("http_slo", args)
        out.append({"target": label, "url": url, "concurrency": concurrency,
                    "requests": res.get("requests"), "rps": res.get("rps"),
                    "p50_ms": res.get("p50_ms"), "p95_ms": res.get("p95_ms"), "p99_ms": res.get("p99_ms"),
                    "error_rate": res.get("error_rate"), "ok": res.get("rc") == 0,
                    "assertions_passed": [a["passed"] for a in res.get("assertions", [])] or None})
    return out


def main() -> int:
    started = time.monotonic()
    bases = [services.tempbase(p) for p in ("pg", "pgb", "redis")]
    pg = services.Postgres(bases[0]).start()
    pgb = services.PgBouncer(bases[1], pg).start()
    redis_srv = services.Redis(bases[2]).start()
    stdlib = start_stdlib_server()
    app_proc = None
    result = {"host": {"cpus": os.cpu_count(), "python": platform.python_version(),
                       "load_avg_at_start": os.getloadavg()},
              "samples_per_measure": N}
    try:
        stdlib_url = f"http://127.0.0.1:{stdlib.server_address[1]}/health/pool"
        app = prepare_app()
        app_url = None
        if app is not None:
            app_proc, app_url = start_app(app, pg, redis_srv)
        per = result["per_sample"] = {}
        per["pool_check_postgres"] = bench_pool_postgres(pg)
        per["pool_check_pgbouncer"] = bench_pool_pgbouncer(pg, pgb)
        per["pool_check_http_stdlib"] = bench_pool_http(stdlib_url, counting=True)
        if app_url:
            per["pool_check_http_example_app"] = bench_pool_http(app_url + "/health/pool", counting=False)
        per["cache_check"] = bench_cache(redis_srv)
        base = {"login_host": pg.host, "login_user": pg.user, "login_password": pg.password}
        result["module_run_one_sample"] = {
            "pool_check_postgres": module_run("pool_check", dict(base, source="postgres", login_port=pg.port)),
            "pool_check_pgbouncer": module_run("pool_check", dict(base, source="pgbouncer", login_port=pgb.port)),
            "pool_check_http": module_run("pool_check", {"source": "http", "url": stdlib_url}),
            "cache_check_two_samples_100ms": module_run("cache_check", {
                "redis_host": "127.0.0.1", "redis_port": redis_srv.port, "redis_username": "admin",
                "redis_password": redis_srv.admin_password, "duration": 0.1}),
        }
        runs = slo_runs(stdlib_url, "python stdlib ThreadingHTTPServer, static JSON")
        if app_url:
            runs += slo_runs(app_url + "/health/pool", "examples/app (node) /health/pool")
            runs += slo_runs(app_url + "/api/standings/39", "examples/app (node) /api/standings/39, Redis-cached",
                             assertions=[{"expr": "fromCache", "equals": True, "request": 2}])
        result["http_slo"] = runs
        best = max((r["rps"] or 0) for r in runs)
        app_best = max([(r["rps"] or 0) for r in runs if "examples/app" in r["target"]] or [0])
        target = {"per_sample_ms_lt": 5, "queries_per_sample_le": 1, "http_slo_rps_ge": 500}
        result["target"] = target
        result["verdict"] = {
            "pool_check_postgres": per["pool_check_postgres"]["p95_ms"] < 5
            and per["pool_check_postgres"]["statements_per_sample"] <= 1,
            "pool_check_pgbouncer": per["pool_check_pgbouncer"]["p95_ms"] < 5
            and per["pool_check_pgbouncer"]["commands_per_sample"] <= 1,
            "pool_check_http": per["pool_check_http_stdlib"]["p95_ms"] < 5
            and per["pool_check_http_stdlib"]["requests_per_sample"] <= 1,
            "cache_check": per["cache_check"]["p95_ms"] < 5 and per["cache_check"]["commands_per_sample"] <= 1,
            "http_slo_best_rps": best, "http_slo_example_app_best_rps": app_best or None,
            "http_slo_ge_500_rps": best >= 500,
        }
        result["example_app"] = "used" if app_url else "not available (node or npm dependencies missing)"
    finally:
        if app_proc is not None:
            app_proc.terminate()
            app_proc.wait(10)
        stdlib.shutdown()
        redis_srv.stop()
        pgb.stop()
        pg.stop()
        for base in bases:
            shutil.rmtree(base, ignore_errors=True)
    result["wall_s"] = round(time.monotonic() - started, 1)
    result["host"]["load_avg_at_end"] = os.getloadavg()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps(result["verdict"], indent=2))
    print("wrote", OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
