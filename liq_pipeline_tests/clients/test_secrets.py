"""The Kwery key and the Newhedge token never appear in a message, repr, traceback or log line.

Every error path is driven with a sentinel secret: the simulator (unknown sentinel → 401; a
sentinel registered as a valid key/token for the other paths, with faults injected), and real
loopback sockets for refused connections and read timeouts.
"""

import datetime as dt
import logging
import socket
import traceback
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from liq_pipeline.clients import KweryClient, NewhedgeClient
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
    LiqApiError,
    NewhedgeNotFound,
    NewhedgeProtocolError,
    NewhedgeRateLimited,
    NewhedgeServerError,
    NewhedgeUnauthorized,
)
from liq_pipeline_tests.clients.helpers import (
    SENTINEL,
    SENTINEL_BUSINESS_KEY,
    SENTINEL_PRO_KEY,
    SENTINEL_TOKEN,
)

START = dt.datetime(2026, 3, 18, tzinfo=dt.UTC)
END = dt.datetime(2026, 3, 20, tzinfo=dt.UTC)  # 3 pages
METRIC = "bitcoin_liquidations_bybit_long"


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A server that accepts connections and never answers: every read times out."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        server.close()


@pytest.fixture
def refused_url() -> str:
    """A port nobody listens on: every connection is refused."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return f"http://127.0.0.1:{port}"


def assert_no_secret(exc: BaseException, caplog: pytest.LogCaptureFixture, secret: str) -> None:
    text = "\n".join(
        [
            str(exc),
            repr(exc),
            repr(vars(exc)),
            "".join(traceback.format_exception(exc)),
            caplog.text,
            *(repr(r.args) for r in caplog.records),
        ]
    )
    for form in {secret, quote_plus(secret), quote(secret, safe="")}:
        assert form not in text
    # no fragment either (the sentinels all start "SENTINEL-" or "SENTINEL/"; the traceback's
    # source lines only show the constants' names)
    assert "SENTINEL-" not in text and "SENTINEL/" not in text and "SENTINEL%2F" not in text
    # the requests exception (its text holds the URL) is not chained into the traceback
    assert exc.__cause__ is None
    assert exc.__context__ is None or exc.__suppress_context__


KWERY_PATHS: dict[str, tuple[type[Exception], Callable[..., Any]]] = {
    # name: (expected error, action(sim, make_client))
    "unauthorized": (KweryUnauthorized, lambda sim, make: make(SENTINEL).fetch("BTC", START, END)),
    "invalid_symbol": (KweryInvalidSymbol, lambda sim, make: make().fetch("NOPE", START, END)),
    "invalid_side": (
        KweryInvalidSide,
        lambda sim, make: make().fetch("BTC", START, END, side="both"),
    ),
    "invalid_time_range": (
        KweryInvalidTimeRange,
        lambda sim, make: make().fetch("BTC", END, START),
    ),
    "tier_restricted": (
        KweryTierRestricted,
        lambda sim, make: make(SENTINEL_PRO_KEY).fetch("BTC", START, END, min_usd=1),
    ),
    "not_found": (
        KweryError,
        lambda sim, make: make(base_url=sim.url + "/nope").fetch("BTC", START, END),
    ),
    "page_cap": (KweryProtocolError, lambda sim, make: make(max_pages=1).fetch("BTC", START, END)),
    "credit_budget": (
        CreditBudgetExceeded,
        lambda sim, make: make(credit_budget=10).fetch("BTC", START, END),
    ),
}
KWERY_FAULTS = {
    "429": KweryRateLimited,
    "500": KweryServerError,
    "502": KweryServerError,
    "503": KweryServerError,
    "drop": KweryServerError,
    "malformed_json": KweryProtocolError,
    "capped": KweryRowsCapped,
    "repeat_cursor": KweryProtocolError,
    "more_no_cursor": KweryProtocolError,
    "bad_rows": KweryProtocolError,
}


def kwery_maker(sim: Any) -> Callable[..., KweryClient]:
    def make(key: str = SENTINEL_BUSINESS_KEY, **kw: Any) -> KweryClient:
        kw.setdefault("base_url", sim.url)
        kc = KweryClient(key, sleep=[].append, max_attempts=3, **kw)
        assert "SENTINEL" not in repr(kc)
        return kc

    return make


@pytest.mark.parametrize("path", sorted(KWERY_PATHS))
def test_kwery_error_paths_hide_the_key(
    fresh_sim: Any, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    caplog.set_level(logging.DEBUG)  # urllib3 logs request lines at DEBUG
    expected, action = KWERY_PATHS[path]
    with pytest.raises(LiqApiError) as info:
        action(fresh_sim, kwery_maker(fresh_sim))
    assert type(info.value) is expected
    assert_no_secret(info.value, caplog, SENTINEL_BUSINESS_KEY)
    assert_no_secret(info.value, caplog, SENTINEL_PRO_KEY)
    assert_no_secret(info.value, caplog, SENTINEL)


@pytest.mark.parametrize("fault", sorted(KWERY_FAULTS))
def test_kwery_fault_paths_hide_the_key(
    fresh_sim: Any, caplog: pytest.LogCaptureFixture, fault: str
) -> None:
    caplog.set_level(logging.DEBUG)
    fresh_sim.inject(fault, count=10)
    with pytest.raises(LiqApiError) as info:
        kwery_maker(fresh_sim)().fetch("BTC", START, END)
    assert type(info.value) is KWERY_FAULTS[fault]
    assert_no_secret(info.value, caplog, SENTINEL_BUSINESS_KEY)
    if fault in ("429", "500", "drop"):
        assert "retrying in" in caplog.text  # the retry warnings were logged, redacted


@pytest.mark.parametrize("where", ["refused", "timeout"])
def test_kwery_network_failures_hide_the_key(
    caplog: pytest.LogCaptureFixture, refused_url: str, silent_url: str, where: str
) -> None:
    caplog.set_level(logging.DEBUG)
    url = refused_url if where == "refused" else silent_url
    kc = KweryClient(SENTINEL, url, sleep=[].append, max_attempts=2, timeout=0.2)
    with pytest.raises(KweryServerError) as info:
        kc.fetch("BTC", START, END)
    message = str(info.value)
    assert message.startswith(f"Kwery: GET {url}/v1/liquidations?api-key=***&symbol=BTC&")
    error = "ConnectionError" if where == "refused" else "ReadTimeout"
    assert f" failed after 2 attempts: {error}" in message
    assert_no_secret(info.value, caplog, SENTINEL)


NEWHEDGE_FAULTS = {
    "429": NewhedgeRateLimited,
    "500": NewhedgeServerError,
    "503": NewhedgeServerError,
    "drop": NewhedgeServerError,
    "malformed_json": NewhedgeProtocolError,
}


def test_newhedge_unknown_token_hides_it(fresh_sim: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    nc = NewhedgeClient(SENTINEL, fresh_sim.url, sleep=[].append)
    assert "SENTINEL" not in repr(nc)
    with pytest.raises(NewhedgeUnauthorized) as info:
        nc.fetch_series(METRIC)
    assert_no_secret(info.value, caplog, SENTINEL)


def test_newhedge_not_found_hides_the_token(
    fresh_sim: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    nc = NewhedgeClient(SENTINEL_TOKEN, fresh_sim.url + "/v9", sleep=[].append)
    with pytest.raises(NewhedgeNotFound) as info:
        nc.fetch_series(METRIC)
    assert_no_secret(info.value, caplog, SENTINEL_TOKEN)


@pytest.mark.parametrize("fault", sorted(NEWHEDGE_FAULTS))
def test_newhedge_fault_paths_hide_the_token(
    fresh_sim: Any, caplog: pytest.LogCaptureFixture, fault: str
) -> None:
    caplog.set_level(logging.DEBUG)
    fresh_sim.inject(fault, count=10, api="newhedge")
    nc = NewhedgeClient(SENTINEL_TOKEN, fresh_sim.url, sleep=[].append, max_attempts=3)
    with pytest.raises(LiqApiError) as info:
        nc.fetch_series(METRIC)
    assert type(info.value) is NEWHEDGE_FAULTS[fault]
    assert_no_secret(info.value, caplog, SENTINEL_TOKEN)


@pytest.mark.parametrize("where", ["refused", "timeout"])
def test_newhedge_network_failures_hide_the_token(
    caplog: pytest.LogCaptureFixture, refused_url: str, silent_url: str, where: str
) -> None:
    caplog.set_level(logging.DEBUG)
    url = refused_url if where == "refused" else silent_url
    nc = NewhedgeClient(SENTINEL_TOKEN, url, sleep=[].append, max_attempts=2, timeout=0.2)
    with pytest.raises(NewhedgeServerError) as info:
        nc.fetch_series(METRIC)
    assert str(info.value).startswith(
        f"Newhedge: GET {url}/api/v2/metrics/liquidations/{METRIC}?api_token=*** failed after 2 "
    )
    assert_no_secret(info.value, caplog, SENTINEL_TOKEN)


def test_successful_traffic_logs_no_secret(
    fresh_sim: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    kc = KweryClient(SENTINEL_BUSINESS_KEY, fresh_sim.url, sleep=[].append)
    assert len(kc.fetch("BTC", START, END).frame) > 2000
    NewhedgeClient(SENTINEL_TOKEN, fresh_sim.url).fetch_series(METRIC)
    assert "/v1/liquidations?api-key=***" in caplog.text  # urllib3's request lines, redacted
    assert "SENTINEL" not in caplog.text
    assert kc.credits_used > 0
