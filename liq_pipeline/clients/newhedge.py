"""Client of Newhedge's ``GET /api/v2/metrics/liquidations/{metric}``
(contract: docs/api/newhedge-v2-liquidations.txt).

Each metric is a whole daily series ``[[ms, value], ...]``; the client fetches it, checks it
against the contract and returns it. Whether the latest day is published yet is the asset
layer's business, not the client's.
"""

import logging
from typing import Any, Unpack

import numpy as np
import orjson
import pandas as pd

from liq_pipeline.clients.errors import (
    NewhedgeError,
    NewhedgeNotFound,
    NewhedgeProtocolError,
    NewhedgeRateLimited,
    NewhedgeServerError,
    NewhedgeUnauthorized,
)
from liq_pipeline.clients.http import ApiClient, HttpOptions, body_snippet, error_code
from liq_pipeline.contract import NEWHEDGE_METRICS

logger = logging.getLogger(__name__)

NEWHEDGE_BASE_URL = "https://newhedge.io"
NEWHEDGE_PATH = "/api/v2/metrics/liquidations/"

MS_PER_DAY = 86_400_000
# One exchange's liquidations of one side in one day: the largest days on record are tens of
# billions of USD across every exchange. A bound far above that catches garbage (1.7e308 would
# sum to inf in the totals) without ever refusing a real day.
MAX_DAILY_USD = 1e12
# Series start in 2020; anything outside 1970..2200 is not a day of this API.
_MAX_MS = 7_258_118_400_000

_WHAT_TO_DO: dict[type[NewhedgeError], str] = {
    NewhedgeUnauthorized: "the api_token is missing or invalid (it is a 24-character token); "
    "check NEWHEDGE_API_TOKEN",
    NewhedgeNotFound: "the metric does not exist at this address; check the metric name and the "
    "base URL (NEWHEDGE_BASE_URL)",
    NewhedgeRateLimited: "Newhedge rate-limited every attempt; retry later or run fewer Newhedge "
    "requests at once",
    NewhedgeServerError: "Newhedge kept failing; retry the run later",
    NewhedgeError: "unexpected answer; check the base URL (NEWHEDGE_BASE_URL)",
}


def _error_class(status: int) -> type[NewhedgeError]:
    if status == 401:
        return NewhedgeUnauthorized
    if status == 404:
        return NewhedgeNotFound
    if status == 429:
        return NewhedgeRateLimited
    if status >= 500:
        return NewhedgeServerError
    return NewhedgeError


def empty_series_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "day": np.array([], dtype="datetime64[s]"),
            "value": np.array([], dtype=np.float64),
        }
    )


def series_frame(metric: str, doc: Any) -> pd.DataFrame:
    """Validate a parsed series and return it as ``day`` (datetime64[s], naive UTC midnight) and
    ``value`` (float64), sorted by day. Raises NewhedgeProtocolError naming the metric and the
    offending point."""
    if not isinstance(doc, list):
        raise NewhedgeProtocolError(
            f"{metric}: the series must be a JSON array of [ms, value] pairs, "
            f"got a JSON {type(doc).__name__}"
        )
    if not doc:
        return empty_series_frame()
    try:
        ms = [point[0] for point in doc]
        values = [point[1] for point in doc]
        lengths = set(map(len, doc))
    except (TypeError, IndexError, KeyError):
        lengths = None
    if lengths != {2} or not all(type(point) is list for point in doc):
        raise NewhedgeProtocolError(_first_bad_point(metric, doc))
    if set(map(type, ms)) != {int} or not set(map(type, values)) <= {int, float}:
        raise NewhedgeProtocolError(_first_bad_point(metric, doc))

    if min(ms) < 0 or max(ms) > _MAX_MS:
        i = next(i for i, x in enumerate(ms) if not 0 <= x <= _MAX_MS)
        raise NewhedgeProtocolError(
            f"{metric}: point {i} has the timestamp {ms[i]} ms, not a plausible day"
        )
    ms_array = np.array(ms, dtype=np.int64)
    try:
        value_array = np.array(values, dtype=np.float64)
    except (
        OverflowError
    ):  # an integer beyond float64: inf, refused below like any implausible value
        value_array = np.array([v if abs(v) <= 1e308 else np.inf for v in values], dtype=np.float64)
    not_midnight = ms_array % MS_PER_DAY != 0
    if not_midnight.any():
        i = int(not_midnight.argmax())
        raise NewhedgeProtocolError(
            f"{metric}: point {i} ({ms[i]} ms = {_iso(ms[i])}) is not at 00:00 UTC; the series "
            "must have one point per UTC day"
        )
    order = np.argsort(ms_array, kind="stable")
    ms_array, value_array = ms_array[order], value_array[order]
    repeated = np.flatnonzero(ms_array[1:] == ms_array[:-1])
    if repeated.size:
        day_ms = int(ms_array[repeated[0]])
        raise NewhedgeProtocolError(
            f"{metric}: more than one value for the day {_iso(day_ms)[:10]} ({day_ms} ms)"
        )
    with np.errstate(invalid="ignore"):
        implausible = ~(np.abs(value_array) <= MAX_DAILY_USD)  # NaN and inf too
    if implausible.any():
        i = int(implausible.argmax())
        raise NewhedgeProtocolError(
            f"{metric}: the value of {_iso(int(ms_array[i]))[:10]} ({int(ms_array[i])} ms) is "
            f"{float(value_array[i])!r}, not a finite USD amount of at most {MAX_DAILY_USD:.0e}"
        )
    wrong_sign = value_array > 0 if metric.endswith("_short") else value_array < 0
    if wrong_sign.any():
        i = int(wrong_sign.argmax())
        expected = "<= 0 (shorts are published as negative values)"
        if metric.endswith("_long"):
            expected = ">= 0"
        raise NewhedgeProtocolError(
            f"{metric}: the value of {_iso(int(ms_array[i]))[:10]} ({int(ms_array[i])} ms) is "
            f"{float(value_array[i])!r}, expected {expected}"
        )
    gaps = int((np.diff(ms_array) // MS_PER_DAY - 1).sum())
    if gaps:
        # Not an error here: the asset for a missing day notices it; the rest is usable.
        logger.warning("Newhedge %s: %d day(s) missing inside the series", metric, gaps)
    return pd.DataFrame(
        {
            "day": (ms_array // 1000).astype("datetime64[s]"),
            "value": value_array,
        }
    )


def _first_bad_point(metric: str, doc: list[Any]) -> str:
    for i, point in enumerate(doc):
        if type(point) is not list or len(point) != 2:
            return f"{metric}: point {i} must be a [ms, value] pair, got {point!r:.60}"
        ms, value = point
        if type(ms) is not int:
            return f"{metric}: point {i} must start with integer milliseconds, got {ms!r:.40}"
        if type(value) not in (int, float):
            return (
                f"{metric}: the value of point {i} ({ms} ms = {_iso(ms)}) must be a number, "
                f"got {value!r:.40}"
            )
    return f"{metric}: the series does not match the contract"


def _iso(ms: int) -> str:
    try:
        return pd.Timestamp(ms, unit="ms", tz="UTC").isoformat()
    except (OverflowError, ValueError):
        return "out of range"


def _json(metric: str, body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise NewhedgeProtocolError(f"{metric}: the body is not valid JSON") from None


class NewhedgeClient(ApiClient):
    """Newhedge Bitcoin liquidation metrics: one whole daily series per request."""

    def __init__(
        self,
        api_token: str,
        base_url: str = NEWHEDGE_BASE_URL,
        **http: Unpack[HttpOptions],
    ) -> None:
        if not isinstance(api_token, str):
            raise TypeError("api_token must be a str")
        super().__init__(
            base_url, api="Newhedge", secret=api_token, transport_error=NewhedgeServerError, **http
        )
        self._api_token = api_token

    def fetch_series(self, metric: str) -> pd.DataFrame:
        """The whole published series of ``metric`` (one of NEWHEDGE_METRICS)."""
        if metric not in NEWHEDGE_METRICS:
            raise ValueError(
                f"unknown Newhedge metric {metric!r}; valid: {', '.join(NEWHEDGE_METRICS)}"
            )
        url = self.base_url + NEWHEDGE_PATH + metric
        params = {"api_token": self._api_token}
        result = self._http.get(url, params)
        get = f"GET {self._http.display_url(url, params)}"
        if result.response.status_code != 200:
            cls = _error_class(result.response.status_code)
            code = error_code(result.response.content)
            raise self._api_error(cls, result, f"metric {metric} ({get})", _WHAT_TO_DO[cls], code)
        try:
            return series_frame(metric, _json(metric, result.response.content))
        except NewhedgeProtocolError as problem:
            body = body_snippet(result.response.content, self._http.redact)
            raise NewhedgeProtocolError(
                f"Newhedge series {problem} ({get}). Body starts: {body}"
            ) from None

    def __repr__(self) -> str:
        return f"NewhedgeClient(base_url={self.base_url!r}, api_token='***')"
