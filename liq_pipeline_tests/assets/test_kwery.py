import datetime as dt
import math
from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd
import pytest

from liq_pipeline.assets.kwery import KweryDayBatches, utc_days
from liq_pipeline.clients import KweryClient
from liq_pipeline.clients.kwery import KweryStats, kwery_frame
from liq_pipeline.simulator import Simulator
from liq_pipeline.simulator.data import kwery_events

DAY1 = dt.datetime(2026, 3, 8, tzinfo=dt.UTC)
DAY2 = dt.datetime(2026, 3, 9, tzinfo=dt.UTC)
DAY3 = dt.datetime(2026, 3, 10, tzinfo=dt.UTC)


def results(batches: KweryDayBatches) -> dict:
    return {
        r.check_name: (r.passed, {k: v.value for k, v in r.metadata.items()})
        for r in batches.check_results()
    }


def test_utc_days_cover_the_window():
    assert utc_days(DAY1, DAY3) == [DAY1, DAY2]
    assert utc_days(DAY1, DAY1) == []


def test_one_frame_per_day_exactly_as_served_with_the_runs_accounting():
    with Simulator(port=0, now=dt.datetime(2026, 3, 21, tzinfo=dt.UTC)) as sim:
        client = KweryClient("demo-business-key", sim.url, sleep=lambda s: None)
        batches = KweryDayBatches(client, "BTC", DAY1, DAY3)
        frames = list(batches)
        remaining = sim.credits_remaining("demo-business-key")
    per_day = [kwery_events("BTC", d.date()) for d in (DAY1, DAY2)]
    assert len(frames) == 2
    for frame, events in zip(frames, per_day, strict=True):
        pd.testing.assert_frame_equal(frame, kwery_frame(events))
    sizes = [len(e) for e in per_day]
    assert batches.rows == sum(sizes)
    assert batches.requests == batches.pages == sum(math.ceil(n / 1000) for n in sizes)
    assert batches.credits_used == sum(25 * math.ceil(n / 1000) + 2 * n for n in sizes)
    assert batches.credits_remaining == remaining
    metadata = batches.output_metadata()
    assert metadata["first_event"] == str(pd.Timestamp(per_day[0][0]["timestamp"]))
    assert metadata["last_event"] == str(pd.Timestamp(per_day[1][-1]["timestamp"]))
    assert {name: passed for name, (passed, _) in results(batches).items()} == {
        "sides_valid": True,
        "usd_value_matches_quantity_times_avg_price": True,
        "events_inside_partition": True,
    }


@dataclass
class Page:
    frame: pd.DataFrame
    stats: KweryStats


class ServedFrames:
    """Stands in for the client where the real API can't produce the case (bad rows it would
    reject before they ever reached the asset)."""

    def __init__(self, frames: dict[dt.datetime, pd.DataFrame]) -> None:
        self.frames = frames

    def iter_pages(self, symbol: str, start: dt.datetime, end: dt.datetime) -> Iterator[Page]:
        frame = self.frames[start]
        yield Page(frame, KweryStats(requests=1, pages=1, rows=len(frame), credits_used=1))


def event(ts: str, side: str = "long", qty: float = 0.5, avg: float = 90_000.0, usd=None) -> dict:
    usd = round(qty * avg, 2) if usd is None else usd
    return {"timestamp": ts, "symbol": "BTC", "source": "binance_futures", "side": side,
            "quantity": qty, "price": avg, "avg_price": avg, "usd_value": usd}  # fmt: skip


def test_checks_fail_on_bad_sides_wrong_usd_and_events_outside_their_day():
    day1 = kwery_frame([event("2026-03-08T01:00:00.000Z"), event("2026-03-09T00:00:00.000Z")])
    day2 = kwery_frame(
        [
            event("2026-03-09T02:00:00.000Z", usd=45_000.0 + 7.5),
            event("2026-03-09T03:00:00.000Z", side="short"),
        ]
    )
    day2.loc[1, "side"] = "sideways"
    batches = KweryDayBatches(ServedFrames({DAY1: day1, DAY2: day2}), "BTC", DAY1, DAY3)
    assert sum(len(f) for f in batches) == 4
    checks = results(batches)
    passed, metadata = checks["sides_valid"]
    assert (passed, metadata["invalid_sides"], metadata["long"], metadata["short"]) == (
        False, 1, 3, 0,
    )  # fmt: skip
    passed, metadata = checks["usd_value_matches_quantity_times_avg_price"]
    assert (passed, metadata["mismatched_rows"], metadata["max_abs_deviation_usd"]) == (
        False, 1, pytest.approx(7.5),
    )  # fmt: skip
    passed, metadata = checks["events_inside_partition"]
    assert (passed, metadata["events_outside_their_day"]) == (False, 1)


def test_an_empty_day_is_a_valid_result():
    empty = kwery_frame([])
    batches = KweryDayBatches(ServedFrames({DAY1: empty}), "BTC", DAY1, DAY2)
    assert [len(f) for f in batches] == [0]
    assert batches.output_metadata()["first_event"] is None
    assert all(passed for passed, _ in results(batches).values())
