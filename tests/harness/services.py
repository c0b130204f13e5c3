"""Real servers on loopback for the pytest integration tests.

PostgreSQL, PgBouncer, Redis and Prometheus are started from Debian's packages into a temporary
directory, each on a free port, and stopped at the end of the test session (Prometheus' binary is
taken out of its .deb by tests/harness/promtool.sh, so no daemon is installed on this machine).
Nothing here is a mock: the tests talk to the same server binaries that the roles install on real
hosts.
"""
from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PG_BIN = Path(os.environ.get("GR_PG_BIN", "/usr/lib/postgresql/15/bin"))
SERVICE_USER = "postgres"  # PostgreSQL and PgBouncer refuse to run as root


class ServiceError(RuntimeError):
    """A test server could not be started; the message says which and why."""


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServiceError(f"process exited with {proc.returncode} before port {port} opened")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise ServiceError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def terminate(proc: subprocess.Popen | None, timeout: float = 10) -> None:
    """Stop a server process this module started, if it still runs."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        proc.wait(timeout)


def _require(binary: Path | str) -> str:
    path = shutil.which(str(binary))
    if not path:
        raise ServiceError(f"{binary} not found: run tests/harness/host-deps.sh (make deps)")
    return path


def _as_service_user() -> list[str]:
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", SERVICE_USER, "--"]


def _chown_tree(path: Path) -> None:
    if os.geteuid() == 0:
        pw = pwd.getpwnam(SERVICE_USER)
        for root, dirs, files in os.walk(path):
            os.chown(root, pw.pw_uid, pw.pw_gid)
            for name in dirs + files:
                os.chown(os.path.join(root, name), pw.pw_uid, pw.pw_gid)


@dataclass
class Postgres:
    """A PostgreSQL cluster: superuser `postgres` with a password, scram over TCP."""

    base: Path
    port: int = field(default_factory=free_port)
    user: str = "postgres"
    password: str = "gr-test-superuser"
    host: str = "127.0.0.1"
    settings: dict = field(default_factory=dict)  # extra server settings (name: value)

    @property
    def datadir(self) -> Path:
        return self.base / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base / "run"

    def conninfo(self, dbname: str = "postgres", **extra: str) -> dict:
        info = {"host": self.host, "port": self.port, "user": self.user,
                "password": self.password, "dbname": dbname}
        info.update(extra)
        return info

    def dsn(self, dbname: str = "postgres") -> str:
        return " ".join(f"{k}={v}" for k, v in self.conninfo(dbname).items())

    def start(self) -> "Postgres":
        _require(PG_BIN / "initdb")
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        pwfile = self.base / "pw"
        pwfile.write_text(self.password + "\n")
        _chown_tree(self.base)
        initdb = [str(PG_BIN / "initdb"), "-D", str(self.datadir), "-U", self.user,
                  "--pwfile", str(pwfile), "--auth-local=trust", "--auth-host=scram-sha-256",
                  "--data-checksums", "-E", "UTF8"]
        subprocess.run(_as_service_user() + initdb, check=True, capture_output=True)
        pwfile.unlink()
        opts = (f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
                "-c max_connections=60 -c superuser_reserved_connections=3 -c fsync=off "
                "-c shared_preload_libraries=pg_stat_statements")
        opts += "".join(f" -c {name}={value}" for name, value in self.settings.items())
        pg_ctl = [str(PG_BIN / "pg_ctl"), "-D", str(self.datadir),
                  "-l", str(self.base / "server.log"), "-o", opts, "-w", "start"]
        proc = subprocess.run(_as_service_user() + pg_ctl, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            log = (self.base / "server.log").read_text() if (self.base / "server.log").exists() else ""
            raise ServiceError(f"PostgreSQL did not start: {proc.stderr.strip()} {log[-500:]}")
        return self

    def stop(self) -> None:
        pg_ctl = [str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "stop"]
        subprocess.run(_as_service_user() + pg_ctl, capture_output=True, check=False)

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        env = dict(os.environ, PGPASSWORD=self.password)
        out = subprocess.run(["psql", "-X", "-qAt", "-v", "ON_ERROR_STOP=1", "-h", self.host,
                              "-p", str(self.port), "-U", self.user, "-d", dbname, "-c", sql],
                             check=True, capture_output=True, text=True, env=env)
        return out.stdout.strip()

    def query(self, sql: str, dbname: str = "postgres", params=None) -> list:
        """SQL over a psycopg2 connection in autocommit; the rows, or [] for a statement without."""
        import psycopg2  # only the tests that talk to the server need it

        conn = psycopg2.connect(**self.conninfo(dbname))
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()


@dataclass
class PgBouncer:
    """PgBouncer in transaction mode in front of a Postgres; the superuser is also admin."""

    base: Path
    upstream: Postgres
    port: int = field(default_factory=free_port)
    pool_size: int = 5
    proc: subprocess.Popen | None = None

    def start(self) -> "PgBouncer":
        binary = _require("pgbouncer") if shutil.which("pgbouncer") else _require("/usr/sbin/pgbouncer")
        up = self.upstream
        (self.base / "userlist.txt").write_text(f'"{up.user}" "{up.password}"\n')
        (self.base / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={up.port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\n"
            f"unix_socket_dir = {self.base}\n"
            f"auth_type = scram-sha-256\nauth_file = {self.base / 'userlist.txt'}\n"
            f"admin_users = {up.user}\nstats_users = {up.user}\n"
            f"pool_mode = transaction\ndefault_pool_size = {self.pool_size}\n"
            "max_client_conn = 200\nignore_startup_parameters = extra_float_digits,options\n")
        (self.base / "userlist.txt").chmod(0o600)
        _chown_tree(self.base)
        self.proc = subprocess.Popen(_as_service_user() + [binary, str(self.base / "pgbouncer.ini")],
                                     stdout=subprocess.DEVNULL, stderr=open(self.base / "log", "wb"))
        wait_port(self.port, proc=self.proc)
        return self

    def stop(self) -> None:
        terminate(self.proc)


@dataclass
class Redis:
    """Redis with ACLs: `default` off, an `admin` user with every right, an `app` user without
    dangerous commands (the shape the redis role gives real hosts)."""

    base: Path
    port: int = field(default_factory=free_port)
    admin_password: str = "gr-test-redis-admin"
    app_password: str = "gr-test-redis-app"
    proc: subprocess.Popen | None = None

    def start(self) -> "Redis":
        binary = _require("redis-server")
        (self.base / "users.acl").write_text(
            "user default off\n"
            f"user admin on >{self.admin_password} ~* &* +@all\n"
            f"user app on >{self.app_password} ~* &* +@all -@dangerous\n")
        (self.base / "redis.conf").write_text(
            f"bind 127.0.0.1\nport {self.port}\nprotected-mode yes\ndir {self.base}\n"
            f"aclfile {self.base / 'users.acl'}\nsave \"\"\nappendonly no\n"
            "maxmemory 64mb\nmaxmemory-policy allkeys-lru\n")
        self.proc = subprocess.Popen([binary, str(self.base / "redis.conf")],
                                     stdout=open(self.base / "log", "wb"), stderr=subprocess.STDOUT)
        wait_port(self.port, proc=self.proc)
        return self

    def stop(self) -> None:
        terminate(self.proc)

    def client(self, user: str = "admin"):
        import redis  # imported here so unit tests need no redis-py
        password = self.admin_password if user == "admin" else self.app_password
        return redis.Redis(host="127.0.0.1", port=self.port, username=user, password=password,
                           decode_responses=True)


@dataclass
class Prometheus:
    """Prometheus scraping one target every second, its web endpoints behind basic auth (a web
    config file with a bcrypt hash, as roles/monitoring sets it up on real hosts)."""

    base: Path
    target: str                      # host:port of the /metrics to scrape
    port: int = field(default_factory=free_port)
    user: str = "gate"
    password: str = "gr-test-prometheus"
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self.port

    def start(self) -> "Prometheus":
        from passlib.hash import bcrypt  # imported here so unit tests need no passlib
        fetch = subprocess.run([str(Path(__file__).resolve().parent / "promtool.sh"), "prometheus"],
                               capture_output=True, text=True, check=False)
        if fetch.returncode != 0:
            raise ServiceError("no prometheus binary: %s" % fetch.stderr.strip())
        binary = fetch.stdout.strip().splitlines()[-1]
        (self.base / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: target\n    static_configs: [{{targets: ['{self.target}']}}]\n")
        (self.base / "web.yml").write_text(
            "basic_auth_users:\n  %s: '%s'\n" % (self.user, bcrypt.using(rounds=4).hash(self.password)))
        self.proc = subprocess.Popen(
            [binary, "--config.file=%s" % (self.base / "prometheus.yml"), "--web.config.file=%s" % (self.base / "web.yml"),
             "--storage.tsdb.path=%s" % (self.base / "data"), "--web.listen-address=127.0.0.1:%d" % self.port],
            stdout=subprocess.DEVNULL, stderr=open(self.base / "log", "wb"))
        wait_port(self.port, proc=self.proc)
        return self

    def stop(self) -> None:
        terminate(self.proc)


def tempbase(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=f"gr-{prefix}-"))
    path.chmod(0o755)
    return path
