"""Client of Kwery's ``GET /v1/liquidations`` (contract: ../shared/seeds/000_962e6df08af9770a.txt).

Every request costs 25 credits plus 2 per row returned, so pages are as large as the API allows
(``limit=1000``) and a failed page is retried alone: the cursor loop never restarts and a row is
never fetched twice.
"""

import logging
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Unpack

import numpy as np
import orjson
import pandas as pd
from requests import Response

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
)
from liq_pipeline.clients.http import (
    ApiClient,
    HttpOptions,
    HttpResult,
    body_snippet,
    error_code,
)

logger = logging.getLogger(__name__)

KWERY_BASE_URL = "https://kwery-api.com"
KWERY_PATH = "/v1/liquidations"
KWERY_COLUMNS = (
    "timestamp",
    "symbol",
    "source",
    "side",
    "quantity",
    "price",
    "avg_price",
    "usd_value",
)
MAX_LIMIT = 1000
CREDITS_PER_REQUEST = 25
CREDITS_PER_ROW = 2

_TEXT_COLUMNS = ("symbol", "source", "side")
_NUMBER_COLUMNS = ("quantity", "price", "avg_price", "usd_value")
_SIDES = frozenset({"long", "short"})
# A liquidation has a positive size, prices and value. The upper bounds are far beyond any real
# event (the largest single liquidations on record are a few hundred million USD) and catch
# garbage such as 1.7e308 or a value in the wrong unit before it reaches sums and charts.
_NUMBER_BOUNDS = {"quantity": 1e15, "price": 1e15, "avg_price": 1e15, "usd_value": 1e11}
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class KweryStats:
    """Accounting of one ``iter_pages``/``fetch`` call, cumulative up to the current page.

    ``requests`` counts every HTTP request sent (retries included), ``retries`` the requests
    that were re-sent after a failure, ``pages``/``rows`` what was accepted. ``credits_used``
    sums ``X-Credits-Used``; ``credits_remaining`` is the last ``X-Credits-Remaining`` seen.
    ``pages_without_credits_header`` counts 200 pages whose ``X-Credits-Used`` was missing or
    not an integer (counted as 0 credits).
    """

    requests: int = 0
    pages: int = 0
    rows: int = 0
    credits_used: int = 0
    credits_remaining: int | None = None
    retries: int = 0
    pages_without_credits_header: int = 0


@dataclass(frozen=True)
class KweryPage:
    """One page: exactly the rows the API returned (KWERY_COLUMNS), and the stats so far."""

    frame: pd.DataFrame
    stats: KweryStats


@dataclass(frozen=True)
class KweryResult:
    """All rows of a range in one frame, and the stats of the whole call."""

    frame: pd.DataFrame
    stats: KweryStats


def empty_kwery_frame() -> pd.DataFrame:
    """A frame with KWERY_COLUMNS, the client's dtypes and no rows."""
    data: dict[str, Any] = {"timestamp": pd.DatetimeIndex([], dtype="datetime64[ms, UTC]")}
    for name in _TEXT_COLUMNS:
        data[name] = pd.array([], dtype="str")
    for name in _NUMBER_COLUMNS:
        data[name] = np.array([], dtype=np.float64)
    return pd.DataFrame(data, columns=list(KWERY_COLUMNS))


def kwery_frame(rows: Sequence[Any]) -> pd.DataFrame:
    """Validate the ``data`` rows of a page and build its frame, in the API's order.

    Works column by column (a comprehension per column, a set of types per column) instead of
    row by row; only when something is wrong does it scan rows to name the first bad one.
    Raises KweryProtocolError naming the first bad row index and field.
    """
    if not rows:
        return empty_kwery_frame()
    try:
        columns = {name: [row[name] for row in rows] for name in KWERY_COLUMNS}
    except (KeyError, TypeError, IndexError):
        raise KweryProtocolError(_first_bad_row(rows)) from None
    for name in ("timestamp", *_TEXT_COLUMNS):
        if set(map(type, columns[name])) != {str}:
            raise KweryProtocolError(_first_bad_row(rows))
    for name in _NUMBER_COLUMNS:
        if not set(map(type, columns[name])) <= {int, float}:
            raise KweryProtocolError(_first_bad_row(rows))
    if not set(columns["side"]) <= _SIDES:
        raise KweryProtocolError(_first_bad_row(rows))

    parsed = pd.to_datetime(columns["timestamp"], format="ISO8601", utc=True, errors="coerce")
    if parsed.isna().any():
        i = int(np.argmax(parsed.isna()))
        raise KweryProtocolError(
            f"row {i}: field 'timestamp' is not an ISO 8601 time: {columns['timestamp'][i]!r:.60}"
        )
    timestamps = parsed.astype("datetime64[ms, UTC]")
    if (timestamps != parsed).any():
        # The warehouse keeps milliseconds; truncating would silently change the data.
        i = int(np.argmax(timestamps != parsed))
        raise KweryProtocolError(
            f"row {i}: field 'timestamp' has sub-millisecond precision, which the contract "
            f"does not allow: {columns['timestamp'][i]!r:.60}"
        )

    data: dict[str, Any] = {"timestamp": timestamps}
    for name in _TEXT_COLUMNS:
        _check_text(name, columns[name])
        data[name] = pd.array(columns[name], dtype="str")
    for name in _NUMBER_COLUMNS:
        data[name] = _checked_numbers(name, columns[name])
    return pd.DataFrame(data, columns=list(KWERY_COLUMNS))


def _check_text(name: str, values: list[str]) -> None:
    # Distinct values only: a page repeats the same few symbols and sources.
    bad = [value for value in set(values) if _CONTROL_CHARACTER.search(value)]
    if bad:
        i = next(i for i, value in enumerate(values) if _CONTROL_CHARACTER.search(value))
        char = _CONTROL_CHARACTER.search(values[i]).group()  # type: ignore[union-attr]
        raise KweryProtocolError(
            f"row {i}: field {name!r} contains the control character U+{ord(char):04X}: "
            f"{values[i]!r:.60}"
        )


def _checked_numbers(name: str, values: list[int | float]) -> np.ndarray:
    """The column as float64, if every value is finite, > 0 and at most its bound."""
    try:
        array = np.array(values, dtype=np.float64)
    except OverflowError:  # an integer beyond float64
        array = np.array([math.inf if abs(v) > 1e308 else v for v in values], dtype=np.float64)
    bound = _NUMBER_BOUNDS[name]
    with np.errstate(invalid="ignore"):
        bad = ~((array > 0) & (array <= bound))  # NaN and inf fail too
    if bad.any():
        i = int(bad.argmax())
        raise KweryProtocolError(
            f"row {i}: field {name!r} must be a finite number > 0 and <= {bound:.0e}, "
            f"got {values[i]!r:.40}"
        )
    return array


def _first_bad_row(rows: Sequence[Any]) -> str:
    """Describe the first row/field that breaks the contract (the slow path, errors only)."""
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            return f"row {i} is a JSON {type(row).__name__}, not an object"
        for name in KWERY_COLUMNS:
            if name not in row:
                return f"row {i}: field {name!r} is missing"
            value = row[name]
            if name in _NUMBER_COLUMNS:
                if type(value) not in (int, float):
                    return (
                        f"row {i}: field {name!r} must be a number, "
                        f"got {type(value).__name__} {value!r:.60}"
                    )
            elif type(value) is not str:
                return (
                    f"row {i}: field {name!r} must be a string, "
                    f"got {type(value).__name__} {value!r:.60}"
                )
            elif name == "side" and value not in _SIDES:
                return f"row {i}: field 'side' must be 'long' or 'short', got {value!r:.60}"
    return "rows do not match the contract"


def _epoch_ms(name: str, value: datetime) -> int:
    """Milliseconds since the epoch, rounded up: events have ms precision, so for [start, end)
    ``t >= start`` is ``t >= ceil_ms(start)`` (and likewise for end)."""
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a timezone-aware datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"{name} must be a timezone-aware datetime (e.g. tzinfo=datetime.UTC), "
            f"got the naive {value.isoformat()}"
        )
    if isinstance(value, pd.Timestamp):
        return -(-pd.Timestamp(value).as_unit("ns").value // 1_000_000)
    delta = value - _EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return -(-micros // 1000)


def _iso_ms(ms: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.fffZ``."""
    moment = _EPOCH + timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


_ERROR_BY_CODE: dict[str, type[KweryError]] = {
    "invalid_symbol": KweryInvalidSymbol,
    "invalid_side": KweryInvalidSide,
    "invalid_time_range": KweryInvalidTimeRange,
    "unauthorized": KweryUnauthorized,
    "tier_restricted": KweryTierRestricted,
}

_WHAT_TO_DO: dict[type[KweryError], str] = {
    KweryInvalidSymbol: "the symbol is missing or not recognised by Kwery; use a symbol such as "
    "BTC or ETH (check LIQ_KWERY_SYMBOLS)",
    KweryInvalidSide: "side must be one of long, short, all",
    KweryInvalidTimeRange: "start/end may be reversed, or the range exceeds your plan's history "
    "depth (Free 1 day, Pro 30 days, Business full history); use a Business key for backfills",
    KweryUnauthorized: "the api-key is missing or invalid; check KWERY_API_KEY",
    KweryTierRestricted: "your plan does not support this request (min_usd needs the Business "
    "plan); drop the option or use a Business key",
    KweryRateLimited: "Kwery rate-limited every attempt; lower the number of concurrent Kwery "
    "runs, retry later or use a plan with a higher request rate",
    KweryServerError: "Kwery kept failing; retry the run later",
    KweryError: "an answer the contract does not document; see the response body, and check "
    "the base URL (KWERY_BASE_URL) and the parameters",
}


def _error_class(status: int, code: str | None) -> type[KweryError]:
    # Status first (the contract gives no error-body format), then the body code if present;
    # a code the contract does not list (e.g. an out-of-credits 403) is not guessed at.
    if status == 429:
        return KweryRateLimited
    if status >= 500:
        return KweryServerError
    if code is not None:
        return _ERROR_BY_CODE.get(code, KweryError)
    if status == 401:
        return KweryUnauthorized
    if status == 403:
        return KweryTierRestricted
    return KweryError


class KweryClient(ApiClient):
    """Kwery liquidations: every event of ``[start, end)`` for a symbol, page by page.

    ``credit_budget`` caps the credits this client may spend over its lifetime: before each
    request, if ``credits_used + 25 + 2 * limit`` (the most the request can cost) would exceed
    it, CreditBudgetExceeded is raised and the request is not sent.
    """

    def __init__(
        self,
        api_key: str,
        base_url: str = KWERY_BASE_URL,
        *,
        max_pages: int = 100_000,
        credit_budget: int | None = None,
        **http: Unpack[HttpOptions],
    ) -> None:
        if not isinstance(api_key, str):
            raise TypeError("api_key must be a str")
        if max_pages < 1:
            raise ValueError(f"max_pages must be >= 1, got {max_pages!r}")
        if credit_budget is not None and credit_budget < 0:
            raise ValueError(f"credit_budget must be >= 0 or None, got {credit_budget!r}")
        super().__init__(
            base_url, api="Kwery", secret=api_key, transport_error=KweryServerError, **http
        )
        self._api_key = api_key
        self.max_pages = max_pages
        self.credit_budget = credit_budget
        self.credits_used = 0  # over the lifetime of the client (what the budget applies to)
        self.credits_remaining: int | None = None

    def iter_pages(
        self,
        symbol: str,
        start: datetime,
        end: datetime,
        *,
        side: str = "all",
        min_usd: float | None = None,
        limit: int = MAX_LIMIT,
    ) -> Iterator[KweryPage]:
        """Yield every page of ``[start, end)`` (aware datetimes), in the API's order.

        ``side`` and ``symbol`` are sent as given (the API answers invalid values with a typed
        error); ``min_usd`` needs a Business key.
        """
        start_ms = _epoch_ms("start", start)
        end_ms = _epoch_ms("end", end)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be an integer in 1..{MAX_LIMIT}, got {limit!r}")
        params = {
            "api-key": self._api_key,
            "symbol": symbol,
            "start": _iso_ms(start_ms),
            "end": _iso_ms(end_ms),
            "side": side,
            "limit": str(limit),
        }
        if min_usd is not None:
            if isinstance(min_usd, bool) or not isinstance(min_usd, int | float):
                raise TypeError(f"min_usd must be a number, got {type(min_usd).__name__}")
            if not math.isfinite(min_usd):
                raise ValueError(f"min_usd must be finite, got {min_usd!r}")
            params["min_usd"] = str(min_usd)
        return self._pages(params, start_ms, end_ms, limit)

    def fetch(
        self,
        symbol: str,
        start: datetime,
        end: datetime,
        *,
        side: str = "all",
        min_usd: float | None = None,
        limit: int = MAX_LIMIT,
    ) -> KweryResult:
        """Every event of ``[start, end)`` in one frame; for ranges that fit in memory."""
        frames: list[pd.DataFrame] = []
        stats = KweryStats()
        for page in self.iter_pages(symbol, start, end, side=side, min_usd=min_usd, limit=limit):
            if len(page.frame):
                frames.append(page.frame)
            stats = page.stats
        if not frames:
            frame = empty_kwery_frame()
        elif len(frames) == 1:
            frame = frames[0]
        else:
            frame = pd.concat(frames, ignore_index=True)
        return KweryResult(frame, stats)

    def _pages(
        self, params: dict[str, str], start_ms: int, end_ms: int, limit: int
    ) -> Iterator[KweryPage]:
        url = self.base_url + KWERY_PATH
        stats = KweryStats()
        seen_cursors: set[str] = set()
        cursor: str | None = None
        while True:
            if stats.pages >= self.max_pages:
                raise KweryProtocolError(
                    f"Kwery: more than max_pages={self.max_pages} pages for "
                    f"{self._http.display_url(url, params)}; the API keeps answering has_more. "
                    "Fetch a smaller range or raise max_pages."
                )
            self._check_budget(limit)
            request_params = params if cursor is None else {**params, "after": cursor}
            result = self._http.get(url, request_params)
            stats = replace(
                stats,
                requests=stats.requests + result.attempts,
                retries=stats.retries + result.attempts - 1,
            )
            stats = self._account_credits(result.response, stats)
            if result.response.status_code != 200:
                raise self._error(result, url, request_params)
            frame, has_more, next_cursor = self._parse_page(
                result.response, url, request_params, stats.pages + 1, start_ms, end_ms, limit
            )
            if has_more:
                where = self._where(url, request_params, stats.pages + 1)
                if not next_cursor:
                    raise KweryProtocolError(
                        f"{where}: has_more is true but next_cursor is {next_cursor!r}; "
                        "cannot continue without dropping rows. Report it to Kwery."
                    )
                if next_cursor in seen_cursors:
                    raise KweryProtocolError(
                        f"{where}: the API returned the cursor {next_cursor[:80]!r} a second "
                        "time; stopping rather than fetching (and paying for) the same rows "
                        "again. Report it to Kwery."
                    )
                seen_cursors.add(next_cursor)
            stats = replace(stats, pages=stats.pages + 1, rows=stats.rows + len(frame))
            yield KweryPage(frame, stats)
            if not has_more:
                return
            cursor = next_cursor

    def _check_budget(self, limit: int) -> None:
        if self.credit_budget is None:
            return
        worst = CREDITS_PER_REQUEST + CREDITS_PER_ROW * limit
        if self.credits_used + worst > self.credit_budget:
            raise CreditBudgetExceeded(
                f"Kwery credit budget: {self.credits_used} of {self.credit_budget} credits "
                f"used and the next request can cost up to {worst} (25 + 2 x limit {limit}); "
                "it was not sent. Raise credit_budget or fetch a smaller range."
            )

    def _account_credits(self, response: Response, stats: KweryStats) -> KweryStats:
        used = _int_header(response.headers, "X-Credits-Used")
        remaining = _int_header(response.headers, "X-Credits-Remaining")
        missing = 0
        if used is None:
            used = 0
            if response.status_code == 200:
                missing = 1
                logger.warning(
                    "Kwery: a 200 page has no usable X-Credits-Used header (%r); counted as 0",
                    response.headers.get("X-Credits-Used"),
                )
        self.credits_used += used
        if remaining is not None:
            self.credits_remaining = remaining
        return replace(
            stats,
            credits_used=stats.credits_used + used,
            credits_remaining=remaining if remaining is not None else stats.credits_remaining,
            pages_without_credits_header=stats.pages_without_credits_header + missing,
        )

    def _where(self, url: str, params: Mapping[str, str], page: int) -> str:
        return f"Kwery page {page} of GET {self._http.display_url(url, params)}"

    def _parse_page(
        self,
        response: Response,
        url: str,
        params: Mapping[str, str],
        page: int,
        start_ms: int,
        end_ms: int,
        limit: int,
    ) -> tuple[pd.DataFrame, bool, str | None]:
        if response.headers.get("X-Rows-Capped", "").strip().lower() in ("true", "1"):
            raise KweryRowsCapped(
                f"{self._where(url, params, page)}: X-Rows-Capped is true, the plan's row limit "
                "truncated the result. Not storing a partial result: use a higher tier or "
                "fetch a smaller range."
            )
        try:
            return _read_page(response, params, start_ms, end_ms, limit)
        except KweryProtocolError as problem:
            body = body_snippet(response.content, self._http.redact)
            raise KweryProtocolError(
                f"{self._where(url, params, page)}: {problem}. Body starts: {body}"
            ) from None

    def _error(self, result: HttpResult, url: str, params: Mapping[str, str]) -> KweryError:
        code = error_code(result.response.content)
        cls = _error_class(result.response.status_code, code)
        return self._api_error(cls, result, f"GET {self._http.display_url(url, params)}",
                               _WHAT_TO_DO[cls], code)  # fmt: skip

    def __repr__(self) -> str:
        return (
            f"KweryClient(base_url={self.base_url!r}, api_key='***', "
            f"max_pages={self.max_pages}, credit_budget={self.credit_budget})"
        )


def _read_page(
    response: Response, params: Mapping[str, str], start_ms: int, end_ms: int, limit: int
) -> tuple[pd.DataFrame, bool, str | None]:
    """The rows, has_more and next_cursor of a 200 page; KweryProtocolError names what's wrong."""
    try:
        doc = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise KweryProtocolError("the body is not valid JSON") from None
    _check_envelope(doc)
    rows = doc["data"]
    header_rows = response.headers.get("X-Rows-Returned")
    if header_rows is not None and header_rows.strip() != str(len(rows)):
        raise KweryProtocolError(
            f"X-Rows-Returned is {header_rows!r:.40} but the body has {len(rows)} rows"
        )
    if len(rows) > limit:
        raise KweryProtocolError(f"{len(rows)} rows returned for limit={limit}")
    frame = kwery_frame(rows)
    _check_rows_answer_the_query(frame, params, start_ms, end_ms)
    meta = doc["meta"]
    return frame, meta["has_more"], meta.get("next_cursor")


def _check_envelope(doc: Any) -> None:
    if not isinstance(doc, dict):
        raise KweryProtocolError(f"the body is a JSON {type(doc).__name__}, not an object")
    if not isinstance(doc.get("data"), list):
        raise KweryProtocolError("'data' is missing or not a list")
    meta = doc.get("meta")
    if not isinstance(meta, dict):
        raise KweryProtocolError("'meta' is missing or not an object")
    if type(meta.get("has_more")) is not bool:
        raise KweryProtocolError(
            f"meta.has_more must be true or false, got {meta.get('has_more')!r:.40}"
        )
    cursor = meta.get("next_cursor")
    if cursor is not None and type(cursor) is not str:
        raise KweryProtocolError(
            f"meta.next_cursor must be a string or null, got {type(cursor).__name__}"
        )


def _check_rows_answer_the_query(
    frame: pd.DataFrame, params: Mapping[str, str], start_ms: int, end_ms: int
) -> None:
    """Every row is of the symbol asked for and inside the requested [start, end)."""
    other = frame["symbol"] != params["symbol"]
    if other.any():
        i = int(other.to_numpy().argmax())
        raise KweryProtocolError(
            f"row {i}: symbol {frame['symbol'].iloc[i]!r:.40} answers a query for "
            f"{params['symbol']!r}"
        )
    ts = frame["timestamp"]
    outside = (ts < pd.Timestamp(start_ms, unit="ms", tz=UTC)) | (
        ts >= pd.Timestamp(end_ms, unit="ms", tz=UTC)
    )
    if outside.any():
        i = int(outside.to_numpy().argmax())
        raise KweryProtocolError(
            f"row {i}: timestamp {ts.iloc[i].isoformat()} is outside the requested "
            f"[{params['start']}, {params['end']})"
        )


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None
