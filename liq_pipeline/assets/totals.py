"""Cross-exchange daily totals derived from the 8 Newhedge metrics."""

import dagster as dg
import numpy as np
import pandas as pd

from liq_pipeline.assets.newhedge import window_days
from liq_pipeline.clients import EXCHANGES, NEWHEDGE_METRICS, SIDES
from liq_pipeline.warehouse import warehouse_metadata

TOTALS = "daily_liquidation_totals"
CHECK_PARTS = "parts_add_up"
CHECK_ALL_METRICS = "all_metrics_present"


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


def parts_add_up(totals: pd.DataFrame) -> bool:
    parts = {side: totals[[part_column(e, side) for e in EXCHANGES]].sum(axis=1) for side in SIDES}
    return bool(
        np.allclose(totals["long_usd"], parts["long"], rtol=1e-12)
        and np.allclose(totals["short_usd"], parts["short"], rtol=1e-12)
        and np.allclose(totals["total_usd"], parts["long"] + parts["short"], rtol=1e-12)
        and (totals.drop(columns="day") >= 0).all(axis=None)
    )


def build_totals_asset(partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        name=TOTALS,
        group_name="totals",
        ins={metric: dg.AssetIn(metric) for metric in NEWHEDGE_METRICS},
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"python", "pandas"},
        metadata=warehouse_metadata(TOTALS),
        check_specs=[
            dg.AssetCheckSpec(
                CHECK_PARTS, asset=TOTALS, description="long + short = total; exchanges add up."
            ),
            dg.AssetCheckSpec(
                CHECK_ALL_METRICS,
                asset=TOTALS,
                blocking=True,
                description="All 8 metrics have a value for every day of the window.",
            ),
        ],
    )
    def daily_liquidation_totals(context: dg.AssetExecutionContext, **inputs: pd.DataFrame):
        """Daily cross-exchange BTC liquidations, USD: per exchange and side, long, short, total."""
        window = context.partition_time_window
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
        yield dg.Output(
            totals,
            metadata={"days": len(totals), "total_usd": float(totals["total_usd"].sum())},
        )
        yield dg.AssetCheckResult(check_name=CHECK_PARTS, passed=parts_add_up(totals))
        yield dg.AssetCheckResult(
            check_name=CHECK_ALL_METRICS, passed=True, metadata={"days_checked": len(days)}
        )

    return daily_liquidation_totals
