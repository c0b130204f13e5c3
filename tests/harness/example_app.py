"""The example app (examples/app/server.js) run with node on loopback, for benchmarks and tests.

prepare() copies server.js and the package files into a folder of build/ and installs the npm
dependencies there (examples/app itself stays untouched); start() runs it against the harness's
PostgreSQL and Redis (services.py). Both return None / raise ServiceError with the reason, so a
caller can skip (no node, npm failing without a network) or fail.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import services

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "examples" / "app"
MIGRATIONS = SRC / "migrations"


def prepare(name: str) -> tuple[Path | None, str]:
    """(folder of the app with node_modules, "") or (None, why not)."""
    if not (SRC / "server.js").exists():
        return None, "examples/app/server.js is missing"
    if not shutil.which("node") or not shutil.which("npm"):
        return None, "node or npm is not installed"
    if (SRC / "node_modules").is_dir():
        return SRC, ""
    app = ROOT / "build" / name
    app.mkdir(parents=True, exist_ok=True)
    for file in ("server.js", "package.json", "package-lock.json"):
        if (SRC / file).exists():
            shutil.copy2(SRC / file, app / file)
    stamp = app / "node_modules" / ".package-lock.json"
    lock = SRC / "package-lock.json"
    if not stamp.exists() or (lock.exists() and lock.stat().st_mtime > stamp.stat().st_mtime):
        cmd = ["npm", "ci", "--omit=dev", "--no-audit", "--no-fund"] if lock.exists() \
            else ["npm", "install", "--omit=dev", "--no-audit", "--no-fund"]
        try:
            proc = subprocess.run(cmd, cwd=app, capture_output=True, text=True, timeout=180, check=False)
        except subprocess.TimeoutExpired:
            return None, "npm ci timed out after 180 s (no network to the npm registry?)"
        if proc.returncode != 0:
            return None, "npm ci failed (no network to the npm registry?): " + proc.stderr.strip()[-300:]
    return app, ""


def create_database(pg, dbname: str, upto: str = "001") -> None:
    """A fresh database with the app's migrations up to and including version `upto`, applied
    with psql (CONCURRENTLY statements are fine: psql runs each outside a transaction)."""
    pg.psql(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    pg.psql(f'CREATE DATABASE "{dbname}"')
    for up in sorted(MIGRATIONS.glob("*.up.sql")):
        if up.name[:3] <= upto:
            for statement in _statements(up.read_text()):
                pg.psql(statement, dbname=dbname)


def _statements(sql: str) -> list[str]:
    # The migrations keep one statement per `;` at a line's end and no `;` inside literals.
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in body.split(";\n") if s.strip().rstrip(";").strip()]


def start(app: Path, pg, redis_srv, dbname: str, log_path: Path | None = None, **extra: str):
    """Start node server.js; returns (process, base URL). Its stdout and stderr go to log_path
    (the app's log, as app.log on a host) or nowhere; `extra` adds or overrides env variables."""
    port = services.free_port()
    env = dict(os.environ, PORT=str(port), HOST="127.0.0.1", PGHOST=pg.host, PGPORT=str(pg.port),
               PGUSER=pg.user, PGPASSWORD=pg.password, PGDATABASE=dbname, NODE_ENV="production",
               FLAG_REFRESH_MS="60000")
    if redis_srv is not None:
        env.update(REDIS_HOST="127.0.0.1", REDIS_PORT=str(redis_srv.port), REDIS_USERNAME="app",
                   REDIS_PASSWORD=redis_srv.app_password)
    env.update(extra)
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 (the child keeps it)
    try:
        proc = subprocess.Popen(["node", "server.js"], cwd=app, env=env, stdout=out, stderr=subprocess.STDOUT)
    finally:
        if log_path:
            out.close()
    services.wait_port(port, proc=proc)
    return proc, f"http://127.0.0.1:{port}"
