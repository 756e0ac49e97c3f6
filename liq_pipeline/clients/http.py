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
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Self, TypedDict, Unpack
from urllib.parse import unquote

import orjson
import requests

from liq_pipeline.clients.errors import LiqApiError
from liq_pipeline.redaction import Redactor

logger = logging.getLogger(__name__)

BODY_SNIPPET_CHARS = 300

# Failures worth another attempt: the request may succeed as is. Anything else from requests
# (invalid URL, too many redirects, ...) will fail the same way again.
_RETRYABLE_EXCEPTIONS = (
    requests.exceptions.ConnectionError,  # includes ConnectTimeout, dropped/refused connections
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,  # body cut short (fewer bytes than Content-Length)
)


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
    """The final response of :meth:`Http.get` and the number of attempts it took.

    The response is either not retryable (2xx, 3xx, 4xx other than 429) or the last 429/5xx
    once the attempts are exhausted; its body has been read completely.
    """

    response: requests.Response
    attempts: int


class HttpOptions(TypedDict, total=False):
    """Keyword options of :class:`Http` that both clients pass through."""

    timeout: float
    max_attempts: int
    backoff_base: float
    backoff_cap: float
    max_retry_after: float
    session: requests.Session | None
    sleep: Callable[[float], object]
    rng: random.Random | None


class Http:
    """``requests.Session`` GET with an explicit timeout and bounded retries.

    Retries 429 (waiting ``Retry-After`` when it is a usable hint, else backing off), 5xx,
    timeouts and dropped connections, at most ``max_attempts`` attempts in all. Failures without
    a response raise ``transport_error`` once exhausted; every message is redacted.
    """

    def __init__(
        self,
        *,
        api: str,
        secret: str,
        transport_error: type[LiqApiError],
        timeout: float = 30.0,
        max_attempts: int = 6,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        max_retry_after: float = 120.0,
        session: requests.Session | None = None,
        sleep: Callable[[float], object] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts!r}")
        if backoff_base < 0 or backoff_cap < 0 or max_retry_after < 0:
            raise ValueError("backoff_base, backoff_cap and max_retry_after must be >= 0")
        self.api = api
        self.redact = Redactor([secret])
        _protect_urllib3_logs()
        self._transport_error = transport_error
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_retry_after = max_retry_after
        self._owns_session = session is None
        self.session = session if session is not None else requests.Session()
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()
        self.requests = 0  # HTTP requests sent (every attempt), over the lifetime of this object
        self.retries = 0  # attempts that were failures followed by another attempt

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
            try:
                response = self.session.get(url, params=params, timeout=self.timeout)
            except _RETRYABLE_EXCEPTIONS as exc:
                failure = f"{type(exc).__name__}: {self.redact(str(exc))}"
            except Exception as exc:  # anything else may also quote the URL: never let it out raw
                failure = f"{type(exc).__name__}: {self.redact(str(exc))}"
                retryable = False
            # Decide and raise outside the except blocks, so no exception context is chained.
            if response is not None:
                status = response.status_code
                if status != 429 and status < 500:
                    return HttpResult(response, attempt)
                reason = f"HTTP {status}"
            else:
                reason = failure or "request failed"
            if not retryable or attempt >= self.max_attempts:
                if response is not None:
                    return HttpResult(response, attempt)
                tried = f"after {attempt} attempt{'s' if attempt > 1 else ''}"
                raise self._transport_error(
                    f"{self.api}: GET {self.display_url(url, params)} failed {tried}: {reason}. "
                    "Check the network and the base URL, then retry the run."
                )
            wait, note = self._wait(attempt, response)
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
        return f"Http(api={self.api!r}, timeout={self.timeout!r}, max_attempts={self.max_attempts})"


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
