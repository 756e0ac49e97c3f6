"""Client of Kwery's ``GET /v1/liquidations`` (contract: docs/api/kwery-v1-liquidations.txt).

Every request costs 25 credits plus 2 per row returned, so pages are as large as the API allows
(``limit=1000``) and a failed page is retried alone: the cursor loop never restarts and a row is
never fetched twice.
"""

import logging
import math
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict, TypeVar, Unpack

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
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
from liq_pipeline.clients.limiter import AdaptiveLimit, Stopped
from liq_pipeline.contract import SIDES

logger = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

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
_SIDES = frozenset(SIDES)
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


class KweryQuery(TypedDict, total=False):
    """The options of a Kwery query besides symbol, start and end."""

    side: str
    min_usd: float | None
    limit: int


@dataclass(frozen=True)
class KweryResult:
    """Rows exactly as the API returned them (KWERY_COLUMNS), and the stats of the call so far:
    one page of `iter_pages`, or every page of `fetch`."""

    table: pa.Table
    stats: KweryStats

    @property
    def frame(self) -> pd.DataFrame:
        return self.table.to_pandas()


# The rows as Arrow, as the warehouse stores them: parsed, validated and built column by column.
KWERY_SCHEMA = pa.schema(
    [pa.field("timestamp", pa.timestamp("ms", tz="UTC"), nullable=False)]
    + [pa.field(name, pa.string(), nullable=False) for name in ("symbol", "source", "side")]
    + [pa.field(name, pa.float64(), nullable=False) for name in _NUMBER_COLUMNS]
)


def empty_kwery_frame() -> pd.DataFrame:
    """A frame with KWERY_COLUMNS, the client's dtypes and no rows."""
    return KWERY_SCHEMA.empty_table().to_pandas()


def kwery_frame(rows: Sequence[Any]) -> pd.DataFrame:
    """`kwery_table(rows)` as a pandas frame (datetime64[ms, UTC], str and float64 columns)."""
    return kwery_table(rows).to_pandas()


def kwery_table(rows: Sequence[Any]) -> pa.Table:
    """Validate the ``data`` rows of a page and build its Arrow table, in the API's order.

    Works column by column (a comprehension per column, a set of types per column) instead of
    row by row; only when something is wrong does it scan rows to name the first bad one.
    Raises KweryProtocolError naming the first bad row index and field. Arrow, not pandas: a
    tenth of the cost of building a pandas frame of the page (README, Performance), and the
    warehouse writes Arrow anyway.
    """
    if not rows:
        return KWERY_SCHEMA.empty_table()
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
    arrays = [_timestamps(columns["timestamp"])]
    for name in _TEXT_COLUMNS:
        _check_text(name, columns[name])
        arrays.append(pa.array(columns[name], pa.string()))
    arrays.extend(pa.array(_checked_numbers(name, columns[name])) for name in _NUMBER_COLUMNS)
    return pa.Table.from_arrays(arrays, schema=KWERY_SCHEMA)


def _timestamps(values: list[str]) -> pa.Array:
    """ISO 8601 texts as timestamp[ms, UTC]: Arrow's parser for the usual `...T...Z` form, and
    pandas' (any ISO 8601, naive meaning UTC) to decide, and to name, anything else."""
    try:
        return pa.array(values, pa.string()).cast(pa.timestamp("ms", tz="UTC"))
    except pa.ArrowInvalid:
        pass
    parsed = pd.to_datetime(values, format="ISO8601", utc=True, errors="coerce")
    if parsed.isna().any():
        i = int(np.argmax(parsed.isna()))
        raise KweryProtocolError(
            f"row {i}: field 'timestamp' is not an ISO 8601 time: {values[i]!r:.60}"
        )
    timestamps = parsed.astype("datetime64[ms, UTC]")
    if (timestamps != parsed).any():
        # The warehouse keeps milliseconds; truncating would silently change the data.
        i = int(np.argmax(timestamps != parsed))
        raise KweryProtocolError(
            f"row {i}: field 'timestamp' has sub-millisecond precision, which the contract "
            f"does not allow: {values[i]!r:.60}"
        )
    return pa.array(timestamps, pa.timestamp("ms", tz="UTC"))


def _check_text(name: str, values: list[str]) -> None:
    # Distinct values only: a page repeats the same few symbols and sources.
    if not any(_CONTROL_CHARACTER.search(value) for value in set(values)):
        return
    for i, value in enumerate(values):  # the first bad row, to name it
        if match := _CONTROL_CHARACTER.search(value):
            raise KweryProtocolError(
                f"row {i}: field {name!r} contains the control character "
                f"U+{ord(match.group()):04X}: {value!r:.60}"
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
        concurrency: int = 1,
        **http: Unpack[HttpOptions],
    ) -> None:
        if not isinstance(api_key, str):
            raise TypeError("api_key must be a str")
        if max_pages < 1:
            raise ValueError(f"max_pages must be >= 1, got {max_pages!r}")
        if credit_budget is not None and credit_budget < 0:
            raise ValueError(f"credit_budget must be >= 0 or None, got {credit_budget!r}")
        if concurrency > 1:
            http.setdefault("limit", AdaptiveLimit(concurrency))
        super().__init__(
            base_url, api="Kwery", secret=api_key, transport_error=KweryServerError, **http
        )
        self.concurrency = concurrency
        self._api_key = api_key
        self.max_pages = max_pages
        self.credit_budget = credit_budget
        self.credits_used = 0  # over the lifetime of the client (what the budget applies to)
        self.credits_remaining: int | None = None
        self._reserved = 0  # the most the requests in flight can still cost
        self._credits_lock = threading.Lock()

    def iter_pages(
        self,
        symbol: str,
        start: datetime,
        end: datetime,
        *,
        side: str = "all",
        min_usd: float | None = None,
        limit: int = MAX_LIMIT,
    ) -> Iterator[KweryResult]:
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
        self, symbol: str, start: datetime, end: datetime, **options: Unpack[KweryQuery]
    ) -> KweryResult:
        """Every event of ``[start, end)`` in one table (`iter_pages`' options); for ranges
        that fit in memory."""
        tables: list[pa.Table] = []
        stats = KweryStats()
        for page in self.iter_pages(symbol, start, end, **options):
            tables.append(page.table)
            stats = page.stats
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        return KweryResult(table, stats)

    def fetch_days(
        self, symbol: str, days: Sequence[datetime]
    ) -> Iterator[tuple[datetime, KweryResult]]:
        """Each UTC day ``[d, d + 1 day)`` of `days` as its own query, yielded in order.

        One query per day keeps credits at the per-day minimum and never meets a plan's row cap
        on a long range. With ``concurrency`` > 1 that many days are fetched at once, by worker
        threads, while the caller consumes the earlier ones; at most that many days are in
        flight or waiting (memory stays a few days, whatever the range). A day's pages still come
        one after another (its cursor), so its rows keep the API's order and nothing is requested
        twice. The first day that fails raises, after the days before it were yielded, and the
        other days stop before their next request.
        """
        one_day = timedelta(days=1)
        self._http.stop.clear()
        if self.concurrency == 1:
            for day in days:
                yield day, self.fetch(symbol, day, day + one_day)
            return
        yield from _in_order_concurrently(
            lambda day: self.fetch(symbol, day, day + one_day),
            list(days),
            self.concurrency,
            self._http.stop,
        )

    def _pages(
        self, params: dict[str, str], start_ms: int, end_ms: int, limit: int
    ) -> Iterator[KweryResult]:
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
            reserved = self._reserve(limit)
            request_params = params if cursor is None else {**params, "after": cursor}
            try:
                result = self._http.get(url, request_params)
            except BaseException:
                self._account_credits(None, stats, reserved)
                raise
            stats = replace(
                stats,
                requests=stats.requests + result.attempts,
                retries=stats.retries + result.attempts - 1,
            )
            stats = self._account_credits(result.response, stats, reserved)
            if result.response.status_code != 200:
                raise self._error(result, url, request_params)
            table, has_more, next_cursor = self._parse_page(
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
            stats = replace(stats, pages=stats.pages + 1, rows=stats.rows + table.num_rows)
            yield KweryResult(table, stats)
            if not has_more:
                return
            cursor = next_cursor

    def _reserve(self, limit: int) -> int:
        """Reserve the most the next request can cost against the budget (0 without one)."""
        if self.credit_budget is None:
            return 0
        worst = CREDITS_PER_REQUEST + CREDITS_PER_ROW * limit
        with self._credits_lock:  # concurrent requests each count what they may still cost
            if self.credits_used + self._reserved + worst > self.credit_budget:
                raise CreditBudgetExceeded(
                    f"Kwery credit budget: {self.credits_used} of {self.credit_budget} credits "
                    f"used and the next request can cost up to {worst} (25 + 2 x limit {limit}); "
                    "it was not sent. Raise credit_budget or fetch a smaller range."
                )
            self._reserved += worst
        return worst

    def _account_credits(
        self, response: Response | None, stats: KweryStats, reserved: int
    ) -> KweryStats:
        """Count what a request cost (nothing without a response), in place of its reservation."""
        if response is None:
            with self._credits_lock:
                self._reserved -= reserved
            return stats
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
        with self._credits_lock:
            self._reserved -= reserved
            self.credits_used += used
            if remaining is not None:  # answers of concurrent requests may arrive in any order
                self.credits_remaining = min(remaining, self.credits_remaining or remaining)
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
    ) -> tuple[pa.Table, bool, str | None]:
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
) -> tuple[pa.Table, bool, str | None]:
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
    table = kwery_table(rows)
    _check_rows_answer_the_query(table, params, start_ms, end_ms)
    meta = doc["meta"]
    return table, meta["has_more"], meta.get("next_cursor")


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
    table: pa.Table, params: Mapping[str, str], start_ms: int, end_ms: int
) -> None:
    """Every row is of the symbol asked for and inside the requested [start, end)."""
    other = pc.not_equal(table["symbol"], params["symbol"])
    if pc.any(other).as_py():
        i = pc.index(other, True).as_py()
        raise KweryProtocolError(
            f"row {i}: symbol {table['symbol'][i].as_py()!r:.40} answers a query for "
            f"{params['symbol']!r}"
        )
    ms = pc.cast(table["timestamp"], pa.int64())
    outside = pc.or_(pc.less(ms, start_ms), pc.greater_equal(ms, end_ms))
    if pc.any(outside).as_py():
        i = pc.index(outside, True).as_py()
        moment = pd.Timestamp(ms[i].as_py(), unit="ms", tz=UTC)
        raise KweryProtocolError(
            f"row {i}: timestamp {moment.isoformat()} is outside the requested "
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


class _Slot:
    """One day of a concurrent fetch: its result, or the error that ended it."""

    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


def _in_order_concurrently(
    fetch: Callable[[T], R], items: list[T], concurrency: int, stop: threading.Event
) -> Iterator[tuple[T, R]]:
    """`(item, fetch(item))` in the order of `items`, `concurrency` fetched at once.

    A ticket per item in flight or waiting to be consumed bounds the memory; the consumer gives
    it back once it has taken the item. Worker threads are daemons: a request hanging in one
    never keeps the process alive after a stop.
    """
    slots: list[_Slot | None] = [_Slot() for _ in items]
    tickets = threading.Semaphore(concurrency)
    lock = threading.Lock()
    todo = iter(range(len(items)))
    failures: list[BaseException] = []

    def work() -> None:
        while True:
            while not tickets.acquire(timeout=0.25):
                if stop.is_set():
                    return
            with lock:
                i = None if stop.is_set() else next(todo, None)
            if i is None:
                return
            slot = slots[i]
            assert slot is not None
            try:
                slot.result = fetch(items[i])
            except BaseException as exc:
                slot.error = exc
                if not isinstance(exc, Stopped):
                    with lock:
                        failures.append(exc)
                stop.set()
            finally:
                slot.done.set()

    workers = [
        threading.Thread(target=work, name=f"kwery-fetch-{n}", daemon=True)
        for n in range(min(concurrency, len(items)))
    ]
    for worker in workers:
        worker.start()
    try:
        for i, item in enumerate(items):
            slot = slots[i]
            assert slot is not None
            while not slot.done.wait(0.25):  # bounded: signals reach this (main) thread
                pass
            if slot.error is not None:
                # A day stopped because another failed: the other's error is the one to tell.
                raise failures[0] if isinstance(slot.error, Stopped) and failures else slot.error
            slots[i] = None
            yield item, slot.result
            tickets.release()
    finally:
        stop.set()
