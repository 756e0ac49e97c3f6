"""NewhedgeClient without a network: series validation and error mapping (scripted session)."""

import traceback
from typing import Any

import numpy as np
import pytest
import requests

from liq_pipeline.clients import EXCHANGES, NEWHEDGE_METRICS, SIDES, NewhedgeClient
from liq_pipeline.clients.errors import (
    NewhedgeError,
    NewhedgeNotFound,
    NewhedgeProtocolError,
    NewhedgeRateLimited,
    NewhedgeServerError,
    NewhedgeUnauthorized,
)
from liq_pipeline.clients.newhedge import series_frame
from liq_pipeline_tests.clients.helpers import SENTINEL, FakeSession, make_response, raising

DAY = 86_400_000
D0 = 1778976000000  # 2026-05-17, from the contract's sample
METRIC = "bitcoin_liquidations_binance_short"


def client(script: list[Any], sleeps: list[float] | None = None, **kw: Any) -> NewhedgeClient:
    return NewhedgeClient(
        SENTINEL,
        "http://nh.test//",
        session=FakeSession(script),  # type: ignore[arg-type]
        sleep=(sleeps if sleeps is not None else []).append,
        **kw,
    )


def test_metric_names_defined_once() -> None:
    assert EXCHANGES == ("binance", "bybit", "deribit", "okx")
    assert SIDES == ("long", "short")
    assert len(NEWHEDGE_METRICS) == 8
    assert set(NEWHEDGE_METRICS) == {
        f"bitcoin_liquidations_{e}_{s}" for e in EXCHANGES for s in SIDES
    }


def test_series_frame_sorted_typed_naive_midnights() -> None:
    frame = series_frame(METRIC, [[D0 + DAY, -1.5], [D0, 0], [D0 + 2 * DAY, -4883115.401237312]])
    assert list(frame.columns) == ["day", "value"]
    assert str(frame["day"].dtype) == "datetime64[s]"
    assert frame["value"].dtype == np.float64
    assert [d.isoformat() for d in frame["day"]] == [
        "2026-05-17T00:00:00",
        "2026-05-18T00:00:00",
        "2026-05-19T00:00:00",
    ]
    assert frame["value"].tolist() == [0.0, -1.5, -4883115.401237312]
    empty = series_frame(METRIC, [])
    assert len(empty) == 0 and str(empty["day"].dtype) == "datetime64[s]"


@pytest.mark.parametrize(
    ("metric", "doc", "message"),
    [
        (
            METRIC,
            {"data": []},
            "the series must be a JSON array of [ms, value] pairs, got a JSON dict",
        ),
        (
            METRIC,
            [[D0, -1.0], [D0 + DAY]],
            "point 1 must be a [ms, value] pair, got [1779062400000]",
        ),
        (METRIC, [[D0, -1.0, 3]], "point 0 must be a [ms, value] pair"),
        (METRIC, [[D0, -1.0], 5], "point 1 must be a [ms, value] pair, got 5"),
        (
            METRIC,
            [[float(D0), -1.0]],
            "point 0 must start with integer milliseconds, got 1778976000000.0",
        ),
        (
            METRIC,
            [[D0, None]],
            "the value of point 0 (1778976000000 ms = 2026-05-17T00:00:00+00:00) must be a "
            "number, got None",
        ),
        (METRIC, [[D0, "1"]], "must be a number, got '1'"),
        (METRIC, [[D0, True]], "must be a number, got True"),
        (
            METRIC,
            [[D0 + 3_600_000, -1.0]],
            "point 0 (1778979600000 ms = 2026-05-17T01:00:00+00:00) is not at 00:00 UTC",
        ),
        (METRIC, [[-DAY, -1.0]], "point 0 has the timestamp -86400000 ms, not a plausible day"),
        (METRIC, [[10**20, -1.0]], "not a plausible day"),
        (
            METRIC,
            [[D0, -1.0], [D0 + DAY, -2.0], [D0, -1.0]],
            "more than one value for the day 2026-05-17 (1778976000000 ms)",
        ),
        (
            METRIC,
            [[D0, -1.0], [D0 + DAY, 2.5]],
            "the value of 2026-05-18 (1779062400000 ms) is 2.5, expected <= 0",
        ),
        (
            "bitcoin_liquidations_okx_long",
            [[D0, 1.0], [D0 + DAY, -0.5]],
            "the value of 2026-05-18 (1779062400000 ms) is -0.5, expected >= 0",
        ),
    ],
)
def test_bad_series_are_refused_with_metric_and_point(metric: str, doc: Any, message: str) -> None:
    with pytest.raises(NewhedgeProtocolError) as info:
        series_frame(metric, doc)
    assert str(info.value).startswith(f"{metric}: ")
    assert message in str(info.value)


def test_fetch_series_request_and_result() -> None:
    kc = client([make_response(200, [[D0, 1.0], [D0 + DAY, 2.0]])])
    frame = kc.fetch_series("bitcoin_liquidations_okx_long")
    assert kc._http.session.calls == [
        (
            "http://nh.test/api/v2/metrics/liquidations/bitcoin_liquidations_okx_long",
            {"api_token": SENTINEL},
            (10.0, 30.0),
        )
    ]
    assert frame["value"].tolist() == [1.0, 2.0]
    assert kc.requests == 1


def test_unknown_metric_is_refused_before_sending() -> None:
    kc = client([])
    with pytest.raises(
        ValueError,
        match="unknown Newhedge metric 'bitcoin_liquidations_kraken_long'; "
        "valid: bitcoin_liquidations_binance_long, ",
    ):
        kc.fetch_series("bitcoin_liquidations_kraken_long")
    assert kc.requests == 0


@pytest.mark.parametrize(
    ("status", "cls", "hint"),
    [
        (401, NewhedgeUnauthorized, "check NEWHEDGE_API_TOKEN"),
        (404, NewhedgeNotFound, "check the metric name and the base URL"),
        (400, NewhedgeError, "unexpected answer"),
    ],
)
def test_error_statuses(status: int, cls: type, hint: str) -> None:
    kc = client([make_response(status, {"error": "nope", "token": SENTINEL})])
    with pytest.raises(cls) as info:
        kc.fetch_series(METRIC)
    exc = info.value
    assert type(exc) is cls and exc.status == status and exc.code == "nope"
    assert str(exc).startswith(
        f"Newhedge API error {status} nope for metric {METRIC} "
        f"(GET http://nh.test/api/v2/metrics/liquidations/{METRIC}?api_token=***): "
    )
    assert hint in str(exc)
    assert str(exc).endswith('Response body: {"error":"nope","token":"***"}')
    assert SENTINEL not in "".join(traceback.format_exception(exc)) + repr(exc)


def test_retries_then_exhaustion(sleeps: list[float]) -> None:
    kc = client(
        [make_response(429, b"", {"Retry-After": "4"}), make_response(200, [[D0, -1.0]])], sleeps
    )
    assert len(kc.fetch_series(METRIC)) == 1
    assert sleeps == [4.0]
    kc = client([make_response(429, b"slow down")] * 3, max_attempts=3)
    with pytest.raises(NewhedgeRateLimited, match="after 3 attempts: Newhedge rate-limited"):
        kc.fetch_series(METRIC)
    kc = client([make_response(503, b"")] * 2, max_attempts=2)
    with pytest.raises(NewhedgeServerError, match="503"):
        kc.fetch_series(METRIC)
    kc = client([raising(requests.exceptions.ReadTimeout)] * 2, max_attempts=2)
    with pytest.raises(NewhedgeServerError) as info:
        kc.fetch_series(METRIC)
    assert "failed after 2 attempts: ReadTimeout" in str(info.value)
    assert SENTINEL not in "".join(traceback.format_exception(info.value))
    assert info.value.__context__ is None


def test_malformed_json_is_a_protocol_error_without_retry() -> None:
    kc = client([make_response(200, b"[[1778976000000, -1.0],")])
    with pytest.raises(NewhedgeProtocolError) as info:
        kc.fetch_series(METRIC)
    assert str(info.value).startswith(
        f"Newhedge series {METRIC}: the body is not valid JSON (GET http://nh.test/"
    )
    assert kc.requests == 1


def test_repr_hides_the_token() -> None:
    with client([]) as nc:
        assert repr(nc) == "NewhedgeClient(base_url='http://nh.test', api_token='***')"
