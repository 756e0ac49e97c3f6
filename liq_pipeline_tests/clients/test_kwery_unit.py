"""KweryClient without a network: page parsing, request parameters, guards (scripted session)."""

import datetime as dt
import traceback
from typing import Any

import numpy as np
import pandas as pd
import pytest

from liq_pipeline.clients import KWERY_COLUMNS, KweryClient
from liq_pipeline.clients.errors import (
    CreditBudgetExceeded,
    KweryError,
    KweryProtocolError,
    KweryRowsCapped,
)
from liq_pipeline.clients.kwery import empty_kwery_frame, kwery_frame
from liq_pipeline_tests.clients.helpers import SENTINEL, FakeSession, make_response

START = dt.datetime(2026, 3, 8, tzinfo=dt.UTC)
END = dt.datetime(2026, 3, 9, tzinfo=dt.UTC)
EXPECTED_DTYPES = {
    "timestamp": "datetime64[ms, UTC]",
    "symbol": "str",
    "source": "str",
    "side": "str",
    "quantity": "float64",
    "price": "float64",
    "avg_price": "float64",
    "usd_value": "float64",
}


def row(ts: str = "2026-03-08T03:14:22.431Z", **overrides: Any) -> dict[str, Any]:
    values = {
        "timestamp": ts,
        "symbol": "BTC",
        "source": "binance_futures",
        "side": "long",
        "quantity": 0.284,
        "price": 92150.0,
        "avg_price": 92145.3,
        "usd_value": 26169.27,
    }
    values.update(overrides)
    return values


def page(rows: list[dict], *, has_more: bool = False, cursor: str | None = None, **headers: str):
    body = {"data": rows, "meta": {"symbol": "BTC", "returned": len(rows), "has_more": has_more}}
    body["meta"]["next_cursor"] = cursor
    used = 25 + 2 * len(rows)
    all_headers = {"X-Credits-Used": str(used), "X-Credits-Remaining": "9000"}
    all_headers.update({k.replace("_", "-"): v for k, v in headers.items()})
    return make_response(200, body, all_headers)


def client(script: list[Any], sleeps: list[float] | None = None, **kwargs: Any) -> KweryClient:
    return KweryClient(
        SENTINEL,
        "http://kwery.test/",
        session=FakeSession(script),  # type: ignore[arg-type]
        sleep=(sleeps if sleeps is not None else []).append,
        **kwargs,
    )


def test_frame_dtypes_and_values_exactly_as_returned() -> None:
    rows = [
        row("2026-03-08T03:14:22.891Z", side="short", quantity=2),
        row("2026-03-08T03:14:22.431Z"),  # not sorted, and kept that way
        row("2026-03-08T03:14:22.431Z"),  # a duplicate, kept
    ]
    frame = kwery_frame(rows)
    assert tuple(frame.columns) == KWERY_COLUMNS
    assert {c: str(t) for c, t in frame.dtypes.items()} == EXPECTED_DTYPES
    assert list(frame["timestamp"].astype("int64")) == [1772939662891, 1772939662431, 1772939662431]
    assert list(frame["side"]) == ["short", "long", "long"]
    assert frame["quantity"].tolist() == [2.0, 0.284, 0.284]
    assert frame["usd_value"].dtype == np.float64


def test_empty_frame_has_the_same_dtypes() -> None:
    for frame in (empty_kwery_frame(), kwery_frame([])):
        assert len(frame) == 0
        assert {c: str(t) for c, t in frame.dtypes.items()} == EXPECTED_DTYPES


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"usd_value": None}, "row 1: field 'usd_value' must be a number, got NoneType None"),
        ({"quantity": "0.5"}, "row 1: field 'quantity' must be a number, got str '0.5'"),
        ({"price": True}, "row 1: field 'price' must be a number, got bool True"),
        ({"symbol": 5}, "row 1: field 'symbol' must be a string, got int 5"),
        ({"side": "both"}, "row 1: field 'side' must be 'long' or 'short', got 'both'"),
        (
            {"timestamp": "yesterday"},
            "row 1: field 'timestamp' is not an ISO 8601 time: 'yesterday'",
        ),
        (
            {"timestamp": "2026-03-08T03:14:22.4311Z"},
            "row 1: field 'timestamp' has sub-millisecond precision",
        ),
    ],
)
def test_first_bad_row_and_field_are_named(bad: dict, message: str) -> None:
    with pytest.raises(KweryProtocolError) as info:
        kwery_frame([row(), row(**bad), row(**bad)])
    assert str(info.value).startswith(message)


def test_missing_field_and_non_object_rows() -> None:
    missing = row()
    del missing["avg_price"]
    with pytest.raises(KweryProtocolError, match=r"^row 2: field 'avg_price' is missing$"):
        kwery_frame([row(), row(), missing])
    with pytest.raises(KweryProtocolError, match=r"^row 0 is a JSON list, not an object$"):
        kwery_frame([[1, 2]])


def test_first_request_and_cursor_requests_send_the_same_parameters() -> None:
    kc = client(
        [
            page([row()], has_more=True, cursor="c1"),
            page([row("2026-03-08T05:00:00.000Z")], has_more=True, cursor="c2"),
            page([], has_more=False, cursor=None),
        ]
    )
    start = dt.datetime(2026, 3, 8, 1, 0, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    result = kc.fetch("BTC", start, END, side="long", min_usd=100000)
    calls = kc._http.session.calls
    base = {
        "api-key": SENTINEL,
        "symbol": "BTC",
        "start": "2026-03-08T00:00:00.124Z",  # converted to UTC, rounded up to the next ms
        "end": "2026-03-09T00:00:00.000Z",
        "side": "long",
        "limit": "1000",
        "min_usd": "100000",
    }
    assert [c[0] for c in calls] == ["http://kwery.test/v1/liquidations"] * 3
    assert [c[1] for c in calls] == [base, {**base, "after": "c1"}, {**base, "after": "c2"}]
    assert len(result.frame) == 2
    stats = result.stats
    assert (stats.requests, stats.pages, stats.rows, stats.retries) == (3, 3, 2, 0)
    assert (stats.credits_used, stats.credits_remaining) == (27 + 27 + 25, 9000)
    assert kc.credits_used == 79


def test_pages_yield_cumulative_stats() -> None:
    kc = client(
        [page([row(), row()], has_more=True, cursor="c1"), page([row()], X_Credits_Remaining="7")]
    )
    pages = list(kc.iter_pages("BTC", START, END))
    assert [len(p.frame) for p in pages] == [2, 1]
    assert [(p.stats.pages, p.stats.rows, p.stats.credits_used) for p in pages] == [
        (1, 2, 29),
        (2, 3, 56),
    ]
    assert pages[-1].stats.credits_remaining == 7


def test_missing_credit_header_is_counted_as_zero_and_noted() -> None:
    response = page([row()])
    del response.headers["X-Credits-Used"]
    stats = client([response]).fetch("BTC", START, END).stats
    assert (stats.credits_used, stats.pages_without_credits_header) == (0, 1)


def test_local_argument_checks() -> None:
    kc = client([])
    with pytest.raises(ValueError, match="start must be a timezone-aware datetime"):
        kc.iter_pages("BTC", dt.datetime(2026, 3, 8), END)
    with pytest.raises(ValueError, match="end must be a timezone-aware"):
        kc.fetch("BTC", START, dt.datetime(2026, 3, 9))
    for limit in (0, 1001, True):
        with pytest.raises(ValueError, match=r"limit must be an integer in 1\.\.1000"):
            kc.iter_pages("BTC", START, END, limit=limit)
    with pytest.raises(TypeError, match="min_usd must be a number"):
        kc.iter_pages("BTC", START, END, min_usd="5")  # type: ignore[arg-type]
    assert kc._http.session.calls == []


def test_timestamps_outside_the_requested_range_are_refused() -> None:
    kc = client([page([row(), row("2026-03-09T00:00:00.000Z")])])
    with pytest.raises(KweryProtocolError) as info:
        kc.fetch("BTC", START, END)
    assert "row 1: timestamp 2026-03-09T00:00:00+00:00 is outside the requested " in str(info.value)
    assert "[2026-03-08T00:00:00.000Z, 2026-03-09T00:00:00.000Z)" in str(info.value)


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (make_response(200, b"{not json"), "the body is not valid JSON"),
        (make_response(200, [1]), "the body is a JSON list, not an object"),
        (make_response(200, {"meta": {"has_more": False}}), "'data' is missing or not a list"),
        (make_response(200, {"data": []}), "'meta' is missing or not an object"),
        (make_response(200, {"data": [], "meta": {"has_more": "no"}}), "meta.has_more must be"),
        (
            make_response(200, {"data": [], "meta": {"has_more": True, "next_cursor": 3}}),
            "meta.next_cursor must be a string or null, got int",
        ),
        (page([row()], X_Rows_Returned="2"), "X-Rows-Returned is '2' but the body has 1 rows"),
        (page([row()] * 3), "3 rows returned for limit=2"),
    ],
)
def test_malformed_pages_are_protocol_errors_without_retry(response: Any, message: str) -> None:
    sleeps: list[float] = []
    kc = client([response], sleeps)
    with pytest.raises(KweryProtocolError) as info:
        kc.fetch("BTC", START, END, limit=2)
    assert message in str(info.value)
    assert str(info.value).startswith(
        "Kwery page 1 of GET http://kwery.test/v1/liquidations?api-key=***&symbol=BTC&"
    )
    assert (kc.requests, sleeps) == (1, [])


def test_cursor_guards() -> None:
    kc = client([page([row()], has_more=True, cursor="")])
    with pytest.raises(KweryProtocolError, match="has_more is true but next_cursor is ''"):
        kc.fetch("BTC", START, END)
    kc = client(
        [
            page([row()], has_more=True, cursor="a"),
            page([row()], has_more=True, cursor="b"),
            page([row()], has_more=True, cursor="a"),
        ]
    )
    with pytest.raises(
        KweryProtocolError, match=r"Kwery page 3 .* returned the cursor 'a' a second"
    ):
        kc.fetch("BTC", START, END)
    assert kc.requests == 3
    kc = client([page([], has_more=True, cursor=f"c{i}") for i in range(3)], max_pages=2)
    with pytest.raises(KweryProtocolError, match="more than max_pages=2 pages"):
        kc.fetch("BTC", START, END)
    assert kc.requests == 2  # the third page was never requested


def test_rows_capped_fails_but_accounts_the_credits() -> None:
    kc = client([page([row()], X_Rows_Capped="true")])
    with pytest.raises(KweryRowsCapped, match="the plan's row limit truncated the result"):
        kc.fetch("BTC", START, END)
    assert kc.credits_used == 27


def test_credit_budget_stops_before_the_request() -> None:
    kc = client([page([row()] * 10, has_more=True, cursor="c1"), page([row()])], credit_budget=2060)
    with pytest.raises(CreditBudgetExceeded) as info:
        kc.fetch("BTC", START, END)
    assert str(info.value) == (
        "Kwery credit budget: 45 of 2060 credits used and the next request can cost up to "
        "2025 (25 + 2 x limit 1000); it was not sent. Raise credit_budget or fetch a smaller range."
    )
    assert isinstance(info.value, KweryError)
    assert kc.requests == 1
    # a smaller limit makes the worst case fit
    kc = client([page([row()])], credit_budget=100)
    assert len(kc.fetch("BTC", START, END, limit=30).frame) == 1


def test_unknown_status_is_the_base_error_with_status_and_code() -> None:
    kc = client([make_response(418, {"error": {"code": "teapot"}})])
    with pytest.raises(KweryError) as info:
        kc.fetch("BTC", START, END)
    assert type(info.value) is KweryError
    assert (info.value.status, info.value.code) == (418, "teapot")
    assert str(info.value).startswith(
        "Kwery API error 418 teapot for GET http://kwery.test/v1/liquidations?api-key=***&"
    )
    assert "check the base URL (KWERY_BASE_URL)" in str(info.value)


def test_repr_and_context_manager_hide_the_key() -> None:
    with client([]) as kc:
        assert SENTINEL not in repr(kc)
        assert repr(kc) == (
            "KweryClient(base_url='http://kwery.test', api_key='***', max_pages=100000, "
            "credit_budget=None)"
        )


def test_exceptions_pickle_with_status_and_code() -> None:
    import pickle

    exc = KweryError("boom", status=400, code="x")
    copy = pickle.loads(pickle.dumps(exc))  # noqa: S301
    assert (type(copy), str(copy), copy.status, copy.code) == (KweryError, "boom", 400, "x")
    assert "boom" in "".join(traceback.format_exception(copy))


def test_fetch_concatenates_pages_in_order() -> None:
    kc = client(
        [
            page([row("2026-03-08T01:00:00.000Z")], has_more=True, cursor="c1"),
            page([row("2026-03-08T02:00:00.000Z"), row("2026-03-08T03:00:00.000Z")]),
        ]
    )
    frame = kc.fetch("BTC", START, END).frame
    assert list(frame.index) == [0, 1, 2]
    assert list(frame["timestamp"].dt.hour) == [1, 2, 3]
    assert {c: str(t) for c, t in frame.dtypes.items()} == EXPECTED_DTYPES
    assert isinstance(frame, pd.DataFrame)


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (400, b'{"error": {"code": "invalid_symbol"}}', "KweryInvalidSymbol"),
        (400, b'{"error": "invalid_side"}', "KweryInvalidSide"),
        (400, b'{"code": "invalid_time_range"}', "KweryInvalidTimeRange"),
        (400, b"", "KweryError"),  # no code: a 400 says nothing more
        (400, b'{"error": {"code": "invalid_cursor"}}', "KweryError"),
        (401, b"Unauthorized", "KweryUnauthorized"),
        (401, b'{"error": "unauthorized"}', "KweryUnauthorized"),
        (403, b"", "KweryTierRestricted"),
        (403, b'{"error": {"code": "tier_restricted"}}', "KweryTierRestricted"),
        (403, b'{"error": {"code": "credits_exhausted"}}', "KweryError"),  # not guessed
        (404, b"<html>not found</html>", "KweryError"),
        (429, b'{"error": "rate_limited"}', "KweryRateLimited"),
        (500, b'{"error": {"code": "invalid_symbol"}}', "KweryServerError"),  # status first
        (504, b"", "KweryServerError"),
    ],
)
def test_error_mapping_status_first_then_body_code(status: int, body: bytes, cls: str) -> None:
    kc = client([make_response(status, body)], max_attempts=1)
    with pytest.raises(KweryError) as info:
        kc.fetch("BTC", START, END)
    assert type(info.value).__name__ == cls
    assert info.value.status == status
    assert str(info.value).startswith(f"Kwery API error {status}")


def test_pandas_timestamps_are_accepted_and_rounded_up_to_the_millisecond() -> None:
    kc = client([page([])])
    start = pd.Timestamp("2026-03-08T00:00:00", tz="UTC") + pd.Timedelta(1, "ns")
    kc.fetch("BTC", start, pd.Timestamp("2026-03-08T06:00:00", tz="Europe/Paris"))
    params = kc._http.session.calls[0][1]
    assert (params["start"], params["end"]) == (
        "2026-03-08T00:00:00.001Z",
        "2026-03-08T05:00:00.000Z",
    )


def test_clients_never_import_dagster() -> None:
    import subprocess
    import sys

    code = "import sys, liq_pipeline.clients; sys.exit('dagster' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
