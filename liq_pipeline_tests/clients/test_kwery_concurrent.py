"""Several UTC days fetched at once, against the simulator over loopback HTTP: exact rows and
credits with faults, a lower concurrency after a 429, bounded days in flight, failing fast."""

import datetime as dt
import math
import threading
from typing import Any

import pandas as pd
import pytest

from liq_pipeline.clients import KweryClient
from liq_pipeline.clients.errors import KweryProtocolError
from liq_pipeline.clients.kwery import kwery_frame
from liq_pipeline.clients.limiter import AdaptiveLimit, Stopped
from liq_pipeline.simulator import Simulator
from liq_pipeline_tests.clients.helpers import BUSINESS_KEY

UTC = dt.UTC
FIRST = dt.datetime(2026, 3, 1, tzinfo=UTC)
DAYS = [FIRST + dt.timedelta(days=i) for i in range(10)]


def minimum(sim: Simulator) -> tuple[int, int]:
    """(requests, credits) of one query per day: the least the API can be asked for."""
    sizes = [len(sim.kwery_events("BTC", day.date())) for day in DAYS]
    pages = sum(max(1, math.ceil(n / 1000)) for n in sizes)
    return pages, 25 * pages + 2 * sum(sizes)


def client(sim: Simulator, concurrency: int = 4, **kw: Any) -> KweryClient:
    return KweryClient(BUSINESS_KEY, sim.url, concurrency=concurrency, **kw)


def test_days_come_in_order_exactly_as_served_at_the_minimum_cost(fresh_sim: Simulator) -> None:
    with client(fresh_sim) as kwery:
        results = list(kwery.fetch_days("BTC", DAYS))
    assert [day for day, _ in results] == DAYS
    for day, result in results:
        pd.testing.assert_frame_equal(
            result.frame, kwery_frame(fresh_sim.kwery_events("BTC", day.date()))
        )
    requests, credits = minimum(fresh_sim)
    stats = fresh_sim.stats(BUSINESS_KEY)
    assert (stats["requests"], stats["credits_used"]) == (requests, credits)
    assert sum(r.stats.credits_used for _, r in results) == credits


def test_429_bursts_and_dropped_connections_cost_nothing_extra(fresh_sim: Simulator) -> None:
    fresh_sim.inject("429", count=3, api="kwery", skip=2, retry_after="0.05")
    fresh_sim.inject("drop", count=2, api="kwery", skip=5)
    fresh_sim.inject("503", count=1, api="kwery", skip=7, retry_after="0.05")
    with client(fresh_sim, sleep=lambda seconds: None) as kwery:
        results = list(kwery.fetch_days("BTC", DAYS))
        limit = kwery._http.limit
    for day, result in results:
        pd.testing.assert_frame_equal(
            result.frame, kwery_frame(fresh_sim.kwery_events("BTC", day.date()))
        )
    requests, credits = minimum(fresh_sim)
    stats = fresh_sim.stats(BUSINESS_KEY)
    assert stats["credits_used"] == credits  # a faulted request costs nothing, none is repeated
    assert stats["requests"] == requests + 3 + 2 + 1
    assert stats["ok_requests"] == requests
    assert sum(r.stats.retries for _, r in results) == 6
    assert limit is not None and limit.lowest < 4  # the 429s lowered the concurrency


def test_at_most_concurrency_days_are_fetched_ahead_of_the_consumer(
    fresh_sim: Simulator,
) -> None:
    month = [FIRST + dt.timedelta(days=i) for i in range(28)]
    quiet = [d for d in month if len(fresh_sim.kwery_events("BTC", d.date())) <= 1000][:8]
    assert len(quiet) == 8  # one page each
    with client(fresh_sim, concurrency=3) as kwery:
        days = kwery.fetch_days("BTC", quiet)
        next(days)  # the consumer takes the first day, then is slow
        waited = threading.Event()
        waited.wait(1.0)  # give the workers every chance to run ahead (a real wait, on purpose)
        assert fresh_sim.stats(BUSINESS_KEY)["requests"] == 3  # this day and two more at most
        assert len(list(days)) == 7
    assert fresh_sim.stats(BUSINESS_KEY)["requests"] == 8


def test_a_failing_day_raises_and_stops_the_other_days(fresh_sim: Simulator) -> None:
    fresh_sim.inject("bad_value", api="kwery", skip=3, field="quantity", value=-1.0)
    with client(fresh_sim) as kwery, pytest.raises(KweryProtocolError) as err:
        list(kwery.fetch_days("BTC", DAYS))
    assert "field 'quantity' must be a finite number > 0" in str(err.value)
    sent = fresh_sim.stats(BUSINESS_KEY)["requests"]
    threading.Event().wait(0.5)  # a real wait, on purpose: no worker may send anything more
    assert fresh_sim.stats(BUSINESS_KEY)["requests"] == sent
    requests, _ = minimum(fresh_sim)
    assert sent < requests  # the other days stopped before they were fetched


def test_sequential_when_the_concurrency_is_one(fresh_sim: Simulator) -> None:
    with client(fresh_sim, concurrency=1) as kwery:
        assert kwery._http.limit is None
        assert [day for day, _ in kwery.fetch_days("BTC", DAYS[:3])] == DAYS[:3]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_limit_halves_on_a_429_holds_everyone_and_recovers_slowly() -> None:
    clock = Clock()
    limit = AdaptiveLimit(4, recover_after=3, clock=clock)
    limit.rate_limited(retry_after=2.0)
    assert (limit.limit, limit.lowest) == (2, 2)
    started = threading.Event()

    def request() -> None:
        with limit.slot():
            started.set()

    waiter = threading.Thread(target=request)
    waiter.start()
    assert not started.wait(0.6)  # held by the Retry-After, whoever got the 429
    clock.now += 2.0
    assert started.wait(2.0)
    waiter.join()
    limit.rate_limited(retry_after=None)
    assert limit.limit == 1
    for _ in range(3):
        limit.answered()
    assert limit.limit == 2  # one step back up after 3 clean answers in a row
    for _ in range(30):
        limit.answered()
    assert limit.limit == 4  # never above the maximum
    limit.stop.set()
    with pytest.raises(Stopped), limit.slot():
        pass
