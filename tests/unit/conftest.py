"""tests/unit: the plugin tests mirror plugins/ (tests/unit/plugins/module_utils/test_flags.py tests
plugins/module_utils/flags.py), as `ansible-test units` expects; the tests of roles, inventories,
AWX and alert rules stay at this level. migration_corpus.py is data shared by the linter's unit tests
and tests/integration/test_migration_trace_agreement.py: this folder goes on sys.path so the tests
below it import it by name, under plain pytest and under ansible-test alike."""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

_SHARED = "GR_UNIT_SHARED_DIR"


def pytest_configure(config):
    # ansible-test units runs each test in a fork of its own (its ansible_forked plugin): a module or
    # session fixture is then built again for every test. `run_once` keeps such a result in this
    # folder, made before any fork (and inherited by pytest-xdist's workers).
    if _SHARED not in os.environ:
        os.environ[_SHARED] = tempfile.mkdtemp(prefix="gradual-unit-")
        config.gradual_shared_owner = True


def pytest_unconfigure(config):
    if getattr(config, "gradual_shared_owner", False):
        shutil.rmtree(os.environ.pop(_SHARED), ignore_errors=True)


@pytest.fixture(scope="session")
def run_once():
    """run_once(key, compute): compute() once per pytest run, even across forks and workers; its
    result must be JSON."""
    def once(key: str, compute):
        path = Path(os.environ[_SHARED]) / f"{key}.json"
        with open(path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if path.exists():
                return json.loads(path.read_text())
            result = compute()
            path.write_text(json.dumps(result))
            return result
    return once
