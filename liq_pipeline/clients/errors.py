"""Typed errors of the Kwery and Newhedge clients.

Messages are built by the clients and are already redacted: they never contain the Kwery key or
the Newhedge token. The clients raise these outside of any ``except`` block (or ``from None``), so
the original ``requests`` exception, whose text contains the full URL with the secret, is never
chained into a traceback.
"""

from typing import Any


class LiqApiError(Exception):
    """Base of every error raised by the liquidation API clients.

    ``status`` is the HTTP status of the response that caused the error (None when there was no
    response, e.g. a connection failure or a local guard) and ``code`` the API error code found in
    the body, if any.
    """

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep status/code when the exception is pickled (e.g. sent between processes).
        return (type(self), (str(self),), {"status": self.status, "code": self.code})


class KweryError(LiqApiError):
    """Kwery API error; also raised as-is for an unknown 4xx."""


class KweryInvalidSymbol(KweryError):
    """400 invalid_symbol: the symbol is missing or not recognised."""


class KweryInvalidSide(KweryError):
    """400 invalid_side: side is not one of long, short, all."""


class KweryInvalidTimeRange(KweryError):
    """400 invalid_time_range: start after end, or the range exceeds the plan's history depth."""


class KweryUnauthorized(KweryError):
    """401 unauthorized: missing or invalid api-key."""


class KweryTierRestricted(KweryError):
    """403 tier_restricted: the plan does not support the requested feature (e.g. min_usd)."""


class KweryRateLimited(KweryError):
    """429 rate_limited on every attempt: the retries are exhausted."""


class KweryServerError(KweryError):
    """5xx, timeouts or dropped connections on every attempt: the retries are exhausted."""


class KweryProtocolError(KweryError):
    """The API answered 200 with something the contract does not allow.

    Malformed JSON, rows with missing fields or wrong types, a repeated cursor, ``has_more``
    without a cursor, more pages than the page cap.
    """


class KweryRowsCapped(KweryError):
    """``X-Rows-Capped: true``: the plan's row limit truncated the result."""


class CreditBudgetExceeded(KweryError):
    """The next request could exceed the configured credit budget; it was not sent."""


class NewhedgeError(LiqApiError):
    """Newhedge API error; also raised as-is for an unexpected status."""


class NewhedgeUnauthorized(NewhedgeError):
    """401: missing or invalid api_token."""


class NewhedgeNotFound(NewhedgeError):
    """404: the metric (or the base URL) does not exist."""


class NewhedgeRateLimited(NewhedgeError):
    """429 on every attempt: the retries are exhausted."""


class NewhedgeServerError(NewhedgeError):
    """5xx, timeouts or dropped connections on every attempt: the retries are exhausted."""


class NewhedgeProtocolError(NewhedgeError):
    """The series is not valid JSON or breaks the contract.

    Not [ms, value] pairs, not UTC midnights, two values for a day, or the wrong sign.
    """
