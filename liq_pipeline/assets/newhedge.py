"""The 8 Newhedge daily Bitcoin liquidation series, fetched all-or-nothing, one request each."""

from collections.abc import Iterator
from typing import Any

import dagster as dg
import pandas as pd

from liq_pipeline.assets.api_errors import as_dagster_failure
from liq_pipeline.assets.catalog import OWNERS, asset_kinds, catalog_tags
from liq_pipeline.clients.errors import LiqApiError
from liq_pipeline.contract import NEWHEDGE_METRICS
from liq_pipeline.partitions import partition_key, run_window, window_days
from liq_pipeline.per_day import add_day_metadata, usd
from liq_pipeline.resources import NewhedgeResource
from liq_pipeline.warehouse import warehouse_metadata


class MissingDays(Exception):
    """Days of the run window that are not in a metric's series (late, or a gap in it)."""


def cut_window(metric: str, series: pd.DataFrame, days: pd.DatetimeIndex) -> pd.DataFrame:
    """The series' rows for exactly `days`; raise MissingDays if any day is missing.

    A published 0.0 is a value; only an absent day is missing. An absent day before the latest
    published one is a gap in the series (re-running won't fill it); after it, not published yet.
    """
    frame = series[series["day"].isin(days)].reset_index(drop=True)
    missing = days.difference(pd.DatetimeIndex(frame["day"]))
    if not len(missing):
        return frame
    latest = series["day"].max() if len(series) else None
    latest_text = latest.date().isoformat() if latest is not None else "none"
    gaps = missing[missing < latest] if latest is not None else missing[:0]
    late = missing.difference(gaps)
    problems = []
    if len(gaps):
        problems.append(
            f"no value for {_days_text(gaps)} although later days are published (latest "
            f"published day is {latest_text}): a gap in Newhedge's series, which re-running "
            "will not fill; leave these days out of the range or ask Newhedge"
        )
    if len(late):
        problems.append(
            f"not published yet for {_days_text(late)}; latest published day is {latest_text}. "
            "Newhedge publishes a day after it ends; re-run these partitions later"
        )
    raise MissingDays(f"{metric}: " + "; and ".join(problems) + ".")


def _days_text(days: pd.DatetimeIndex) -> str:
    shown = ", ".join(d.date().isoformat() for d in days[:5])
    return shown + (f" (+{len(days) - 5} more)" if len(days) > 5 else "")


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


def build_newhedge_assets(
    partitions_def: dg.PartitionsDefinition, storage_kind: str | None = "sqlite"
) -> dg.AssetsDefinition:
    outs = {
        metric: dg.AssetOut(
            group_name="newhedge",
            description=(
                f"Newhedge's daily {describe(metric)} Bitcoin liquidations, USD (shorts negative)."
            ),
            kinds=asset_kinds(storage_kind),
            owners=OWNERS,
            tags=catalog_tags("newhedge"),
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
    )
    def newhedge_metrics(
        context: dg.AssetExecutionContext, newhedge: NewhedgeResource
    ) -> Iterator[dg.Output[pd.DataFrame]]:
        """One request per selected metric, whatever the window; all validated before any write."""
        window = run_window(context)
        days = window_days(window.start, window.end)
        metrics = sorted(key.path[-1] for key in context.selected_asset_keys)
        frames = {}
        try:
            with newhedge.get_client() as client:
                for metric in metrics:
                    frames[metric] = cut_window(metric, client.fetch_series(metric), days)
        except LiqApiError as exc:
            raise as_dagster_failure(exc) from None
        except MissingDays as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        for metric, frame in frames.items():
            add_day_metadata(context, day_metadata(frame), asset_key=dg.AssetKey(metric))
            yield dg.Output(
                frame,
                output_name=metric,
                # For reading, not plotting: a sum over the run's days is on every day of it.
                metadata={"run_days": len(frame), "run_sum_usd": usd(frame["value"].sum())},
            )

    return newhedge_metrics
