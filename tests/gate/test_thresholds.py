"""The thresholds file: what parses, and the exit-2 message for every kind of mistake."""

from __future__ import annotations

import pytest

from relaybench.errors import UsageError
from reports.thresholds import DERIVED_METRICS, TARGET_METRICS, load_thresholds, parse_thresholds

GOOD = """
# a comment
[relay]
"ttft_ms.p95" = "<= 800"
"error_rate" = "<= 0.01"
"ttft_ms.p50" = "<= +10%"
"output_tokens_per_s" = ">= -5%"

[direct]
"errors.http_5xx" = "<= 0"

[derived]
slo_ttft_ms = 1000
relay_target = "relay"
"relay_added_ttft_ms.p95" = "<= 50"
"goodput_pct" = ">= 95"
"""


def test_parses_absolute_relative_and_derived_checks():
    th = parse_thresholds(GOOD, "t.toml")
    by_key = {(c.target, c.metric): c for c in th.checks}
    assert len(th.checks) == 7
    p95 = by_key[("relay", "ttft_ms.p95")]
    assert (p95.op, p95.value, p95.relative) == ("<=", 800.0, False)
    p50 = by_key[("relay", "ttft_ms.p50")]
    assert (p50.op, p50.value, p50.relative, p50.text) == (
        "<=",
        pytest.approx(0.10),
        True,
        "<= +10%",
    )
    tps = by_key[("relay", "output_tokens_per_s")]
    assert (tps.op, tps.value, tps.relative) == (">=", pytest.approx(-0.05), True)
    assert by_key[("derived", "goodput_pct")].derived
    assert not by_key[("derived", "goodput_pct")].relative
    assert th.derived.slo_ttft_ms == 1000.0
    assert th.derived.buffered_target == "relay-buffered"  # default role
    assert th.targets == ["relay", "direct"]
    assert th.needs_baseline


def test_absolute_only_file_needs_no_baseline():
    th = parse_thresholds('[relay]\n"ttft_ms.p95" = ">= 1e2"\n')
    assert th.checks[0].value == 100.0
    assert not th.needs_baseline


def test_toml_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[relay]\n"ttft_ms.p95" = "<= 800"\n"error_rate" = <= 0.01\n')
    with pytest.raises(UsageError) as err:
        load_thresholds(path)
    assert str(path) in err.value.message
    assert "line 3" in err.value.message
    assert err.value.exit_code == 2


def test_unknown_metric_lists_the_known_ones():
    with pytest.raises(UsageError) as err:
        parse_thresholds('[relay]\n"ttft_ms.p96" = "<= 800"\n', "t.toml")
    message = err.value.message
    assert "'ttft_ms.p96'" in message and "unknown metric" in message
    for known in ("ttft_ms.p95", "error_rate", "output_tokens_per_s", "chunk_lag_ms.p99"):
        assert known in message
    assert all(metric in message for metric in TARGET_METRICS)


def test_unknown_derived_metric_lists_the_derived_ones():
    with pytest.raises(UsageError) as err:
        parse_thresholds('[derived]\n"relay_added_ttft.p50" = "<= 5"\n')
    assert all(metric in err.value.message for metric in DERIVED_METRICS)
    assert "slo_ttft_ms" in err.value.message


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ('"< 800"', "bad limit"),
        ('"== 800"', "bad limit"),
        ('"800"', "bad limit"),
        ('"<= fast"', "not a number"),
        ('"<= 1.2.3"', "not a number"),
        ('"<= nan"', "finite"),
        ("800", "must be a string"),
        ('">= "', "bad limit"),
    ],
)
def test_bad_operator_or_value(value, needle):
    with pytest.raises(UsageError) as err:
        parse_thresholds(f'[relay]\n"ttft_ms.p95" = {value}\n', "t.toml")
    assert needle in err.value.message
    assert "[relay] 'ttft_ms.p95'" in err.value.message


def test_derived_metrics_take_absolute_limits_only():
    with pytest.raises(UsageError, match="absolute limits only"):
        parse_thresholds('[derived]\n"relay_added_ttft_ms.p50" = "<= +10%"\n')


def test_goodput_needs_an_slo():
    with pytest.raises(UsageError, match="slo_ttft_ms"):
        parse_thresholds('[derived]\n"goodput_pct" = ">= 95"\n')


@pytest.mark.parametrize("setting", ["slo_ttft_ms = -5", 'slo_ttft_ms = "1s"', "relay_target = 3"])
def test_bad_derived_settings(setting):
    with pytest.raises(UsageError, match=r"\[derived\]"):
        parse_thresholds(f'[derived]\n{setting}\n"relay_added_ttft_ms.p50" = "<= 5"\n')


def test_top_level_key_outside_a_table():
    with pytest.raises(UsageError, match="not a table"):
        parse_thresholds('"ttft_ms.p95" = "<= 800"\n')


def test_file_without_checks():
    with pytest.raises(UsageError, match="no checks"):
        parse_thresholds("# nothing here\n")


def test_missing_file(tmp_path):
    with pytest.raises(UsageError, match="cannot read thresholds file"):
        load_thresholds(tmp_path / "absent.toml")


def test_a_list_gives_one_metric_two_limits():
    th = parse_thresholds('[relay]\n"ttft_ms.p95" = ["<= 800", "<= +15%"]\n')
    assert [(c.metric, c.relative, c.text) for c in th.checks] == [
        ("ttft_ms.p95", False, "<= 800"),
        ("ttft_ms.p95", True, "<= +15%"),
    ]
    with pytest.raises(UsageError, match="must be a string"):
        parse_thresholds('[relay]\n"ttft_ms.p95" = ["<= 800", 5]\n')
