"""The 8 Newhedge daily Bitcoin liquidation series, fetched all-or-nothing, one request each."""

import datetime as dt
from collections.abc import Iterator

import dagster as dg
import pandas as pd

from liq_pipeline.assets.api_errors import API_RETRY_POLICY, as_dagster_failure
from liq_pipeline.clients import NEWHEDGE_METRICS
from liq_pipeline.clients.errors import LiqApiError
from liq_pipeline.resources import NewhedgeResource
from liq_pipeline.warehouse import warehouse_metadata

CHECK_SIGN = "sign_matches_side"
CHECK_ONE_PER_DAY = "one_value_per_day"


class NotPublishedYet(Exception):
    """A day of the run window is not in the metric's series yet."""


def window_days(start: dt.datetime, end: dt.datetime) -> pd.DatetimeIndex:
    """The UTC days of `[start, end)` as naive midnights, the dtype of the `day` columns."""
    first = pd.Timestamp(start).tz_convert("UTC").tz_localize(None)
    last = pd.Timestamp(end).tz_convert("UTC").tz_localize(None)
    return pd.date_range(first, last, freq="D", inclusive="left", unit="s")


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


def metric_check_results(metric: str, frame: pd.DataFrame) -> Iterator[dg.AssetCheckResult]:
    wrong_sign = frame["value"] > 0 if metric.endswith("_short") else frame["value"] < 0
    duplicates = int(frame["day"].duplicated().sum())
    yield dg.AssetCheckResult(
        asset_key=metric,
        check_name=CHECK_SIGN,
        passed=not wrong_sign.any(),
        metadata={"wrong_sign_days": int(wrong_sign.sum())},
    )
    yield dg.AssetCheckResult(
        asset_key=metric,
        check_name=CHECK_ONE_PER_DAY,
        passed=duplicates == 0,
        metadata={"days": len(frame), "duplicate_days": duplicates},
    )


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
    check_specs = [
        spec
        for metric in NEWHEDGE_METRICS
        for spec in (
            dg.AssetCheckSpec(
                CHECK_SIGN,
                asset=metric,
                blocking=True,
                description="Longs are ≥ 0 and shorts ≤ 0, as Newhedge publishes them.",
            ),
            dg.AssetCheckSpec(
                CHECK_ONE_PER_DAY,
                asset=metric,
                blocking=True,
                description="Exactly one value per day.",
            ),
        )
    ]

    @dg.multi_asset(
        name="newhedge_metrics",
        outs=outs,
        check_specs=check_specs,
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
        selected_checks = context.selected_asset_check_keys
        for metric, frame in frames.items():
            yield dg.Output(
                frame,
                output_name=metric,
                metadata={"days": len(frame), "sum_usd": float(frame["value"].sum())},
            )
            for result in metric_check_results(metric, frame):
                if dg.AssetCheckKey(dg.AssetKey(metric), result.check_name) in selected_checks:
                    yield result

    return newhedge_metrics
