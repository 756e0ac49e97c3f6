"""Cross-exchange daily totals derived from the 8 Newhedge metrics."""

import datetime as dt
from typing import Any

import dagster as dg
import pandas as pd

from liq_pipeline import charts
from liq_pipeline.assets.catalog import OWNERS, asset_kinds, catalog_tags
from liq_pipeline.contract import EXCHANGES, NEWHEDGE_METRICS, SIDES, TOTALS_TABLE
from liq_pipeline.partitions import partition_key, run_window, window_days
from liq_pipeline.per_day import add_day_metadata, markdown_table, usd
from liq_pipeline.warehouse import WarehouseResource, warehouse_metadata

TOTALS = TOTALS_TABLE
CHART_DAYS = 30


def part_column(exchange: str, side: str) -> str:
    return f"{exchange}_{side}_usd"


def missing_metric_days(
    inputs: dict[str, pd.DataFrame], days: pd.DatetimeIndex
) -> dict[str, list[str]]:
    """For each metric, the days of the window it has no value for."""
    missing = {}
    for metric in NEWHEDGE_METRICS:
        absent = days.difference(pd.DatetimeIndex(inputs[metric]["day"]))
        if len(absent):
            missing[metric] = [d.date().isoformat() for d in absent]
    return missing


def compute_totals(inputs: dict[str, pd.DataFrame], days: pd.DatetimeIndex) -> pd.DataFrame:
    """Per-exchange long/short USD as positive numbers plus long, short and total sums."""
    totals = pd.DataFrame({"day": days})
    for exchange in EXCHANGES:
        for side in SIDES:
            series = inputs[f"bitcoin_liquidations_{exchange}_{side}"].set_index("day")["value"]
            totals[part_column(exchange, side)] = series.reindex(days).abs().to_numpy()
    for side in SIDES:
        totals[f"{side}_usd"] = totals[[part_column(e, side) for e in EXCHANGES]].sum(axis=1)
    totals["total_usd"] = totals["long_usd"] + totals["short_usd"]
    return totals


def day_metadata(totals: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Each day's own figures: its totals, and a readable table of its parts."""
    by_day = {}
    for row in totals.to_dict("records"):
        parts = pd.DataFrame(
            {
                "exchange": [*EXCHANGES, "all"],
                **{
                    side: [row[part_column(e, side)] for e in EXCHANGES] + [row[f"{side}_usd"]]
                    for side in SIDES
                },
            }
        )
        parts["total"] = parts["long"] + parts["short"]
        by_day[partition_key(row["day"])] = {
            "dagster/row_count": 1,
            "total_usd": round(row["total_usd"], 2),
            "long_usd": round(row["long_usd"], 2),
            "short_usd": round(row["short_usd"], 2),
            "totals": dg.MetadataValue.md(
                markdown_table(parts, {side: usd for side in (*SIDES, "total")})
            ),
        }
    return by_day


def chart_window(stored: pd.DataFrame, run: pd.DataFrame, newest: pd.Timestamp) -> pd.DataFrame:
    """The CHART_DAYS days up to `newest`, one row each: this run's totals, the stored totals of
    the days before the run, NaN for days never materialized."""
    days = pd.date_range(end=newest, periods=CHART_DAYS, freq="D", unit="s")
    frames = [f for f in (stored[~stored["day"].isin(run["day"])], run) if not f.empty]
    known = pd.concat(frames, ignore_index=True) if frames else run
    return known.set_index("day").reindex(days).rename_axis("day").reset_index()


def stored_chart_days(
    warehouse: WarehouseResource, newest: pd.Timestamp, run_start: dt.datetime
) -> pd.DataFrame:
    """The stored totals of the chart's days that come before this run (the run may be one day)."""
    first = (newest - pd.Timedelta(days=CHART_DAYS - 1)).tz_localize("UTC").to_pydatetime()
    if first >= run_start:
        return pd.DataFrame(columns=["day"])
    return warehouse.read(TOTALS, first, run_start)


def newest_day_metadata(window: pd.DataFrame, totals: pd.DataFrame) -> dict[str, Any]:
    """The chart of the last CHART_DAYS days and a table of the run's days (newest day only)."""
    first, last = window["day"].iloc[0], window["day"].iloc[-1]
    title = f"BTC liquidations by exchange, {first:%Y-%m-%d} to {last:%Y-%m-%d} (UTC days)"
    png = charts.totals_chart(window, title)
    run_days = pd.DataFrame(
        {
            "day": totals["day"].dt.strftime("%Y-%m-%d"),
            "long": totals["long_usd"],
            "short": totals["short_usd"],
            "total": totals["total_usd"],
        }
    )
    return {
        "chart": dg.MetadataValue.md(charts.markdown_image(png, title)),
        "run_totals": dg.MetadataValue.md(
            markdown_table(run_days, {side: usd for side in (*SIDES, "total")})
        ),
    }


def build_totals_asset(
    partitions_def: dg.PartitionsDefinition, storage_kind: str | None = "sqlite"
) -> dg.AssetsDefinition:
    @dg.asset(
        name=TOTALS,
        group_name="totals",
        ins={metric: dg.AssetIn(metric) for metric in NEWHEDGE_METRICS},
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds=asset_kinds(storage_kind),
        owners=OWNERS,
        tags=catalog_tags("warehouse"),
        metadata=warehouse_metadata(TOTALS),
    )
    def daily_liquidation_totals(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, **inputs: pd.DataFrame
    ) -> dg.Output[pd.DataFrame]:
        """Daily cross-exchange BTC liquidations, USD: per exchange and side, long, short, total."""
        window = run_window(context)
        days = window_days(window.start, window.end)
        missing = missing_metric_days(inputs, days)
        if missing:
            # A partial day must never reach the totals: fail before anything is written.
            detail = "; ".join(f"{m}: {', '.join(d[:5])}" for m, d in sorted(missing.items()))
            raise dg.Failure(
                description=f"{TOTALS}: metrics missing for some days ({detail}). "
                "Materialize those bitcoin_liquidations_* partitions first.",
                allow_retries=False,
            )
        totals = compute_totals(inputs, days)
        by_day = day_metadata(totals)
        # One chart per run, on its newest day: never one per day of a long backfill.
        newest = days[-1]
        stored = stored_chart_days(warehouse, newest, window.start)
        by_day[partition_key(newest)] |= newest_day_metadata(
            chart_window(stored, totals, newest), totals
        )
        add_day_metadata(context, by_day)
        return dg.Output(
            totals,
            # For reading, not plotting: a sum over the run's days is on every day of it.
            metadata={"run_days": len(totals), "run_total_usd": usd(totals["total_usd"].sum())},
        )

    return daily_liquidation_totals
