"""prometheus_check's judgement, fed the answers of Prometheus' HTTP API (/api/v1/query) as its
documentation shapes them: vectors, scalars, NaN, infinities, a range vector, an error."""
from __future__ import annotations

import json

import pytest

from ansible_collections.gradual.rollout.plugins.module_utils import prometheus_gate as P


def vector(*series):
    return {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": labels, "value": [1733500000.123, value]} for labels, value in series]}}


def answered(*series):
    """The series of a vector answer, which must be judgeable."""
    out, refused = P.read_answer(vector(*series))
    assert refused is None
    return out


def test_series_are_named_by_metric_and_sorted_labels_and_sorted_by_name():
    series, refused = P.read_answer(vector(({"job": "app", "instance": "b:3000", "__name__": "up"}, "1"),
                                           ({"job": "app", "instance": "a:3000", "__name__": "up"}, "0")))
    assert refused is None
    assert [s["series"] for s in series] == ['up{instance="a:3000",job="app"}', 'up{instance="b:3000",job="app"}']
    assert [s["value"] for s in series] == [0.0, 1.0]


def test_a_scalar_answer_is_one_series():
    series, refused = P.read_answer({"status": "success", "data": {"resultType": "scalar", "result": [1.0, "0.25"]}})
    assert refused is None and series == [{"series": "scalar", "labels": {}, "value": 0.25}]


@pytest.mark.parametrize("answer, words", [
    ({"status": "success", "data": {"resultType": "matrix", "result": []}}, "range vector"),
    ({"status": "success", "data": {"resultType": "string", "result": [1.0, "x"]}}, "a string, not a number"),
    ({"status": "error", "errorType": "bad_data", "error": "1:5: parse error: unexpected <EOF>"},
     "Prometheus refused the query 'sum(up' (bad_data): 1:5: parse error"),
])
def test_answers_that_cannot_be_judged_are_refused_with_the_reason(answer, words):
    series, refused = P.read_answer(answer, "sum(up")
    assert series == [] and words in refused


def test_every_series_is_held_to_both_thresholds_and_named():
    series = answered(({"route": "/a"}, "3.4"), ({"route": "/b"}, "0.5"), ({"route": "/c"}, "1"))
    failures, why = P.judge(series, min_value=0.8, max_value=3)
    assert why is None
    assert failures == ['value of {route="/a"} 3.4 exceeds max_value 3', 'value of {route="/b"} 0.5 is below min_value 0.8']


def test_within_the_thresholds_passes():
    series = answered(({"route": "/a"}, "2.99"),)
    assert P.judge(series, max_value=3) == ([], None)


def test_no_series_is_inconclusive_unless_min_series_allows_it():
    failures, why = P.judge([], max_value=3)
    assert failures == [] and "returned 0 series, min_series is 1" in why
    assert P.judge([], max_value=3, min_series=0) == ([], None)


def test_max_series_fails_naming_the_series():
    series = answered(({"__name__": "up", "job": "redis"}, "0"),)
    failures, why = P.judge(series, min_series=0, max_series=0)
    assert why is None and failures == ['1 series, more than max_series 0: up{job="redis"}']


def test_nan_is_inconclusive_but_a_failed_threshold_still_wins():
    series = answered(({"route": "/a"}, "NaN"),)
    failures, why = P.judge(series, max_value=0.05)
    assert failures == [] and why.startswith("NaN") and 'route="/a"' in why
    series = answered(({"route": "/a"}, "NaN"), ({"route": "/b"}, "0.2"))
    failures, why = P.judge(series, max_value=0.05)
    assert why is None and failures == ['value of {route="/b"} 0.2 exceeds max_value 0.05']


def test_infinities_are_judged_and_kept_as_json_strings():
    series = answered(({"le": "x"}, "+Inf"), ({"le": "y"}, "-Inf"))
    failures, why = P.judge(series, min_value=0, max_value=3)
    assert len(failures) == 2 and why is None
    figures = P.figures(series)
    assert figures["max"] == "+Inf" and figures["min"] == "-Inf"
    assert [s["value"] for s in figures["series"]] == ["+Inf", "-Inf"]
    json.dumps(figures, allow_nan=False)  # the rollout state keeps figures as jsonb


def test_figures_give_the_single_value_and_the_extremes():
    series = answered(({"a": "1"}, "2"), ({"a": "2"}, "5"))
    assert {k: v for k, v in P.figures(series).items() if k != "series"} == {
        "series_count": 2, "min": 2.0, "max": 5.0, "value": None}
    one = answered(({}, "7"),)
    assert P.figures(one)["value"] == 7.0 and one[0]["series"] == "{}"


def matrix(*series):
    """A range query's answer: each series' labels and [(unix time, "value"), ...]."""
    return {"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": labels, "values": [[ts, v] for ts, v in values]} for labels, values in series]}}


T0 = 1733500000  # 2024-12-06T15:46:40Z


def test_a_range_series_is_reduced_to_its_lowest_highest_and_last_samples_with_their_times():
    series, refused = P.read_answer(matrix(({"instance": "b"}, [(T0, "0.1"), (T0 + 15, "0.9"), (T0 + 30, "0.2")]),
                                           ({"instance": "a"}, [(T0, "1"), (T0 + 15, "NaN"), (T0 + 30, "0.5")])),
                                    "q", ranged=True)
    assert refused is None and [s["series"] for s in series] == ['{instance="a"}', '{instance="b"}']
    a, b = series
    assert (b["value"], b["low"], b["high"], b["samples"]) == (0.2, 0.1, 0.9, 3)
    assert b["high_at"] == "2024-12-06T15:46:55Z" and b["low_at"] == "2024-12-06T15:46:40Z"
    # a NaN sample is left out of the judgement, but counted
    assert (a["value"], a["low"], a["high"], a["samples"]) == (0.5, 0.5, 1.0, 3)


def test_a_peak_inside_the_range_fails_naming_the_series_the_value_and_when():
    answer = matrix(({"instance": "a"}, [(T0, "0.1"), (T0 + 15, "3.4"), (T0 + 30, "0.2")]),
                    ({"instance": "b"}, [(T0, "0.5"), (T0 + 15, "0.6")]))
    series, refused = P.read_answer(answer, "q", ranged=True)
    assert refused is None
    failures, why = P.judge(series, min_value=0.15, max_value=3)
    assert failures == ['lowest value of {instance="a"} in the range (at 2024-12-06T15:46:40Z) 0.1 is below '
                        'min_value 0.15',
                        'peak of {instance="a"} in the range (at 2024-12-06T15:46:55Z) 3.4 exceeds max_value 3']
    assert why is None
    # its last value is back under the threshold: the peak still fails
    assert series[0]["value"] == 0.2
    fig = P.figures(series)
    assert fig["max"] == 3.4 and fig["min"] == 0.1 and fig["series_count"] == 2


def test_an_empty_range_and_a_range_of_nan_only_are_inconclusive():
    empty, refused = P.read_answer(matrix(), "q", ranged=True)
    assert refused is None and empty == []
    failures, why = P.judge(empty, max_value=1)
    assert failures == [] and "returned 0 series, min_series is 1" in why
    nan, refused = P.read_answer(matrix(({"instance": "a"}, [(T0, "NaN"), (T0 + 15, "NaN")])), "q", ranged=True)
    assert refused is None
    failures, why = P.judge(nan, max_value=1)
    assert failures == [] and why.startswith("NaN") and '{instance="a"}' in why
    assert P.figures(nan)["max"] is None


def test_a_range_query_answered_with_something_else_is_refused_naming_the_query():
    series, refused = P.read_answer(vector(({}, "1")), "up", ranged=True)
    assert series == [] and refused == "the range query 'up' returned a vector, not a matrix"


def test_refusal_names_the_query_and_prometheus_message():
    msg = P.refusal({"status": "error", "errorType": "bad_data",
                     "error": 'invalid parameter "query": 1:5: parse error'}, "sum(up")
    assert msg == "Prometheus refused the query 'sum(up' (bad_data): invalid parameter \"query\": 1:5: parse error"


def test_infinite_range_samples_are_written_as_the_api_writes_them():
    series, refused = P.read_answer(matrix(({}, [(T0, "+Inf"), (T0 + 1, "1")])), "q", ranged=True)
    assert refused is None
    fig = P.figures(series)
    assert fig["max"] == "+Inf" and fig["series"][0]["high"] == "+Inf"
    assert json.loads(json.dumps(fig)) == fig
