import datetime as dt

import pytest
import requests

from liq_pipeline.simulator import Simulator
from liq_pipeline.simulator.data import METRICS, newhedge_series
from liq_pipeline_tests.simulator.support import TOKEN, Api, FakeMonotonic

MS_2026_03_08 = 1_772_928_000_000
MS_2026_03_09 = 1_773_014_400_000


@pytest.mark.parametrize("metric", METRICS)
def test_each_metric_serves_the_published_history(api: Api, metric: str) -> None:
    resp = api.newhedge(metric, api_token=TOKEN)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json"
    series = resp.json()
    assert series == newhedge_series(metric, dt.date(2026, 3, 9))
    assert series[0][0] == 1_577_836_800_000
    assert series[-1][0] == MS_2026_03_09
    values = [v for _, v in series]
    assert all(v <= 0 for v in values) if metric.endswith("_short") else all(v >= 0 for v in values)


@pytest.mark.parametrize(
    ("now", "last_ms"),
    [
        (dt.datetime(2026, 3, 10, 0, 59, 59, 999_000, tzinfo=dt.UTC), MS_2026_03_08),
        (dt.datetime(2026, 3, 10, 1, 0, tzinfo=dt.UTC), MS_2026_03_09),
        (dt.datetime(2026, 3, 10, 23, 59, tzinfo=dt.UTC), MS_2026_03_09),
        (dt.datetime(2026, 3, 11, 0, 30, tzinfo=dt.UTC), MS_2026_03_09),
    ],
)
def test_publication_at_one_am_utc(api: Api, now: dt.datetime, last_ms: int) -> None:
    api.sim.set_now(now)
    series = api.newhedge("bitcoin_liquidations_binance_long", api_token=TOKEN).json()
    assert series[-1][0] == last_ms


def test_before_the_first_day_the_series_is_empty(api: Api) -> None:
    api.sim.set_now(dt.datetime(2020, 1, 2, 0, 59, tzinfo=dt.UTC))
    assert api.newhedge("bitcoin_liquidations_bybit_short", api_token=TOKEN).json() == []
    api.sim.set_now(dt.datetime(2020, 1, 2, 1, 0, tzinfo=dt.UTC))
    series = api.newhedge("bitcoin_liquidations_bybit_short", api_token=TOKEN).json()
    assert [ms for ms, _ in series] == [1_577_836_800_000]


def test_full_float_precision(api: Api) -> None:
    series = api.newhedge("bitcoin_liquidations_binance_short", api_token=TOKEN).json()
    assert series[-2] == [MS_2026_03_08, -3723485.0636097547]


@pytest.mark.parametrize(
    "params",
    [{}, {"api_token": ""}, {"api_token": TOKEN[:-1]}, {"api_token": "x" * 24}, {"token": TOKEN}],
)
def test_unauthorized(api: Api, params: dict) -> None:
    resp = api.newhedge("bitcoin_liquidations_okx_long", **params)
    assert resp.status_code == 401
    assert resp.json() == {
        "error": {"code": "unauthorized", "message": "Missing or invalid api_token."}
    }


@pytest.mark.parametrize(
    "path",
    [
        "/api/v2/metrics/liquidations/bitcoin_liquidations_ftx_long",
        "/api/v2/metrics/liquidations/",
        "/api/v2/metrics/liquidations/bitcoin_liquidations_okx_long/extra",
        "/api/v2/metrics/funding/bitcoin_liquidations_okx_long",
        "/",
    ],
)
def test_not_found(api: Api, http: requests.Session, path: str) -> None:
    resp = http.get(f"{api.sim.url}{path}", params={"api_token": TOKEN}, timeout=10)
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "not_found"


def test_rate_limit(http: requests.Session, clock: FakeMonotonic) -> None:
    with Simulator(port=0, newhedge_rate=(1.0, 2.0), monotonic=clock) as sim:
        api = Api(sim, http)
        metric = "bitcoin_liquidations_deribit_long"
        assert [api.newhedge(metric, api_token=TOKEN).status_code for _ in range(3)] == [
            200,
            200,
            429,
        ]
        resp = api.newhedge(metric, api_token=TOKEN)
        assert (resp.headers["Retry-After"], resp.json()["error"]["code"]) == ("1", "rate_limited")
        clock.advance(1.0)
        assert api.newhedge(metric, api_token=TOKEN).status_code == 200


def test_real_clock_has_yesterday_after_one_am(http: requests.Session) -> None:
    with Simulator(port=0) as sim:  # now=None: the real clock
        series = Api(sim, http).newhedge("bitcoin_liquidations_okx_short", api_token=TOKEN).json()
        real_now = dt.datetime.now(dt.UTC)
        last = dt.date(1970, 1, 1) + dt.timedelta(milliseconds=series[-1][0])
        assert last in {
            (real_now - dt.timedelta(days=1, hours=1)).date(),
            (real_now - dt.timedelta(days=1, hours=1, minutes=1)).date(),
        }
