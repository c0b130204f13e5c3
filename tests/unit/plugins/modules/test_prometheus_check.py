"""prometheus_check's argument checks: each refusal names the bad value (never a secret), before
any request."""
from __future__ import annotations

import pytest

from ansible_collections.gradual.rollout.plugins.module_utils import gates as G
from ansible_collections.gradual.rollout.plugins.modules import prometheus_check


def params(**given):
    out = {name: opts.get("default") for name, opts in prometheus_check.argument_spec().items()}
    out.update(given)
    return out


def test_the_query_endpoint_keeps_a_path_prefix():
    assert prometheus_check.check_options(params(url="http://mon1:9090", query="up", min_value=1)) == \
        "http://mon1:9090/api/v1/query"
    assert prometheus_check.check_options(params(url="https://ops.example/prometheus/", query="up", max_series=0)) == \
        "https://ops.example/prometheus/api/v1/query"


@pytest.mark.parametrize("given, words", [
    (dict(url="mon1:9090", query="up", min_value=1.0), "url='mon1:9090' is not an http(s) URL"),
    (dict(url="http://mon1:9090/?x=1", query="up", min_value=1.0), "without a query string"),
    (dict(url="http://mon1:9090", query="  ", min_value=1.0), "query is empty"),
    (dict(url="http://mon1:9090", query="up"), "give min_value, max_value or max_series"),
    (dict(url="http://mon1:9090", query="up", min_value=2.0, max_value=1.0), "min_value=2.0 is above max_value=1.0"),
    (dict(url="http://mon1:9090", query="up", min_value=1.0, min_series=-1), "min_series=-1"),
    (dict(url="http://mon1:9090", query="up", max_series=-2), "max_series=-2"),
    (dict(url="http://mon1:9090", query="up", min_value=1.0, timeout=0.0), "timeout=0.0 must be > 0"),
    (dict(url="http://mon1:9090", query="up", min_value=1.0, step="15s"), "step='15s' without range"),
    (dict(url="http://mon1:9090", query="up", min_value=1.0, range="ten"), "range='ten' is not a duration"),
    (dict(url="http://mon1:9090", query="up", min_value=1.0, range="0s"), "range='0s' must be longer than 0"),
    (dict(url="http://mon1:9090", query="up", min_value=1.0, range="10m", step="0"), "step='0' must be longer"),
    (dict(url="http://mon1:9090", query="up", min_value=1.0, range="1m", step="5m"), "step='5m' is longer than range"),
    (dict(url="http://mon1:9090", query="up", min_value=1.0, range="1d", step="1s"), "86400 steps"),
])
def test_bad_options_are_refused_naming_the_value(given, words):
    with pytest.raises(G.GateInputError) as err:
        prometheus_check.check_options(params(**given))
    assert words in str(err.value)


def test_credentials_in_the_url_are_refused_without_echoing_them():
    with pytest.raises(G.GateInputError) as err:
        prometheus_check.check_options(params(url="http://gate:s3cret@mon1:9090", query="up", min_value=1.0))
    assert "s3cret" not in str(err.value) and "url_username and url_password" in str(err.value)


def test_a_range_query_asks_query_range_from_range_ago_until_now_every_step():
    p = params(url="http://mon1:9090/", query="up", min_value=1.0, range="10m", step="30s")
    assert prometheus_check.check_options(p) == "http://mon1:9090/api/v1/query_range"
    assert prometheus_check.form(p, 1733500000.0) == {
        "query": "up", "timeout": "10s", "start": "1733499400.000", "end": "1733500000.000", "step": "30s"}


def test_the_default_step_is_15s_or_longer_to_stay_under_prometheus_limit():
    assert prometheus_check.range_window(params(range="1h")) == (3600.0, 15.0)
    assert prometheus_check.range_window(params(range="7d")) == (604800.0, 55.0)
    assert prometheus_check.range_window(params(range="90")) == (90.0, 15.0)


def test_an_instant_query_sends_no_range():
    p = params(url="http://mon1:9090", query="up", min_value=1.0)
    assert prometheus_check.range_window(p) is None
    assert prometheus_check.form(p, 1733500000.0) == {"query": "up", "timeout": "10s"}
