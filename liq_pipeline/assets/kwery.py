"""Raw Kwery liquidation events, one asset per configured symbol, streamed day by day."""

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from liq_pipeline.assets.api_errors import as_dagster_failure
from liq_pipeline.clients import KweryClient, KweryStats
from liq_pipeline.clients.errors import LiqApiError
from liq_pipeline.partitions import partition_key, run_window, utc_days
from liq_pipeline.per_day import DayCheck, check_evaluations, markdown_table
from liq_pipeline.resources import KweryResource
from liq_pipeline.warehouse import FrameStream, warehouse_metadata

KWERY_TABLE = "kwery_liquidations"
VALID_SIDES = ("long", "short")
# usd_value is quantity × avg_price rounded by the API; allow a cent plus relative float noise.
USD_ABS_TOLERANCE = 0.01
USD_REL_TOLERANCE = 1e-9

PREVIEW_ROWS = 5

CHECK_USD = "usd_value_matches_quantity_times_avg_price"


def kwery_asset_name(symbol: str) -> str:
    return f"kwery_liquidations_{symbol.lower()}"


class KweryDayBatches(FrameStream):
    """One frame per UTC day of the run window, with each day's figures and USD check result.

    The IO manager drives the iteration, so the API is fetched as it consumes the frames and a
    year-long backfill holds one day in memory at a time. Each day is its own query: per-query plan
    row caps never truncate a long range, and credits stay at the per-day minimum
    `25·max(1, ceil(N/1000)) + 2·N`. `on_day(partition_key, metadata)` receives each day's figures
    as soon as the day is fetched (the asset puts them on that day's materialization).
    """

    def __init__(
        self,
        client: KweryClient,
        symbol: str,
        start: dt.datetime,
        end: dt.datetime,
        on_day: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        super().__init__()
        self._client = client
        self._symbol = symbol
        self._start = start
        self._end = end
        self._on_day = on_day
        self.days = self.requests = self.pages = self.rows = self.credits_used = self.retries = 0
        self.credits_remaining: int | None = None
        self.usd_checks: dict[str, DayCheck] = {}

    def __iter__(self) -> Iterator[pd.DataFrame]:
        for day_start in utc_days(self._start, self._end):
            try:
                pages = list(
                    self._client.iter_pages(
                        self._symbol, day_start, day_start + dt.timedelta(days=1)
                    )
                )
            except LiqApiError as exc:
                raise as_dagster_failure(exc) from None
            frames = [page.frame for page in pages]
            frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
            key = partition_key(day_start)
            figures = self._account(frame, pages[-1].stats)
            self.usd_checks[key] = usd_check(frame)
            if self._on_day is not None:
                self._on_day(key, figures)
            yield frame

    def _account(self, frame: pd.DataFrame, stats: KweryStats) -> dict[str, Any]:
        """Add the day to the run's totals; return the day's own figures."""
        self.days += 1
        self.rows += len(frame)
        self.requests += stats.requests
        self.pages += stats.pages
        self.credits_used += stats.credits_used
        self.retries += stats.retries
        if stats.credits_remaining is not None:
            self.credits_remaining = stats.credits_remaining
        return {
            "dagster/row_count": len(frame),
            "requests": stats.requests,
            "pages": stats.pages,
            "retries": stats.retries,
            "credits_used": stats.credits_used,
            **side_figures(frame),
            "first_event": str(frame["timestamp"].min()) if len(frame) else None,
            "last_event": str(frame["timestamp"].max()) if len(frame) else None,
            "preview": dg.MetadataValue.md(markdown_table(frame.head(PREVIEW_ROWS))),
        }

    def run_metadata(self) -> dict[str, Any]:
        return {
            "run_days": self.days,
            "run_requests": self.requests,
            "run_retries": self.retries,
            "run_credits_used": self.credits_used,
            "run_credits_remaining": self.credits_remaining,
        }


def side_figures(frame: pd.DataFrame) -> dict[str, Any]:
    """Events and liquidated USD per side."""
    figures: dict[str, Any] = {}
    for side in VALID_SIDES:
        of_side = frame["usd_value"][frame["side"] == side]
        figures[f"{side}_events"] = len(of_side)
        figures[f"{side}_usd"] = round(float(of_side.sum()), 2)
    return figures


def usd_check(frame: pd.DataFrame) -> DayCheck:
    """usd_value ≈ quantity × avg_price, to a cent plus relative float noise."""
    deviation = (frame["usd_value"] - frame["quantity"] * frame["avg_price"]).abs()
    allowed = USD_ABS_TOLERANCE + USD_REL_TOLERANCE * frame["usd_value"].abs()
    mismatched = int((deviation > allowed).sum())
    return DayCheck(
        passed=mismatched == 0,
        metadata={
            "mismatched_rows": mismatched,
            "max_abs_deviation_usd": float(np.nan_to_num(deviation.max())),
            "events": len(frame),
        },
    )


def build_kwery_asset(symbol: str, partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    name = kwery_asset_name(symbol)
    usd_spec = dg.AssetCheckSpec(
        CHECK_USD,
        asset=name,
        partitions_def=partitions_def,
        description="usd_value ≈ quantity × avg_price (to a cent), per day; warns.",
    )

    @dg.asset(
        name=name,
        group_name="kwery",
        description=(
            f"Every Binance Futures forced liquidation of {symbol} in the UTC day (Kwery)."
        ),
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"python", "pandas"},
        pool="kwery_api",
        metadata=warehouse_metadata(KWERY_TABLE, symbol=symbol),
        check_specs=[usd_spec],
    )
    def kwery_liquidations(context: dg.AssetExecutionContext, kwery: KweryResource):
        window = run_window(context)

        def on_day(key: str, metadata: dict[str, Any]) -> None:
            context.add_asset_metadata(metadata, partition_key=key)

        with kwery.get_client() as client:
            batches = KweryDayBatches(client, symbol, window.start, window.end, on_day)
            # The IO manager consumes the batches (fetching day by day) before this resumes.
            yield dg.Output(batches)
        yield from check_evaluations(
            context, usd_spec, batches.usd_checks, severity=dg.AssetCheckSeverity.WARN
        )

    return kwery_liquidations
