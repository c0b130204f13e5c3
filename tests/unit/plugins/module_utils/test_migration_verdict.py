"""One verdict: bin/pg-migration-lint and pg_migrate's plan refuse exactly the same files.

pg_migrate lints the statements as they will run (BEGIN/COMMIT and SET lock_timeout dropped, the
rest in one transaction); the CLI lints the file as written. Both run over the unit corpus of
examples here (every safe and unsafe case of the linter's tests, the example app's migrations and
files where the two used to differ) and must agree file by file.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from ansible_collections.gradual.rollout.plugins.module_utils.migration import plan as mp

from migration_corpus import CASES  # tests/unit/migration_corpus.py, on sys.path by tests/unit/conftest.py

ROOT = Path(__file__).resolve().parents[4]
CLI = ROOT / "bin" / "pg-migration-lint"

EXTRA = [
    "BEGIN;\nCREATE INDEX CONCURRENTLY i ON t (a);\nCOMMIT;",
    "BEGIN;\nALTER TABLE orders ADD COLUMN c int;\nCOMMIT;\nBEGIN;\nUPDATE orders SET c = 0 WHERE id < 100;\nCOMMIT;",
    "SET lock_timeout = 0;\nALTER TABLE t ADD COLUMN c int;",
    "-- gradual:ignore unknown-rule some reason\nBEGIN;\nSELECT 1;\nCOMMIT;",
    "-- gradual:ignore alter-column-type the table has ten rows\nALTER TABLE t ALTER COLUMN a TYPE bigint;",
    "ALTER TABLE t ADD COLUMN c int;\nUPDATE t SET c = 0 WHERE c IS NULL;",
    "ALTER TABLE t ALTER COLUMN a TYPE text;",
    "VACUUM (FULL false) t;",
]


def corpus(directory: Path) -> list:
    """Write every corpus SQL as NNN_case.up.sql (and the example app's files); return the paths."""
    sqls = [sql for pair in CASES.values() for sql in pair] + EXTRA
    paths = []
    for number, sql in enumerate(sqls, start=100):
        path = directory / ("%03d_case.up.sql" % number)
        path.write_text(sql + "\n")
        paths.append(path)
    for source in sorted((ROOT / "examples" / "app" / "migrations").glob("*.sql")):
        paths.append(Path(shutil.copy(source, directory / source.name)))
    return paths


def test_cli_and_pg_migrate_agree_on_every_file(tmp_path):
    paths = corpus(tmp_path)
    out = subprocess.run([sys.executable, str(CLI), "--format", "json", str(tmp_path)], capture_output=True,
                         text=True, timeout=120, check=False)
    assert out.returncode in (0, 1), out.stderr
    cli_refuses = {f["file"] for f in json.loads(out.stdout) if f["severity"] == "error"}
    migrate_refuses = {str(path) for path in paths if mp.plan_file(str(path)).blocking}
    assert cli_refuses == migrate_refuses
    assert len(cli_refuses) > len(CASES) // 2  # the unsafe half of the corpus, not nothing
