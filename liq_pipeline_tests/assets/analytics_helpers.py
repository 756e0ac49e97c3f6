"""Hand-built Kwery days, a run of the analytics assets, and a plain reference of cascades."""

import datetime as dt
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import dagster as dg
import pandas as pd

from liq_pipeline.assets.analytics import (
    BARS_TABLE,
    CASCADES_TABLE,
    bars_asset_name,
    build_analytics_assets,
    cascades_asset_name,
)
from liq_pipeline.assets.kwery import build_kwery_asset, kwery_asset_name
from liq_pipeline.clients.kwery import kwery_frame
from liq_pipeline.partitions import daily_partitions
from liq_pipeline.resources import KweryResource
from liq_pipeline.simulator import Simulator
from liq_pipeline.warehouse import WarehouseIOManager, WarehouseResource, warehouse_metadata

DAILY = daily_partitions("2026-01-01")
BUSINESS_KEY = "demo-business-key"
ONE_DAY = dt.timedelta(days=1)


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def day_start(day: str) -> dt.datetime:
    return dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)


def api_event(
    at: pd.Timestamp | str,
    side: str = "long",
    usd: float = 250_000.0,
    avg_price: float = 90_000.0,
    symbol: str = "BTC",
) -> dict[str, Any]:
    """One liquidation exactly as the Kwery API serves it."""
    at = utc(at) if isinstance(at, str) else at
    return {
        "timestamp": at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z",
        "symbol": symbol,
        "source": "binance_futures",
        "side": side,
        "quantity": round(usd / avg_price, 6),
        "price": avg_price,
        "avg_price": avg_price,
        "usd_value": usd,
    }


def burst(
    start: str,
    gaps_s: Sequence[float],
    side: str = "long",
    usd: float = 250_000.0,
    symbol: str = "BTC",
    price: float = 90_000.0,
) -> list[dict[str, Any]]:
    """Events at `start` and then after each gap (seconds, ms precision), the price rising $1 a
    step (so first and last avg_price differ)."""
    at = utc(start)
    events = [api_event(at, side, usd, price, symbol)]
    for i, gap in enumerate(gaps_s, start=1):
        at = at + pd.Timedelta(milliseconds=round(gap * 1000))
        events.append(api_event(at, side, usd, price + i, symbol))
    return events


class StoredDays:
    """Lands hand-built API-shaped days where the analytics read them: the events table.

    They are parsed by the Kwery client's own `kwery_frame` and written through the
    WarehouseIOManager, exactly as the Kwery asset stores a fetched day (no API in between).
    """

    def __init__(self, url: str) -> None:
        self.io = WarehouseIOManager(url=url)

    def set_kwery_day(self, symbol: str, day: str, events: list[dict[str, Any]]) -> None:
        with dg.build_output_context(
            asset_key=kwery_asset_name(symbol),
            definition_metadata=warehouse_metadata("kwery_liquidations", symbol=symbol),
            asset_partitions_def=DAILY,
            asset_partition_key_range=dg.PartitionKeyRange(day, day),
        ) as context:
            self.io.handle_output(context, kwery_frame(api_order(events)))

    def restore(self) -> None:
        pass


class SimulatedDays:
    """Serves hand-built days from the simulator; each run fetches them with the Kwery asset."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.url = sim.url
        self.changed: set[tuple[str, dt.date]] = set()

    def set_kwery_day(self, symbol: str, day: str, events: list[dict[str, Any]]) -> None:
        key = (symbol, dt.date.fromisoformat(day))
        self.sim.set_kwery_day(*key, api_order(events))
        self.changed.add(key)

    def restore(self) -> None:
        """The generated days again (the simulator outlives one test)."""
        for symbol, day in self.changed:
            self.sim.set_kwery_day(symbol, day, None)


def api_order(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sorted by time as the API serves them; a stable sort keeps the order within a millisecond."""
    return sorted(events, key=lambda e: e["timestamp"])


# Edge days reach the warehouse through the simulator and the real Kwery asset (True), or are
# stored directly (False: what the analytics read is the same either way).
SIMULATOR_SERVES_DAYS = True


def range_tags(first: str, last: str) -> dict[str, str]:
    return {
        "dagster/asset_partition_range_start": first,
        "dagster/asset_partition_range_end": last,
    }


def run_analytics(
    url: str,
    first: str,
    last: str | None = None,
    *,
    symbols: Iterable[str] = ("BTC",),
    cascade_config: Mapping[str, Any] | None = None,
    fetch_from: str | None = None,
    raise_on_error: bool = True,
    only: str | None = None,
) -> dg.ExecuteInProcessResult:
    """One run of the analytics of `symbols` over [first, last] (single-run backfill).

    `fetch_from` (a simulator URL) also materializes the Kwery events in the same run, first;
    `only` restricts the run to "bars" or "cascades".
    """
    symbols = list(symbols)
    with warnings.catch_warnings():
        # Single-run backfills (beta) and partitioned check specs (preview), as definitions.py.
        warnings.simplefilter("ignore", dg.BetaWarning)
        warnings.simplefilter("ignore", dg.PreviewWarning)
        assets: list[Any] = [a for s in symbols for a in build_analytics_assets(s, DAILY)]
        kwery_assets = [build_kwery_asset(s, DAILY) for s in symbols]
    selection = [
        name
        for s in symbols
        for kind, name in (("cascades", cascades_asset_name(s)), ("bars", bars_asset_name(s)))
        if only in (None, kind)
    ]
    resources: dict[str, Any] = {
        "io_manager": WarehouseIOManager(url=url),
        "warehouse": WarehouseResource(url=url),
    }
    if fetch_from is not None:
        assets += kwery_assets
        selection += [kwery_asset_name(s) for s in symbols]
        resources["kwery"] = KweryResource(api_key=BUSINESS_KEY, base_url=fetch_from)
    run_config = (
        {"ops": {cascades_asset_name(s): {"config": dict(cascade_config)} for s in symbols}}
        if cascade_config is not None
        else None
    )
    return dg.materialize(
        assets,
        selection=selection,
        resources=resources,
        tags=range_tags(first, last or first),
        run_config=run_config,
        raise_on_error=raise_on_error,
    )


def day_metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, dict[str, Any]]:
    """Partition key -> that day's materialization metadata (plain values)."""
    return {
        m.partition: {k: v.value for k, v in m.metadata.items()}
        for m in result.asset_materializations_for_node(asset)
    }


def read(url: str, table: str, first: str, last: str | None = None, **slice_: str) -> pd.DataFrame:
    start = day_start(first)
    end = day_start(last or first) + ONE_DAY
    return WarehouseResource(url=url).read(table, start, end, **slice_)


def stored(url: str, symbol: str, first: str, last: str | None = None) -> dict[str, pd.DataFrame]:
    """Events, bars and cascades of a symbol as stored."""
    return {
        "events": read(url, "kwery_liquidations", first, last, symbol=symbol),
        "bars": read(url, BARS_TABLE, first, last, symbol=symbol),
        "cascades": read(url, CASCADES_TABLE, first, last, symbol=symbol),
    }


def pandas_bars(events: pd.DataFrame) -> pd.DataFrame:
    """The bars as an analyst would compute them with a pandas groupby."""
    minute = events["timestamp"].dt.floor("min")
    grouped = events.groupby([minute.rename("bucket_start"), "symbol", "side"])
    return pd.DataFrame(
        {
            "events": grouped.size(),
            "quantity": grouped["quantity"].sum(),
            "usd_value": grouped["usd_value"].sum(),
            "max_usd_value": grouped["usd_value"].max(),
        }
    ).reset_index()


def reference_cascades(
    events: pd.DataFrame,
    gap_seconds: float = 60.0,
    min_events: int = 5,
    min_usd: float = 1_000_000.0,
) -> list[dict[str, Any]]:
    """The issue's definition, read literally, as a plain loop over the stored events in order."""
    runs: dict[tuple[str, dt.date, str], list[dict[str, Any]]] = {}
    found: list[list[dict[str, Any]]] = []
    for event in events.to_dict("records"):
        key = (event["symbol"], event["timestamp"].date(), event["side"])
        run = runs.get(key)
        if run and (event["timestamp"] - run[-1]["timestamp"]).total_seconds() <= gap_seconds:
            run.append(event)
        else:
            if run:
                found.append(run)
            runs[key] = [event]
    found.extend(runs.values())
    cascades = []
    for run in found:
        total = sum(e["usd_value"] for e in run)
        if len(run) >= min_events and total >= min_usd:
            first, last = run[0], run[-1]
            cascades.append(
                {
                    "start": first["timestamp"],
                    "end": last["timestamp"],
                    "symbol": first["symbol"],
                    "side": first["side"],
                    "events": len(run),
                    "quantity": sum(e["quantity"] for e in run),
                    "usd_value": total,
                    "max_usd_value": max(e["usd_value"] for e in run),
                    "first_avg_price": first["avg_price"],
                    "last_avg_price": last["avg_price"],
                    "price_move_pct": (last["avg_price"] / first["avg_price"] - 1) * 100,
                }
            )
    return sorted(cascades, key=lambda c: (c["start"], c["side"]))


def assert_same_rows(actual: pd.DataFrame, expected: list[dict[str, Any]] | pd.DataFrame) -> None:
    """Equal row by row: keys and counts exactly, sums to 1e-9 relative."""
    expected_frame = expected if isinstance(expected, pd.DataFrame) else pd.DataFrame(expected)
    assert len(actual) == len(expected_frame), (len(actual), len(expected_frame))
    if not len(actual):
        return
    expected_frame = expected_frame[list(actual.columns)].astype(actual.dtypes.to_dict())
    pd.testing.assert_frame_equal(
        actual.reset_index(drop=True),
        expected_frame.reset_index(drop=True),
        check_exact=False,
        rtol=1e-9,
        atol=0,
    )
