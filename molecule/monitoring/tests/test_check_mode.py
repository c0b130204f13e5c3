"""--check of converge.yml on the converged hosts: no change, no failure."""
from __future__ import annotations

from pathlib import Path

from molecule_check import assert_check_changes_nothing


def test_check_mode_on_converged_hosts_changes_nothing():
    assert_check_changes_nothing(Path(__file__).resolve().parents[1])
