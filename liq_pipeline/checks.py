"""Checks that span assets: Kwery ↔ Newhedge reconciliation and partition freshness."""

import dagster as dg
import numpy as np
import pandas as pd

from liq_pipeline.assets.kwery import kwery_asset_name
from liq_pipeline.partitions import partition_key, run_window, window_days
from liq_pipeline.per_day import DayCheck, check_evaluations
from liq_pipeline.warehouse import WarehouseResource

RECONCILIATION_CHECK = "reconciles_with_newhedge_binance"
RECONCILIATION_FIGURES = (
    "kwery_long_usd",
    "newhedge_long_usd",
    "long_ratio",
    "kwery_short_usd",
    "newhedge_short_usd",
    "short_ratio",
)

# The latest partition (yesterday, UTC) must be materialized by these times (cron, UTC).
KWERY_FRESHNESS_DEADLINE = "0 2 * * *"  # 02:00: the 00:15 run plus its retries
NEWHEDGE_FRESHNESS_DEADLINE = "0 4 * * *"  # 04:00: published ~01:00, run at 01:30, plus retries


def reconciliation_table(
    kwery_sums: pd.DataFrame,
    binance_long: pd.DataFrame,
    binance_short: pd.DataFrame,
    days: pd.DatetimeIndex,
) -> pd.DataFrame:
    """Per day: Kwery BTC long/short USD, Newhedge Binance long/short USD, and their ratios."""
    table = pd.DataFrame({"day": days})
    for side, published in (("long", binance_long), ("short", binance_short)):
        events = kwery_sums[kwery_sums["side"] == side].set_index("day")["usd_value"]
        table[f"kwery_{side}_usd"] = events.reindex(days, fill_value=0.0).to_numpy()
        table[f"newhedge_{side}_usd"] = (
            published.set_index("day")["value"].abs().reindex(days).to_numpy()
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            table[f"{side}_ratio"] = table[f"kwery_{side}_usd"] / table[f"newhedge_{side}_usd"]
    return table


def day_checks(table: pd.DataFrame) -> dict[str, DayCheck]:
    """Per day: passed if both ratios are in (0, 1], with that day's sums and ratios.

    Above 1 (more events than Newhedge counted), NaN (no Newhedge value) or 0 (no events) all
    mean the two sources disagree about that day.
    """
    checks = {}
    for row in table.to_dict("records"):
        ratios = (row["long_ratio"], row["short_ratio"])
        plausible = all(0 < ratio <= 1.0 + 1e-9 for ratio in ratios)  # NaN compares False
        checks[partition_key(row["day"])] = DayCheck(
            passed=plausible,
            metadata={
                name: None
                if np.isnan(row[name])
                else round(float(row[name]), 6 if "ratio" in name else 2)
                for name in RECONCILIATION_FIGURES
            },
        )
    return checks


def build_reconciliation_check(partitions_def: dg.PartitionsDefinition) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=kwery_asset_name("BTC"),
        name=RECONCILIATION_CHECK,
        description=(
            "Kwery BTC events summed per day and side vs Newhedge's Binance long/short. Binance "
            "publishes at most one liquidation per symbol per second, so the event sums are lower "
            "bounds: the check warns when they exceed Newhedge's figure or the day has no events."
        ),
        additional_ins={
            "binance_long": dg.AssetIn("bitcoin_liquidations_binance_long"),
            "binance_short": dg.AssetIn("bitcoin_liquidations_binance_short"),
        },
        partitions_def=partitions_def,
        blocking=False,
    )
    def reconciles_with_newhedge_binance(
        context: dg.AssetCheckExecutionContext,
        warehouse: WarehouseResource,
        binance_long: pd.DataFrame,
        binance_short: pd.DataFrame,
    ):
        window = run_window(context)
        days = window_days(window.start, window.end)
        sums = warehouse.kwery_daily_usd_by_side("BTC", window.start, window.end)
        table = reconciliation_table(sums, binance_long, binance_short, days)
        [spec] = context.check_specs
        yield from check_evaluations(
            context, spec, day_checks(table), severity=dg.AssetCheckSeverity.WARN
        )

    return reconciles_with_newhedge_binance


def build_freshness_checks(
    kwery_assets: list[dg.AssetsDefinition], newhedge_assets: list[dg.AssetsDefinition]
) -> list[dg.AssetChecksDefinition]:
    return [
        *dg.build_time_partition_freshness_checks(
            assets=kwery_assets, deadline_cron=KWERY_FRESHNESS_DEADLINE, timezone="UTC"
        ),
        *dg.build_time_partition_freshness_checks(
            assets=newhedge_assets, deadline_cron=NEWHEDGE_FRESHNESS_DEADLINE, timezone="UTC"
        ),
    ]
