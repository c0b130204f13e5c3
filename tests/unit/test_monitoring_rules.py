# Copyright: contributors to gradual.rollout
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The alert rules of roles/monitoring, checked and unit-tested by promtool (issue #22, item 4).

promtool comes from Debian's prometheus package, fetched (not installed) once by
tests/harness/promtool.sh. Every rule file passes ``promtool check rules`` and has a test file
that passes ``promtool test rules``; every alert of the list below exists with its severity,
``for:`` and threshold, and is tested both firing (labels and annotations) and not firing. The
negative tests prove the checks bite: a broken rule file, and a rule whose ``for:`` is shortened,
must both be refused.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "roles" / "monitoring" / "files" / "rules"
TESTS = RULES / "tests"
HARNESS = ROOT / "tests" / "harness" / "promtool.sh"

# The alert list of issue #22, item 4 (and RedisDown): name -> (rule file, severity, for, threshold as written).
EXPECTED = {
    "HttpLatencyP95High": ("app", "critical", "5m", ">= 3"),
    "HttpErrorRateHigh": ("app", "critical", "2m", ">= 0.05"),
    "PostgresLongTransaction": ("database", "warning", "10m", ">= 1"),
    "PostgresPoolUtilisationHigh": ("database", "warning", "5m", ">= 0.8"),
    "PostgresReplicationLagHigh": ("database", "warning", "5m", ">= 30"),
    # Issue #22, item 2: PgBouncer's pools (the exporters role's pool exporter), clients queued.
    "PgbouncerClientsWaiting": ("database", "warning", "5m", ">= 1"),
    "BackupTooOld": ("backup", "critical", "10m", "> 26 * 3600"),
    # Issue #24, item 5: a database the role backs up that was never backed up (no timestamp to age).
    "BackupNeverSucceeded": ("backup", "critical", "26h", "unless on (instance, job, database, method)"),
    # Issue #24, item 4: WAL archiving failures (pg_stat_archiver, through the backup role's textfile).
    "BackupArchiveFailing": ("backup", "warning", "1m", "[15m]) > 0"),
    "BackupArchiveStuck": ("backup", "critical", "15m", "> gradual_backup_archive_last_archived_timestamp_seconds"),
    "HostDiskAlmostFull": ("host", "warning", "10m", ">= 0.85"),
    "RedisMemoryNearMax": ("cache", "warning", "5m", ">= 0.9"),
    "RedisCacheHitRateLow": ("cache", "warning", "15m", "< 0.8"),
    # Not in the list: the exporter stays up when Redis stops, so `up` cannot see it.
    "RedisDown": ("cache", "critical", "1m", "== 0"),
    "TlsCertificateExpiringSoon": ("probes", "warning", "10m", "< 14 * 86400"),
    "UptimeProbeFailing": ("probes", "critical", "2m", "== 0"),
    "ScrapeTargetDown": ("meta", "warning", "5m", "== 0"),
}
CONCERNS = {"app", "database", "cache", "host", "backup", "probes", "meta"}


def rule_files() -> list[Path]:
    return sorted(RULES.glob("*.rules.yml"))


def unit_test_files() -> list[Path]:
    return sorted(TESTS.glob("*.test.yml"))


def rules_of(path: Path) -> list[dict]:
    return [rule for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def alerts() -> dict[str, tuple[str, dict]]:
    found: dict[str, tuple[str, dict]] = {}
    for path in rule_files():
        for rule in rules_of(path):
            if "alert" in rule:
                assert rule["alert"] not in found, f"alert {rule['alert']} defined twice"
                found[rule["alert"]] = (path.name.split(".")[0], rule)
    return found


def alert_cases() -> tuple[set[str], set[str]]:
    """Alert names with a firing case (non-empty exp_alerts) and with a quiet case (exp_alerts: [])."""
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in unit_test_files():
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                expected = check.get("exp_alerts") or []
                (firing if expected else quiet).add(check["alertname"])
                for alert in expected:
                    assert alert["exp_labels"].get("severity") in ("critical", "warning"), (path.name, check)
                    assert set(alert.get("exp_annotations", {})) == {"summary", "description"}, (path.name, check)
    return firing, quiet


@pytest.fixture(scope="session")
def promtool() -> str:
    proc = subprocess.run([str(HARNESS)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.fail(f"tests/harness/promtool.sh failed: {proc.stderr.strip().splitlines()[-1:]}")
    path = proc.stdout.strip()
    assert Path(path).is_file(), path
    return path


def run(promtool: str, *args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *map(str, args)], capture_output=True, text=True, check=False, cwd=cwd)


def test_one_rule_file_per_concern_each_with_its_test_file():
    assert {p.name.split(".")[0] for p in rule_files()} == CONCERNS
    missing = [p.name for p in rule_files() if not (TESTS / p.name.replace(".rules.yml", ".test.yml")).is_file()]
    assert missing == []
    for path in unit_test_files():
        assert yaml.safe_load(path.read_text())["rule_files"] == ["../" + path.name.replace(".test.yml", ".rules.yml")]


def test_the_alert_list(capsys):
    found = alerts()
    records = sum(1 for p in rule_files() for r in rules_of(p) if "record" in r)
    cases = sum(len(yaml.safe_load(p.read_text())["tests"]) for p in unit_test_files())
    with capsys.disabled():
        print(f"\nmonitoring rules: {len(found)} alerts and {records} recording rules in {len(rule_files())} files; "
              f"{cases} promtool test cases in {len(unit_test_files())} test files")
    assert sorted(found) == sorted(EXPECTED)
    for name, (concern, severity, duration, threshold) in EXPECTED.items():
        where, rule = found[name]
        assert (where, rule["labels"], rule["for"]) == (concern, {"severity": severity}, duration), name
        assert threshold in rule["expr"], (name, rule["expr"])
        assert set(rule["annotations"]) == {"summary", "description"}, name


def test_every_alert_is_tested_firing_and_quiet():
    firing, quiet = alert_cases()
    assert sorted(set(EXPECTED) - firing) == []
    assert sorted(set(EXPECTED) - quiet) == []


@pytest.mark.parametrize("path", rule_files(), ids=lambda p: p.name)
def test_promtool_check_rules(promtool, path):
    proc = run(promtool, "check", "rules", path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("path", unit_test_files(), ids=lambda p: p.name)
def test_promtool_test_rules(promtool, path):
    proc = run(promtool, "test", "rules", path.name, cwd=TESTS)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_broken_rule_file_is_refused(promtool, tmp_path):
    broken = tmp_path / "app.rules.yml"
    text = (RULES / "app.rules.yml").read_text()
    broken.write_text(text.replace("job:http_request_errors:ratio_rate1m >= 0.05", "job:http_request_errors:ratio_rate1m >=", 1))
    assert broken.read_text() != text
    proc = run(promtool, "check", "rules", broken)
    assert proc.returncode != 0
    assert "app.rules.yml" in proc.stdout + proc.stderr


def test_a_shortened_for_fails_its_unit_test(promtool, tmp_path):
    """The tests check ``for:``: the same rules with 4m instead of 5m fire a minute early."""
    (tmp_path / "tests").mkdir()
    shutil.copy(TESTS / "app.test.yml", tmp_path / "tests")
    text = (RULES / "app.rules.yml").read_text()
    changed, count = re.subn(r"(>= 3\n\s+for: )5m", r"\g<1>4m", text)
    assert count == 1
    (tmp_path / "app.rules.yml").write_text(changed)
    proc = run(promtool, "test", "rules", "app.test.yml", cwd=tmp_path / "tests")
    assert proc.returncode != 0
    assert "HttpLatencyP95High" in proc.stdout + proc.stderr
