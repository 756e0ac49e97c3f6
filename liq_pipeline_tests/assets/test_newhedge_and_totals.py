import datetime as dt

import numpy as np
import pandas as pd
import pytest

from liq_pipeline.assets import newhedge
from liq_pipeline.assets import totals as totals_module
from liq_pipeline.assets.newhedge import MissingDays, cut_window
from liq_pipeline.assets.totals import compute_totals, missing_metric_days
from liq_pipeline.checks import day_checks, reconciliation_table
from liq_pipeline.clients import NEWHEDGE_METRICS
from liq_pipeline.partitions import window_days


def days(*isos: str) -> pd.DatetimeIndex:
    return pd.DatetimeIndex([pd.Timestamp(d) for d in isos]).astype("datetime64[s]")


def series(values: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame({"day": days(*values), "value": list(values.values())})


def test_window_days_are_naive_utc_midnights():
    start = dt.datetime(2026, 3, 30, tzinfo=dt.UTC)
    window = window_days(start, start + dt.timedelta(days=3))
    assert list(window) == list(days("2026-03-30", "2026-03-31", "2026-04-01"))
    assert str(window.dtype) == "datetime64[s]"


def test_cut_window_keeps_published_zeros_and_names_the_missing_day():
    published = series({"2026-03-08": 5.0, "2026-03-09": 0.0, "2026-03-10": 7.0})
    cut = cut_window(
        "bitcoin_liquidations_deribit_long", published, days("2026-03-09", "2026-03-10")
    )
    assert cut["value"].tolist() == [0.0, 7.0]
    with pytest.raises(MissingDays) as err:
        cut_window("bitcoin_liquidations_okx_long", published, days("2026-03-10", "2026-03-11"))
    assert str(err.value) == (
        "bitcoin_liquidations_okx_long: not published yet for 2026-03-11; latest published day is "
        "2026-03-10. Newhedge publishes a day after it ends; re-run these partitions later."
    )


def test_a_day_missing_before_the_latest_published_one_is_called_a_gap():
    published = series({"2026-03-08": 5.0, "2026-03-10": 7.0})
    with pytest.raises(MissingDays) as err:
        cut_window("bitcoin_liquidations_okx_long", published, days("2026-03-09", "2026-03-11"))
    assert str(err.value) == (
        "bitcoin_liquidations_okx_long: no value for 2026-03-09 although later days are "
        "published (latest published day is 2026-03-10): a gap in Newhedge's series, which "
        "re-running will not fill; leave these days out of the range or ask Newhedge; and not "
        "published yet for 2026-03-11; latest published day is 2026-03-10. Newhedge publishes a "
        "day after it ends; re-run these partitions later."
    )


def test_each_metric_day_carries_its_own_value():
    frame = series({"2026-03-08": -1.5, "2026-03-09": 0.0})
    assert newhedge.day_metadata(frame) == {
        "2026-03-08": {"dagster/row_count": 1, "value_usd": -1.5},
        "2026-03-09": {"dagster/row_count": 1, "value_usd": 0.0},
    }


def test_totals_are_positive_per_exchange_and_add_up():
    window = days("2026-03-08", "2026-03-09")
    inputs = {
        metric: series({"2026-03-08": (i + 1) * 1.5, "2026-03-09": 0.0})
        if metric.endswith("_long")
        else series({"2026-03-08": -(i + 1) * 10.0, "2026-03-09": -0.25})
        for i, metric in enumerate(NEWHEDGE_METRICS)
    }
    totals = compute_totals(inputs, window)
    row = totals.iloc[0]
    longs = [inputs[m]["value"].iloc[0] for m in NEWHEDGE_METRICS if m.endswith("_long")]
    shorts = [-inputs[m]["value"].iloc[0] for m in NEWHEDGE_METRICS if m.endswith("_short")]
    assert row["long_usd"] == sum(longs)
    assert row["short_usd"] == sum(shorts)
    assert row["total_usd"] == sum(longs) + sum(shorts)
    assert (
        row["binance_short_usd"] == -inputs["bitcoin_liquidations_binance_short"]["value"].iloc[0]
    )
    assert totals.iloc[1]["short_usd"] == 1.0 and totals.iloc[1]["long_usd"] == 0.0
    day = totals_module.day_metadata(totals)["2026-03-09"]
    assert (day["dagster/row_count"], day["long_usd"], day["short_usd"]) == (1, 0.0, 1.0)
    assert day["total_usd"] == 1.0
    assert day["totals"].value.splitlines() == [
        "| exchange | long | short | total |",
        "|---|---|---|---|",
        "| binance | $0 | $0 | $0 |",
        "| bybit | $0 | $0 | $0 |",
        "| deribit | $0 | $0 | $0 |",
        "| okx | $0 | $0 | $0 |",
        "| all | $0 | $1 | $1 |",
    ]
    assert missing_metric_days(inputs, window) == {}
    inputs["bitcoin_liquidations_bybit_long"] = inputs["bitcoin_liquidations_bybit_long"].head(1)
    assert missing_metric_days(inputs, window) == {
        "bitcoin_liquidations_bybit_long": ["2026-03-09"]
    }


def test_reconciliation_flags_days_where_events_exceed_or_lack_newhedge():
    window = days("2026-03-08", "2026-03-09", "2026-03-10")
    sums = pd.DataFrame(
        {
            "day": days("2026-03-08", "2026-03-08", "2026-03-09", "2026-03-09", "2026-03-10"),
            "side": ["long", "short", "long", "short", "long"],
            "usd_value": [80.0, 40.0, 120.0, 10.0, 5.0],
        }
    )
    longs = series({"2026-03-08": 100.0, "2026-03-09": 100.0, "2026-03-10": 10.0})
    shorts = series({"2026-03-08": -50.0, "2026-03-09": -20.0, "2026-03-10": -3.0})
    table = reconciliation_table(sums, longs, shorts, window)
    assert table["long_ratio"].tolist() == [0.8, 1.2, 0.5]
    assert table["short_ratio"].tolist() == [0.8, 0.5, 0.0]
    # 03-09: more long events than Newhedge counted; 03-10: no short events at all.
    checks = day_checks(table)
    assert {day: check.passed for day, check in checks.items()} == {
        "2026-03-08": True,
        "2026-03-09": False,
        "2026-03-10": False,
    }
    assert checks["2026-03-09"].metadata == {
        "kwery_long_usd": 120.0,
        "newhedge_long_usd": 100.0,
        "long_ratio": 1.2,
        "kwery_short_usd": 10.0,
        "newhedge_short_usd": 20.0,
        "short_ratio": 0.5,
    }
    unpublished = reconciliation_table(sums, longs.head(1), shorts, window)
    assert np.isnan(unpublished["long_ratio"].iloc[1])
    no_value = day_checks(unpublished)["2026-03-09"]
    assert not no_value.passed
    assert (no_value.metadata["newhedge_long_usd"], no_value.metadata["long_ratio"]) == (None, None)
