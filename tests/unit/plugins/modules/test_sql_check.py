"""sql_check's argument checks: each refusal names the bad value, before any connection."""
from __future__ import annotations

import pytest

from ansible_collections.gradual.rollout.plugins.module_utils import gates as G
from ansible_collections.gradual.rollout.plugins.module_utils import sql_gate as S
from ansible_collections.gradual.rollout.plugins.modules import sql_check


def params(**given):
    spec = sql_check.argument_spec()
    out = {name: opts.get("default") for name, opts in spec.items()}
    out.update(given)
    return out


def test_defaults_give_a_five_second_statement_timeout():
    assert sql_check.check_options(params(mode="query", query="SELECT 1", max_value=1)) == 5000
    assert sql_check.check_options(params(mode="index_usage", indexes=["i"], statement_timeout="250ms")) == 250


@pytest.mark.parametrize("given, words", [
    (dict(mode="query"), "mode: query needs query"),
    (dict(mode="query", query="SELECT 1", index="idx_a"), "index='idx_a' is only used with mode: explain"),
    (dict(mode="index_usage", indexes=["i"], max_value=3.0), "max_value=3.0 is only used with mode: query"),
    (dict(mode="explain", query="SELECT 1"), "needs index"),
    (dict(mode="explain", query="SELECT 1", max_time_ms=50.0), "max_time_ms=50.0 needs analyze: true"),
    (dict(mode="index_usage"), "needs indexes"),
    (dict(mode="index_usage", indexes=["i"], min_idx_scan=-1), "min_idx_scan=-1"),
    (dict(mode="query", query="SELECT 1", min_value=5.0, max_value=1.0), "min_value=5.0 is above max_value=1.0"),
    (dict(mode="query", query="SELECT 1", statement_timeout=0), "statement_timeout=0 must be > 0"),
    (dict(mode="query", query="SELECT 1", statement_timeout="soon"), "statement_timeout='soon'"),
])
def test_bad_options_are_refused_naming_the_value(given, words):
    with pytest.raises(G.GateInputError) as err:
        sql_check.check_options(params(**given))
    assert words in str(err.value)


def test_a_write_is_refused_by_the_parser_naming_it():
    with pytest.raises(S.SqlRefused, match="'TRUNCATE players' is a TRUNCATE statement"):
        sql_check.check_options(params(mode="explain", analyze=True, index="i", query="TRUNCATE players"))
