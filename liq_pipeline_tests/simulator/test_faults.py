import datetime as dt
import math
import re
from collections.abc import Iterator

import pytest
import requests

from liq_pipeline.simulator import Simulator
from liq_pipeline.simulator.data import kwery_events, newhedge_series
from liq_pipeline_tests.simulator.support import BUSINESS, NOW, TOKEN, Api

D8 = dt.date(2026, 3, 8)
PARAMS = {"symbol": "BTC", "start": "2026-03-08T00:00:00Z", "end": "2026-03-09T00:00:00Z"}
OKX_LONG = "bitcoin_liquidations_okx_long"
ZERO = {"requests": 0, "ok_requests": 0, "rows": 0, "credits_used": 0}


def _page(api: Api, **extra: object) -> requests.Response:
    return api.kwery(**PARAMS, limit=10, **extra)


@pytest.mark.parametrize(
    ("retry_after", "header"), [("1", "1"), ("0", "0"), ("abc", "abc"), ("99999", "99999")]
)
def test_429_fault_with_retry_after(api: Api, retry_after: str, header: str) -> None:
    api.sim.inject("429", retry_after=retry_after)
    resp = _page(api)
    assert resp.status_code == 429
    assert resp.json() == {"error": {"code": "rate_limited", "message": "Simulated 429 fault."}}
    assert resp.headers["Retry-After"] == header
    assert resp.headers["X-Credits-Used"] == "0"
    assert _page(api).status_code == 200
    assert api.sim.stats(BUSINESS) == {
        "requests": 2,
        "ok_requests": 1,
        "rows": 10,
        "credits_used": 45,
    }


def test_429_fault_without_retry_after(api: Api) -> None:
    api.sim.inject("429", retry_after=None)
    resp = _page(api)
    assert resp.status_code == 429
    assert "Retry-After" not in resp.headers


@pytest.mark.parametrize(
    ("kind", "code"),
    [("500", "internal_error"), ("502", "bad_gateway"), ("503", "service_unavailable")],
)
def test_5xx_faults(api: Api, kind: str, code: str) -> None:
    api.sim.inject(kind, count=2)
    for _ in range(2):
        resp = _page(api)
        assert resp.status_code == int(kind)
        assert resp.json() == {"error": {"code": code, "message": f"Simulated {kind} fault."}}
        assert resp.headers["X-Credits-Used"] == "0"
    assert _page(api).status_code == 200
    assert api.sim.stats(BUSINESS)["credits_used"] == 45


def test_skip_and_queue_order(api: Api) -> None:
    api.sim.inject("503", skip=1)
    api.sim.inject("500", count=2)
    statuses = [_page(api).status_code for _ in range(5)]
    # request 1 is taken by the 500 (the 503 is still skipping), then 503, then the second 500
    assert statuses == [500, 503, 500, 200, 200]


def test_skip_lets_requests_through_first(api: Api) -> None:
    api.sim.inject("502", count=2, skip=2)
    assert [_page(api).status_code for _ in range(5)] == [200, 200, 502, 502, 200]


def test_errors_do_not_consume_faults(api: Api) -> None:
    api.sim.inject("500")
    assert api.kwery("nope", **PARAMS).status_code == 401
    assert api.kwery(**PARAMS, side="up").status_code == 400
    assert api.newhedge(OKX_LONG, api_token=TOKEN).status_code == 200  # another api
    assert _page(api).status_code == 500


def test_clear_faults(api: Api) -> None:
    api.sim.inject("500", count=5)
    api.sim.clear_faults()
    assert _page(api).status_code == 200


def test_drop_closes_mid_body(api: Api, http: requests.Session) -> None:
    api.sim.inject("drop")
    with pytest.raises(requests.exceptions.ChunkedEncodingError, match="IncompleteRead"):
        _page(api)
    # The session recovers on a fresh connection; the dropped page was not charged.
    assert _page(api).json()["data"] == kwery_events("BTC", D8)[:10]
    assert api.sim.stats(BUSINESS) == {
        "requests": 2,
        "ok_requests": 1,
        "rows": 10,
        "credits_used": 45,
    }


def test_malformed_json(api: Api) -> None:
    api.sim.inject("malformed_json")
    resp = _page(api)
    assert resp.status_code == 200
    assert len(resp.content) == int(resp.headers["Content-Length"])
    assert resp.headers["X-Credits-Used"] == "0"
    with pytest.raises(requests.exceptions.JSONDecodeError):
        resp.json()
    assert api.sim.stats(BUSINESS) == {**ZERO, "requests": 1}


def test_capped(api: Api) -> None:
    api.sim.inject("capped")
    resp = _page(api)
    assert resp.headers["X-Rows-Capped"] == "true"
    assert resp.headers["X-Credits-Used"] == "0"
    body = resp.json()
    assert body["data"] == kwery_events("BTC", D8)[:10]
    assert body["meta"]["has_more"] is True
    assert api.sim.stats(BUSINESS) == {**ZERO, "requests": 1, "ok_requests": 1, "rows": 10}


def test_repeat_cursor(api: Api) -> None:
    api.sim.inject("repeat_cursor")
    first = _page(api).json()  # no `after`: not eligible, served normally
    cursor = first["meta"]["next_cursor"]
    second = _page(api, after=cursor)
    assert second.headers["X-Credits-Used"] == "0"
    assert second.json()["meta"]["next_cursor"] == cursor
    assert second.json()["meta"]["has_more"] is True
    third = _page(api, after=cursor).json()
    assert third["data"] == second.json()["data"] == kwery_events("BTC", D8)[10:20]
    assert third["meta"]["next_cursor"] not in (None, cursor)


def test_more_no_cursor(api: Api) -> None:
    api.sim.inject("more_no_cursor")
    meta = _page(api).json()["meta"]
    assert (meta["has_more"], meta["next_cursor"], meta["returned"]) == (True, None, 10)


def test_bad_rows(api: Api) -> None:
    api.sim.inject("bad_rows")
    rows = _page(api).json()["data"]
    expected = kwery_events("BTC", D8)[:10]
    assert "usd_value" not in rows[0]
    assert rows[0] == {k: v for k, v in expected[0].items() if k != "usd_value"}
    assert rows[1]["quantity"] == str(expected[1]["quantity"]) == "0.013"
    assert rows[2:] == expected[2:]


def test_newhedge_faults(api: Api) -> None:
    api.sim.inject("503", api="newhedge")
    api.sim.inject("drop", api="newhedge")
    api.sim.inject("malformed_json", api="newhedge")
    api.sim.inject("429", api="newhedge", retry_after="7")
    assert api.newhedge(OKX_LONG, api_token=TOKEN).status_code == 503
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        api.newhedge(OKX_LONG, api_token=TOKEN)
    with pytest.raises(requests.exceptions.JSONDecodeError):
        api.newhedge(OKX_LONG, api_token=TOKEN).json()
    resp = api.newhedge(OKX_LONG, api_token=TOKEN)
    assert (resp.status_code, resp.headers["Retry-After"]) == (429, "7")
    assert "X-Credits-Used" not in resp.headers
    assert api.newhedge(OKX_LONG, api_token=TOKEN).status_code == 200
    assert api.sim.stats(TOKEN) == {
        "requests": 5,
        "ok_requests": 1,
        "rows": 2260,
        "credits_used": 0,
    }
    assert _page(api).status_code == 200  # kwery untouched


def test_lag_fault_per_metric(api: Api) -> None:
    api.sim.inject("lag", count=2, api="newhedge", metric=OKX_LONG)
    full = api.newhedge("bitcoin_liquidations_okx_short", api_token=TOKEN).json()
    lagged = [api.newhedge(OKX_LONG, api_token=TOKEN).json() for _ in range(3)]
    assert full[-1][0] == 1_773_014_400_000  # 2026-03-09 is out at 12:00 on 2026-03-10
    assert [s[-1][0] for s in lagged] == [1_772_928_000_000, 1_772_928_000_000, 1_773_014_400_000]
    assert lagged[0] == lagged[2][:-1]


def test_lag_fault_any_metric(api: Api) -> None:
    api.sim.inject("lag", api="newhedge")
    assert len(api.newhedge(OKX_LONG, api_token=TOKEN).json()) == 2259
    assert len(api.newhedge("bitcoin_liquidations_okx_short", api_token=TOKEN).json()) == 2260


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("timeout",), {}, "unknown fault kind 'timeout'"),
        (("lag",), {}, "fault 'lag' does not apply to api 'kwery'"),
        (("capped",), {"api": "newhedge"}, "fault 'capped' does not apply to api 'newhedge'"),
        (("500", 0), {}, "count must be an integer >= 1"),
        (("500",), {"skip": -1}, "skip must be an integer >= 0"),
        (("lag",), {"api": "newhedge", "metric": "btc"}, "metric 'btc' is not a Newhedge metric"),
    ],
)
def test_inject_validation(sim: Simulator, args: tuple, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sim.inject(*args, **kwargs)


def test_bad_rows_on_a_one_row_page(api: Api) -> None:
    api.sim.inject("bad_rows")
    (row,) = api.kwery(**PARAMS, limit=1).json()["data"]
    first = kwery_events("BTC", D8)[0]
    assert row == {**{k: v for k, v in first.items() if k != "usd_value"}, "quantity": "0.89"}


# -- echo_secret --------------------------------------------------------------------------------

SECRET_KEY = "SENTINELkéy/123"
SECRET_TOKEN = "SENTINEL tökén+/&<ł>"


@pytest.fixture
def secret_sim() -> Iterator[Simulator]:
    with Simulator(
        port=0,
        now=NOW,
        kwery_keys={SECRET_KEY: "business"},
        newhedge_tokens=(SECRET_TOKEN,),
    ) as sim:
        yield sim


def test_echo_secret_kwery_body_holds_every_encoding(
    secret_sim: Simulator, http: requests.Session
) -> None:
    secret_sim.inject("echo_secret")
    params = {"api-key": SECRET_KEY, **PARAMS, "limit": 10}
    resp = http.get(f"{secret_sim.url}/v1/liquidations", params=params, timeout=10)
    assert resp.status_code == 400
    assert (resp.headers["X-Credits-Used"], resp.headers["X-Credits-Remaining"]) == (
        "0",
        "100000000",
    )
    assert (
        resp.content
        == (
            '{"error":{"code":"invalid_request",'
            '"message":"Simulated echo_secret fault; the request carried SENTINELkéy/123",'
            '"echo":{"raw":"SENTINELkéy/123",'
            '"percent":"SENTINELk%C3%A9y%2F123",'
            '"plus":"SENTINELk%C3%A9y%2F123",'
            '"json_escaped":"SENTINELk\\u00e9y/123",'
            '"html_numeric":"SENTINELk&#233;y/123",'
            '"html_named":"SENTINELk&eacute;y/123"}}}'
        ).encode()
    )
    for form in (
        "SENTINELkéy/123".encode(),
        b"SENTINELk%C3%A9y%2F123",
        b"SENTINELk\\u00e9y/123",
        b"SENTINELk&#233;y/123",
        b"SENTINELk&eacute;y/123",
    ):
        assert form in resp.content
    assert resp.json()["error"]["echo"]["json_escaped"] == SECRET_KEY  # valid JSON escapes
    assert secret_sim.stats(SECRET_KEY) == {**ZERO, "requests": 1}
    again = http.get(f"{secret_sim.url}/v1/liquidations", params=params, timeout=10)
    assert again.json()["data"] == kwery_events("BTC", D8)[:10]


def test_echo_secret_newhedge(secret_sim: Simulator, http: requests.Session) -> None:
    secret_sim.inject("echo_secret", api="newhedge")
    url = f"{secret_sim.url}/api/v2/metrics/liquidations/{OKX_LONG}"
    resp = http.get(url, params={"api_token": SECRET_TOKEN}, timeout=10)
    assert resp.status_code == 400
    assert "X-Credits-Used" not in resp.headers
    assert resp.json() == {
        "error": {
            "code": "invalid_request",
            "message": f"Simulated echo_secret fault; the request carried {SECRET_TOKEN}",
            "echo": {
                "raw": SECRET_TOKEN,
                "percent": "SENTINEL%20t%C3%B6k%C3%A9n%2B%2F%26%3C%C5%82%3E",
                "plus": "SENTINEL+t%C3%B6k%C3%A9n%2B%2F%26%3C%C5%82%3E",
                "json_escaped": SECRET_TOKEN,
                "html_numeric": "SENTINEL t&#246;k&#233;n+/&amp;&lt;&#322;&gt;",
                "html_named": "SENTINEL t&ouml;k&eacute;n+/&amp;&lt;&#322;&gt;",
            },
        }
    }
    assert b'"json_escaped":"SENTINEL t\\u00f6k\\u00e9n+/&<\\u0142>"' in resp.content
    assert secret_sim.stats(SECRET_TOKEN) == {**ZERO, "requests": 1}
    assert http.get(url, params={"api_token": SECRET_TOKEN}, timeout=10).status_code == 200


# -- bad_value (Kwery) --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "raw"),
    [
        ("quantity", -1.0, b'"quantity":-1.0'),
        ("price", 0, b'"price":0,'),
        ("avg_price", -0.5, b'"avg_price":-0.5'),
        ("usd_value", 1.7e308, b'"usd_value":1.7e+308'),
        ("source", "bin\u0000ance", b'"source":"bin\\u0000ance"'),
        ("source", "bin\nance", b'"source":"bin\\nance"'),
        ("symbol", "ETH", b'"symbol":"ETH"'),
        ("side", "both", b'"side":"both"'),
        ("timestamp", "2026-03-09T00:00:00.000Z", b'"timestamp":"2026-03-09T00:00:00.000Z"'),
        ("usd_value", None, b'"usd_value":null'),
    ],
)
def test_bad_value_kwery(api: Api, field: str, value: object, raw: bytes) -> None:
    api.sim.inject("bad_value", field=field, value=value, row=3)
    resp = _page(api)
    expected = kwery_events("BTC", D8)[:10]
    expected[3][field] = value
    body = resp.json()
    assert resp.status_code == 200
    assert body["data"] == expected
    assert body["meta"]["returned"] == 10
    assert raw in resp.content
    # A normal page as far as the server knows: charged, counted, headers consistent.
    assert (resp.headers["X-Rows-Returned"], resp.headers["X-Rows-Capped"]) == ("10", "false")
    assert (resp.headers["X-Credits-Used"], resp.headers["X-Credits-Remaining"]) == (
        "45",
        "99999955",
    )
    assert api.sim.stats(BUSINESS) == {
        "requests": 1,
        "ok_requests": 1,
        "rows": 10,
        "credits_used": 45,
    }
    # The cursor still points after the real row 9.
    after = _page(api, after=body["meta"]["next_cursor"]).json()
    assert after["data"] == kwery_events("BTC", D8)[10:20]


def test_bad_value_waits_for_a_page_with_that_row(api: Api) -> None:
    api.sim.inject("bad_value", field="price", value=-1.0, row=4)
    short = api.kwery(**PARAMS, limit=4).json()["data"]
    assert short == kwery_events("BTC", D8)[:4]  # no row 4: not this page's fault
    rows = _page(api).json()["data"]
    assert [r["price"] for r in rows].index(-1.0) == 4
    assert _page(api).json()["data"] == kwery_events("BTC", D8)[:10]


def test_bad_value_defaults_to_row_0_and_counts_skip(api: Api) -> None:
    api.sim.inject("bad_value", count=2, skip=1, field="symbol", value="ETH")
    pages = [_page(api).json()["data"] for _ in range(4)]
    assert [[r["symbol"] for r in p].count("ETH") for p in pages] == [0, 1, 1, 0]
    assert pages[1][0]["symbol"] == pages[2][0]["symbol"] == "ETH"


# -- gap and bad_value (Newhedge) ---------------------------------------------------------------

MS_2026_03_01 = 1_772_323_200_000
MS_2026_03_08 = 1_772_928_000_000
MS_2026_03_09 = 1_773_014_400_000


def test_gap(api: Api) -> None:
    api.sim.inject("gap", api="newhedge", day="2026-03-01", metric=OKX_LONG)
    other = api.newhedge("bitcoin_liquidations_okx_short", api_token=TOKEN).json()
    holed = api.newhedge(OKX_LONG, api_token=TOKEN).json()
    full = newhedge_series(OKX_LONG, dt.date(2026, 3, 9))
    assert len(other) == len(full) == 2260
    assert holed == [p for p in full if p[0] != MS_2026_03_01]
    stamps = [ms for ms, _ in holed]
    assert stamps[-9:] == [MS_2026_03_01 - 86_400_000] + [
        MS_2026_03_01 + d * 86_400_000 for d in range(1, 9)
    ]
    assert api.newhedge(OKX_LONG, api_token=TOKEN).json() == full
    assert api.sim.stats(TOKEN) == {
        "requests": 3,
        "ok_requests": 3,
        "rows": 2260 + 2259 + 2260,
        "credits_used": 0,
    }


def test_gap_waits_until_the_day_is_published(api: Api) -> None:
    api.sim.inject("gap", api="newhedge", day=dt.date(2026, 3, 10))
    assert len(api.newhedge(OKX_LONG, api_token=TOKEN).json()) == 2260  # not out yet
    api.sim.set_now(dt.datetime(2026, 3, 11, 1, tzinfo=dt.UTC))
    series = api.newhedge(OKX_LONG, api_token=TOKEN).json()
    assert (len(series), series[-1][0]) == (2260, MS_2026_03_09)  # 2026-03-10 missing
    assert len(api.newhedge(OKX_LONG, api_token=TOKEN).json()) == 2261


def test_bad_value_newhedge_latest_day(api: Api) -> None:
    api.sim.inject("bad_value", api="newhedge", value=1.7e308)
    resp = api.newhedge(OKX_LONG, api_token=TOKEN)
    full = newhedge_series(OKX_LONG, dt.date(2026, 3, 9))
    assert resp.json() == [*full[:-1], [MS_2026_03_09, 1.7e308]]
    assert resp.content.endswith(b"[1773014400000,1.7e+308]]")
    assert api.newhedge(OKX_LONG, api_token=TOKEN).json() == full


def test_bad_value_newhedge_given_day(api: Api) -> None:
    api.sim.inject("bad_value", api="newhedge", value="n/a", day="2026-03-08")
    series = api.newhedge(OKX_LONG, api_token=TOKEN).json()
    full = newhedge_series(OKX_LONG, dt.date(2026, 3, 9))
    assert series == [*full[:-2], [MS_2026_03_08, "n/a"], full[-1]]
    assert api.sim.stats(TOKEN)["rows"] == 2260


# -- validation of the new parameters, and the admin endpoint ----------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("hang",), {"seconds": -1}, "seconds must be a finite number >= 0, got -1"),
        (("hang",), {"seconds": math.inf}, "seconds must be a finite number >= 0, got inf"),
        (("hang",), {"seconds": "2"}, "seconds must be a finite number >= 0, got '2'"),
        (("hang",), {"seconds": True}, "seconds must be a finite number >= 0, got True"),
        (("hang",), {"value": None}, "parameter 'value' does not apply to fault 'hang'"),
        (("500",), {"seconds": 1}, "parameter 'seconds' does not apply to fault '500' on api"),
        (("echo_secret",), {"row": 1}, "parameter 'row' does not apply to fault 'echo_secret'"),
        (("bad_value",), {"field": "price"}, "fault 'bad_value' needs a value"),
        (("bad_value",), {"value": 1}, "fault 'bad_value' on api 'kwery' needs a field, one of"),
        (("bad_value",), {"field": "volume", "value": 1}, "unknown field 'volume'; expected"),
        (("bad_value",), {"field": "price", "value": math.nan}, "value must be a JSON value"),
        (("bad_value",), {"field": "price", "value": (1, 2)}, "value must be a JSON value"),
        (("bad_value",), {"field": "price", "value": 1, "row": 1000}, "row must be an integer"),
        (("bad_value",), {"field": "price", "value": 1, "row": -1}, "from 0 to 999, got -1"),
        (
            ("bad_value",),
            {"field": "price", "value": 1, "day": "2026-03-01"},
            "parameter 'day' does not apply to fault 'bad_value' on api 'kwery'",
        ),
        (
            ("bad_value",),
            {"api": "newhedge", "value": 1, "field": "price"},
            "parameter 'field' does not apply to fault 'bad_value' on api 'newhedge'",
        ),
        (
            ("bad_value",),
            {"api": "newhedge", "value": 1, "day": "2026-13-01"},
            "day must be an ISO date (YYYY-MM-DD), got '2026-13-01'",
        ),
        (("gap",), {}, "fault 'gap' does not apply to api 'kwery'"),
        (("gap",), {"api": "newhedge"}, "fault 'gap' needs a day (ISO date)"),
        (("gap",), {"api": "newhedge", "day": "yesterday"}, "got 'yesterday'"),
        (
            ("gap",),
            {"api": "newhedge", "day": dt.datetime(2026, 3, 1, tzinfo=dt.UTC)},
            "day must be a date or an ISO date string",
        ),
        (
            ("gap",),
            {"api": "newhedge", "day": "2019-12-31"},
            "day 2019-12-31 is before the Newhedge series starts (2020-01-01)",
        ),
    ],
)
def test_new_fault_validation(sim: Simulator, args: tuple, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        sim.inject(*args, **kwargs)


def test_admin_endpoint_takes_the_new_parameters(api: Api, http: requests.Session) -> None:
    url = f"{api.sim.url}/_sim/faults"
    spec = {"kind": "bad_value", "field": "usd_value", "value": None, "row": 1}
    assert http.post(url, json=spec, timeout=10).json() == {"ok": True}
    gap = {"kind": "gap", "api": "newhedge", "day": "2026-03-08", "metric": OKX_LONG}
    assert http.post(url, json=gap, timeout=10).json() == {"ok": True}
    assert _page(api).json()["data"][1]["usd_value"] is None
    series = api.newhedge(OKX_LONG, api_token=TOKEN).json()
    assert [ms for ms, _ in series[-2:]] == [1_772_841_600_000, MS_2026_03_09]
    bad = http.post(url, json={"kind": "gap", "api": "newhedge"}, timeout=10)
    assert (bad.status_code, bad.json()) == (
        400,
        {"error": {"code": "bad_request", "message": "fault 'gap' needs a day (ISO date)"}},
    )
    missing_value = http.post(url, json={"kind": "bad_value", "field": "price"}, timeout=10)
    assert missing_value.json()["error"]["message"] == "fault 'bad_value' needs a value"


def test_pending_faults(api: Api) -> None:
    api.sim.inject("503", skip=1)
    api.sim.inject("gap", count=2, api="newhedge", day="2026-03-01")
    assert api.sim.pending_faults() == [
        {"kind": "503", "api": "kwery", "count": 1, "skip": 1},
        {"kind": "gap", "api": "newhedge", "count": 2, "skip": 0},
    ]
    assert _page(api).status_code == 200
    assert api.newhedge(OKX_LONG, api_token=TOKEN).status_code == 200
    assert api.sim.pending_faults() == [
        {"kind": "503", "api": "kwery", "count": 1, "skip": 0},
        {"kind": "gap", "api": "newhedge", "count": 1, "skip": 0},
    ]
    assert _page(api).status_code == 503
    api.sim.clear_faults()
    assert api.sim.pending_faults() == []
