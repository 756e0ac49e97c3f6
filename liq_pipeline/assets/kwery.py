"""Raw Kwery liquidation events, one asset per configured symbol, streamed day by day."""

import datetime as dt
from collections.abc import Iterator

import dagster as dg
import numpy as np
import pandas as pd

from liq_pipeline.assets.api_errors import API_RETRY_POLICY, as_dagster_failure
from liq_pipeline.clients import KweryClient
from liq_pipeline.clients.errors import LiqApiError
from liq_pipeline.resources import KweryResource
from liq_pipeline.warehouse import warehouse_metadata

KWERY_TABLE = "kwery_liquidations"
VALID_SIDES = ("long", "short")
# usd_value is quantity × avg_price rounded by the API; allow a cent plus relative float noise.
USD_ABS_TOLERANCE = 0.01
USD_REL_TOLERANCE = 1e-9

CHECK_SIDES = "sides_valid"
CHECK_USD = "usd_value_matches_quantity_times_avg_price"
CHECK_INSIDE = "events_inside_partition"


def kwery_asset_name(symbol: str) -> str:
    return f"kwery_liquidations_{symbol.lower()}"


def utc_days(start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    """Midnights (UTC) of every day in `[start, end)`; the partition windows are whole days."""
    days = []
    day = start.astimezone(dt.UTC)
    while day < end:
        days.append(day)
        day += dt.timedelta(days=1)
    return days


class KweryDayBatches:
    """One frame per UTC day of the run window, with the run's API accounting and check tallies.

    The IO manager consumes it inside its transaction, so a year-long backfill holds one day in
    memory at a time. Each day is its own query: per-query plan row caps never truncate a long
    range, and credits stay at the per-day minimum `25·max(1, ceil(N/1000)) + 2·N`.
    """

    def __init__(
        self, client: KweryClient, symbol: str, start: dt.datetime, end: dt.datetime
    ) -> None:
        self._client = client
        self._symbol = symbol
        self._start = start
        self._end = end
        self.requests = self.pages = self.rows = self.credits_used = self.retries = 0
        self.credits_remaining: int | None = None
        self.first_event: pd.Timestamp | None = None
        self.last_event: pd.Timestamp | None = None
        self.sides = dict.fromkeys(VALID_SIDES, 0)
        self.invalid_sides = 0
        self.usd_mismatches = 0
        self.max_usd_deviation = 0.0
        self.outside_day = 0
        self.preview: pd.DataFrame | None = None

    def __iter__(self) -> Iterator[pd.DataFrame]:
        for day_start in utc_days(self._start, self._end):
            day_end = day_start + dt.timedelta(days=1)
            try:
                frames = [page.frame for page in self._fetch_day(day_start, day_end)]
            except LiqApiError as exc:
                raise as_dagster_failure(exc) from None
            frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
            self._tally(frame, day_start, day_end)
            yield frame

    def _fetch_day(self, start: dt.datetime, end: dt.datetime) -> Iterator:
        page = None
        for page in self._client.iter_pages(self._symbol, start, end):
            yield page
        stats = page.stats
        self.requests += stats.requests
        self.pages += stats.pages
        self.credits_used += stats.credits_used
        self.retries += stats.retries
        if stats.credits_remaining is not None:
            self.credits_remaining = stats.credits_remaining

    def _tally(self, frame: pd.DataFrame, day_start: dt.datetime, day_end: dt.datetime) -> None:
        self.rows += len(frame)
        if frame.empty:
            return
        ts = frame["timestamp"]
        first, last = ts.min(), ts.max()
        self.first_event = first if self.first_event is None else min(self.first_event, first)
        self.last_event = last if self.last_event is None else max(self.last_event, last)
        counts = frame["side"].value_counts()
        for side in VALID_SIDES:
            self.sides[side] += int(counts.get(side, 0))
        self.invalid_sides += int((~frame["side"].isin(VALID_SIDES)).sum())
        deviation = (frame["usd_value"] - frame["quantity"] * frame["avg_price"]).abs()
        allowed = USD_ABS_TOLERANCE + USD_REL_TOLERANCE * frame["usd_value"].abs()
        self.usd_mismatches += int((deviation > allowed).sum())
        self.max_usd_deviation = max(self.max_usd_deviation, float(np.nan_to_num(deviation.max())))
        self.outside_day += int(((ts < day_start) | (ts >= day_end)).sum())
        if self.preview is None:
            self.preview = frame.head(5)

    def output_metadata(self) -> dict:
        metadata = {
            "rows": self.rows,
            "requests": self.requests,
            "pages": self.pages,
            "retries": self.retries,
            "credits_used": self.credits_used,
            "credits_remaining": self.credits_remaining,
            "first_event": str(self.first_event) if self.first_event is not None else None,
            "last_event": str(self.last_event) if self.last_event is not None else None,
        }
        if self.preview is not None:
            metadata["preview"] = dg.MetadataValue.md(markdown_table(self.preview))
        return metadata

    def check_results(self) -> Iterator[dg.AssetCheckResult]:
        yield dg.AssetCheckResult(
            check_name=CHECK_SIDES,
            passed=self.invalid_sides == 0,
            metadata={"invalid_sides": self.invalid_sides, **self.sides},
        )
        yield dg.AssetCheckResult(
            check_name=CHECK_USD,
            passed=self.usd_mismatches == 0,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "mismatched_rows": self.usd_mismatches,
                "max_abs_deviation_usd": self.max_usd_deviation,
            },
        )
        yield dg.AssetCheckResult(
            check_name=CHECK_INSIDE,
            passed=self.outside_day == 0,
            metadata={"events_outside_their_day": self.outside_day, "events": self.rows},
        )


def markdown_table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def build_kwery_asset(symbol: str, partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    name = kwery_asset_name(symbol)

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
        retry_policy=API_RETRY_POLICY,
        metadata=warehouse_metadata(KWERY_TABLE, symbol=symbol),
        check_specs=[
            dg.AssetCheckSpec(CHECK_SIDES, asset=name, description="Every side is long or short."),
            dg.AssetCheckSpec(
                CHECK_USD, asset=name, description="usd_value ≈ quantity × avg_price (to a cent)."
            ),
            dg.AssetCheckSpec(
                CHECK_INSIDE, asset=name, description="Every event lies inside its UTC day."
            ),
        ],
    )
    def kwery_liquidations(context: dg.AssetExecutionContext, kwery: KweryResource):
        window = context.partition_time_window
        with kwery.get_client() as client:
            batches = KweryDayBatches(client, symbol, window.start, window.end)
            # The IO manager consumes the batches (fetching day by day) before this resumes.
            yield dg.Output(batches)
        yield from batches.check_results()

    return kwery_liquidations
