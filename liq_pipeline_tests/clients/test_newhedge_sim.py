"""NewhedgeClient against the simulator over loopback HTTP."""

import datetime as dt
import random
from typing import Any

import numpy as np
import pytest

from liq_pipeline.clients import NEWHEDGE_METRICS, NewhedgeClient
from liq_pipeline.clients.errors import (
    NewhedgeNotFound,
    NewhedgeProtocolError,
    NewhedgeRateLimited,
    NewhedgeServerError,
    NewhedgeUnauthorized,
)
from liq_pipeline.simulator.data import newhedge_series
from liq_pipeline_tests.clients.helpers import FIXED_NOW, NEWHEDGE_TOKEN, SENTINEL

PUBLISHED_THROUGH = dt.date(2026, 3, 19)  # at 2026-03-20 12:00 UTC, the 19th is out (01:00)
METRIC = "bitcoin_liquidations_okx_short"


def newhedge(sim: Any, token: str = NEWHEDGE_TOKEN, sleeps: list[float] | None = None, **kw: Any):
    kw.setdefault("rng", random.Random(9))
    return NewhedgeClient(token, sim.url, sleep=(sleeps if sleeps is not None else []).append, **kw)


def assert_series(frame: Any, metric: str, through: dt.date) -> None:
    expected = newhedge_series(metric, through)
    assert len(frame) == len(expected)
    assert frame["day"].astype("datetime64[ms]").astype("int64").tolist() == [
        p[0] for p in expected
    ]
    np.testing.assert_array_equal(frame["value"].to_numpy(), [p[1] for p in expected])
    assert frame["day"].iloc[-1] == np.datetime64(through.isoformat(), "s")


@pytest.mark.parametrize("metric", NEWHEDGE_METRICS)
def test_every_metric_is_the_published_series(fresh_sim: Any, metric: str) -> None:
    nc = newhedge(fresh_sim)
    frame = nc.fetch_series(metric)
    assert str(frame["day"].dtype) == "datetime64[s]" and frame["value"].dtype == np.float64
    assert frame["day"].iloc[0] == np.datetime64("2020-01-01", "s")
    assert_series(frame, metric, PUBLISHED_THROUGH)
    assert frame["day"].is_monotonic_increasing
    assert nc.requests == 1


def test_before_01_utc_yesterday_is_not_out_yet(fresh_sim: Any) -> None:
    fresh_sim.set_now(dt.datetime(2026, 3, 20, 0, 30, tzinfo=dt.UTC))
    frame = newhedge(fresh_sim).fetch_series(METRIC)
    assert_series(frame, METRIC, dt.date(2026, 3, 18))


def test_lag_is_returned_as_is(fresh_sim: Any) -> None:
    """The client returns what is published; noticing the missing day is the asset's job."""
    fresh_sim.inject("lag", api="newhedge", metric=METRIC)
    nc = newhedge(fresh_sim)
    assert_series(nc.fetch_series(METRIC), METRIC, PUBLISHED_THROUGH - dt.timedelta(days=1))
    assert_series(nc.fetch_series(METRIC), METRIC, PUBLISHED_THROUGH)  # count=1: next is whole


def test_unknown_token_is_unauthorized(fresh_sim: Any) -> None:
    with pytest.raises(NewhedgeUnauthorized) as info:
        newhedge(fresh_sim, SENTINEL).fetch_series(METRIC)
    assert info.value.status == 401
    assert str(info.value).startswith(
        f"Newhedge API error 401 {info.value.code + ' ' if info.value.code else ''}for metric "
        f"{METRIC} (GET {fresh_sim.url}/api/v2/metrics/liquidations/{METRIC}?api_token=***): "
        "the api_token is missing or invalid (it is a 24-character token); check "
        "NEWHEDGE_API_TOKEN."
    )


def test_not_found(fresh_sim: Any) -> None:
    nc = NewhedgeClient(NEWHEDGE_TOKEN, fresh_sim.url + "/v9", sleep=[].append)
    with pytest.raises(NewhedgeNotFound) as info:
        nc.fetch_series(METRIC)
    assert info.value.status == 404
    assert "check the metric name and the base URL (NEWHEDGE_BASE_URL)" in str(info.value)


def test_429_retry_after_honoured(fresh_sim: Any, sleeps: list[float]) -> None:
    fresh_sim.inject("429", count=2, api="newhedge", retry_after="3")
    nc = newhedge(fresh_sim, sleeps=sleeps)
    assert_series(nc.fetch_series(METRIC), METRIC, PUBLISHED_THROUGH)
    assert sleeps == [3.0, 3.0]
    assert (nc.requests, nc.retries) == (3, 2)


@pytest.mark.parametrize("retry_after", ["0", "abc", "99999", None])
def test_429_without_usable_hint_backs_off(
    fresh_sim: Any, sleeps: list[float], retry_after: str | None
) -> None:
    fresh_sim.inject("429", count=2, api="newhedge", retry_after=retry_after)
    nc = newhedge(fresh_sim, sleeps=sleeps, backoff_base=2.0, backoff_cap=3.0)
    assert len(nc.fetch_series(METRIC))
    assert len(sleeps) == 2 and 0 <= sleeps[0] <= 2.0 and 0 <= sleeps[1] <= 3.0


@pytest.mark.parametrize("kind", ["500", "502", "503", "drop"])
def test_transient_failures_are_retried(fresh_sim: Any, sleeps: list[float], kind: str) -> None:
    fresh_sim.inject(kind, count=2, api="newhedge")
    nc = newhedge(fresh_sim, sleeps=sleeps)
    assert_series(nc.fetch_series(METRIC), METRIC, PUBLISHED_THROUGH)
    assert (nc.requests, len(sleeps)) == (3, 2)


@pytest.mark.parametrize(
    ("kind", "cls"),
    [("429", NewhedgeRateLimited), ("503", NewhedgeServerError), ("drop", NewhedgeServerError)],
)
def test_exhausted_retries(fresh_sim: Any, sleeps: list[float], kind: str, cls: type) -> None:
    fresh_sim.inject(kind, count=5, api="newhedge", retry_after="1")
    nc = newhedge(fresh_sim, sleeps=sleeps, max_attempts=3)
    with pytest.raises(cls) as info:
        nc.fetch_series(METRIC)
    assert "after 3 attempts" in str(info.value)
    assert (nc.requests, len(sleeps)) == (3, 2)


def test_malformed_json_is_a_protocol_error(fresh_sim: Any, sleeps: list[float]) -> None:
    fresh_sim.inject("malformed_json", api="newhedge")
    nc = newhedge(fresh_sim, sleeps=sleeps)
    with pytest.raises(NewhedgeProtocolError, match=f"^Newhedge series {METRIC}: the body is not"):
        nc.fetch_series(METRIC)
    assert (nc.requests, sleeps) == (1, [])


def test_faults_of_the_other_api_do_not_leak(fresh_sim: Any) -> None:
    fresh_sim.inject("500", count=3)  # api="kwery"
    nc = newhedge(fresh_sim)
    nc.fetch_series(METRIC)
    assert nc.requests == 1
    assert FIXED_NOW.tzinfo is dt.UTC


@pytest.mark.parametrize("value", [1.7e308, -2e12])
def test_an_implausible_value_is_refused_naming_the_day(fresh_sim: Any, value: float) -> None:
    fresh_sim.inject("bad_value", api="newhedge", metric=METRIC, day="2026-03-15", value=value)
    with pytest.raises(NewhedgeProtocolError) as err:
        newhedge(fresh_sim).fetch_series(METRIC)
    assert str(err.value).startswith(
        f"Newhedge series {METRIC}: the value of 2026-03-15 (1773532800000 ms) is {value!r}, "
        "not a finite USD amount of at most 1e+12 (GET "
    )
    assert SENTINEL not in str(err.value)


def test_a_gap_inside_the_series_is_served_as_is(fresh_sim: Any) -> None:
    fresh_sim.inject("gap", api="newhedge", metric=METRIC, day="2026-03-15")
    frame = newhedge(fresh_sim).fetch_series(METRIC)
    days = frame["day"].dt.strftime("%Y-%m-%d").tolist()
    assert "2026-03-15" not in days and days[-1] == PUBLISHED_THROUGH.isoformat()
    assert len(frame) == len(newhedge_series(METRIC, PUBLISHED_THROUGH)) - 1
