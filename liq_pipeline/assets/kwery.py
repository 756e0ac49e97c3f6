"""Raw Kwery liquidation events, one asset per configured symbol, streamed day by day."""

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from liq_pipeline.assets.api_errors import as_dagster_failure
from liq_pipeline.assets.catalog import OWNERS, asset_kinds, catalog_tags
from liq_pipeline.clients import KweryClient, KweryStats
from liq_pipeline.clients.errors import LiqApiError
from liq_pipeline.contract import KWERY_TABLE, SIDES
from liq_pipeline.partitions import partition_key, run_window, utc_days
from liq_pipeline.per_day import DayCheck, check_evaluations, markdown_table
from liq_pipeline.resources import KweryResource
from liq_pipeline.warehouse import FrameStream, warehouse_metadata

# usd_value is quantity × avg_price rounded by the API; allow a cent plus relative float noise.
USD_ABS_TOLERANCE = 0.01
USD_REL_TOLERANCE = 1e-9

PREVIEW_ROWS = 5

CHECK_USD = "usd_value_matches_quantity_times_avg_price"


def kwery_asset_name(symbol: str) -> str:
    return f"kwery_liquidations_{symbol.lower()}"


class KweryDayBatches(FrameStream):
    """One frame per UTC day of the run window, with each day's figures and USD check result.

    The IO manager drives the iteration, so the API is fetched as it stages the frames, the
    client's `concurrency` days at a time, and a year-long backfill holds a few days in memory at
    a time. Each day is its own query: per-query plan row caps never truncate a long range, and
    credits stay at the per-day minimum `25·max(1, ceil(N/1000)) + 2·N`.
    `on_day(partition_key, metadata)` receives each day's figures, in day order, as soon as the
    day is fetched (the asset puts them on that day's materialization).
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
        days = self._client.fetch_days(self._symbol, utc_days(self._start, self._end))
        while True:
            try:
                day_start, result = next(days)
            except StopIteration:
                return
            except LiqApiError as exc:
                raise as_dagster_failure(exc) from None
            key = partition_key(day_start)
            figures = self._account(result.table, result.stats)
            self.usd_checks[key] = usd_check(result.table)
            if self._on_day is not None:
                self._on_day(key, figures)
            yield result.table  # Arrow, as parsed: the warehouse writes it without conversion

    def _account(self, table: pa.Table, stats: KweryStats) -> dict[str, Any]:
        """Add the day to the run's totals; return the day's own figures."""
        self.days += 1
        self.rows += table.num_rows
        self.requests += stats.requests
        self.pages += stats.pages
        self.credits_used += stats.credits_used
        self.retries += stats.retries
        if stats.credits_remaining is not None:
            self.credits_remaining = stats.credits_remaining
        first, last = _first_and_last(table)
        preview = markdown_table(table.slice(0, PREVIEW_ROWS).to_pandas())
        return {
            "dagster/row_count": table.num_rows,
            "requests": stats.requests,
            "pages": stats.pages,
            "retries": stats.retries,
            "credits_used": stats.credits_used,
            **side_figures(table),
            "first_event": first,
            "last_event": last,
            "preview": dg.MetadataValue.md(preview),
        }

    def run_metadata(self) -> dict[str, Any]:
        return {
            "run_days": self.days,
            "run_requests": self.requests,
            "run_retries": self.retries,
            "run_credits_used": self.credits_used,
            "run_credits_remaining": self.credits_remaining,
        }


def _first_and_last(table: pa.Table) -> tuple[str | None, str | None]:
    if not table.num_rows:
        return None, None
    bounds = pc.min_max(pc.cast(table["timestamp"], pa.int64()))
    first, last = (
        str(pd.Timestamp(bounds[end].as_py(), unit="ms", tz="UTC")) for end in ("min", "max")
    )
    return first, last


def side_figures(table: pa.Table) -> dict[str, Any]:
    """Events and liquidated USD per side."""
    figures: dict[str, Any] = {}
    for side in SIDES:
        of_side = pc.filter(table["usd_value"], pc.equal(table["side"], side))
        figures[f"{side}_events"] = len(of_side)
        figures[f"{side}_usd"] = round(pc.sum(of_side).as_py() or 0.0, 2)
    return figures


def usd_check(table: pa.Table) -> DayCheck:
    """usd_value ≈ quantity × avg_price, to a cent plus relative float noise."""
    usd = table["usd_value"]
    deviation = pc.abs(pc.subtract(usd, pc.multiply(table["quantity"], table["avg_price"])))
    allowed = pc.add(USD_ABS_TOLERANCE, pc.multiply(USD_REL_TOLERANCE, pc.abs(usd)))
    mismatched = pc.sum(pc.greater(deviation, allowed)).as_py() or 0
    return DayCheck(
        passed=mismatched == 0,
        metadata={
            "mismatched_rows": mismatched,
            "max_abs_deviation_usd": pc.max(deviation).as_py() or 0.0,
            "events": table.num_rows,
        },
    )


def build_kwery_asset(
    symbol: str, partitions_def: dg.PartitionsDefinition, storage_kind: str | None = "sqlite"
) -> dg.AssetsDefinition:
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
        kinds=asset_kinds(storage_kind),
        owners=OWNERS,
        tags=catalog_tags("kwery"),
        pool="kwery_api",
        metadata=warehouse_metadata(KWERY_TABLE, symbol=symbol),
        check_specs=[usd_spec],
    )
    def kwery_liquidations(
        context: dg.AssetExecutionContext, kwery: KweryResource
    ) -> Iterator[dg.Output[KweryDayBatches] | dg.AssetCheckEvaluation]:
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
