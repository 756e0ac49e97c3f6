"""KweryClient against the simulator over loopback HTTP: pagination, errors, faults, credits."""

import datetime as dt
import math
import random
from typing import Any

import pandas as pd
import pytest
import requests

from liq_pipeline.clients import KweryClient, KweryStats
from liq_pipeline.clients.errors import (
    CreditBudgetExceeded,
    KweryError,
    KweryInvalidSide,
    KweryInvalidSymbol,
    KweryInvalidTimeRange,
    KweryProtocolError,
    KweryRateLimited,
    KweryRowsCapped,
    KweryServerError,
    KweryTierRestricted,
    KweryUnauthorized,
)
from liq_pipeline.clients.kwery import kwery_frame
from liq_pipeline.simulator import KweryTier, Simulator
from liq_pipeline_tests.clients.helpers import (
    BUSINESS_KEY,
    FIXED_NOW,
    FREE_KEY,
    PRO_KEY,
    SENTINEL,
    at_ms,
    day_events,
    ts_ms,
    window,
)

D18 = dt.date(2026, 3, 18)
D19 = dt.date(2026, 3, 19)
EVENTS = day_events("BTC", D18, D19)  # 2 days, ~2750 events
DAY19 = day_events("BTC", D19, D19)
DAY19_START = dt.datetime(2026, 3, 19, tzinfo=dt.UTC)
DAY19_END = dt.datetime(2026, 3, 20, tzinfo=dt.UTC)


class RecordingSession(requests.Session):
    """A real session that remembers the ``after`` cursor of every request it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.afters: list[str | None] = []

    def get(self, url: str | bytes, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.afters.append(kwargs["params"].get("after"))
        return super().get(url, **kwargs)


def kwery(sim: Any, key: str = BUSINESS_KEY, sleeps: list[float] | None = None, **kw: Any):
    kw.setdefault("rng", random.Random(5))
    kw.setdefault("timeout", 10.0)
    return KweryClient(key, sim.url, sleep=(sleeps if sleeps is not None else []).append, **kw)


def expected_credits(rows: int) -> int:
    return 25 * max(1, math.ceil(rows / 1000)) + 2 * rows


def assert_accounting(sim: Any, kc: KweryClient, stats: KweryStats, rows: int, key: str) -> None:
    """Client stats and the simulator's ledger agree, and match 25/request + 2/row."""
    pages = max(1, math.ceil(rows / 1000))
    assert (stats.pages, stats.rows) == (pages, rows)
    assert stats.credits_used == expected_credits(rows)
    assert stats.requests == pages + stats.retries
    assert sim.stats(key) == {
        "requests": stats.requests,
        "ok_requests": pages,
        "rows": rows,
        "credits_used": expected_credits(rows),
    }
    assert stats.credits_remaining == sim.credits_remaining(key)
    assert kc.credits_used == stats.credits_used


def assert_same_rows(frame: pd.DataFrame, events: list[dict]) -> None:
    assert len(frame) == len(events)
    assert frame["usd_value"].sum() == pytest.approx(sum(e["usd_value"] for e in events))
    assert list(frame["timestamp"].astype("int64")) == [ts_ms(e["timestamp"]) for e in events]
    pd.testing.assert_frame_equal(frame, kwery_frame(events))


def test_a_whole_day_is_exactly_the_simulators_day(fresh_sim: Any) -> None:
    kc = kwery(fresh_sim)
    result = kc.fetch("BTC", DAY19_START, DAY19_END)
    assert_same_rows(result.frame, DAY19)
    assert_accounting(fresh_sim, kc, result.stats, len(DAY19), BUSINESS_KEY)
    assert result.stats.retries == 0


@pytest.mark.parametrize("count", [1, 999, 1000, 1001, 2000, 2501])
def test_pagination_edges(fresh_sim: Any, count: int) -> None:
    i, j = window(EVENTS, count)
    start, end = at_ms(ts_ms(EVENTS[i]["timestamp"])), at_ms(ts_ms(EVENTS[j]["timestamp"]))
    kc = kwery(fresh_sim)
    pages = list(kc.iter_pages("BTC", start, end))
    frame = pd.concat([p.frame for p in pages], ignore_index=True)
    assert_same_rows(frame, EVENTS[i:j])
    assert frame["timestamp"].iloc[0] == start  # an event exactly at start is included
    assert (frame["timestamp"] < end).all()  # ... and one exactly at end is excluded
    assert [len(p.frame) for p in pages] == [min(1000, count - k) for k in range(0, count, 1000)]
    assert_accounting(fresh_sim, kc, pages[-1].stats, count, BUSINESS_KEY)


def test_zero_rows_costs_one_request(fresh_sim: Any) -> None:
    ms = [ts_ms(e["timestamp"]) for e in DAY19]
    gap = next(k for k in range(len(ms) - 1) if ms[k + 1] - ms[k] > 1)
    kc = kwery(fresh_sim)
    result = kc.fetch("BTC", at_ms(ms[gap] + 1), at_ms(ms[gap + 1]))
    assert len(result.frame) == 0
    assert [str(t) for t in result.frame.dtypes] == [str(t) for t in kwery_frame(DAY19).dtypes]
    assert_accounting(fresh_sim, kc, result.stats, 0, BUSINESS_KEY)


def test_same_millisecond_events_across_a_page_boundary(fresh_sim: Any) -> None:
    i, j = window(EVENTS, 1500, boundary_tie=True)
    assert EVENTS[i + 999]["timestamp"] == EVENTS[i + 1000]["timestamp"]
    start, end = at_ms(ts_ms(EVENTS[i]["timestamp"])), at_ms(ts_ms(EVENTS[j]["timestamp"]))
    kc = kwery(fresh_sim)
    pages = list(kc.iter_pages("BTC", start, end))
    assert [len(p.frame) for p in pages] == [1000, 500]
    assert pages[0].frame["timestamp"].iloc[-1] == pages[1].frame["timestamp"].iloc[0]
    assert_same_rows(pd.concat([p.frame for p in pages], ignore_index=True), EVENTS[i:j])
    assert_accounting(fresh_sim, kc, pages[-1].stats, 1500, BUSINESS_KEY)


@pytest.mark.parametrize("side", ["long", "short"])
def test_side_filter(fresh_sim: Any, side: str) -> None:
    expected = [e for e in DAY19 if e["side"] == side]
    result = kwery(fresh_sim).fetch("BTC", DAY19_START, DAY19_END, side=side)
    assert_same_rows(result.frame, expected)
    assert result.stats.credits_used == expected_credits(len(expected))


def test_min_usd_on_business_returns_rows_above_the_threshold(fresh_sim: Any) -> None:
    values = sorted(e["usd_value"] for e in DAY19)
    threshold = values[len(values) // 2]  # the value of an actual event: "above" excludes it
    expected = [e for e in DAY19 if e["usd_value"] > threshold]
    result = kwery(fresh_sim).fetch("BTC", DAY19_START, DAY19_END, min_usd=threshold)
    assert_same_rows(result.frame, expected)


def test_pro_key_reads_recent_days(fresh_sim: Any) -> None:
    result = kwery(fresh_sim, PRO_KEY).fetch("BTC", DAY19_START, DAY19_END)
    assert len(result.frame) == len(DAY19)


@pytest.mark.parametrize(
    ("key", "call", "cls", "status", "code", "hint"),
    [
        (BUSINESS_KEY, {"symbol": "NOPE"}, KweryInvalidSymbol, 400, "invalid_symbol", "BTC or ETH"),
        (BUSINESS_KEY, {"symbol": ""}, KweryInvalidSymbol, 400, "invalid_symbol", "BTC or ETH"),
        (BUSINESS_KEY, {"side": "both"}, KweryInvalidSide, 400, "invalid_side", "long, short, all"),
        (
            BUSINESS_KEY,
            {"start": DAY19_END, "end": DAY19_START},
            KweryInvalidTimeRange,
            400,
            "invalid_time_range",
            "start/end may be reversed, or the range exceeds your plan's history depth (Free "
            "1 day, Pro 30 days, Business full history); use a Business key for backfills",
        ),
        (
            FREE_KEY,
            {
                "start": dt.datetime(2026, 3, 10, tzinfo=dt.UTC),
                "end": dt.datetime(2026, 3, 11, tzinfo=dt.UTC),
            },
            KweryInvalidTimeRange,
            400,
            "invalid_time_range",
            "(Free 1 day, Pro 30 days, Business full history)",
        ),
        (
            PRO_KEY,
            {
                "start": dt.datetime(2025, 12, 1, tzinfo=dt.UTC),
                "end": dt.datetime(2025, 12, 2, tzinfo=dt.UTC),
            },
            KweryInvalidTimeRange,
            400,
            "invalid_time_range",
            "Pro 30 days",
        ),
        (SENTINEL, {}, KweryUnauthorized, 401, "unauthorized", "check KWERY_API_KEY"),
        (PRO_KEY, {"min_usd": 100000}, KweryTierRestricted, 403, "tier_restricted", "Business"),
    ],
)
def test_documented_errors_are_typed(
    fresh_sim: Any,
    key: str,
    call: dict,
    cls: type,
    status: int,
    code: str,
    hint: str,
) -> None:
    args = {"symbol": "BTC", "start": DAY19_START, "end": DAY19_END} | call
    symbol, start, end = args.pop("symbol"), args.pop("start"), args.pop("end")
    kc = kwery(fresh_sim, key)
    with pytest.raises(cls) as info:
        kc.fetch(symbol, start, end, **args)
    exc = info.value
    assert (type(exc), exc.status, exc.code) == (cls, status, code)
    assert str(exc).startswith(
        f"Kwery API error {status} {code} for GET {fresh_sim.url}/v1/liquidations?api-key=***&"
    )
    assert hint in str(exc)
    assert "Response body: " in str(exc)
    assert kc.requests == 1  # errors are not retried


def test_wrong_base_url_is_a_plain_kwery_error(fresh_sim: Any) -> None:
    kc = KweryClient(BUSINESS_KEY, fresh_sim.url + "/nope", sleep=[].append)
    with pytest.raises(KweryError) as info:
        kc.fetch("BTC", DAY19_START, DAY19_END)
    assert type(info.value) is KweryError
    assert info.value.status == 404
    assert "check the base URL (KWERY_BASE_URL)" in str(info.value)


# --- faults -------------------------------------------------------------------------------


def test_429_retry_after_is_honoured(fresh_sim: Any, sleeps: list[float]) -> None:
    fresh_sim.inject("429", count=2, retry_after="2")
    kc = kwery(fresh_sim, sleeps=sleeps)
    result = kc.fetch("BTC", DAY19_START, DAY19_END)
    assert sleeps == [2.0, 2.0]
    assert result.stats.retries == 2
    assert_same_rows(result.frame, DAY19)
    assert_accounting(fresh_sim, kc, result.stats, len(DAY19), BUSINESS_KEY)


@pytest.mark.parametrize("retry_after", ["0", "abc", "99999", None])
def test_429_without_a_usable_hint_backs_off(
    fresh_sim: Any, sleeps: list[float], retry_after: str | None
) -> None:
    fresh_sim.inject("429", count=3, retry_after=retry_after)
    kc = kwery(fresh_sim, sleeps=sleeps, backoff_base=0.5, backoff_cap=1.0)
    result = kc.fetch("BTC", DAY19_START, DAY19_END)
    assert len(sleeps) == 3
    assert all(0.0 <= wait <= min(1.0, 0.5 * 2**k) for k, wait in enumerate(sleeps))
    assert_accounting(fresh_sim, kc, result.stats, len(DAY19), BUSINESS_KEY)


def test_429_exhausted(fresh_sim: Any, sleeps: list[float]) -> None:
    fresh_sim.inject("429", count=10, retry_after="1")
    kc = kwery(fresh_sim, sleeps=sleeps, max_attempts=3)
    with pytest.raises(KweryRateLimited) as info:
        kc.fetch("BTC", DAY19_START, DAY19_END)
    assert sleeps == [1.0, 1.0]
    assert info.value.status == 429
    assert " after 3 attempts: Kwery rate-limited every attempt" in str(info.value)
    assert fresh_sim.stats(BUSINESS_KEY)["credits_used"] == 0


@pytest.mark.parametrize("kind", ["500", "502", "503", "drop", "429"])
@pytest.mark.parametrize("skip", [0, 1, 2])
def test_a_failed_page_is_retried_alone(fresh_sim: Any, kind: str, skip: int) -> None:
    """Faults on page 1, 2 or 3 of a 3-page range: that page (its cursor) is re-sent, nothing
    else; no row is lost or doubled and no credit is spent twice."""
    i, j = window(EVENTS, 2501)
    start, end = at_ms(ts_ms(EVENTS[i]["timestamp"])), at_ms(ts_ms(EVENTS[j]["timestamp"]))
    fresh_sim.inject(kind, count=2, skip=skip, retry_after="1")
    session = RecordingSession()
    sleeps: list[float] = []
    kc = kwery(fresh_sim, sleeps=sleeps, session=session)
    result = kc.fetch("BTC", start, end)
    assert_same_rows(result.frame, EVENTS[i:j])
    assert result.stats.retries == 2 and len(sleeps) == 2
    assert_accounting(fresh_sim, kc, result.stats, 2501, BUSINESS_KEY)
    cursors = session.afters
    assert len(cursors) == 5
    assert cursors[skip] == cursors[skip + 1] == cursors[skip + 2]  # the same page, 3 times
    distinct = [c for k, c in enumerate(cursors) if k == 0 or c != cursors[k - 1]]
    assert len(distinct) == 3 and len(set(distinct)) == 3 and distinct[0] is None


@pytest.mark.parametrize("kind", ["500", "502", "503", "drop"])
def test_server_errors_exhausted(fresh_sim: Any, kind: str, sleeps: list[float]) -> None:
    fresh_sim.inject(kind, count=10)
    kc = kwery(fresh_sim, sleeps=sleeps, max_attempts=4)
    with pytest.raises(KweryServerError) as info:
        kc.fetch("BTC", DAY19_START, DAY19_END)
    assert len(sleeps) == 3
    assert kc.requests == 4 == fresh_sim.stats(BUSINESS_KEY)["requests"]
    message = str(info.value)
    if kind == "drop":
        assert info.value.status is None
        assert "failed after 4 attempts: ChunkedEncodingError" in message
    else:
        assert info.value.status == int(kind)
        assert message.startswith(f"Kwery API error {kind} ")
        assert " after 4 attempts: Kwery kept failing; retry the run later." in message


def test_malformed_json_fails_at_once(fresh_sim: Any, sleeps: list[float]) -> None:
    fresh_sim.inject("malformed_json", skip=1)
    kc = kwery(fresh_sim, sleeps=sleeps)
    with pytest.raises(KweryProtocolError) as info:
        kc.fetch("BTC", DAY19_START, DAY19_END)
    assert str(info.value).startswith(f"Kwery page 2 of GET {fresh_sim.url}/v1/liquidations?")
    assert ": the body is not valid JSON. Body starts: " in str(info.value)
    assert (kc.requests, sleeps) == (2, [])  # no retry loop spending credits
    assert fresh_sim.stats(BUSINESS_KEY)["requests"] == 2


def test_rows_capped_fails(fresh_sim: Any) -> None:
    fresh_sim.inject("capped")
    kc = kwery(fresh_sim)
    with pytest.raises(KweryRowsCapped) as info:
        kc.fetch("BTC", DAY19_START, DAY19_END)
    assert "X-Rows-Capped is true, the plan's row limit truncated the result" in str(info.value)
    assert "use a higher tier or fetch a smaller range" in str(info.value)
    assert kc.requests == 1


@pytest.mark.parametrize("skip", [0, 1])
def test_repeated_cursor_fails(fresh_sim: Any, skip: int) -> None:
    fresh_sim.inject("repeat_cursor", skip=skip)
    session = RecordingSession()
    kc = kwery(fresh_sim, session=session)
    with pytest.raises(KweryProtocolError, match=r"returned the cursor .* a second time"):
        kc.fetch("BTC", DAY19_START - dt.timedelta(days=1), DAY19_END)  # 3 pages
    # stopped as soon as the cursor came back: no cursor was ever sent twice, no page refetched
    assert len(session.afters) == len(set(session.afters)) == kc.requests <= 3


def test_has_more_without_cursor_fails(fresh_sim: Any) -> None:
    fresh_sim.inject("more_no_cursor")
    kc = kwery(fresh_sim)
    with pytest.raises(KweryProtocolError, match="has_more is true but next_cursor is None"):
        kc.fetch("BTC", DAY19_START, DAY19_END)
    assert kc.requests == 1


def test_bad_rows_fail_naming_row_and_field(fresh_sim: Any) -> None:
    fresh_sim.inject("bad_rows")
    kc = kwery(fresh_sim)
    with pytest.raises(KweryProtocolError) as info:
        kc.fetch("BTC", DAY19_START, DAY19_END)
    assert "field 'usd_value' is missing" in str(
        info.value
    ) or "field 'quantity' must be a number, got str" in str(info.value)
    assert kc.requests == 1


def test_page_cap(fresh_sim: Any) -> None:
    kc = kwery(fresh_sim, max_pages=1)
    with pytest.raises(KweryProtocolError, match="more than max_pages=1 pages"):
        kc.fetch("BTC", DAY19_START, DAY19_END)
    assert kc.requests == 1


def test_credit_budget_stops_before_overspending(fresh_sim: Any) -> None:
    # the first page costs 2025, the second could cost 2025 more: 4000 allows only one
    kc = kwery(fresh_sim, credit_budget=4000)
    with pytest.raises(CreditBudgetExceeded, match="2025 of 4000 credits used"):
        kc.fetch("BTC", DAY19_START, DAY19_END)
    assert fresh_sim.stats(BUSINESS_KEY)["requests"] == 1
    assert fresh_sim.stats(BUSINESS_KEY)["credits_used"] == 2025
    # enough for the worst case of both pages
    kc = kwery(fresh_sim, credit_budget=4050)
    assert len(kc.fetch("BTC", DAY19_START, DAY19_END).frame) == len(DAY19)


# --- the simulator's real plan limits ------------------------------------------------------


def test_free_plan_rate_limit_burst_is_waited_out(fresh_sim: Any, sleeps: Any) -> None:
    """Free plan: 2 requests/s, burst 5. Ten quick requests run into real 429s; the client
    waits the Retry-After each time (on the virtual clock) and gets every page."""
    kc = kwery(fresh_sim, FREE_KEY, sleeps=sleeps)
    start = FIXED_NOW - dt.timedelta(hours=1)
    for _ in range(10):
        assert kc.fetch("BTC", start, FIXED_NOW, limit=1).stats.pages >= 1
    assert sleeps and set(sleeps) == {1.0}  # the simulator's Retry-After
    assert kc.retries == len(sleeps)
    stats = fresh_sim.stats(FREE_KEY)
    assert stats["requests"] == kc.requests and stats["ok_requests"] == kc.requests - kc.retries


def test_free_plan_row_cap_is_not_stored_partially(fresh_sim: Any) -> None:
    kc = kwery(fresh_sim, FREE_KEY)
    with pytest.raises(KweryRowsCapped):
        kc.fetch("BTC", FIXED_NOW - dt.timedelta(hours=23), FIXED_NOW)
    assert kc.credits_used == fresh_sim.stats(FREE_KEY)["credits_used"] == 2025


def test_an_undocumented_error_code_is_the_base_error() -> None:
    """Out of credits: the simulator answers 403 credits_exhausted, a code the contract does
    not list; the client must not call it tier_restricted."""
    tiny = KweryTier(
        name="tiny",
        history=None,
        min_usd=True,
        row_cap=None,
        monthly_credits=200,
        rate_per_s=1000.0,
        burst=1000.0,
    )
    with Simulator(
        port=0, now=FIXED_NOW, tiers={"tiny": tiny}, kwery_keys={"tiny-key": "tiny"}
    ) as own:
        kc = KweryClient("tiny-key", own.url, sleep=[].append)
        kc.fetch("BTC", DAY19_START, DAY19_START + dt.timedelta(hours=2))
        with pytest.raises(KweryError) as info:
            kc.fetch("BTC", DAY19_START, DAY19_START + dt.timedelta(hours=2))
    assert type(info.value) is KweryError
    assert (info.value.status, info.value.code) == (403, "credits_exhausted")
    assert str(info.value).startswith("Kwery API error 403 credits_exhausted for GET ")


def test_a_control_character_in_text_names_the_first_bad_row(fresh_sim: Any) -> None:
    fresh_sim.inject("bad_value", api="kwery", field="source", value="bin\u0007ance", row=7)
    with pytest.raises(KweryProtocolError) as info:
        kwery(fresh_sim).fetch("BTC", DAY19_START, DAY19_END)
    assert "row 7: field 'source' contains the control character U+0007: 'bin\\x07ance'" in str(
        info.value
    )
