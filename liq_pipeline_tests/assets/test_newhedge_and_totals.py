import base64
import datetime as dt
import re
import warnings

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from liq_pipeline import charts
from liq_pipeline.assets import newhedge
from liq_pipeline.assets import totals as totals_module
from liq_pipeline.assets.newhedge import MissingDays, build_newhedge_assets, cut_window
from liq_pipeline.assets.totals import (
    CHART_DAYS,
    TOTALS,
    build_totals_asset,
    chart_window,
    compute_totals,
    missing_metric_days,
    part_column,
    stored_chart_days,
)
from liq_pipeline.checks import day_checks, reconciliation_table
from liq_pipeline.clients import EXCHANGES, NEWHEDGE_METRICS
from liq_pipeline.partitions import window_days
from liq_pipeline.per_day import usd
from liq_pipeline.resources import NewhedgeResource
from liq_pipeline.simulator import DEMO_NEWHEDGE_TOKEN, Simulator
from liq_pipeline.simulator.data import newhedge_value
from liq_pipeline.warehouse import WarehouseIOManager, WarehouseResource, warehouse_metadata
from liq_pipeline_tests.assets.analytics_helpers import DAILY, day_metadata, range_tags


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


# --- the totals chart -------------------------------------------------------------------------


def totals_rows(values: dict[str, float]) -> pd.DataFrame:
    """Totals rows whose every part (and so every sum) is derived from one number per day."""
    frame = pd.DataFrame({"day": days(*values)})
    for exchange in EXCHANGES:
        for side in ("long", "short"):
            frame[part_column(exchange, side)] = list(values.values())
    for side in ("long", "short"):
        frame[f"{side}_usd"] = frame[[part_column(e, side) for e in EXCHANGES]].sum(axis=1)
    frame["total_usd"] = frame["long_usd"] + frame["short_usd"]
    return frame


def test_the_chart_shows_the_30_days_up_to_the_newest_day_of_the_run():
    stored = totals_rows(
        {"2026-02-01": 1.0, "2026-02-10": 2.0, "2026-03-01": 3.0, "2026-03-09": 4.0}
    )
    run = totals_rows({"2026-03-09": 5.0, "2026-03-10": 6.0})
    window = chart_window(stored, run, pd.Timestamp("2026-03-10"))
    assert len(window) == CHART_DAYS
    assert (window["day"].iloc[0], window["day"].iloc[-1]) == (
        pd.Timestamp("2026-02-09"),
        pd.Timestamp("2026-03-10"),
    )
    known = window.dropna().set_index("day")["okx_long_usd"].to_dict()
    # 02-01 is before the window; the run's 03-09 replaces the stored one; gaps stay empty.
    assert known == {
        pd.Timestamp("2026-02-10"): 2.0,
        pd.Timestamp("2026-03-01"): 3.0,
        pd.Timestamp("2026-03-09"): 5.0,
        pd.Timestamp("2026-03-10"): 6.0,
    }
    png = charts.totals_chart(window, "title")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) < 150_000


def test_only_the_stored_days_before_the_run_are_read(wh):
    io = WarehouseIOManager(url=wh.url)
    stored = totals_rows({f"2026-03-{d:02d}": float(d) for d in range(1, 11)})
    with dg.build_output_context(
        asset_key=TOTALS,
        definition_metadata=warehouse_metadata(TOTALS),
        asset_partitions_def=DAILY,
        asset_partition_key_range=dg.PartitionKeyRange("2026-03-01", "2026-03-10"),
    ) as context:
        io.handle_output(context, stored)
    warehouse = WarehouseResource(url=wh.url)
    run_start = dt.datetime(2026, 3, 9, tzinfo=dt.UTC)
    before = stored_chart_days(warehouse, pd.Timestamp("2026-03-10"), run_start)
    assert before["day"].tolist() == list(days(*(f"2026-03-{d:02d}" for d in range(1, 9))))
    # A run longer than the chart reads nothing.
    long_run = stored_chart_days(
        warehouse, pd.Timestamp("2026-03-10"), run_start - dt.timedelta(59)
    )
    assert long_run.empty


@pytest.mark.e2e
def test_the_newest_day_of_each_run_carries_the_chart_and_a_table_of_the_runs_days(wh, monkeypatch):
    drawn: list[pd.DataFrame] = []
    real_chart = charts.totals_chart

    def spy(window: pd.DataFrame, title: str) -> bytes:
        drawn.append(window)
        return real_chart(window, title)

    monkeypatch.setattr(charts, "totals_chart", spy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        assets = [build_newhedge_assets(DAILY), build_totals_asset(DAILY)]
    with Simulator(port=0, now=dt.datetime(2026, 3, 21, 12, tzinfo=dt.UTC)) as sim:
        resources = {
            "io_manager": WarehouseIOManager(url=wh.url),
            "warehouse": WarehouseResource(url=wh.url),
            "newhedge": NewhedgeResource(api_token=DEMO_NEWHEDGE_TOKEN, base_url=sim.url),
        }
        first = dg.materialize(
            assets, resources=resources, tags=range_tags("2026-03-05", "2026-03-07")
        )
        second = dg.materialize(assets, resources=resources, partition_key="2026-03-08")
    meta = day_metadata(first, TOTALS)
    assert [day for day, m in sorted(meta.items()) if "chart" in m] == ["2026-03-07"]
    # The run's sums are in whole dollars, for reading, on each day of the run.
    run_days = [dt.date(2026, 3, d) for d in (5, 6, 7)]
    total = sum(abs(newhedge_value(m, d)) for m in NEWHEDGE_METRICS for d in run_days)
    assert {m["run_total_usd"] for m in meta.values()} == {usd(total)}
    okx_short = [
        m.metadata["run_sum_usd"].value
        for m in first.asset_materializations_for_node("newhedge_metrics")
        if m.asset_key == dg.AssetKey("bitcoin_liquidations_okx_short")
    ]
    published = sum(newhedge_value("bitcoin_liquidations_okx_short", d) for d in run_days)
    assert okx_short == [usd(published)] * 3
    assert usd(published).startswith("-$")  # shorts are published negative
    newest = meta["2026-03-07"]
    table = newest["run_totals"].splitlines()
    assert table[:2] == ["| day | long | short | total |", "|---|---|---|---|"]
    assert len(table) == 2 + 3
    assert table[2] == (
        f"| 2026-03-05 | {usd(meta['2026-03-05']['long_usd'])} | "
        f"{usd(meta['2026-03-05']['short_usd'])} | {usd(meta['2026-03-05']['total_usd'])} |"
    )
    assert re.fullmatch(r"!\[.*\]\(data:image/png;base64,[A-Za-z0-9+/=]+\)", newest["chart"])
    png = base64.b64decode(newest["chart"].split("base64,")[1][:-1])
    assert len(png) < 150_000
    # The one-day run's chart has the three stored days before it: it read the warehouse.
    assert len(drawn) == 2
    shown = drawn[1].dropna()["day"].dt.strftime("%Y-%m-%d").tolist()
    assert shown == ["2026-03-05", "2026-03-06", "2026-03-07", "2026-03-08"]
    [only] = day_metadata(second, TOTALS).values()
    assert only["chart"].startswith("![") and only["run_totals"].count("\n") == 2
