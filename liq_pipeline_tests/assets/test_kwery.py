import datetime as dt
import math
from collections.abc import Iterator

import dagster as dg
import pandas as pd
import pyarrow as pa
import pytest

from liq_pipeline.assets.kwery import KweryDayBatches
from liq_pipeline.clients import KweryClient
from liq_pipeline.clients.kwery import KWERY_SCHEMA, KweryResult, KweryStats, kwery_frame
from liq_pipeline.partitions import utc_days
from liq_pipeline.simulator import Simulator
from liq_pipeline.simulator.data import kwery_events
from liq_pipeline.warehouse import WarehouseIOManager, WarehouseResource, warehouse_metadata

DAY1 = dt.datetime(2026, 3, 8, tzinfo=dt.UTC)
DAY2 = dt.datetime(2026, 3, 9, tzinfo=dt.UTC)
DAY3 = dt.datetime(2026, 3, 10, tzinfo=dt.UTC)


def test_utc_days_cover_the_window():
    assert utc_days(DAY1, DAY3) == [DAY1, DAY2]
    assert utc_days(DAY1, DAY1) == []


def test_one_frame_per_day_exactly_as_served_with_each_days_own_figures():
    reported: dict[str, dict] = {}
    with Simulator(port=0, now=dt.datetime(2026, 3, 21, tzinfo=dt.UTC)) as sim:
        client = KweryClient("demo-business-key", sim.url, sleep=lambda s: None)
        batches = KweryDayBatches(client, "BTC", DAY1, DAY3, reported.__setitem__)
        frames = [table.to_pandas() for table in batches]
        remaining = sim.credits_remaining("demo-business-key")
    per_day = [kwery_events("BTC", d.date()) for d in (DAY1, DAY2)]
    assert len(frames) == 2
    for frame, events in zip(frames, per_day, strict=True):
        pd.testing.assert_frame_equal(frame, kwery_frame(events))
    assert list(reported) == ["2026-03-08", "2026-03-09"]
    for (key, figures), events in zip(reported.items(), per_day, strict=True):
        n = len(events)
        assert figures["dagster/row_count"] == n
        assert figures["requests"] == figures["pages"] == math.ceil(n / 1000)
        assert figures["credits_used"] == 25 * math.ceil(n / 1000) + 2 * n
        assert figures["retries"] == 0
        assert figures["first_event"] == str(pd.Timestamp(events[0]["timestamp"]))
        assert figures["last_event"] == str(pd.Timestamp(events[-1]["timestamp"]))
        assert figures["first_event"].startswith(key) and figures["last_event"].startswith(key)
        longs = [e["usd_value"] for e in events if e["side"] == "long"]
        assert (figures["long_events"], figures["short_events"]) == (len(longs), n - len(longs))
        assert figures["long_usd"] == round(sum(longs), 2)
        assert figures["preview"].value.count("\n") == 1 + 5
    sizes = [len(e) for e in per_day]
    assert batches.run_metadata() == {
        "run_days": 2,
        "run_requests": sum(math.ceil(n / 1000) for n in sizes),
        "run_retries": 0,
        "run_credits_used": sum(25 * math.ceil(n / 1000) + 2 * n for n in sizes),
        "run_credits_remaining": remaining,
    }
    assert {key: check.passed for key, check in batches.usd_checks.items()} == {
        "2026-03-08": True,
        "2026-03-09": True,
    }


class ServedFrames:
    """Stands in for the client where the real API can't produce the case (rows whose usd_value
    does not match, which the simulator never serves)."""

    def __init__(self, frames: dict[dt.datetime, pd.DataFrame]) -> None:
        self.frames = frames

    def fetch_days(
        self, symbol: str, days: list[dt.datetime]
    ) -> Iterator[tuple[dt.datetime, KweryResult]]:
        for day in days:
            frame = self.frames[day]
            table = pa.Table.from_pandas(frame, schema=KWERY_SCHEMA, preserve_index=False)
            yield day, KweryResult(table, KweryStats(requests=1, pages=1, rows=len(frame)))


def event(ts: str, side: str = "long", qty: float = 0.5, avg: float = 90_000.0, usd=None) -> dict:
    usd = round(qty * avg, 2) if usd is None else usd
    return {"timestamp": ts, "symbol": "BTC", "source": "binance_futures", "side": side,
            "quantity": qty, "price": avg, "avg_price": avg, "usd_value": usd}  # fmt: skip


def test_the_usd_check_fails_only_on_the_day_whose_usd_does_not_match():
    day1 = kwery_frame([event("2026-03-08T01:00:00.000Z"), event("2026-03-08T23:59:59.999Z")])
    day2 = kwery_frame(
        [
            event("2026-03-09T02:00:00.000Z", usd=45_000.0 + 7.5),
            event("2026-03-09T03:00:00.000Z", side="short"),
        ]
    )
    batches = KweryDayBatches(ServedFrames({DAY1: day1, DAY2: day2}), "BTC", DAY1, DAY3)
    assert [t.num_rows for t in batches] == [2, 2]
    good, bad = batches.usd_checks["2026-03-08"], batches.usd_checks["2026-03-09"]
    assert good.passed and good.metadata["mismatched_rows"] == 0
    assert (bad.passed, bad.metadata["mismatched_rows"], bad.metadata["events"]) == (False, 1, 2)
    assert bad.metadata["max_abs_deviation_usd"] == pytest.approx(7.5)


def test_an_empty_day_is_a_valid_result():
    reported: dict[str, dict] = {}
    empty = kwery_frame([])
    batches = KweryDayBatches(ServedFrames({DAY1: empty}), "BTC", DAY1, DAY2, reported.__setitem__)
    assert [t.num_rows for t in batches] == [0]
    figures = reported["2026-03-08"]
    assert (figures["dagster/row_count"], figures["first_event"], figures["long_usd"]) == (
        0,
        None,
        0.0,
    )
    assert batches.usd_checks["2026-03-08"].passed


def test_a_day_failing_in_a_concurrent_range_leaves_the_warehouse_untouched(tmp_path):
    url = f"sqlite:///{tmp_path / 'warehouse.sqlite'}"
    io, warehouse = WarehouseIOManager(url=url), WarehouseResource(url=url)
    first, last = dt.datetime(2026, 3, 1, tzinfo=dt.UTC), dt.datetime(2026, 3, 11, tzinfo=dt.UTC)

    def write(batches: KweryDayBatches) -> None:
        with dg.build_output_context(
            asset_key="kwery_liquidations_btc",
            definition_metadata=warehouse_metadata("kwery_liquidations", symbol="BTC"),
            asset_partitions_def=dg.DailyPartitionsDefinition(start_date="2026-03-01"),
            asset_partition_key_range=dg.PartitionKeyRange("2026-03-01", "2026-03-10"),
        ) as context:
            io.handle_output(context, batches)

    with Simulator(port=0, now=dt.datetime(2026, 3, 21, tzinfo=dt.UTC)) as sim:
        with KweryClient("demo-business-key", sim.url, concurrency=4) as client:
            write(KweryDayBatches(client, "BTC", first, last))
        stored = warehouse.read("kwery_liquidations", first, last, symbol="BTC")
        served = sum(len(sim.kwery_events("BTC", d.date())) for d in utc_days(first, last))
        assert len(stored) == served
        sim.inject("bad_value", api="kwery", skip=5, field="usd_value", value=1.7e308)
        with (
            KweryClient("demo-business-key", sim.url, concurrency=4) as client,
            pytest.raises(dg.Failure) as err,
        ):
            write(KweryDayBatches(client, "BTC", first, last))
    assert "field 'usd_value' must be a finite number > 0 and <= 1e+11" in str(err.value)
    after = warehouse.read("kwery_liquidations", first, last, symbol="BTC")
    pd.testing.assert_frame_equal(after, stored)
