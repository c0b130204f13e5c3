"""The linter on a live catalog (pg-migration-lint --dsn, pg_migrate) and --trace, on PostgreSQL.

Each verdict the catalog gives is checked against what PostgreSQL does: a change judged
metadata-only must leave the table's relfilenode as it was.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_run import run_module

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "bin" / "pg-migration-lint"

SCHEMA = """
CREATE TABLE orders (id bigint NOT NULL, note varchar(20), amount numeric(10,2), origin cidr,
                     placed timestamp, ref bigint, code text);
INSERT INTO orders SELECT g, 'n' || g, g, '10.0.0.0/8', now(), g, 'c' || g FROM generate_series(1, 2000) g;
ALTER TABLE orders ADD CONSTRAINT orders_ref_not_null CHECK (ref IS NOT NULL) NOT VALID;
ALTER TABLE orders VALIDATE CONSTRAINT orders_ref_not_null;
ALTER TABLE orders ADD CONSTRAINT orders_code_not_null CHECK (code IS NOT NULL) NOT VALID;
CREATE UNIQUE INDEX orders_id_key ON orders (id);
CREATE UNIQUE INDEX orders_code_key ON orders (code);
"""
# what PostgreSQL does without a rewrite or a scan, and what the linter cannot know without the catalog
SAFE_ON_THIS_CATALOG = """ALTER TABLE orders ALTER COLUMN note TYPE varchar(64);
ALTER TABLE orders ALTER COLUMN amount TYPE numeric(14,2);
ALTER TABLE orders ALTER COLUMN origin TYPE inet;
ALTER TABLE orders ALTER COLUMN placed TYPE timestamptz;
ALTER TABLE orders ALTER COLUMN ref SET NOT NULL;
ALTER TABLE orders ADD CONSTRAINT orders_pkey PRIMARY KEY USING INDEX orders_id_key;
"""


def dsn(postgres, db: str, timezone: str = "UTC") -> str:
    return "%s options='-c TimeZone=%s'" % (postgres.dsn(db), timezone)


def run_cli(*argv):
    return subprocess.run([sys.executable, str(CLI), *argv], capture_output=True, text=True, timeout=120,
                          check=False)


def sql(postgres, db: str, statement: str):
    return postgres.query(statement, db)


@pytest.fixture
def orders_db(postgres, pg_db):
    sql(postgres, pg_db, SCHEMA)
    return pg_db


def migrate(postgres, db: str, directory: Path, **extra) -> dict:
    return run_module("pg_migrate", dict(login_host=postgres.host, login_port=postgres.port,
                                         login_user=postgres.user, login_password=postgres.password,
                                         db=db, path=str(directory), **extra))


def relfilenode(postgres, db: str, name: str = "orders") -> int:
    return sql(postgres, db, "SELECT relfilenode FROM pg_class WHERE oid = '%s'::regclass" % name)[0][0]


def test_cli_with_dsn_judges_type_changes_and_not_null_on_the_catalog(postgres, orders_db, tmp_path):
    path = tmp_path / "004_widen.up.sql"
    path.write_text(SAFE_ON_THIS_CATALOG)
    blind = run_cli("--format", "json", str(path))
    assert blind.returncode == 1
    assert {f["rule"] for f in json.loads(blind.stdout)} == {
        "alter-column-type", "set-not-null", "primary-key-nullable"}
    assert all("--dsn" in f["message"] for f in json.loads(blind.stdout) if f["severity"] == "error")
    seen = run_cli("--format", "json", "--dsn", dsn(postgres, orders_db), str(path))
    assert seen.returncode == 0, seen.stdout + seen.stderr
    assert json.loads(seen.stdout) == []
    # outside UTC, timestamp -> timestamptz rewrites
    paris = run_cli("--format", "json", "--dsn", dsn(postgres, orders_db, "Europe/Paris"), str(path))
    assert [f["line"] for f in json.loads(paris.stdout)] == [4]


@pytest.mark.parametrize("statement, fragment", [
    ("ALTER TABLE orders ALTER COLUMN id TYPE integer;", "from int8"),
    ("ALTER TABLE orders ALTER COLUMN note TYPE varchar(10);", "from varchar(20)"),
    ("ALTER TABLE orders ALTER COLUMN amount TYPE numeric(14,4);", "from numeric(10,2)"),
    ("ALTER TABLE orders ALTER COLUMN code SET NOT NULL;", "SET NOT NULL on orders.code scans"),
    ("ALTER TABLE orders ADD CONSTRAINT orders_pkey PRIMARY KEY USING INDEX orders_code_key;",
     "sets NOT NULL on code"),
])
def test_cli_with_dsn_still_flags_what_scans_or_rewrites(postgres, orders_db, tmp_path, statement, fragment):
    path = tmp_path / "005_x.up.sql"
    path.write_text(statement + "\n")
    out = run_cli("--format", "json", "--dsn", dsn(postgres, orders_db), str(path))
    finding, = json.loads(out.stdout)
    assert out.returncode == 1 and fragment in finding["message"]


def test_pg_migrate_applies_what_its_catalog_proves_safe_without_a_rewrite(postgres, orders_db, tmp_path):
    directory = tmp_path / "migrations"
    directory.mkdir()
    (directory / "001_widen.up.sql").write_text(SAFE_ON_THIS_CATALOG)
    before = relfilenode(postgres, orders_db)
    res = migrate(postgres, orders_db, directory, session_settings={"TimeZone": "UTC"})
    assert res["rc"] == 0, res
    assert res["applied"] == ["001"] and res["findings"] == []
    assert relfilenode(postgres, orders_db) == before  # the verdict was right: nothing rewritten
    assert sql(postgres, orders_db, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                                    "WHERE attrelid = 'orders'::regclass AND attname = 'placed'") == \
        [("timestamp with time zone",)]


def test_pg_migrate_refuses_the_rewrite_its_catalog_shows(postgres, orders_db, tmp_path):
    directory = tmp_path / "migrations"
    directory.mkdir()
    (directory / "001_shrink.up.sql").write_text("ALTER TABLE orders ALTER COLUMN note TYPE varchar(10);\n")
    res = migrate(postgres, orders_db, directory)
    assert res["rc"] != 0 and "alter-column-type" in res["msg"] and "from varchar(20)" in res["msg"]


def test_trace_reports_locks_and_rewrites_and_rolls_back(postgres, orders_db, tmp_path):
    path = tmp_path / "006_trace.up.sql"
    path.write_text("ALTER TABLE orders ALTER COLUMN note TYPE varchar(64);\n"
                    "ALTER TABLE orders ALTER COLUMN id TYPE integer;\n"
                    "CREATE INDEX CONCURRENTLY orders_note ON orders (note);\n"
                    "SELECT count(*) FROM orders;\n")
    before = relfilenode(postgres, orders_db)
    out = run_cli("--trace", "--format", "json", "--dsn", dsn(postgres, orders_db), str(path))
    assert out.returncode == 0, out.stderr
    widen, shrink, concurrent, count = json.loads(out.stdout)
    assert ["orders", "AccessExclusiveLock"] in widen["locks"] and widen["rewritten"] == []
    assert "orders" in shrink["rewritten"] and "orders_id_key" in shrink["rewritten"]
    assert "outside a transaction" in concurrent["skipped"]
    assert ["orders", "AccessShareLock"] in count["locks"] and count["rewritten"] == []
    assert relfilenode(postgres, orders_db) == before
    assert sql(postgres, orders_db, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                                    "WHERE attrelid = 'orders'::regclass AND attname = 'note'") == \
        [("character varying(20)",)]
    text = run_cli("--trace", "--dsn", dsn(postgres, orders_db), str(path))
    assert "rewritten: orders" in text.stdout and "every change was rolled back" in text.stdout
