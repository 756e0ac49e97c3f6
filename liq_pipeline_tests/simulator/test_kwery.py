import base64
import dataclasses
import datetime as dt
import http.client
import re

import orjson
import pytest
import requests

from liq_pipeline.simulator import DEFAULT_TIERS, Simulator
from liq_pipeline.simulator.data import kwery_events
from liq_pipeline_tests.simulator.support import (
    BUSINESS,
    FREE,
    KWERY_HEADERS,
    NOW,
    PRO,
    Api,
    FakeMonotonic,
    clean_window,
    iso,
    ts,
)

D8 = dt.date(2026, 3, 8)
CRASH = dt.date(2025, 10, 10)


def _error(resp: requests.Response) -> tuple[int, str, str]:
    body = resp.json()
    assert list(body) == ["error"]
    return resp.status_code, body["error"]["code"], body["error"]["message"]


def _rows(pages: list[dict]) -> list[dict]:
    return [row for page in pages for row in page["data"]]


def _free_window_events() -> list[dict]:
    """BTC events in [NOW - 1 day, NOW), the Free plan's whole history."""
    lo, hi = NOW - dt.timedelta(days=1), NOW
    events = kwery_events("BTC", lo.date()) + kwery_events("BTC", hi.date())
    return [e for e in events if lo <= ts(e) < hi]


# -- success shape ------------------------------------------------------------------------------


def test_contract_example_request(api: Api) -> None:
    resp = api.kwery(
        symbol="BTC",
        start="2026-03-08T00:00:00Z",
        end="2026-03-09T00:00:00Z",
        side="long",
        limit=5,
    )
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json"
    assert {h: resp.headers[h] for h in KWERY_HEADERS} == {
        "X-Credits-Used": "35",
        "X-Credits-Remaining": "99999965",
        "X-Rows-Returned": "5",
        "X-Rows-Capped": "false",
    }
    body = resp.json()
    longs = [e for e in kwery_events("BTC", D8) if e["side"] == "long"]
    assert body["data"] == longs[:5]
    assert list(body) == ["data", "meta"]
    meta = body["meta"]
    assert list(meta) == ["symbol", "source", "returned", "next_cursor", "has_more"]
    assert (meta["symbol"], meta["source"], meta["returned"], meta["has_more"]) == (
        "BTC",
        "binance_futures",
        5,
        True,
    )
    assert re.fullmatch(r"[A-Za-z0-9_-]+", meta["next_cursor"])
    cursor = orjson.loads(base64.urlsafe_b64decode(meta["next_cursor"] + "=="))
    assert cursor["t"] == longs[4]["timestamp"]


def test_default_limit_is_100_and_default_side_all(api: Api) -> None:
    body = api.kwery(symbol="ETH", start="2026-03-08T00:00:00Z", end="2026-03-09T00:00:00Z").json()
    assert body["data"] == kwery_events("ETH", D8)[:100]
    assert body["meta"]["returned"] == 100


@pytest.mark.parametrize("limit", ["1", "1000"])
def test_limit_bounds_are_accepted(api: Api, limit: str) -> None:
    resp = api.kwery(symbol="BTC", start="2026-03-08T00:00:00Z", end="2026-03-09", limit=limit)
    assert resp.status_code == 200
    assert resp.json()["data"] == kwery_events("BTC", D8)[: int(limit)]


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, "", "demo-enterprise-key"])
def test_unauthorized(api: Api, key: str | None) -> None:
    resp = api.kwery(key, symbol="BTC")
    assert _error(resp) == (401, "unauthorized", "Missing or invalid api-key.")
    assert resp.headers["X-Credits-Used"] == "0"


@pytest.mark.parametrize(
    ("symbol", "message"),
    [
        (None, "The symbol parameter is required."),
        ("", "The symbol parameter is required."),
        ("btc", "Unknown symbol 'btc'."),
        ("BTCUSDT", "Unknown symbol 'BTCUSDT'."),
    ],
)
def test_invalid_symbol(api: Api, symbol: str | None, message: str) -> None:
    params = {} if symbol is None else {"symbol": symbol}
    resp = api.kwery(FREE, **params)
    assert _error(resp) == (400, "invalid_symbol", message)
    assert (resp.headers["X-Credits-Used"], resp.headers["X-Credits-Remaining"]) == ("0", "10000")


@pytest.mark.parametrize("side", ["LONG", "both", ""])
def test_invalid_side(api: Api, side: str) -> None:
    assert _error(api.kwery(symbol="BTC", side=side)) == (
        400,
        "invalid_side",
        "side must be one of long, short, all.",
    )


@pytest.mark.parametrize("limit", ["0", "1001", "-1", "abc", "10.5", "", "+5"])
def test_invalid_limit(api: Api, limit: str) -> None:
    assert _error(api.kwery(symbol="BTC", limit=limit)) == (
        400,
        "invalid_limit",
        "limit must be an integer from 1 to 1000.",
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"start": "yesterday"}, "start is not a valid ISO 8601 time."),
        ({"start": ""}, "start is not a valid ISO 8601 time."),
        ({"end": "2026-13-01T00:00:00Z"}, "end is not a valid ISO 8601 time."),
        (
            {"start": "2026-03-09T00:00:00Z", "end": "2026-03-08T23:59:59.999Z"},
            "start is after end.",
        ),
    ],
)
def test_invalid_time_range(api: Api, params: dict, message: str) -> None:
    assert _error(api.kwery(symbol="BTC", **params)) == (400, "invalid_time_range", message)


@pytest.mark.parametrize(
    ("key", "depth", "message"),
    [
        (FREE, dt.timedelta(days=1), "start is older than your plan's history depth (1 day)."),
        (PRO, dt.timedelta(days=30), "start is older than your plan's history depth (30 days)."),
    ],
)
def test_history_depth(
    api: Api, clock: FakeMonotonic, key: str, depth: dt.timedelta, message: str
) -> None:
    oldest = NOW - depth
    ok = api.kwery(key, symbol="SOL", start=iso(oldest), end=iso(oldest + dt.timedelta(hours=1)))
    assert ok.status_code == 200
    too_old = oldest - dt.timedelta(milliseconds=1)
    resp = api.kwery(key, symbol="SOL", start=iso(too_old), end=iso(oldest))
    assert _error(resp) == (400, "invalid_time_range", message)
    # Without start, the window starts at the plan's depth; an end before it is a bad range.
    resp = api.kwery(key, symbol="SOL", end=iso(oldest - dt.timedelta(seconds=1)))
    assert _error(resp) == (400, "invalid_time_range", "start is after end.")


def test_business_has_full_history(api: Api) -> None:
    resp = api.kwery(symbol="BTC", start="2019-09-01T00:00:00Z", end="2019-09-02T00:00:00Z")
    assert resp.status_code == 200
    assert resp.json()["data"] == kwery_events("BTC", dt.date(2019, 9, 1))[:100]
    before = api.kwery(symbol="BTC", start="2018-01-01T00:00:00Z", end="2019-09-01T00:00:00Z")
    assert before.json()["data"] == []


@pytest.mark.parametrize("key", [FREE, PRO])
def test_min_usd_needs_business(api: Api, key: str) -> None:
    resp = api.kwery(key, symbol="BTC", min_usd="1000")
    assert _error(resp) == (
        403,
        "tier_restricted",
        "The min_usd filter requires the Business plan.",
    )


@pytest.mark.parametrize("value", ["abc", "nan", "inf", ""])
def test_invalid_min_usd(api: Api, value: str) -> None:
    assert _error(api.kwery(symbol="BTC", min_usd=value)) == (
        400,
        "invalid_min_usd",
        "min_usd must be a finite number.",
    )


def test_unknown_path_and_method(api: Api, http: requests.Session) -> None:
    resp = http.get(f"{api.sim.url}/v1/liquidation", timeout=10)
    assert _error(resp) == (404, "not_found", "No route for '/v1/liquidation'.")
    resp = http.post(f"{api.sim.url}/v1/liquidations", timeout=10)
    assert _error(resp) == (405, "method_not_allowed", "Method not allowed.")


# -- filters and time windows --------------------------------------------------------------------


def test_min_usd_is_strictly_above(api: Api) -> None:
    events = kwery_events("BTC", D8)
    threshold = sorted(e["usd_value"] for e in events)[-40]  # an actual value: excluded
    pages = api.pages(
        symbol="BTC", start="2026-03-08T00:00:00Z", end="2026-03-09T00:00:00Z", min_usd=threshold
    )
    expected = [e for e in events if e["usd_value"] > threshold]
    assert len(expected) == 39
    assert _rows(pages) == expected


def test_side_and_min_usd_filters_page_across_days(api: Api) -> None:
    start, end = "2026-03-07T12:00:00Z", "2026-03-09T12:00:00Z"
    events = [
        e
        for d in (dt.date(2026, 3, 7), D8, dt.date(2026, 3, 9))
        for e in kwery_events("BTC", d)
        if start <= e["timestamp"] < end
    ]
    expected = [e for e in events if e["side"] == "short" and e["usd_value"] > 5_000]
    pages = api.pages(symbol="BTC", start=start, end=end, side="short", min_usd=5000, limit=97)
    assert _rows(pages) == expected
    assert [p["meta"]["returned"] for p in pages[:-1]] == [97] * (len(pages) - 1)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2026-03-08T03:00:00Z", "2026-03-08T05:00:00Z"),
        ("2026-03-08T03:00:00+00:00", "2026-03-08T05:00:00+00:00"),
        ("2026-03-08T03:00:00.000Z", "2026-03-08T05:00:00.000000+00:00"),
        ("2026-03-08T04:00:00+01:00", "2026-03-08T00:00:00-05:00"),
        ("2026-03-08T03:00:00", "2026-03-08T05:00:00"),
    ],
)
def test_time_formats(api: Api, start: str, end: str) -> None:
    expected = [
        e
        for e in kwery_events("BTC", D8)
        if "2026-03-08T03:00:00.000Z" <= e["timestamp"] < "2026-03-08T05:00:00.000Z"
    ]
    assert _rows(api.pages(symbol="BTC", start=start, end=end, limit=1000)) == expected


def test_start_inclusive_end_exclusive(api: Api) -> None:
    events = kwery_events("BTC", D8)
    k, start, end = clean_window(events, 1, first=200)
    body = api.kwery(symbol="BTC", start=start, end=end).json()
    assert body["data"] == [events[k]]
    assert api.kwery(symbol="BTC", start=start, end=start).json()["data"] == []
    # Microsecond precision: half a millisecond after the event excludes it.
    later = (ts(events[k]) + dt.timedelta(microseconds=500)).isoformat()
    assert api.kwery(symbol="BTC", start=later, end=end).json()["data"] == []


def test_only_events_before_now(api: Api) -> None:
    today = kwery_events("BTC", NOW.date())
    expected = [e for e in today if ts(e) < NOW]
    assert 0 < len(expected) < len(today)
    pages = api.pages(symbol="BTC", start="2026-03-10T00:00:00Z", end="2026-03-11", limit=1000)
    assert _rows(pages) == expected
    api.sim.set_now(NOW + dt.timedelta(hours=6))
    later = api.kwery(symbol="BTC", start="2026-03-10T00:00:00Z", end="2026-03-11", limit=1000)
    assert later.json()["meta"]["returned"] == sum(
        ts(e) < NOW + dt.timedelta(hours=6) for e in today
    )


# -- pagination --------------------------------------------------------------------------------


def test_empty_window(api: Api) -> None:
    events = kwery_events("BTC", D8)
    gaps = [
        i
        for i in range(1, len(events))
        if ts(events[i]) - ts(events[i - 1]) > dt.timedelta(seconds=2)
    ]
    i = gaps[0]
    start = iso(ts(events[i - 1]) + dt.timedelta(milliseconds=1))
    resp = api.kwery(symbol="BTC", start=start, end=events[i]["timestamp"], limit=1000)
    assert resp.json() == {
        "data": [],
        "meta": {
            "symbol": "BTC",
            "source": "binance_futures",
            "returned": 0,
            "next_cursor": None,
            "has_more": False,
        },
    }
    assert resp.headers["X-Credits-Used"] == "25"
    assert resp.headers["X-Rows-Returned"] == "0"


@pytest.mark.parametrize(
    ("n", "sizes"), [(1000, [1000]), (1001, [1000, 1]), (2501, [1000, 1000, 501])]
)
def test_exact_page_counts(api: Api, n: int, sizes: list[int]) -> None:
    events = kwery_events("BTC", CRASH)
    k, start, end = clean_window(events, n, first=5_000)
    pages = api.pages(symbol="BTC", start=start, end=end, limit=1000)
    assert [p["meta"]["returned"] for p in pages] == sizes
    assert [p["meta"]["has_more"] for p in pages] == [True] * (len(sizes) - 1) + [False]
    assert pages[-1]["meta"]["next_cursor"] is None
    assert _rows(pages) == events[k : k + n]
    assert api.sim.stats(BUSINESS) == {
        "requests": len(sizes),
        "ok_requests": len(sizes),
        "rows": n,
        "credits_used": 25 * len(sizes) + 2 * n,
    }


def test_same_millisecond_events_across_page_boundary(api: Api) -> None:
    events = kwery_events("BTC", CRASH)
    stamps = [e["timestamp"] for e in events]
    # the first run of at least 3 events sharing one millisecond, after index 1000
    j = next(
        i
        for i in range(1000, len(stamps) - 2)
        if stamps[i - 1] != stamps[i] == stamps[i + 1] == stamps[i + 2]
    )
    k = next(i for i in range(j - 10, 0, -1) if stamps[i] != stamps[i - 1])
    limit = j - k + 2  # page 1 ends on the second event of the run
    params = {"symbol": "BTC", "start": stamps[k], "end": "2025-10-11T00:00:00Z", "limit": limit}
    first = api.kwery(**params).json()
    second = api.kwery(**params, after=first["meta"]["next_cursor"]).json()
    assert first["data"] == events[k : k + limit]
    assert second["data"] == events[k + limit : k + 2 * limit]
    assert first["data"][-1]["timestamp"] == second["data"][0]["timestamp"] == stamps[j]
    # one row per page straight through the run
    singles = api.pages(
        symbol="BTC",
        start=stamps[j],
        end=iso(ts(events[j]) + dt.timedelta(milliseconds=1)),
        limit=1,
    )
    run = [e for e in events if e["timestamp"] == stamps[j]]
    assert len(run) >= 3
    assert _rows(singles) == run
    assert [p["meta"]["has_more"] for p in singles] == [True] * (len(run) - 1) + [False]


def test_limit_may_change_between_pages(api: Api) -> None:
    params = {"symbol": "XRP", "start": "2026-03-08T00:00:00Z", "end": "2026-03-09T00:00:00Z"}
    first = api.kwery(**params, limit=10).json()
    second = api.kwery(**params, limit=25, after=first["meta"]["next_cursor"]).json()
    assert first["data"] + second["data"] == kwery_events("XRP", D8)[:35]


def test_whole_day_via_pages_matches_kwery_events(api: Api) -> None:
    pages = api.pages(
        symbol="BTC", start="2026-03-08T00:00:00Z", end="2026-03-09T00:00:00Z", limit=300
    )
    assert [p["meta"]["returned"] for p in pages] == [300, 300, 228]
    assert _rows(pages) == kwery_events("BTC", D8)


def test_bad_cursors(api: Api) -> None:
    params = {"symbol": "BTC", "start": "2026-03-08T00:00:00Z", "end": "2026-03-09T00:00:00Z"}
    cursor = api.kwery(**params, limit=5).json()["meta"]["next_cursor"]
    malformed = (400, "invalid_cursor", "The after cursor is malformed.")
    assert _error(api.kwery(**params, after="not a cursor!")) == malformed
    assert _error(api.kwery(**params, after=cursor[:-3])) == malformed
    wrong_shape = base64.urlsafe_b64encode(b'{"v": 1, "q": "x"}').decode()
    assert _error(api.kwery(**params, after=wrong_shape)) == malformed
    other = (400, "invalid_cursor", "The after cursor belongs to a different query.")
    assert _error(api.kwery(**{**params, "symbol": "ETH"}, after=cursor)) == other
    assert _error(api.kwery(**params, side="long", after=cursor)) == other
    assert _error(api.kwery(**{**params, "end": "2026-03-08T12:00:00Z"}, after=cursor)) == other
    # The same instant written differently is the same query.
    same = {**params, "start": "2026-03-08T00:00:00+00:00", "side": "all"}
    assert api.kwery(**same, after=cursor).json()["data"] == kwery_events("BTC", D8)[5:105]


# -- plans: credits, row cap, rate limit ---------------------------------------------------------


def test_credit_headers_and_stats(api: Api) -> None:
    events = [e for e in kwery_events("BTC", NOW.date()) if ts(e) < NOW]
    k, start, end = clean_window(events, 3, first=10)
    first = api.kwery(FREE, symbol="BTC", start=start, end=end)
    assert first.json()["data"] == events[k : k + 3]
    assert (first.headers["X-Credits-Used"], first.headers["X-Credits-Remaining"]) == ("31", "9969")
    error = api.kwery(FREE, symbol="BTC", side="up")
    assert (error.headers["X-Credits-Used"], error.headers["X-Credits-Remaining"]) == ("0", "9969")
    empty = api.kwery(FREE, symbol="BTC", start=start, end=start)
    assert (empty.headers["X-Credits-Used"], empty.headers["X-Credits-Remaining"]) == ("25", "9944")
    assert api.sim.credits_remaining(FREE) == 9944
    assert api.sim.stats(FREE) == {"requests": 3, "ok_requests": 2, "rows": 3, "credits_used": 56}
    assert api.sim.stats(PRO) == {"requests": 0, "ok_requests": 0, "rows": 0, "credits_used": 0}
    api.sim.reset_stats()
    assert api.sim.credits_remaining(FREE) == 10_000
    assert api.sim.stats(FREE)["requests"] == 0


def test_credits_exhausted(http: requests.Session, clock: FakeMonotonic) -> None:
    tiers = {
        **DEFAULT_TIERS,
        "business": dataclasses.replace(DEFAULT_TIERS["business"], monthly_credits=100),
    }
    with Simulator(port=0, now=NOW, tiers=tiers, monotonic=clock) as sim:
        api = Api(sim, http)
        params = {"symbol": "BTC", "start": "2026-03-08T00:00:00Z", "end": "2026-03-09T00:00:00Z"}
        assert api.kwery(**params, limit=10).headers["X-Credits-Remaining"] == "55"
        last = api.kwery(**params, limit=50)
        assert (last.status_code, last.headers["X-Credits-Used"]) == (200, "125")
        assert last.headers["X-Credits-Remaining"] == "0"
        resp = api.kwery(**params, limit=1)
        assert _error(resp) == (
            403,
            "credits_exhausted",
            "No credits remain in your billing cycle.",
        )
        assert resp.headers["X-Credits-Remaining"] == "0"
        assert sim.stats(BUSINESS)["credits_used"] == 170
        assert sim.credits_remaining(BUSINESS) == 0


def test_free_row_cap(api: Api) -> None:
    events = _free_window_events()
    assert len(events) == 1162
    resp = api.kwery(FREE, symbol="BTC", limit=1000)  # default window: the whole Free history
    body = resp.json()
    assert body["data"] == events[:1000]
    assert body["meta"]["has_more"] is False
    assert body["meta"]["next_cursor"] is None
    assert resp.headers["X-Rows-Capped"] == "true"
    assert resp.headers["X-Credits-Used"] == "2025"


def test_free_row_cap_over_several_pages(api: Api, clock: FakeMonotonic) -> None:
    events = _free_window_events()
    start, end = iso(NOW - dt.timedelta(days=1)), iso(NOW)
    caps, pages, after = [], [], None
    while True:
        resp = api.kwery(
            FREE,
            symbol="BTC",
            start=start,
            end=end,
            limit=400,
            **({"after": after} if after else {}),
        )
        clock.advance(1.0)  # stay inside the Free rate limit
        caps.append(resp.headers["X-Rows-Capped"])
        pages.append(resp.json())
        after = pages[-1]["meta"]["next_cursor"]
        if after is None:
            break
    assert [p["meta"]["returned"] for p in pages] == [400, 400, 200]
    assert caps == ["false", "false", "true"]
    assert [p["meta"]["has_more"] for p in pages] == [True, True, False]
    assert _rows(pages) == events[:1000]
    assert api.sim.credits_remaining(FREE) == 10_000 - (3 * 25 + 2 * 1000)


def test_result_of_exactly_the_cap_is_not_capped(
    http: requests.Session, clock: FakeMonotonic
) -> None:
    events = kwery_events("BTC", D8)
    k, start, end = clean_window(events, 150, first=100)
    tiers = {
        **DEFAULT_TIERS,
        "business": dataclasses.replace(DEFAULT_TIERS["business"], row_cap=150),
    }
    with Simulator(port=0, now=NOW, tiers=tiers, monotonic=clock) as sim:
        api = Api(sim, http)
        exact = api.kwery(symbol="BTC", start=start, end=end, limit=1000)
        assert (exact.json()["meta"]["returned"], exact.headers["X-Rows-Capped"]) == (150, "false")
        one_more = iso(ts(events[k + 150]) + dt.timedelta(milliseconds=1))
        first = api.kwery(symbol="BTC", start=start, end=one_more, limit=100)
        second = api.kwery(
            symbol="BTC",
            start=start,
            end=one_more,
            limit=100,
            after=first.json()["meta"]["next_cursor"],
        )
        assert (first.headers["X-Rows-Capped"], second.headers["X-Rows-Capped"]) == (
            "false",
            "true",
        )
        assert second.json()["meta"] == {
            "symbol": "BTC",
            "source": "binance_futures",
            "returned": 50,
            "next_cursor": None,
            "has_more": False,
        }
        assert first.json()["data"] + second.json()["data"] == events[k : k + 150]


def test_rate_limit_token_bucket(api: Api, clock: FakeMonotonic) -> None:
    assert (DEFAULT_TIERS["free"].rate_per_s, DEFAULT_TIERS["free"].burst) == (2.0, 5.0)
    for _ in range(5):
        assert api.kwery(FREE, symbol="BTC", limit=1).status_code == 200
    resp = api.kwery(FREE, symbol="BTC", limit=1)
    assert _error(resp) == (429, "rate_limited", "You have exceeded your plan's request rate.")
    assert (resp.headers["Retry-After"], resp.headers["X-Credits-Used"]) == ("1", "0")
    assert api.kwery(PRO, symbol="BTC", limit=1).status_code == 200  # buckets are per key
    clock.advance(0.5)  # one token back at 2 per second
    assert api.kwery(FREE, symbol="BTC", limit=1).status_code == 200
    assert api.kwery(FREE, symbol="BTC", limit=1).status_code == 429
    assert api.sim.stats(FREE) == {"requests": 8, "ok_requests": 6, "rows": 6, "credits_used": 162}


def test_rate_limit_configurable(http: requests.Session, clock: FakeMonotonic) -> None:
    tiers = {
        **DEFAULT_TIERS,
        "business": dataclasses.replace(DEFAULT_TIERS["business"], rate_per_s=0.1, burst=1.0),
    }
    with Simulator(port=0, now=NOW, tiers=tiers, monotonic=clock) as sim:
        api = Api(sim, http)
        assert api.kwery(symbol="BTC").status_code == 200
        resp = api.kwery(symbol="BTC")
        assert (resp.status_code, resp.headers["Retry-After"]) == (429, "10")
        clock.advance(7.5)
        assert api.kwery(symbol="BTC").headers["Retry-After"] == "3"
        clock.advance(2.5)
        assert api.kwery(symbol="BTC").status_code == 200


def test_business_defaults_do_not_throttle_a_sequential_client(api: Api) -> None:
    business = DEFAULT_TIERS["business"]
    assert (business.rate_per_s, business.burst, business.row_cap) == (1000.0, 1000.0, None)
    # 60 pages of the 60,000-event crash day back to back, clock frozen: never a 429.
    pages = api.pages(
        symbol="BTC", start="2025-10-10T00:00:00Z", end="2025-10-11T00:00:00Z", limit=1000
    )
    assert sum(p["meta"]["returned"] for p in pages) == 60_000


def test_keep_alive_reuses_one_connection(sim: Simulator) -> None:
    conn = http.client.HTTPConnection(sim.url.removeprefix("http://"), timeout=10)
    try:
        path = "/v1/liquidations?api-key=demo-business-key&symbol=BTC&limit=1000&start=2026-03-08"
        conn.request("GET", path)
        first = conn.getresponse()
        assert len(first.read()) == int(first.headers["Content-Length"])
        sock = conn.sock
        conn.request("GET", path + "&side=long")
        second = conn.getresponse()
        assert second.status == 200 and len(second.read()) > 0
        assert conn.sock is sock and sock is not None
    finally:
        conn.close()
