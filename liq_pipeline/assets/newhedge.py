"""The 8 Newhedge daily Bitcoin liquidation series, fetched all-or-nothing, one request each."""

from typing import Any

import dagster as dg
import pandas as pd

from liq_pipeline.assets.api_errors import API_RETRY_POLICY, as_dagster_failure
from liq_pipeline.clients import NEWHEDGE_METRICS
from liq_pipeline.clients.errors import LiqApiError
from liq_pipeline.partitions import partition_key, window_days
from liq_pipeline.per_day import add_day_metadata
from liq_pipeline.resources import NewhedgeResource
from liq_pipeline.warehouse import warehouse_metadata


class NotPublishedYet(Exception):
    """A day of the run window is not in the metric's series yet."""


def cut_window(metric: str, series: pd.DataFrame, days: pd.DatetimeIndex) -> pd.DataFrame:
    """The series' rows for exactly `days`; raise NotPublishedYet if any day is missing.

    A published 0.0 is a value; only an absent day is a gap.
    """
    frame = series[series["day"].isin(days)].reset_index(drop=True)
    missing = days.difference(pd.DatetimeIndex(frame["day"]))
    if len(missing):
        latest = series["day"].max() if len(series) else None
        latest_text = latest.date().isoformat() if latest is not None else "none"
        shown = ", ".join(d.date().isoformat() for d in missing[:5])
        more = f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""
        raise NotPublishedYet(
            f"{metric}: not published yet for {shown}{more}; latest published day is "
            f"{latest_text}. Newhedge publishes a day after it ends; re-run these partitions later."
        )
    return frame


def day_metadata(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Each day's own figures: its one published value."""
    return {
        partition_key(day): {"dagster/row_count": 1, "value_usd": float(value)}
        for day, value in zip(frame["day"], frame["value"], strict=True)
    }


def describe(metric: str) -> str:
    """`bitcoin_liquidations_okx_short` → `OKX short`."""
    exchange, side = metric.removeprefix("bitcoin_liquidations_").split("_")
    return f"{exchange.capitalize() if exchange != 'okx' else 'OKX'} {side}"


def build_newhedge_assets(partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    outs = {
        metric: dg.AssetOut(
            group_name="newhedge",
            description=(
                f"Newhedge's daily {describe(metric)} Bitcoin liquidations, USD (shorts negative)."
            ),
            kinds={"python", "pandas"},
            metadata=warehouse_metadata(metric),
            is_required=False,
        )
        for metric in NEWHEDGE_METRICS
    }

    @dg.multi_asset(
        name="newhedge_metrics",
        outs=outs,
        can_subset=True,
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="newhedge_api",
        retry_policy=API_RETRY_POLICY,
    )
    def newhedge_metrics(context: dg.AssetExecutionContext, newhedge: NewhedgeResource):
        """One request per selected metric, whatever the window; all validated before any write."""
        window = context.partition_time_window
        days = window_days(window.start, window.end)
        metrics = sorted(key.path[-1] for key in context.selected_asset_keys)
        frames = {}
        try:
            with newhedge.get_client() as client:
                for metric in metrics:
                    frames[metric] = cut_window(metric, client.fetch_series(metric), days)
        except LiqApiError as exc:
            raise as_dagster_failure(exc) from None
        except NotPublishedYet as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        for metric, frame in frames.items():
            add_day_metadata(context, day_metadata(frame), asset_key=dg.AssetKey(metric))
            yield dg.Output(
                frame,
                output_name=metric,
                metadata={"run_days": len(frame), "run_sum_usd": float(frame["value"].sum())},
            )

    return newhedge_metrics
