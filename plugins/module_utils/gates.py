# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sampling and gate arithmetic shared by the gate modules (pool_check, cache_check, sql_check,
log_check) and http_slo.

Pure functions (no server, no Ansible): durations and sizes as an operator writes them, percentiles,
a drift-free sampling loop, Redis hit rate from two INFO samples, PgBouncer pool figures, the
``gate`` dict every gate module returns, and whether that result fails the task.
"""
from __future__ import annotations

import json
import math
import re
import time

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# Redis's own convention (redis.conf): 1k = 1000 bytes, 1kb = 1024 bytes, and so on.
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|k|kb|m|mb|g|gb)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "k": 1000, "kb": 1024, "m": 1000 ** 2, "mb": 1024 ** 2,
               "g": 1000 ** 3, "gb": 1024 ** 3}


class GateInputError(ValueError):
    """An option value that cannot be understood; the message names it and the expected form."""


def parse_duration(value, name: str) -> float:
    """Seconds from 30, 2.5, "500ms", "90s", "5m", "2h" or "1d"."""
    if isinstance(value, bool):
        raise GateInputError("%s=%r is not a duration: give seconds (30) or a string like "
                             "'500ms', '90s', '5m', '2h'" % (name, value))
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION_RE.fullmatch(str(value))
        if not match:
            raise GateInputError("%s=%r is not a duration: give seconds (30) or a string like "
                                 "'500ms', '90s', '5m', '2h'" % (name, value))
        seconds = float(match.group(1)) * _DURATION_UNITS[(match.group(2) or "s").lower()]
    if seconds < 0 or math.isinf(seconds) or math.isnan(seconds):
        raise GateInputError("%s=%r must be a finite duration >= 0" % (name, value))
    return seconds


def parse_size(value, name: str) -> int:
    """Bytes from 524288000, "500mb" (MiB), "500m" (10^6), "1gb", as redis.conf reads them."""
    if isinstance(value, bool):
        raise GateInputError("%s=%r is not a size: give bytes or a string like '500mb'" % (name, value))
    if isinstance(value, (int, float)):
        size = float(value)
    else:
        match = _SIZE_RE.fullmatch(str(value))
        if not match:
            raise GateInputError("%s=%r is not a size: give bytes (524288000) or a string like "
                                 "'500mb' (MiB), '500m' (10^6 bytes), '2gb'" % (name, value))
        size = float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()]
    if size < 0:
        raise GateInputError("%s=%r must be >= 0" % (name, value))
    return int(size)


def percentile(values, q: float):
    """Nearest-rank percentile (q in 0..100) of VALUES; None when there is none."""
    data = sorted(values)
    if not data:
        return None
    rank = max(1, int(math.ceil(q / 100.0 * len(data))))
    return data[min(rank, len(data)) - 1]


def summarize(values, digits: int = 2) -> dict:
    """max / mean / p95 of VALUES, rounded; None figures when there is no value."""
    data = [v for v in values if v is not None]
    if not data:
        return {"max": None, "mean": None, "p95": None}
    return {"max": round(max(data), digits), "mean": round(sum(data) / len(data), digits),
            "p95": round(percentile(data, 95), digits)}


def sample_times(duration: float, interval: float) -> list:
    """Offsets (seconds from the start) at which to take samples: 0, interval, ... <= duration.

    A zero interval or duration means a single sample. The last offset is always ``duration`` so
    the window observed is the one asked for, even when interval does not divide it.
    """
    if duration <= 0:
        return [0.0]
    if interval <= 0 or interval >= duration:
        return [0.0, duration]
    count = int(math.floor(duration / interval + 1e-9))
    offsets = [round(k * interval, 6) for k in range(count + 1)]
    if duration - offsets[-1] > 1e-6:
        offsets.append(duration)
    return offsets


def run_samples(take, duration: float, interval: float, clock=time.monotonic, sleep=time.sleep,
                fail_first: bool = False) -> list:
    """Call TAKE() at each offset of sample_times(); return [{"t": offset, "value"|"error": ...}].

    Offsets are kept against the start time so the loop does not drift with the cost of a sample.
    A sample that raises is recorded with its error and the loop goes on; the caller decides
    whether enough samples succeeded. With FAIL_FIRST the first sample's exception propagates
    (an unreachable or misconfigured source fails at once instead of after the whole window).
    """
    start = clock()
    results = []
    for offset in sample_times(duration, interval):
        delay = start + offset - clock()
        if delay > 0:
            sleep(delay)
        at = round(clock() - start, 3)
        try:
            results.append({"t": at, "value": take()})
        except Exception as exc:  # pylint: disable=broad-except  # a bad sample is data, not a crash
            if fail_first and not results:
                raise
            results.append({"t": at, "error": str(exc).strip() or exc.__class__.__name__})
    return results


def hit_rate(first: dict, last: dict):
    """Percent of keyspace lookups that hit between two INFO samples, and the lookup count.

    Returns (None, 0) when no lookup happened in the window. A counter that went backwards
    (server restart or CONFIG RESETSTAT by someone else) raises GateInputError: the window is void.
    """
    hits = int(last["keyspace_hits"]) - int(first["keyspace_hits"])
    misses = int(last["keyspace_misses"]) - int(first["keyspace_misses"])
    if hits < 0 or misses < 0:
        raise GateInputError("Redis keyspace counters went backwards between the two samples "
                             "(restart or CONFIG RESETSTAT during the window); sample again")
    lookups = hits + misses
    if lookups == 0:
        return None, 0
    return round(100.0 * hits / lookups, 2), lookups


def pgbouncer_figures(pools: list, pool_sizes: dict, database: str | None = None,
                      user: str | None = None) -> dict:
    """Figures of one SHOW POOLS sample, summed over the pools that match DATABASE / USER.

    ``pool_sizes`` maps database name → pool_size (from SHOW DATABASES). Utilisation is server
    connections in use (sv_active) against the pool size: PgBouncer's own notion of a full pool.
    """
    picked = [p for p in pools
              if p.get("database") != "pgbouncer"
              and (database is None or p.get("database") == database)
              and (user is None or p.get("user") == user)]
    active = sum(int(p.get("sv_active") or 0) for p in picked)
    idle = sum(int(p.get("sv_idle") or 0) for p in picked)
    waiting = sum(int(p.get("cl_waiting") or 0) for p in picked)
    capacity = sum(int(pool_sizes.get(p.get("database"), 0) or 0) for p in picked)
    maxwait = max([float(p.get("maxwait") or 0) + float(p.get("maxwait_us") or 0) / 1e6
                   for p in picked] or [0.0])
    return {"pools": len(picked), "cl_active": sum(int(p.get("cl_active") or 0) for p in picked),
            "cl_waiting": waiting, "sv_active": active, "sv_idle": idle,
            "active": active, "idle": idle, "waiting": waiting, "total": capacity,
            "maxwait_s": round(maxwait, 3),
            "utilization": round(100.0 * active / capacity, 2) if capacity else None}


def check_max(figure: str, value, option: str, limit, unit: str = "") -> str | None:
    """A failure message when VALUE exceeds LIMIT (None limit or value: no check)."""
    if limit is None or value is None or value <= limit:
        return None
    return "%s %s%s exceeds %s %s%s" % (figure, _fmt(value), unit, option, _fmt(limit), unit)


def check_min(figure: str, value, option: str, limit, unit: str = "") -> str | None:
    """A failure message when VALUE is below LIMIT (None limit or value: no check)."""
    if limit is None or value is None or value >= limit:
        return None
    return "%s %s%s is below %s %s%s" % (figure, _fmt(value), unit, option, _fmt(limit), unit)


def _fmt(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def gate(failures: list, inconclusive: str | None = None) -> dict:
    """The ``gate`` dict of every gate module: {passed, reason, failures}."""
    failures = [f for f in failures if f]
    if inconclusive:
        return {"passed": False, "inconclusive": True, "reason": "inconclusive: " + inconclusive,
                "failures": failures}
    if failures:
        return {"passed": False, "inconclusive": False, "reason": "; ".join(failures),
                "failures": failures}
    return {"passed": True, "inconclusive": False, "reason": "all thresholds met", "failures": []}


def verdict_argument_spec() -> dict:
    """The argument spec of the verdict option every gate module takes (documented by the doc
    fragment gradual.rollout.gate.verdict); a new dict on each call."""
    return dict(fail_on_inconclusive=dict(type="bool", default=True))


def fails_task(result: dict, fail_on_inconclusive: bool) -> bool:
    """Whether a gate module fails its task on RESULT (its ``gate`` dict and ``inconclusive``).

    A failed gate always does. An inconclusive one does only with FAIL_ON_INCONCLUSIVE (the
    default): otherwise the task succeeds with ``inconclusive`` for the caller to decide.
    """
    return not result["gate"]["passed"] and (not result["inconclusive"] or fail_on_inconclusive)


def json_equal(a, b) -> bool:
    """Equality with JSON types (true is not 1, "1" is not 1); key order does not matter."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
