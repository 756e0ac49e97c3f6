"""The one HTTP GET both clients use: explicit timeout, bounded retries, redaction of secrets.

Both APIs take their secret in the query string (Kwery ``api-key``, Newhedge ``api_token``), so
every URL ``requests`` builds contains it, and so does the text of every ``requests`` exception.
Nothing from here may reach a message, a log line or a traceback without going through a
:class:`~liq_pipeline.redaction.Redactor`, and no ``requests`` exception is ever chained to
ours.
"""

import email.utils
import logging
import math
import random
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Self, TypedDict, Unpack
from urllib.parse import unquote

import orjson
import requests
import urllib3

from liq_pipeline.clients.errors import LiqApiError
from liq_pipeline.redaction import Redactor

logger = logging.getLogger(__name__)

BODY_SNIPPET_CHARS = 300

# Failures worth another attempt: the request may succeed as is. Anything else from requests
# (invalid URL, too many redirects, ...) will fail the same way again, and so does a host name
# that does not resolve (see `_unresolvable`).
_RETRYABLE_EXCEPTIONS = (
    requests.exceptions.ConnectionError,  # includes ConnectTimeout, dropped/refused connections
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,  # body cut short (fewer bytes than Content-Length)
)
# Defaults sized for the APIs: a page answers in well under a second, so 30 s without a byte is a
# hang; the retry budget bounds a whole run's retries (and hangs) to minutes, not hours.
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 30.0
RETRY_BUDGET_S = 300.0


def _unresolvable(exc: BaseException) -> bool:
    """Whether a requests error is a DNS failure: the host name does not resolve."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        err = stack.pop()
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, socket.gaierror | urllib3.exceptions.NameResolutionError):
            return True
        stack.extend([err.__cause__, err.__context__, getattr(err, "reason", None)])
        stack.extend(arg for arg in err.args if isinstance(arg, BaseException))
    return False


class _RedactingLogFilter(logging.Filter):
    """Redact urllib3's own log records by parameter name.

    At DEBUG level urllib3 logs every request line (``GET /v1/liquidations?api-key=... 200``); a
    deployment that turns on DEBUG logging must not leak the key through it. The secret only
    appears there as a query value, so redacting by name suffices, and this process-wide
    filter keeps no secret values.
    """

    def __init__(self) -> None:
        super().__init__()
        self._redact = Redactor(())

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self._redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


_URLLIB3_LOG_FILTER = _RedactingLogFilter()
_URLLIB3_LOGGERS = ("urllib3.connectionpool", "urllib3.util.retry", "urllib3.connection")


def _protect_urllib3_logs() -> None:
    for name in _URLLIB3_LOGGERS:
        urllib3_logger = logging.getLogger(name)
        if _URLLIB3_LOG_FILTER not in urllib3_logger.filters:
            urllib3_logger.addFilter(_URLLIB3_LOG_FILTER)


def normalise_base_url(base_url: str) -> str:
    base_url = base_url.strip().rstrip("/")
    if not base_url.startswith(("http://", "https://")):
        raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
    return base_url


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header, or None when it gives no usable hint.

    Accepts delay-seconds (``"2"``, also ``"2.5"``) and an HTTP-date. Missing, unparseable,
    zero or negative (a date in the past) mean "no hint"; the caller also ignores values above
    its cap and backs off instead.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds) or seconds <= 0:
        return None
    return seconds


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Capped exponential backoff, full jitter: uniform in [0, min(cap, base * 2**(attempt-1))]."""
    return rng.uniform(0.0, min(cap, base * 2.0 ** min(attempt - 1, 60)))


def error_code(body: bytes) -> str | None:
    """The API error code of an error body, if it has one in a shape we recognise.

    Neither contract documents the error body, so accept the common shapes
    ``{"error": {"code": ...}}``, ``{"error": "code"}`` and ``{"code": ...}`` and nothing else.
    """
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    error = doc.get("error")
    if isinstance(error, dict):
        code = error.get("code")
    elif isinstance(error, str):
        code = error
    else:
        code = doc.get("code")
    return code if isinstance(code, str) and code else None


def body_snippet(body: bytes, redact: Callable[[str], str], limit: int = BODY_SNIPPET_CHARS) -> str:
    """The first ``limit`` characters of a body, on one line, redacted."""
    # Redact before cutting: a cut could leave a partial secret the redactor no longer matches.
    text = " ".join(redact(body.decode("utf-8", errors="replace")).split())
    if len(text) > limit:
        text = text[:limit] + "..."
    return text or "<empty body>"


@dataclass(frozen=True)
class HttpResult:
    """The final response of :meth:`Http.get`, the attempts it took and how they ended.

    The response is either not retryable (2xx, 3xx, 4xx other than 429) or the last 429/5xx
    once the attempts or the retry budget are used up; its body has been read completely.
    `tried` says so for messages: "" for one attempt, else e.g. " after 6 attempts".
    """

    response: requests.Response
    attempts: int
    tried: str = ""


class HttpOptions(TypedDict, total=False):
    """Keyword options of :class:`Http` that both clients pass through."""

    timeout: float
    connect_timeout: float
    retry_budget: float
    max_attempts: int
    backoff_base: float
    backoff_cap: float
    max_retry_after: float
    session: requests.Session | None
    sleep: Callable[[float], object]
    clock: Callable[[], float]
    rng: random.Random | None


class Http:
    """``requests.Session`` GET with explicit timeouts and retries bounded in count and time.

    Retries 429 (waiting ``Retry-After`` when it is a usable hint, else backing off), 5xx,
    timeouts and dropped or refused connections: at most ``max_attempts`` attempts per request,
    and at most ``retry_budget`` seconds spent in failed attempts and waits over the lifetime of
    the object (one run). A host that does not resolve, an invalid URL and every other error
    fail at once. Failures without a response raise ``transport_error``; every message is
    redacted. Each attempt's read timeout is cut to what is left of the budget, so a hanging API
    fails within it.
    """

    def __init__(
        self,
        *,
        api: str,
        secret: str,
        transport_error: type[LiqApiError],
        timeout: float = READ_TIMEOUT_S,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        retry_budget: float = RETRY_BUDGET_S,
        max_attempts: int = 6,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        max_retry_after: float = 120.0,
        session: requests.Session | None = None,
        sleep: Callable[[float], object] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if not (timeout > 0 and connect_timeout > 0):
            raise ValueError(f"timeouts must be > 0 seconds, got {timeout!r}, {connect_timeout!r}")
        if not retry_budget >= 0:
            raise ValueError(f"retry_budget must be >= 0 seconds, got {retry_budget!r}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts!r}")
        if backoff_base < 0 or backoff_cap < 0 or max_retry_after < 0:
            raise ValueError("backoff_base, backoff_cap and max_retry_after must be >= 0")
        self.api = api
        self.redact = Redactor([secret])
        _protect_urllib3_logs()
        self._transport_error = transport_error
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.retry_budget = retry_budget
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_retry_after = max_retry_after
        self._owns_session = session is None
        self.session = session if session is not None else requests.Session()
        self._sleep = sleep
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self.requests = 0  # HTTP requests sent (every attempt), over the lifetime of this object
        self.retries = 0  # attempts that were failures followed by another attempt
        self.retry_seconds = 0.0  # spent in failed attempts and waits (what the budget bounds)

    def display_url(self, url: str, params: Mapping[str, str]) -> str:
        """The full request URL with the secret redacted, for messages and logs."""
        prepared = requests.Request("GET", url, params=dict(params)).prepare()
        # Decoded for readability (start=2026-03-08T00:00:00.000Z, not %3A); redacted before
        # and after decoding so no encoding of the secret survives.
        return self.redact(unquote(self.redact(prepared.url or url)))

    def get(self, url: str, params: Mapping[str, str]) -> HttpResult:
        attempt = 0
        while True:
            attempt += 1
            self.requests += 1
            response: requests.Response | None = None
            failure: str | None = None
            retryable = True
            started = self._clock()
            # A hang must not outlast the budget: the read timeout is what is left of it.
            read_timeout = max(1.0, min(self.timeout, self.retry_budget - self.retry_seconds))
            try:
                response = self.session.get(
                    url, params=params, timeout=(self.connect_timeout, read_timeout)
                )
            except _RETRYABLE_EXCEPTIONS as exc:
                failure = f"{type(exc).__name__}: {self.redact(str(exc))}"
                if _unresolvable(exc):
                    failure = "the host name does not resolve (DNS)"
                    retryable = False
            except Exception as exc:  # anything else may also quote the URL: never let it out raw
                failure = f"{type(exc).__name__}: {self.redact(str(exc))}"
                retryable = False
            # Decide and raise outside the except blocks, so no exception context is chained.
            if response is not None:
                status = response.status_code
                if status != 429 and status < 500:
                    return HttpResult(response, attempt, self._tried(attempt))
                reason = f"HTTP {status}"
            else:
                reason = failure or "request failed"
            self.retry_seconds += self._clock() - started
            wait, note = self._wait(attempt, response)
            out_of_budget = self.retry_seconds + wait > self.retry_budget
            if not retryable or attempt >= self.max_attempts or out_of_budget:
                tried = self._tried(attempt, out_of_budget and retryable)
                if response is not None:
                    return HttpResult(response, attempt, tried)
                advice = (
                    "Check the base URL and the machine's DNS/network; retrying would not help."
                    if not retryable
                    else "Check the network and the base URL, then retry the run."
                )
                raise self._transport_error(
                    f"{self.api}: GET {self.display_url(url, params)} failed{tried}: {reason}. "
                    + advice
                )
            self.retries += 1
            logger.warning(
                "%s: %s%s on attempt %d/%d for GET %s; retrying in %.2f s",
                self.api,
                reason,
                self.redact(note),
                attempt,
                self.max_attempts,
                self.display_url(url, params),
                wait,
            )
            self._sleep(wait)
            self.retry_seconds += wait

    def _tried(self, attempt: int, budget_used_up: bool = False) -> str:
        if budget_used_up:
            return (
                f" after {attempt} attempt{'s' if attempt > 1 else ''} and "
                f"{self.retry_seconds:.0f} s of retries (the run's retry budget of "
                f"{self.retry_budget:g} s is used up; raise retry_budget_seconds to wait longer)"
            )
        return f" after {attempt} attempts" if attempt > 1 else ""

    def _wait(self, attempt: int, response: requests.Response | None) -> tuple[float, str]:
        if response is not None and response.status_code in (429, 503):
            header = response.headers.get("Retry-After")
            hint = parse_retry_after(header)
            if hint is not None and hint <= self.max_retry_after:
                return hint, f" (Retry-After {header!r})"
            if header is not None:
                note = f" (Retry-After {header[:40]!r} ignored: not a usable wait)"
            else:
                note = " (no Retry-After)" if response.status_code == 429 else ""
        else:
            note = ""
        return backoff_delay(attempt, self.backoff_base, self.backoff_cap, self._rng), note

    def close(self) -> None:
        if self._owns_session:
            self.session.close()

    def __repr__(self) -> str:
        return (
            f"Http(api={self.api!r}, timeout={self.timeout!r}, max_attempts={self.max_attempts}, "
            f"retry_budget={self.retry_budget!r})"
        )


class ApiClient:
    """What both clients share: a normalised base URL, one :class:`Http`, its counters, closing."""

    def __init__(
        self,
        base_url: str,
        *,
        api: str,
        secret: str,
        transport_error: type[LiqApiError],
        **http: Unpack[HttpOptions],
    ) -> None:
        self.base_url = normalise_base_url(base_url)
        self._http = Http(api=api, secret=secret, transport_error=transport_error, **http)

    def _api_error(
        self,
        cls: type[LiqApiError],
        result: HttpResult,
        request: str,
        what_to_do: str,
        code: str | None,
    ) -> LiqApiError:
        """The typed error of a non-200 answer: status and API code, the redacted request, the
        retries, what to do, and the start of the (redacted) body."""
        status = result.response.status_code
        body = body_snippet(result.response.content, self._http.redact)
        return cls(
            f"{self._http.api} API error {status}{' ' + code if code else ''} for {request}"
            f"{result.tried}: {what_to_do}. Response body: {body}",
            status=status,
            code=code,
        )

    @property
    def requests(self) -> int:
        """HTTP requests sent over the lifetime of the client, retries included."""
        return self._http.requests

    @property
    def retries(self) -> int:
        return self._http.retries

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
