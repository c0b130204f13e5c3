"""PgBouncer's pools for Prometheus (gradual.rollout.exporters).

Each scrape of /metrics opens one connection to PgBouncer's console as a stats user (read-only SHOW
commands), reads SHOW POOLS and SHOW DATABASES, and closes it. Debian 12's
prometheus-pgbouncer-exporter (1.7) exports only cl_active and cl_waiting; this exporter adds the
server side and the wait time, with the metric names of prometheus-community/pgbouncer_exporter.

Settings from the environment (systemd's EnvironmentFile, readable by root only):
  LISTEN_ADDRESS, LISTEN_PORT          where /metrics answers
  PGHOST, PGPORT, PGUSER, PGPASSWORD   the console login (libpq reads them itself)
"""
from __future__ import annotations

import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

import psycopg2

POOL_METRICS = (
    # SHOW POOLS column, metric name, help
    ("cl_active", "pgbouncer_pools_client_active_connections",
     "Client connections linked to a server connection and able to process queries"),
    ("cl_waiting", "pgbouncer_pools_client_waiting_connections",
     "Client connections that have sent queries but have not yet got a server connection"),
    ("sv_active", "pgbouncer_pools_server_active_connections",
     "Server connections linked to a client"),
    ("sv_idle", "pgbouncer_pools_server_idle_connections",
     "Server connections unused and immediately usable for client queries"),
    ("sv_used", "pgbouncer_pools_server_used_connections",
     "Server connections idle longer than server_check_delay, to be checked before use"),
)
DATABASE_METRICS = (
    ("pool_size", "pgbouncer_databases_pool_size", "Maximum number of server connections of the pool"),
    ("current_connections", "pgbouncer_databases_current_connections",
     "Current number of connections for this database"),
)


def escape(value) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def rows(cursor, command: str) -> list[dict]:
    cursor.execute(command)
    names = [column.name for column in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def collect() -> str:
    out: list[str] = []
    try:
        conn = psycopg2.connect(dbname="pgbouncer", connect_timeout=5)
    except psycopg2.Error as exc:
        print(f"cannot log in to the PgBouncer console: {str(exc).strip()}", file=sys.stderr)
        pools, databases, up = [], [], 0
    else:
        try:
            conn.set_session(autocommit=True)  # the console has no transactions
            with conn.cursor() as cur:
                pools = rows(cur, "SHOW POOLS")
                databases = rows(cur, "SHOW DATABASES")
            up = 1
        except psycopg2.Error as exc:
            print(f"SHOW on the PgBouncer console failed: {str(exc).strip()}", file=sys.stderr)
            pools, databases, up = [], [], 0
        finally:
            conn.close()
    out += ["# HELP pgbouncer_up Whether the console answered SHOW POOLS and SHOW DATABASES",
            "# TYPE pgbouncer_up gauge", f"pgbouncer_up {up}"]
    for column, name, text in POOL_METRICS:
        out += [f"# HELP {name} {text} ({column})", f"# TYPE {name} gauge"]
        for pool in pools:
            if column in pool:
                out.append(f'{name}{{database="{escape(pool["database"])}",user="{escape(pool["user"])}"}} {pool[column]}')
    name = "pgbouncer_pools_client_maxwait_seconds"
    out += [f"# HELP {name} Age of the oldest unserved client request (maxwait + maxwait_us)",
            f"# TYPE {name} gauge"]
    for pool in pools:
        wait = float(pool.get("maxwait", 0)) + float(pool.get("maxwait_us", 0)) / 1e6
        out.append(f'{name}{{database="{escape(pool["database"])}",user="{escape(pool["user"])}"}} {wait}')
    for column, name, text in DATABASE_METRICS:
        out += [f"# HELP {name} {text} ({column})", f"# TYPE {name} gauge"]
        for db in databases:
            if db.get(column) is not None:
                out.append(f'{name}{{database="{escape(db["name"])}"}} {db[column]}')
    return "\n".join(out) + "\n"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path.split("?")[0] != "/metrics":
            self.send_error(404, "only /metrics here")
            return
        body = collect().encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # noqa: A002 (http.server's name)
        pass  # one line per scrape would only fill the journal


def main() -> None:
    address = os.environ.get("LISTEN_ADDRESS", "127.0.0.1").strip("[]")
    port = int(os.environ.get("LISTEN_PORT", "9127"))
    server_class = HTTPServer
    if ":" in address:
        import socket

        class HTTPServer6(HTTPServer):
            address_family = socket.AF_INET6
        server_class = HTTPServer6
    server = server_class((address, port), Handler)
    print(f"serving PgBouncer's pools on {address}:{port}/metrics", file=sys.stderr)
    server.serve_forever()


if __name__ == "__main__":
    main()
