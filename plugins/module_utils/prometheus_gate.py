# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The judgement of prometheus_check: an instant query's answer (Prometheus' HTTP API,
``/api/v1/query``) or a range query's (``/api/v1/query_range``) against thresholds.

Pure functions (no HTTP, no Ansible), so the unit tests feed them the API's documented shapes.
"""
from __future__ import annotations

import math
import time

from ansible_collections.gradual.rollout.plugins.module_utils import gates as G


def series_label(metric: dict) -> str:
    """``name{a="1",b="2"}`` of one series, labels sorted; ``{}`` for a series without labels."""
    labels = dict(metric or {})
    name = labels.pop("__name__", "")
    return "%s{%s}" % (name, ",".join('%s="%s"' % (k, labels[k]) for k in sorted(labels)))


def _number(raw: str) -> float:
    """A sample value as the API writes it ("1.5", "NaN", "+Inf")."""
    return float(raw)


def refusal(answer, query: str) -> str:
    """Prometheus' own reason for refusing QUERY (400 bad_data, 422 execution), naming the query."""
    kind = answer.get("errorType") if isinstance(answer, dict) else None
    error = answer.get("error") if isinstance(answer, dict) else None
    return "Prometheus refused the query %r (%s): %s" % (query, kind or "no status", error or answer)


def _when(ts) -> str:
    """A sample's timestamp (Unix seconds) as UTC ISO 8601, for a failure message."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(ts)))


def range_series(item: dict) -> dict:
    """One series of a range query's matrix, reduced to what the thresholds judge: its lowest and
    highest sample (with their times), its last sample as ``value``, and how many samples it had.
    NaN samples are left out; a series with nothing but NaN has None everywhere (inconclusive)."""
    samples = [(float(ts), _number(raw)) for ts, raw in item.get("values") or []]
    numbers = [(ts, v) for ts, v in samples if not math.isnan(v)]
    out = {"series": series_label(item.get("metric")), "labels": dict(item.get("metric") or {}),
           "value": None, "low": None, "low_at": None, "high": None, "high_at": None, "samples": len(samples)}
    if numbers:
        low = min(numbers, key=lambda s: s[1])
        high = max(numbers, key=lambda s: s[1])
        out.update(value=numbers[-1][1], low=low[1], low_at=_when(low[0]), high=high[1], high_at=_when(high[0]))
    return out


def read_answer(answer: dict, query: str = "", ranged: bool = False) -> tuple:
    """(series, refused) from the decoded JSON of /api/v1/query (or of /api/v1/query_range when
    RANGED).

    ``series`` is a list of {"series", "labels", "value"} (value None for NaN; a range query's
    series also carry ``low``, ``high`` and their times, see range_series); ``refused`` is a
    message when the answer cannot be judged as written (an error status, a range vector to an
    instant query, a string), which is the query's fault, not the server's."""
    if not isinstance(answer, dict) or answer.get("status") != "success":
        return [], refusal(answer, query)
    data = answer.get("data") or {}
    rtype = data.get("resultType")
    result = data.get("result")
    if ranged:
        if rtype != "matrix":
            return [], "the range query %r returned a %s, not a matrix" % (query, rtype or "result of no type")
        out = [range_series(item) for item in result or []]
        out.sort(key=lambda s: s["series"])
        return out, None
    if rtype == "scalar":
        value = _number(result[1])
        return [{"series": "scalar", "labels": {}, "value": None if math.isnan(value) else value}], None
    if rtype == "vector":
        out = []
        for item in result or []:
            value = _number(item["value"][1])
            out.append({"series": series_label(item.get("metric")), "labels": dict(item.get("metric") or {}),
                        "value": None if math.isnan(value) else value})
        out.sort(key=lambda s: s["series"])
        return out, None
    if rtype == "matrix":
        return [], ("the query returned a range vector (resultType matrix); a gate judges an instant "
                    "vector: aggregate the range, e.g. max_over_time(...[5m]) or rate(...[5m]), "
                    "or give range to judge every step of a range query")
    return [], "the query returned a %s, not a number per series" % (rtype or "result of no type")


def judge(series: list, min_value=None, max_value=None, min_series: int = 1, max_series=None) -> tuple:
    """(failures, why_inconclusive) of the series against the thresholds.

    Fewer series than ``min_series`` is inconclusive (a selector that matches nothing measures
    nothing); so is a NaN value (for example a ratio of two rates over a window without traffic).
    Every series is held to the thresholds, each failure naming its series (a range query's: every
    sample of it, the failure naming the worst one and its time); more series than ``max_series``
    fails, naming the first few."""
    failures = []
    if max_series is not None and len(series) > max_series:
        names = [s["series"] for s in series]
        failures.append("%d series, more than max_series %d: %s%s" % (
            len(series), max_series, ", ".join(names[:5]), " ..." if len(names) > 5 else ""))
    for s in series:
        if "high" in s:
            # a range query's series: every sample is held to the thresholds, so its lowest and
            # its highest are, named with when they were seen
            if s["low"] is not None:
                failures.append(G.check_min("lowest value of %s in the range (at %s)" % (s["series"], s["low_at"]),
                                            s["low"], "min_value", min_value))
                failures.append(G.check_max("peak of %s in the range (at %s)" % (s["series"], s["high_at"]),
                                            s["high"], "max_value", max_value))
            continue
        failures.append(G.check_min("value of %s" % s["series"], s["value"], "min_value", min_value))
        failures.append(G.check_max("value of %s" % s["series"], s["value"], "max_value", max_value))
    failures = [f for f in failures if f]
    why = None
    if len(series) < min_series:
        why = ("the query returned %d series, min_series is %d (is the metric scraped, does the "
               "selector match?)" % (len(series), min_series))
    else:
        nan = [s["series"] for s in series if s["value"] is None]
        if nan:
            why = "NaN (nothing to divide, no samples in the window?) for %s" % ", ".join(nan)
    # a threshold that failed is a verdict, whatever else could not be read
    return failures, (None if failures else why)


def _jsonable(value):
    """+Inf and -Inf as the API writes them: JSON (and PostgreSQL's jsonb, where the rollout state
    keeps gate figures) has no infinity."""
    if isinstance(value, float) and math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return value


def figures(series: list) -> dict:
    """What the result carries: every series and value, and the lowest and highest values (of a
    range query: the lowest and highest samples of any series)."""
    values = [s["value"] for s in series if s["value"] is not None]
    values += [s[k] for s in series for k in ("low", "high") if s.get(k) is not None]
    return {"series": [{k: _jsonable(v) for k, v in s.items()} for s in series], "series_count": len(series),
            "min": _jsonable(min(values)) if values else None, "max": _jsonable(max(values)) if values else None,
            "value": _jsonable(series[0]["value"]) if len(series) == 1 else None}
