"""The shared retry/redaction machinery (clients/http.py), without a network."""

import datetime as dt
import logging
import random
import traceback
from urllib.parse import quote_plus

import pytest
import requests

from liq_pipeline.clients.errors import KweryServerError
from liq_pipeline.clients.http import (
    Http,
    backoff_delay,
    body_snippet,
    error_code,
    parse_retry_after,
)
from liq_pipeline.redaction import Redactor
from liq_pipeline_tests.clients.helpers import (
    SENTINEL,
    FakeSession,
    Sleeper,
    VirtualClock,
    make_response,
    raising,
)

URL = "http://api.test/v1/liquidations"
PARAMS = {"api-key": SENTINEL, "symbol": "BTC"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2", 2.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("0", None),
        ("-3", None),
        ("abc", None),
        ("", None),
        (None, None),
        ("nan", None),
        ("inf", None),
        ("Fri, 20 Mar 2026 12:00:30 GMT", 30.0),
        ("Fri, 20 Mar 2026 11:59:00 GMT", None),  # in the past
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    now = dt.datetime(2026, 3, 20, 12, 0, tzinfo=dt.UTC)
    assert parse_retry_after(value, now) == expected


def test_backoff_is_full_jitter_capped_exponential() -> None:
    rng = random.Random(7)
    for attempt in range(1, 12):
        bound = min(30.0, 0.5 * 2 ** (attempt - 1))
        waits = [backoff_delay(attempt, 0.5, 30.0, rng) for _ in range(200)]
        assert all(0.0 <= w <= bound for w in waits)
        assert max(waits) > bound * 0.8  # jitter spreads over the whole range
    assert backoff_delay(10_000, 0.5, 30.0, rng) <= 30.0  # no overflow


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"error": {"code": "invalid_side", "message": "x"}}', "invalid_side"),
        (b'{"error": "tier_restricted"}', "tier_restricted"),
        (b'{"code": "unauthorized"}', "unauthorized"),
        (b'{"detail": "nope"}', None),
        (b'{"error": {"code": 5}}', None),
        (b"[1, 2]", None),
        (b"<html>Bad gateway</html>", None),
        (b"", None),
    ],
)
def test_error_code_shapes(body: bytes, code: str | None) -> None:
    assert error_code(body) == code


def test_body_snippet_truncates_flattens_and_redacts() -> None:
    redact = Redactor([SENTINEL])
    body = ("line one\n  " + SENTINEL + " " + "x" * 500).encode()
    snippet = body_snippet(body, redact)
    assert snippet.startswith("line one *** xxx")
    assert snippet.endswith("...")
    assert len(snippet) == 303
    assert body_snippet(b"", redact) == "<empty body>"
    assert body_snippet(b"\xff\xfeok", redact) == "\ufffd\ufffdok"


def make_http(session: FakeSession, sleeps: list[float], **kwargs: object) -> Http:
    options: dict = {
        "api": "Kwery",
        "secret": SENTINEL,
        "transport_error": KweryServerError,
        "session": session,
        "sleep": sleeps.append,
        "rng": random.Random(3),
        "max_attempts": 4,
    }
    options.update(kwargs)
    return Http(**options)


def test_success_first_time_no_sleep(sleeps: list[float]) -> None:
    session = FakeSession([make_response(200, b"[]")])
    http = make_http(session, sleeps, timeout=12.5)
    result = http.get(URL, PARAMS)
    assert (result.response.status_code, result.attempts) == (200, 1)
    assert session.calls == [(URL, PARAMS, (10.0, 12.5))]  # explicit timeouts on every request
    assert (http.requests, http.retries, sleeps) == (1, 0, [])


def test_retry_after_is_honoured_then_success(sleeps: list[float]) -> None:
    session = FakeSession(
        [
            make_response(429, b"{}", {"Retry-After": "2"}),
            make_response(429, b"{}", {"Retry-After": "3"}),
            make_response(200, b"[]"),
        ]
    )
    http = make_http(session, sleeps)
    result = http.get(URL, PARAMS)
    assert (result.response.status_code, result.attempts) == (200, 3)
    assert sleeps == [2.0, 3.0]
    assert (http.requests, http.retries) == (3, 2)


@pytest.mark.parametrize("header", ["0", "abc", "99999", None])
def test_unusable_retry_after_falls_back_to_backoff(
    header: str | None, sleeps: list[float]
) -> None:
    headers = {} if header is None else {"Retry-After": header}
    session = FakeSession([make_response(429, b"{}", headers) for _ in range(4)])
    http = make_http(session, sleeps, backoff_base=0.5, backoff_cap=1.5, max_retry_after=120.0)
    result = http.get(URL, PARAMS)
    assert (result.response.status_code, result.attempts) == (429, 4)
    assert len(sleeps) == 3  # no sleep after the last attempt
    for attempt, wait in enumerate(sleeps, start=1):
        assert 0.0 <= wait <= min(1.5, 0.5 * 2 ** (attempt - 1))


@pytest.mark.parametrize(
    "failure",
    [
        make_response(500, b"oops"),
        make_response(502, b"oops"),
        make_response(503, b"oops"),
        raising(requests.exceptions.ReadTimeout),
        raising(requests.exceptions.ConnectTimeout),
        raising(requests.exceptions.ConnectionError),
        raising(requests.exceptions.ChunkedEncodingError),
    ],
)
def test_transient_failures_are_retried_with_backoff(failure: object, sleeps: list[float]) -> None:
    session = FakeSession([failure, failure, make_response(200, b"[]")])
    http = make_http(session, sleeps, backoff_base=1.0, backoff_cap=10.0)
    result = http.get(URL, PARAMS)
    assert (result.response.status_code, result.attempts) == (200, 3)
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= 1.0 and 0 <= sleeps[1] <= 2.0


def test_exhausted_5xx_returns_the_last_response(sleeps: list[float]) -> None:
    session = FakeSession([make_response(502, b"bad gateway") for _ in range(4)])
    result = make_http(session, sleeps).get(URL, PARAMS)
    assert (result.response.status_code, result.attempts, len(sleeps)) == (502, 4, 3)


def test_4xx_is_not_retried(sleeps: list[float]) -> None:
    session = FakeSession([make_response(400, b'{"error": "invalid_side"}')])
    result = make_http(session, sleeps).get(URL, PARAMS)
    assert (result.response.status_code, result.attempts, sleeps) == (400, 1, [])


def test_exhausted_connection_failures_raise_a_redacted_typed_error(
    sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    session = FakeSession([raising(requests.exceptions.ReadTimeout) for _ in range(4)])
    http = make_http(session, sleeps)
    with pytest.raises(KweryServerError) as info:
        http.get(URL, PARAMS)
    exc = info.value
    assert str(exc) == (
        "Kwery: GET http://api.test/v1/liquidations?api-key=***&symbol=BTC failed after 4 "
        "attempts: ReadTimeout: HTTPConnectionPool(host='x', port=1): failed with url: "
        "http://api.test/v1/liquidations?api-key=***&symbol=BTC. "
        "Check the network and the base URL, then retry the run."
    )
    assert exc.__cause__ is None and exc.__context__ is None
    text = "".join(traceback.format_exception(exc)) + repr(exc) + caplog.text
    assert SENTINEL not in text and "s3cr3t" not in text
    assert len(sleeps) == 3
    warnings = [r for r in caplog.records if r.name == "liq_pipeline.clients.http"]
    assert len(warnings) == 3
    assert (
        warnings[0]
        .getMessage()
        .startswith(
            "Kwery: ReadTimeout: HTTPConnectionPool(host='x', port=1): failed with url: "
            "http://api.test/v1/liquidations?api-key=***&symbol=BTC on attempt 1/4 for GET "
            "http://api.test/v1/liquidations?api-key=***&symbol=BTC; retrying in "
        )
    )


def test_a_non_retryable_requests_error_is_sanitised_not_retried(sleeps: list[float]) -> None:
    session = FakeSession([raising(requests.exceptions.InvalidURL)])
    with pytest.raises(KweryServerError) as info:
        make_http(session, sleeps).get(URL, PARAMS)
    assert "&symbol=BTC failed: InvalidURL" in str(info.value)
    assert str(info.value).endswith("retrying would not help.")
    assert SENTINEL not in "".join(traceback.format_exception(info.value))
    assert info.value.__context__ is None
    assert sleeps == []


def test_urllib3_debug_lines_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    make_http(FakeSession([]), [])  # installs the filter on urllib3's loggers
    caplog.set_level(logging.DEBUG)
    # urllib3 logs the request target as sent, i.e. with the key URL-encoded
    logging.getLogger("urllib3.connectionpool").debug(
        '%s://%s:%s "%s %s %s" %s %s',
        "http",
        "h",
        80,
        "GET",
        f"/p?api-key={quote_plus(SENTINEL)}",
        "HTTP/1.1",
        200,
        5,
    )
    assert "s3cr3t" not in caplog.text
    assert '"GET /p?api-key=*** HTTP/1.1" 200 5' in caplog.text


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        make_http(FakeSession([]), [], max_attempts=0)
    with pytest.raises(ValueError, match="timeout"):
        make_http(FakeSession([]), [], timeout=0)


def test_close_only_closes_an_owned_session() -> None:
    session = FakeSession([])
    make_http(session, []).close()
    assert not session.closed
    own = Http(api="Kwery", secret="k", transport_error=KweryServerError)
    own.close()
    assert SENTINEL not in repr(make_http(session, []))


def test_the_retry_budget_bounds_a_runs_retries_and_is_stated_when_used_up() -> None:
    clock = VirtualClock()
    sleeper = Sleeper(clock)
    session = FakeSession([make_response(503, b"down") for _ in range(20)])
    http = make_http(
        session, sleeper, clock=clock, max_attempts=20, retry_budget=10.0,
        backoff_base=4.0, backoff_cap=4.0, rng=random.Random(0),
    )  # fmt: skip
    result = http.get(URL, PARAMS)
    assert result.response.status_code == 503
    assert sum(sleeper) <= 10.0 < sum(sleeper) + 4.0  # stopped before a wait would overrun
    assert result.attempts == len(sleeper) + 1
    assert result.tried == (
        f" after {result.attempts} attempts and {sum(sleeper):.0f} s of retries (the run's retry "
        "budget of 10 s is used up; raise retry_budget_seconds to wait longer)"
    )
    # The budget is per client (one run): the next request has nothing left to retry with.
    session.script.append(make_response(503, b"down"))
    again = http.get(URL, PARAMS)
    assert again.attempts == 1 and "retry budget of 10 s is used up" in again.tried


def test_a_hanging_attempt_gets_only_what_is_left_of_the_budget() -> None:
    clock = VirtualClock()

    def hang(url: str, params: object) -> requests.Response:
        clock.now += session.calls[-1][2][1]  # the server never answers: the read timeout expires
        raise requests.exceptions.ReadTimeout("read timed out")

    session = FakeSession([hang, hang, hang, hang])
    http = make_http(session, Sleeper(clock), clock=clock, retry_budget=40.0, timeout=30.0)
    with pytest.raises(KweryServerError) as err:
        http.get(URL, PARAMS)
    assert [call[2] for call in session.calls] == [(10.0, 30.0), (10.0, pytest.approx(10.0, abs=1))]
    assert "retry budget of 40 s is used up" in str(err.value)
    assert "ReadTimeout" in str(err.value)


def test_a_host_that_does_not_resolve_fails_at_once(sleeps: list[float]) -> None:
    def unresolvable(url: str, params: object) -> requests.Response:
        try:
            requests.get("http://kwery-api.invalid/", timeout=5)
        except requests.exceptions.ConnectionError as exc:
            raise exc from None
        raise AssertionError("kwery-api.invalid resolved")

    session = FakeSession([unresolvable])
    with pytest.raises(KweryServerError) as err:
        make_http(session, sleeps).get(URL, PARAMS)
    assert str(err.value).endswith(
        "failed: the host name does not resolve (DNS). Check the base URL and the machine's "
        "DNS/network; retrying would not help."
    )
    assert (len(session.calls), sleeps) == (1, [])
