import datetime as dt

import pytest
import requests

from liq_pipeline.simulator import Simulator
from liq_pipeline.simulator.data import kwery_events
from liq_pipeline_tests.simulator.support import BUSINESS, TOKEN, Api

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
