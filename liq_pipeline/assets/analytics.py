"""Per-minute liquidation bars and liquidation cascades, from the stored Kwery events.

Both read the warehouse, never the API (zero credits), one UTC day at a time: a run over a year
holds one day of events in memory, and each day's figures land on that day's materialization as
soon as the day is computed.

A cascade is a maximal run of one symbol's events of one side, within one UTC day, in time order
(API order within a millisecond), in which each event follows the previous one of that side by at
most `gap_seconds`, with at least `min_events` events and `min_usd` in total. The UTC day cuts a
cascade at midnight: partitions are days, and a re-run of one day must not change its neighbours.
"""

import abc
import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from liq_pipeline import charts
from liq_pipeline.assets.catalog import OWNERS, asset_kinds, catalog_tags
from liq_pipeline.assets.kwery import kwery_asset_name
from liq_pipeline.contract import BARS_TABLE, CASCADES_TABLE, KWERY_TABLE, SIDES
from liq_pipeline.partitions import partition_key, run_window, utc_days
from liq_pipeline.per_day import markdown_table, usd
from liq_pipeline.warehouse import FrameStream, WarehouseResource, warehouse_metadata
from liq_pipeline.warehouse.tables import TableSpec, get_table

ONE_DAY = dt.timedelta(days=1)
TOP_CASCADES = 5

DayReport = Callable[[str, dict[str, Any]], None]


def bars_asset_name(symbol: str) -> str:
    return f"kwery_liquidation_bars_{symbol.lower()}"


def cascades_asset_name(symbol: str) -> str:
    return f"kwery_liquidation_cascades_{symbol.lower()}"


def empty_frame(spec: TableSpec) -> pd.DataFrame:
    """No rows, the table's dtypes (a day without events still replaces that day's rows)."""
    return pd.DataFrame({c.name: pd.Series(dtype=c.pandas_dtype) for c in spec.columns})


# --- pure computations ------------------------------------------------------------------------


def compute_bars(events: pd.DataFrame) -> pd.DataFrame:
    """One row per (UTC minute, symbol, side) with at least one event, time then side ordered."""
    spec = get_table(BARS_TABLE)
    if events.empty:
        return empty_frame(spec)
    minute = events["timestamp"].dt.floor("min").rename("bucket_start")
    # One aggregation per column: ~3x faster than a named .agg() of the same four.
    grouped = events.groupby([minute, "symbol", "side"], sort=True)
    bars = pd.DataFrame(
        {
            "events": grouped.size(),
            "quantity": grouped["quantity"].sum(),
            "usd_value": grouped["usd_value"].sum(),
            "max_usd_value": grouped["usd_value"].max(),
        }
    ).reset_index()
    return bars.astype(spec.pandas_dtypes())[list(spec.column_names)]


def compute_cascades(
    events: pd.DataFrame, gap_seconds: float, min_events: int, min_usd: float
) -> pd.DataFrame:
    """The cascades of one day's events of one symbol (module docstring), by start then side.

    Vectorized per side: a gap above `gap_seconds` to the previous event of the side starts a
    run; `reduceat` over the run starts gives each run's count, sums and max in one pass.
    """
    spec = get_table(CASCADES_TABLE)
    gap = pd.Timedelta(seconds=gap_seconds).to_timedelta64()
    # Stable: keeps the API order of events in one millisecond (the read's order) unchanged.
    ordered = events.sort_values("timestamp", kind="stable")
    found = []
    for side in SIDES:
        of_side = ordered[ordered["side"] == side]
        if of_side.empty:
            continue
        times = of_side["timestamp"].dt.tz_localize(None).to_numpy()
        starts = np.flatnonzero(np.r_[True, np.diff(times) > gap])
        ends = np.r_[starts[1:], len(times)] - 1
        usd_value = of_side["usd_value"].to_numpy()
        avg_price = of_side["avg_price"].to_numpy()
        runs = pd.DataFrame(
            {
                "start": of_side["timestamp"].array[starts],
                "end": of_side["timestamp"].array[ends],
                "symbol": of_side["symbol"].array[starts],
                "side": side,
                "events": ends - starts + 1,
                "quantity": np.add.reduceat(of_side["quantity"].to_numpy(), starts),
                "usd_value": np.add.reduceat(usd_value, starts),
                "max_usd_value": np.maximum.reduceat(usd_value, starts),
                "first_avg_price": avg_price[starts],
                "last_avg_price": avg_price[ends],
            }
        )
        found.append(runs[(runs["events"] >= min_events) & (runs["usd_value"] >= min_usd)])
    found = [f for f in found if not f.empty]
    if not found:
        return empty_frame(spec)
    cascades = pd.concat(found, ignore_index=True)
    cascades["price_move_pct"] = (
        cascades["last_avg_price"] / cascades["first_avg_price"] - 1.0
    ) * 100.0
    cascades = cascades.sort_values(["start", "side"], kind="stable", ignore_index=True)
    return cascades.astype(spec.pandas_dtypes())[list(spec.column_names)]


def bars_day_metadata(bars: pd.DataFrame) -> dict[str, Any]:
    """A day's own figures of its bars."""
    figures: dict[str, Any] = {
        "dagster/row_count": len(bars),
        "events": int(bars["events"].sum()),
        "minutes": int(bars["bucket_start"].nunique()),
    }
    for side in SIDES:
        figures[f"{side}_usd"] = round(float(bars.loc[bars["side"] == side, "usd_value"].sum()), 2)
    per_minute = bars.groupby("bucket_start")["usd_value"].sum()
    busiest = per_minute.idxmax() if len(per_minute) else None
    figures["busiest_minute"] = str(busiest) if busiest is not None else None
    figures["busiest_minute_usd"] = (
        round(float(per_minute.max()), 2) if busiest is not None else None
    )
    return figures


def cascades_day_metadata(events: pd.DataFrame, cascades: pd.DataFrame) -> dict[str, Any]:
    """A day's own figures of its cascades: how many, the largest, the USD share inside them."""
    day_usd = float(events["usd_value"].sum())
    in_cascades = float(cascades["usd_value"].sum())
    largest = (
        cascades.iloc[int(cascades["usd_value"].to_numpy().argmax())] if len(cascades) else None
    )
    top = cascades.nlargest(TOP_CASCADES, "usd_value")
    return {
        "dagster/row_count": len(cascades),
        "cascades": len(cascades),
        **{f"{side}_cascades": int((cascades["side"] == side).sum()) for side in SIDES},
        "largest_cascade_usd": round(float(largest["usd_value"]), 2)
        if largest is not None
        else None,
        "largest_cascade_start": str(largest["start"]) if largest is not None else None,
        "cascade_usd": round(in_cascades, 2),
        "day_usd": round(day_usd, 2),
        # Of the day's liquidated USD (both sides), the part inside cascades; none without events.
        "cascade_usd_share": round(in_cascades / day_usd, 6) if day_usd > 0 else None,
        "top_cascades": dg.MetadataValue.md(cascades_markdown(top)),
    }


def cascades_markdown(cascades: pd.DataFrame) -> str:
    """The largest cascades as a readable table (USD in whole dollars, times to the second)."""
    shown = pd.DataFrame(
        {
            "start": cascades["start"].dt.strftime("%H:%M:%S"),
            "end": cascades["end"].dt.strftime("%H:%M:%S"),
            "side": cascades["side"],
            "events": cascades["events"],
            "usd_value": cascades["usd_value"],
            "price_move_pct": cascades["price_move_pct"],
        }
    )
    return markdown_table(shown, {"usd_value": usd, "price_move_pct": lambda v: f"{v:+.2f} %"})


# --- streams: one frame per day, computed from that day's stored events ---------------------


class StoredEventDays(FrameStream):
    """One frame per UTC day of [start, end), computed from that day's stored events of a symbol.

    The IO manager drives the iteration as it writes (stages) the frames, so the events of one
    day at a time are in memory. `on_day(partition_key, metadata)` gets each day's figures as
    the day is computed.
    """

    def __init__(
        self,
        warehouse: WarehouseResource,
        symbol: str,
        start: dt.datetime,
        end: dt.datetime,
        on_day: DayReport | None = None,
    ) -> None:
        super().__init__()
        self.warehouse = warehouse
        self.symbol = symbol
        self.days = utc_days(start, end)
        self._on_day = on_day
        self.events = self.rows = 0

    def __iter__(self) -> Iterator[pd.DataFrame]:
        for day in self.days:
            events = self.warehouse.read(KWERY_TABLE, day, day + ONE_DAY, symbol=self.symbol)
            frame, figures = self.compute_day(events)
            if day == self.days[-1]:
                figures |= self.newest_day_figures(day, frame)
            self.events += len(events)
            self.rows += len(frame)
            if self._on_day is not None:
                self._on_day(partition_key(day), figures)
            yield frame

    @abc.abstractmethod
    def compute_day(self, events: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
        """The day's rows and its own figures."""

    def newest_day_figures(self, day: dt.datetime, frame: pd.DataFrame) -> dict[str, Any]:
        """Extra figures of the run's newest day only (the chart: one per run, not per day)."""
        return {}

    def run_metadata(self) -> dict[str, Any]:
        return {"run_days": len(self.days), "run_events": self.events}


class BarDays(StoredEventDays):
    def compute_day(self, events: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
        bars = compute_bars(events)
        return bars, bars_day_metadata(bars)

    def newest_day_figures(self, day: dt.datetime, frame: pd.DataFrame) -> dict[str, Any]:
        # The cascades as stored (this run wrote them first: the asset depends on them), so the
        # chart marks exactly the rows analysts find, with the thresholds that run used.
        cascades = self.warehouse.read(CASCADES_TABLE, day, day + ONE_DAY, symbol=self.symbol)
        title = (
            f"{self.symbol} liquidations per minute, {day:%Y-%m-%d} UTC "
            f"({len(cascades)} cascades shaded)"
        )
        png = charts.bars_chart(frame, cascades, pd.Timestamp(day), title)
        return {
            "chart": dg.MetadataValue.md(charts.markdown_image(png, title)),
            "chart_cascades": len(cascades),
        }


class CascadeConfig(dg.Config):
    """Thresholds of a cascade (see the asset's description)."""

    gap_seconds: float = Field(
        default=60.0,
        ge=0,
        description="Largest gap between consecutive events of one side inside a cascade "
        "(seconds; a gap of exactly this much still joins)",
    )
    min_events: int = Field(default=5, ge=1, description="Fewest events of a cascade")
    min_usd: float = Field(
        default=1_000_000.0, ge=0, description="Smallest total usd_value of a cascade"
    )


class CascadeDays(StoredEventDays):
    def __init__(self, *args: Any, config: CascadeConfig, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config = config
        self.cascades = 0

    def compute_day(self, events: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
        c = self.config
        cascades = compute_cascades(events, c.gap_seconds, c.min_events, c.min_usd)
        self.cascades += len(cascades)
        return cascades, cascades_day_metadata(events, cascades)

    def run_metadata(self) -> dict[str, Any]:
        return {
            **super().run_metadata(),
            "run_cascades": self.cascades,
            "run_gap_seconds": self.config.gap_seconds,
            "run_min_events": self.config.min_events,
            "run_min_usd": self.config.min_usd,
        }


# --- assets -----------------------------------------------------------------------------------


def _on_day(context: dg.AssetExecutionContext) -> DayReport:
    def report(key: str, metadata: dict[str, Any]) -> None:
        context.add_asset_metadata(metadata, partition_key=key)

    return report


def build_analytics_assets(
    symbol: str, partitions_def: dg.PartitionsDefinition, storage_kind: str | None = "sqlite"
) -> list[dg.AssetsDefinition]:
    """The bars and the cascades of one symbol, both downstream of its stored events."""
    events_key = dg.AssetKey(kwery_asset_name(symbol))
    cascades_name = cascades_asset_name(symbol)
    # What both analytics assets share: group, days, single-run backfills and the catalog.
    common: dict[str, Any] = {
        "group_name": "analytics",
        "partitions_def": partitions_def,
        "backfill_policy": dg.BackfillPolicy.single_run(),
        "kinds": asset_kinds(storage_kind),
        "owners": OWNERS,
        "tags": catalog_tags("warehouse"),
    }

    @dg.asset(
        name=cascades_name,
        description=(
            f"{symbol} liquidation cascades of the UTC day: runs of one side's events at most "
            "gap_seconds apart with at least min_events events and min_usd (run config), cut "
            "at UTC midnight; from the stored events."
        ),
        deps=[events_key],
        metadata=warehouse_metadata(CASCADES_TABLE, symbol=symbol),
        **common,
    )
    def cascades_asset(
        context: dg.AssetExecutionContext, config: CascadeConfig, warehouse: WarehouseResource
    ) -> CascadeDays:
        window = run_window(context)
        return CascadeDays(
            warehouse, symbol, window.start, window.end, _on_day(context), config=config
        )

    @dg.asset(
        name=bars_asset_name(symbol),
        description=(
            f"{symbol} liquidations per UTC minute and side (events, quantity, USD, largest "
            "event) from the stored events; the newest day of a run carries a chart."
        ),
        # The cascades only order the steps: the newest day's chart shades the stored cascades.
        deps=[events_key, dg.AssetKey(cascades_name)],
        metadata=warehouse_metadata(BARS_TABLE, symbol=symbol),
        **common,
    )
    def bars_asset(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> BarDays:
        window = run_window(context)
        return BarDays(warehouse, symbol, window.start, window.end, _on_day(context))

    return [cascades_asset, bars_asset]
