"""Hand-built Kwery days: given events served like generated ones, over real HTTP."""

import datetime as dt
import re

import pytest
import requests

from liq_pipeline.simulator import Simulator
from liq_pipeline.simulator.data import kwery_events
from liq_pipeline_tests.simulator.support import BUSINESS, FREE, NOW, Api, FakeMonotonic

D7, D8, D9 = dt.date(2026, 3, 7), dt.date(2026, 3, 8), dt.date(2026, 3, 9)
TODAY = NOW.date()  # 2026-03-10; the simulator's now is 12:00 UTC


def _event(stamp: str, side: str = "long", usd: float = 1_000.0, symbol: str = "BTC") -> dict:
    return {
        "timestamp": stamp,
        "symbol": symbol,
        "source": "binance_futures",
        "side": side,
        "quantity": 0.01,
        "price": 100_000.0,
        "avg_price": 99_990.5,
        "usd_value": usd,
    }


# Exact edges on one day: 60.000 s, 60.001 s, three events in one millisecond, last millisecond.
EDGE_DAY = [
    _event("2026-03-08T00:00:00.000Z", usd=1.0),
    _event("2026-03-08T00:01:00.000Z", usd=2.0),
    _event("2026-03-08T00:02:00.001Z", "short", usd=3.0),
    _event("2026-03-08T00:02:00.001Z", usd=4.0),
    _event("2026-03-08T00:02:00.001Z", "short", usd=5.0),
    _event("2026-03-08T23:59:59.999Z", usd=6.0),
]
WHOLE_D8 = {"symbol": "BTC", "start": "2026-03-08T00:00:00Z", "end": "2026-03-09T00:00:00Z"}


def _rows(pages: list[dict]) -> list[dict]:
    return [row for page in pages for row in page["data"]]


def test_hand_built_day_pages_like_a_generated_one(api: Api) -> None:
    api.sim.set_kwery_day("BTC", D8, EDGE_DAY)
    assert api.sim.kwery_events("BTC", D8) == EDGE_DAY
    responses, after = [], None
    while True:
        resp = api.kwery(**WHOLE_D8, limit=2, **({"after": after} if after else {}))
        responses.append(resp)
        after = resp.json()["meta"]["next_cursor"]
        if after is None:
            break
    pages = [r.json() for r in responses]
    # The three same-millisecond events are split 2 | 1 across pages 2 and 3, in given order.
    assert [p["data"] for p in pages] == [EDGE_DAY[0:2], EDGE_DAY[2:4], EDGE_DAY[4:6]]
    assert [p["meta"]["has_more"] for p in pages] == [True, True, False]
    assert [r.headers["X-Rows-Returned"] for r in responses] == ["2", "2", "2"]
    assert [r.headers["X-Credits-Used"] for r in responses] == ["29", "29", "29"]
    assert api.sim.stats(BUSINESS) == {
        "requests": 3,
        "ok_requests": 3,
        "rows": 6,
        "credits_used": 87,
    }


def test_one_row_per_page_through_a_same_millisecond_run(api: Api) -> None:
    api.sim.set_kwery_day("BTC", D8, EDGE_DAY)
    run = {"symbol": "BTC", "start": "2026-03-08T00:02:00.001Z", "end": "2026-03-08T00:02:00.002Z"}
    pages = api.pages(**run, limit=1)
    assert [p["data"] for p in pages] == [[e] for e in EDGE_DAY[2:5]]
    # start is inclusive, end exclusive, to the millisecond: 60.000 s vs 60.001 s apart.
    minute = api.kwery(symbol="BTC", start="2026-03-08T00:00:00Z", end="2026-03-08T00:01:00Z")
    assert minute.json()["data"] == EDGE_DAY[:1]
    minute = api.kwery(symbol="BTC", start="2026-03-08T00:01:00Z", end="2026-03-08T00:02:00.001Z")
    assert minute.json()["data"] == EDGE_DAY[1:2]


def test_filters_apply_to_hand_built_days(api: Api) -> None:
    api.sim.set_kwery_day("BTC", D8, EDGE_DAY)
    shorts = api.pages(**WHOLE_D8, side="short")
    assert _rows(shorts) == [EDGE_DAY[2], EDGE_DAY[4]]
    above = api.pages(**WHOLE_D8, min_usd=4)  # strictly above
    assert _rows(above) == EDGE_DAY[4:]


def test_burst_across_utc_midnight(api: Api) -> None:
    before = [_event("2026-03-08T23:59:59.998Z"), _event("2026-03-08T23:59:59.999Z", "short")]
    after = [
        _event("2026-03-09T00:00:00.000Z", usd=10.0),
        _event("2026-03-09T00:00:00.000Z", usd=11.0),
        _event("2026-03-09T00:00:00.001Z", usd=12.0),
    ]
    api.sim.set_kwery_day("BTC", D8, before)
    api.sim.set_kwery_day("BTC", D9, after)
    params = {"symbol": "BTC", "start": "2026-03-08T23:59:59.998Z", "end": "2026-03-09T00:00:01Z"}
    first = api.kwery(**params, limit=3).json()
    second = api.kwery(**params, limit=3, after=first["meta"]["next_cursor"]).json()
    assert first["data"] == [*before, after[0]]
    assert second["data"] == after[1:]
    assert (first["meta"]["has_more"], second["meta"]["has_more"]) == (True, False)


def test_empty_hand_built_day(api: Api) -> None:
    api.sim.set_kwery_day("ETH", D8, [])
    assert api.sim.kwery_events("ETH", D8) == []
    resp = api.kwery(symbol="ETH", start="2026-03-08T00:00:00Z", end="2026-03-09T00:00:00Z")
    assert resp.json() == {
        "data": [],
        "meta": {
            "symbol": "ETH",
            "source": "binance_futures",
            "returned": 0,
            "next_cursor": None,
            "has_more": False,
        },
    }
    assert (resp.headers["X-Credits-Used"], resp.headers["X-Rows-Returned"]) == ("25", "0")
    # Around it the generated days go on: the last minute of D7, then the first of D9.
    window = {"symbol": "ETH", "start": "2026-03-07T23:59:00Z", "end": "2026-03-09T00:01:00Z"}
    expected = [
        e
        for e in kwery_events("ETH", D7) + kwery_events("ETH", D9)
        if window["start"].replace("Z", ".000Z") <= e["timestamp"] < "2026-03-09T00:01:00.000Z"
    ]
    assert _rows(api.pages(**window, limit=1000)) == expected
    assert api.sim.kwery_events("ETH", D9) == kwery_events("ETH", D9)


def test_none_restores_the_generated_day(api: Api) -> None:
    api.sim.set_kwery_day("BTC", D8, EDGE_DAY)
    api.sim.set_kwery_day("BTC", D8, None)
    assert api.sim.kwery_events("BTC", D8) == kwery_events("BTC", D8)
    assert api.kwery(**WHOLE_D8, limit=5).json()["data"] == kwery_events("BTC", D8)[:5]
    api.sim.set_kwery_day("BTC", D8, None)  # restoring twice is fine


def test_days_given_to_the_constructor_and_copied(http: requests.Session) -> None:
    events = [dict(e) for e in EDGE_DAY]
    with Simulator(port=0, now=NOW, kwery_days={("BTC", D8): events}) as sim:
        events[0]["usd_value"] = 999.0  # changing the caller's dicts later changes nothing
        events.append(_event("2026-03-08T23:59:59.999Z"))
        assert Api(sim, http).pages(**WHOLE_D8) == [
            {
                "data": EDGE_DAY,
                "meta": {
                    "symbol": "BTC",
                    "source": "binance_futures",
                    "returned": 6,
                    "next_cursor": None,
                    "has_more": False,
                },
            }
        ]


def test_now_history_depth_and_row_cap_hold(http: requests.Session, clock: FakeMonotonic) -> None:
    """A Free key over a hand-built today: capped at 1,000 rows, nothing at or after now."""
    stamps = [
        (dt.datetime(2026, 3, 10, tzinfo=dt.UTC) + dt.timedelta(seconds=30 * i)).isoformat(
            timespec="milliseconds"
        )
        for i in range(1_440)  # every 30 s from midnight: the last is 11:59:30, before now
    ]
    today = [_event(s.replace("+00:00", "Z"), usd=float(i)) for i, s in enumerate(stamps)]
    at_now = [_event("2026-03-10T12:00:00.000Z"), _event("2026-03-10T18:00:00.000Z")]
    with Simulator(
        port=0,
        now=NOW,
        monotonic=clock,
        kwery_days={("BTC", D9): [], ("BTC", TODAY): today + at_now},
    ) as sim:
        api = Api(sim, http)
        capped = api.kwery(FREE, symbol="BTC", limit=1000)  # default window: the last day
        assert capped.json()["data"] == today[:1000]
        assert capped.json()["meta"]["has_more"] is False
        assert (capped.headers["X-Rows-Capped"], capped.headers["X-Credits-Used"]) == (
            "true",
            "2025",
        )
        everything = api.pages(BUSINESS, symbol="BTC", start="2026-03-10", limit=1000)
        assert _rows(everything) == today  # not the one at 12:00:00.000 == now
        assert [p["meta"]["returned"] for p in everything] == [1000, 440]
        sim.set_now(dt.datetime(2026, 3, 10, 18, 0, 0, 1_000, tzinfo=dt.UTC))
        later = api.pages(BUSINESS, symbol="BTC", start="2026-03-10T11:59:30Z", limit=1000)
        assert _rows(later) == [today[-1], *at_now]
        too_old = api.kwery(FREE, symbol="BTC", start="2026-03-09T12:00:00Z")
        assert too_old.json()["error"]["code"] == "invalid_time_range"


@pytest.mark.parametrize(
    ("symbol", "day", "events", "message"),
    [
        ("btc", D8, [], "unknown symbol 'btc'"),
        ("BTC", dt.date(2019, 8, 31), [], "day 2019-08-31 is before Kwery's history starts"),
        ("BTC", dt.datetime(2026, 3, 8), [], "day must be a datetime.date"),
        ("BTC", D8, ["x"], "event 0: expected a dict in the API's row shape, got 'x'"),
        (
            "BTC",
            D8,
            [{k: v for k, v in _event("2026-03-08T00:00:00.000Z").items() if k != "price"}],
            "event 0: missing fields ['price'], unknown fields []",
        ),
        (
            "BTC",
            D8,
            [{**_event("2026-03-08T00:00:00.000Z"), "exchange": "binance"}],
            "event 0: missing fields [], unknown fields ['exchange']",
        ),
        (
            "BTC",
            D8,
            [_event("2026-03-08T00:00:00.000Z"), _event("2026-03-09T00:00:00.000Z")],
            "event 1: timestamp 2026-03-09T00:00:00.000Z is outside 2026-03-08 (UTC)",
        ),
        (
            "BTC",
            D8,
            [_event("2026-03-07T23:59:59.999Z")],
            "event 0: timestamp 2026-03-07T23:59:59.999Z is outside 2026-03-08 (UTC)",
        ),
        (
            "BTC",
            D8,
            [_event("2026-03-08T00:00:00.002Z"), _event("2026-03-08T00:00:00.001Z")],
            "event 1 (2026-03-08T00:00:00.001Z) is earlier than event 0: events must be sorted",
        ),
        ("BTC", D8, [_event("2026-03-08T00:00:00Z")], "event 0: timestamp must be ISO 8601"),
        ("BTC", D8, [_event("2026-03-08T00:00:00.000+00:00")], "got '2026-03-08T00:00:00.000+00"),
        ("BTC", D8, [_event("2026-02-30T00:00:00.000Z")], "'2026-02-30T00:00:00.000Z' is not a"),
        (
            "BTC",
            D8,
            [_event("2026-03-08T00:00:00.000Z", symbol="ETH")],
            "event 0: symbol 'ETH' is not the day's symbol 'BTC'",
        ),
        (
            "BTC",
            D8,
            [{**_event("2026-03-08T00:00:00.000Z"), "side": "both"}],
            "event 0: side must be 'long' or 'short', got 'both'",
        ),
        (
            "BTC",
            D8,
            [{**_event("2026-03-08T00:00:00.000Z"), "source": None}],
            "event 0: source must be a string, got None",
        ),
        (
            "BTC",
            D8,
            [_event("2026-03-08T00:00:00.000Z", usd=float("nan"))],
            "event 0: usd_value must be a finite number, got nan",
        ),
        (
            "BTC",
            D8,
            [{**_event("2026-03-08T00:00:00.000Z"), "quantity": "0.1"}],
            "event 0: quantity must be a finite number, got '0.1'",
        ),
        (
            "BTC",
            D8,
            [{**_event("2026-03-08T00:00:00.000Z"), "price": True}],
            "event 0: price must be a finite number, got True",
        ),
    ],
)
def test_validation(sim: Simulator, symbol: str, day: dt.date, events: list, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        sim.set_kwery_day(symbol, day, events)
    with pytest.raises(ValueError, match=re.escape(message)):
        Simulator(kwery_days={(symbol, day): events})
    assert sim.kwery_events("BTC", D8) == kwery_events("BTC", D8)  # nothing was set


def test_hostile_but_well_formed_values_are_served_as_given(api: Api) -> None:
    odd = [
        {**_event("2026-03-08T00:00:00.000Z"), "quantity": -1, "usd_value": 1.7e308},
        {**_event("2026-03-08T00:00:00.001Z"), "source": "bin\u0000ance", "price": 0},
    ]
    api.sim.set_kwery_day("BTC", D8, odd)
    resp = api.kwery(**WHOLE_D8)
    assert resp.json()["data"] == odd
    assert b'"quantity":-1,' in resp.content
    assert b'"source":"bin\\u0000ance"' in resp.content
