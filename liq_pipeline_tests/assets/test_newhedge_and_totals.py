import datetime as dt

import numpy as np
import pandas as pd
import pytest

from liq_pipeline.assets.newhedge import (
    NotPublishedYet,
    cut_window,
    metric_check_results,
    window_days,
)
from liq_pipeline.assets.totals import compute_totals, missing_metric_days, parts_add_up
from liq_pipeline.checks import days_out_of_bounds, reconciliation_table
from liq_pipeline.clients import NEWHEDGE_METRICS


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
    with pytest.raises(NotPublishedYet) as err:
        cut_window("bitcoin_liquidations_okx_long", published, days("2026-03-10", "2026-03-11"))
    assert str(err.value) == (
        "bitcoin_liquidations_okx_long: not published yet for 2026-03-11; latest published day is "
        "2026-03-10. Newhedge publishes a day after it ends; re-run these partitions later."
    )


def test_metric_checks_fail_on_wrong_sign_and_duplicate_days():
    frame = series({"2026-03-08": -1.0, "2026-03-09": 2.0})
    frame = pd.concat([frame, frame.tail(1)], ignore_index=True)
    results = {
        r.check_name: r for r in metric_check_results("bitcoin_liquidations_okx_short", frame)
    }
    assert results["sign_matches_side"].passed is False
    assert results["sign_matches_side"].metadata["wrong_sign_days"].value == 2
    assert results["one_value_per_day"].passed is False
    assert results["one_value_per_day"].metadata["duplicate_days"].value == 1
    ok = {
        r.check_name: r.passed
        for r in metric_check_results("bitcoin_liquidations_okx_short", frame.head(1))
    }
    assert ok == {"sign_matches_side": True, "one_value_per_day": True}


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
    assert parts_add_up(totals)
    tampered = totals.copy()
    tampered.loc[1, "total_usd"] += 0.01
    assert not parts_add_up(tampered)
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
    assert days_out_of_bounds(table) == ["2026-03-09", "2026-03-10"]
    assert np.isnan(reconciliation_table(sums, longs.head(1), shorts, window)["long_ratio"].iloc[1])
