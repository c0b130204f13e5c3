"""pytest (testinfra) runs each scenario's tests/ from here down: shared helpers live in
tests/harness (molecule_check: --check on converged hosts)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "harness"))
