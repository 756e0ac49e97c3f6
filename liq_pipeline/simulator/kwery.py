"""Kwery ``GET /v1/liquidations``: parameters, plans (tiers), cursor pagination and credits.

Rows come one UTC day at a time from `data.day_data` (generated) or from a hand-built day
(`days.py`), served alike. Behaviour the contract leaves
open, decided here (keep clients in line with it):

- Order of checks: api-key (401) → rate limit (429) → symbol → side → limit → min_usd →
  start/end → credits → cursor. The first failure answers (`KweryApi.answer`, `parse_query`).
- 429 ``rate_limited`` from a per-key token bucket (``Retry-After`` = whole seconds until a
  token is back, at least 1).
- ``min_usd`` keeps rows with ``usd_value > min_usd`` (strictly above).
- ``has_more`` is exact: a page that holds the last matching row says ``has_more: false`` and
  ``next_cursor: null``, even when it has exactly ``limit`` rows. A page is never empty unless
  the whole (remaining) result is empty.
- Row cap per query (Free 1,000, Pro 200,000 rows): the page that reaches the cap while more
  rows match carries ``X-Rows-Capped: true``, ``has_more: false``, ``next_cursor: null``. A
  result of exactly the cap is not capped.
- Credits: 25 + 2 x rows per 200; errors and faulted responses cost 0 (``X-Credits-Used: 0``;
  ``bad_value`` and ``hang`` with ``seconds`` are charged as the pages they are).
  ``X-Credits-Remaining`` = monthly allowance - credits used, floored at 0. A request made
  when nothing remains → 403 ``credits_exhausted`` (a page is never refused for costing more
  than what remains; it is served and the balance floors at 0).

Cost: a day is generated once (a quiet day ~5 ms, a 60,000-event crash day ~0.2 s) and kept in
an LRU cache; a 1,000-row page is then a slice of the day's pre-serialized JSON (~0.1 ms in
the server, ~2 ms round trip with requests). Very sparse filters (a huge ``min_usd`` over
years of history) have to generate every day of the window once.
"""

import base64
import binascii
import dataclasses
import datetime as dt
import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import orjson

from liq_pipeline.simulator import data
from liq_pipeline.simulator.faults import (
    STATUS_CODES,
    Fault,
    FaultQueue,
    echo_secret_response,
    status_response,
)
from liq_pipeline.simulator.http import Response, error_body, query_value
from liq_pipeline.simulator.usage import Usage

UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
_US = dt.timedelta(microseconds=1)
_ONE_DAY = dt.timedelta(days=1)

KWERY_PATH = "/v1/liquidations"
DEMO_KWERY_KEYS: dict[str, str] = {
    "demo-free-key": "free",
    "demo-pro-key": "pro",
    "demo-business-key": "business",
}
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
BASE_CREDITS = 25
CREDITS_PER_ROW = 2


@dataclass(frozen=True)
class KweryTier:
    """One Kwery plan. ``history=None`` = full history; ``row_cap=None`` = unlimited."""

    name: str
    history: dt.timedelta | None
    min_usd: bool
    row_cap: int | None
    monthly_credits: int
    rate_per_s: float  # token-bucket refill rate (requests per second)
    burst: float  # token-bucket size


DEFAULT_TIERS: dict[str, KweryTier] = {
    "free": KweryTier("free", dt.timedelta(days=1), False, 1_000, 10_000, 2.0, 5.0),
    "pro": KweryTier("pro", dt.timedelta(days=30), False, 200_000, 1_000_000, 20.0, 50.0),
    # Generous enough that a sequential client (a few ms per page on loopback) never waits.
    "business": KweryTier("business", None, True, None, 100_000_000, 1_000.0, 1_000.0),
}


class KweryError(Exception):
    """A Kwery error answer: status, ``error.code``, ``error.message`` (+ Retry-After)."""

    def __init__(
        self, status: int, code: str, message: str, retry_after: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


def parse_iso(text: str) -> dt.datetime:
    """Parse ISO 8601 (``Z``/offset/none = UTC, optional fraction, bare date) to aware UTC."""
    value = dt.datetime.fromisoformat(text.strip())
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _to_us(value: dt.datetime) -> int:
    return (value - _EPOCH) // _US


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# -- parameters, in the order they are checked ---------------------------------------------------


@dataclass(frozen=True)
class Query:
    symbol: str
    side: str
    min_usd: float | None
    limit: int
    lo_ms: int  # first millisecond included (ceil of start)
    hi_ms: int  # first millisecond excluded: min(ceil(end), ceil(now))
    fingerprint: str
    after: str | None


def parse_query(params: Mapping[str, list[str]], tier: KweryTier, now: dt.datetime) -> Query:
    """The validated query of one request (KweryError on the first bad parameter)."""
    symbol = _symbol(params)
    side = _side(params)
    limit = _limit(params)
    min_usd = _min_usd(params, tier)
    start_text, end_text = query_value(params, "start"), query_value(params, "end")
    now_us = _to_us(now)
    start_us, end_us = _window(start_text, end_text, tier, now_us)
    # A cursor belongs to the instants asked for (however they are written), not to the text.
    fp_source = f"{symbol}|{start_text and start_us}|{end_text and end_us}|{side}|{min_usd!r}"
    return Query(
        symbol=symbol,
        side=side,
        min_usd=min_usd,
        limit=limit,
        lo_ms=_ceil_div(start_us, 1000),
        # Only events with ``timestamp < now`` exist.
        hi_ms=min(_ceil_div(end_us, 1000), _ceil_div(now_us, 1000)),
        fingerprint=hashlib.sha256(fp_source.encode()).hexdigest()[:16],
        after=query_value(params, "after") or None,
    )


def _symbol(params: Mapping[str, list[str]]) -> str:
    """``symbol`` is required and case-sensitive (``BTC``, not ``btc``)."""
    symbol = query_value(params, "symbol")
    if not symbol:
        raise KweryError(400, "invalid_symbol", "The symbol parameter is required.")
    if symbol not in data.KWERY_SYMBOLS:
        raise KweryError(400, "invalid_symbol", f"Unknown symbol {symbol!r}.")
    return symbol


def _side(params: Mapping[str, list[str]]) -> str:
    side = query_value(params, "side")
    side = "all" if side is None else side
    if side not in ("long", "short", "all"):
        raise KweryError(400, "invalid_side", "side must be one of long, short, all.")
    return side


def _limit(params: Mapping[str, list[str]]) -> int:
    """``limit``: digits only, 1-1000 (else 400 ``invalid_limit``); default 100."""
    text = query_value(params, "limit")
    if text is None:
        return DEFAULT_LIMIT
    try:
        limit = int(text)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT or not text.strip().isdigit():
        raise KweryError(400, "invalid_limit", f"limit must be an integer from 1 to {MAX_LIMIT}.")
    return limit


def _min_usd(params: Mapping[str, list[str]], tier: KweryTier) -> float | None:
    """Business only (any ``min_usd`` on Free/Pro → 403); a finite number (else 400)."""
    text = query_value(params, "min_usd")
    if text is None:
        return None
    if not tier.min_usd:
        raise KweryError(403, "tier_restricted", "The min_usd filter requires the Business plan.")
    try:
        min_usd = float(text)
    except ValueError:
        min_usd = math.nan
    if not math.isfinite(min_usd):
        raise KweryError(400, "invalid_min_usd", "min_usd must be a finite number.")
    return min_usd


def _window(
    start_text: str | None, end_text: str | None, tier: KweryTier, now_us: int
) -> tuple[int, int]:
    """``[start, end)`` in epoch microseconds, defaults applied and the plan's depth checked.

    Omitted ``end`` = now; omitted ``start`` = now minus the plan's history depth (Business:
    2019-09-01). ``start > end``, an unparseable time, or ``start`` earlier than ``now`` minus
    the history depth (Free 1 day, Pro 30 days) → 400 ``invalid_time_range``; ``start == end``
    is a valid empty window. The depth is checked on every page (the server is stateless), so
    a Free client paging from exactly ``now - 1 day`` on the real clock fails on a later page:
    start at a later instant.
    """
    start_us = _time("start", start_text)
    end_us = _time("end", end_text)
    if end_us is None:
        end_us = now_us
    if start_us is None:
        if tier.history is None:
            start_us = _to_us(dt.datetime.combine(data.KWERY_DATA_START, dt.time(), UTC))
        else:
            start_us = now_us - tier.history // _US
    if start_us > end_us:
        raise KweryError(400, "invalid_time_range", "start is after end.")
    if tier.history is not None and start_us < now_us - tier.history // _US:
        days = tier.history.days
        raise KweryError(
            400,
            "invalid_time_range",
            f"start is older than your plan's history depth ({days} day"
            f"{'s' if days != 1 else ''}).",
        )
    return start_us, end_us


def _time(name: str, text: str | None) -> int | None:
    """ISO 8601 via `parse_iso` (``+`` must be percent-encoded in the query; requests does it)."""
    if text is None:
        return None
    try:
        return _to_us(parse_iso(text))
    except ValueError:
        raise KweryError(
            400, "invalid_time_range", f"{name} is not a valid ISO 8601 time."
        ) from None


# -- cursor --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cursor:
    """Where the previous page ended: day and index of its last row, rows served so far."""

    day: dt.date
    index: int
    served: int


def encode_cursor(fingerprint: str, day: dt.date, index: int, served: int, ts: str) -> str:
    """base64url (no padding) JSON ``{"v", "q", "d", "i", "n", "t"}``.

    Query fingerprint, day and index of the last row served, rows served so far for the query
    (for the row cap), last timestamp. Rows are ordered by (timestamp, index within the day),
    so same-millisecond events across a page boundary are neither skipped nor repeated.
    ``limit`` may change between pages.
    """
    payload = {"v": 1, "q": fingerprint, "d": day.isoformat(), "i": index, "n": served, "t": ts}
    return base64.urlsafe_b64encode(orjson.dumps(payload)).rstrip(b"=").decode()


def decode_cursor(text: str, fingerprint: str) -> Cursor:
    """The cursor in ``after``, checked against the query it must belong to.

    A cursor that does not decode, or was minted for another symbol/start/end/side/min_usd
    → 400 ``invalid_cursor``.
    """
    bad = KweryError(400, "invalid_cursor", "The after cursor is malformed.")
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
        payload = orjson.loads(raw)
    except (binascii.Error, ValueError):
        raise bad from None
    if not isinstance(payload, dict) or payload.get("v") != 1:
        raise bad
    index, served = payload.get("i"), payload.get("n")
    if not (
        isinstance(payload.get("q"), str)
        and isinstance(payload.get("d"), str)
        and type(index) is int
        and type(served) is int
        and index >= 0
        and served >= 0
    ):
        raise bad
    try:
        day = dt.date.fromisoformat(payload["d"])
    except ValueError:
        raise bad from None
    if payload["q"] != fingerprint:
        raise KweryError(400, "invalid_cursor", "The after cursor belongs to a different query.")
    return Cursor(day, index, served)


# -- pages ---------------------------------------------------------------------------------------


@dataclass
class Page:
    rows: bytes  # comma-separated JSON rows
    count: int
    next_cursor: str | None
    has_more: bool
    capped: bool


DaySource = Callable[[str, dt.date], data.DayData]


def _collect(
    q: Query, cursor: Cursor | None, need: int, day_data: DaySource
) -> list[tuple[data.DayData, np.ndarray]]:
    """Up to `need` matching rows after `cursor`, as (day data, row indices) chunks."""
    chunks: list[tuple[data.DayData, np.ndarray]] = []
    if q.lo_ms >= q.hi_ms or need <= 0:
        return chunks
    first = max(data.day_of_ms(q.lo_ms), data.KWERY_DATA_START)
    last = data.day_of_ms(q.hi_ms - 1)
    if cursor is not None:
        first = max(first, cursor.day)
    got = 0
    day = first
    while day <= last and got < need:
        dd = day_data(q.symbol, day)
        i0 = int(np.searchsorted(dd.ts_ms, q.lo_ms, "left"))
        i1 = int(np.searchsorted(dd.ts_ms, q.hi_ms, "left"))
        if cursor is not None and day == cursor.day:
            i0 = max(i0, cursor.index + 1)
        if i0 < i1:
            if q.side == "all" and q.min_usd is None:
                idx = np.arange(i0, min(i1, i0 + need - got))
            else:
                mask = np.ones(i1 - i0, dtype=bool)
                if q.side != "all":
                    mask &= dd.is_long[i0:i1] == (q.side == "long")
                if q.min_usd is not None:
                    mask &= dd.usd_value[i0:i1] > q.min_usd
                idx = (i0 + np.flatnonzero(mask))[: need - got]
            if idx.size:
                chunks.append((dd, idx))
                got += idx.size
        day += _ONE_DAY
    return chunks


def _rows_bytes(chunks: list[tuple[data.DayData, np.ndarray]]) -> bytes:
    parts: list[bytes] = []
    for dd, idx in chunks:
        if int(idx[-1]) - int(idx[0]) + 1 == idx.size:  # contiguous: one slice of the day blob
            parts.append(dd.blob[int(dd.starts[idx[0]]) : int(dd.ends[idx[-1]])])
        else:
            starts, ends = dd.starts[idx].tolist(), dd.ends[idx].tolist()
            blob = dd.blob
            parts.append(b",".join([blob[s:e] for s, e in zip(starts, ends, strict=True)]))
    return b",".join(parts)


def build_page(
    q: Query, cursor: Cursor | None, tier: KweryTier, day_data: DaySource = data.day_data
) -> Page:
    """The page after `cursor`: up to ``limit`` rows, within the plan's row cap.

    `day_data` gives the rows of one (symbol, day): generated, or hand-built (`days.py`).
    """
    served = cursor.served if cursor else 0
    want = q.limit if tier.row_cap is None else max(0, min(q.limit, tier.row_cap - served))
    chunks = _collect(q, cursor, want + 1, day_data)  # one extra row tells whether more exist
    total = sum(idx.size for _, idx in chunks)
    more = total > want
    if more:  # drop the look-ahead row
        dd, idx = chunks[-1]
        chunks[-1] = (dd, idx[:-1])
        if not chunks[-1][1].size:
            chunks.pop()
    count = min(total, want)
    capped = more and tier.row_cap is not None and served + count >= tier.row_cap
    next_cursor = None
    if more and not capped and chunks:
        dd, idx = chunks[-1]
        last = int(idx[-1])
        stamp = orjson.loads(dd.row_bytes(last))["timestamp"]
        next_cursor = encode_cursor(q.fingerprint, dd.day, last, served + count, stamp)
    return Page(
        rows=_rows_bytes(chunks) if chunks else b"",
        count=count,
        next_cursor=next_cursor,
        has_more=next_cursor is not None,
        capped=capped,
    )


def page_body(symbol: str, rows: bytes, count: int, next_cursor: str | None, more: bool) -> bytes:
    meta = {
        "symbol": symbol,
        "source": data.KWERY_SOURCE,
        "returned": count,
        "next_cursor": next_cursor,
        "has_more": more,
    }
    return b'{"data":[' + rows + b'],"meta":' + orjson.dumps(meta) + b"}"


def page_headers(cost: int, remaining: int, rows: int, capped: bool) -> list[tuple[str, str]]:
    return [
        ("X-Credits-Used", str(cost)),
        ("X-Credits-Remaining", str(remaining)),
        ("X-Rows-Returned", str(rows)),
        ("X-Rows-Capped", "true" if capped else "false"),
    ]


# -- the endpoint --------------------------------------------------------------------------------


class KweryApi:
    """Answers ``GET /v1/liquidations`` for the configured keys (key → tier name → tier)."""

    def __init__(
        self,
        tiers: Mapping[str, KweryTier],
        keys: Mapping[str, str],
        usage: Usage,
        faults: FaultQueue,
        now: Callable[[], dt.datetime],
        days: DaySource = data.day_data,
    ) -> None:
        self.tiers = tiers
        self.keys = keys
        self.usage = usage
        self.faults = faults
        self.now = now
        self.days = days

    def credits_remaining(self, key: str) -> int:
        tier = self.tiers[self.keys[key]]
        return max(0, tier.monthly_credits - self.usage.credits_used(key))

    def answer(self, params: Mapping[str, list[str]]) -> Response:
        key = query_value(params, "api-key")
        if key:
            self.usage.count(key, requests=1)
        try:
            tier = self._tier(key)
            self._take_token(key, tier)
            q = parse_query(params, tier, self.now())
            self._check_credits(key)
            cursor = decode_cursor(q.after, q.fingerprint) if q.after else None
            page = build_page(q, cursor, tier, self.days)
        except KweryError as err:
            return self._error(err, key)
        fault = self.faults.take("kwery", lambda f: _applies(f, q, page))
        if fault is None:
            return self._page(key, tier, q, page)
        return self._faulted(fault, key, tier, q, page)

    def _tier(self, key: str | None) -> KweryTier:
        if not key or key not in self.keys:
            raise KweryError(401, "unauthorized", "Missing or invalid api-key.")
        return self.tiers[self.keys[key]]

    def _take_token(self, key: str, tier: KweryTier) -> None:
        wait = self.usage.rate_wait(key, tier.rate_per_s, tier.burst)
        if wait > 0:
            raise KweryError(
                429,
                "rate_limited",
                "You have exceeded your plan's request rate.",
                retry_after=str(max(1, math.ceil(wait))),
            )

    def _check_credits(self, key: str) -> None:
        if self.credits_remaining(key) <= 0:
            raise KweryError(403, "credits_exhausted", "No credits remain in your billing cycle.")

    def _error(self, err: KweryError, key: str | None) -> Response:
        headers = [("X-Credits-Used", "0")]
        if key in self.keys:
            headers.append(("X-Credits-Remaining", str(self.credits_remaining(key))))
        if err.retry_after is not None:
            headers.append(("Retry-After", err.retry_after))
        return Response(err.status, error_body(err.code, err.message), headers)

    def _page(self, key: str, tier: KweryTier, q: Query, page: Page) -> Response:
        """A normal 200: charged and counted."""
        cost = BASE_CREDITS + CREDITS_PER_ROW * page.count
        used = self.usage.count(key, ok=1, rows=page.count, credits=cost)
        remaining = max(0, tier.monthly_credits - used)
        body = page_body(q.symbol, page.rows, page.count, page.next_cursor, page.has_more)
        return Response(200, body, page_headers(cost, remaining, page.count, page.capped))

    def _faulted(self, fault: Fault, key: str, tier: KweryTier, q: Query, page: Page) -> Response:
        """The answer of a page that gets `fault`: 0 credits, except where it is the page."""
        if fault.kind == "hang":
            if fault.seconds is None:
                return Response(200, b"", hang=True)
            resp = self._page(key, tier, q, page)
            resp.delay = fault.seconds
            return resp
        if fault.kind == "bad_value":
            rows = orjson.loads(b"[" + page.rows + b"]")
            rows[fault.row][fault.field] = fault.value
            return self._page(key, tier, q, dataclasses.replace(page, rows=_join_rows(rows)))
        remaining = self.credits_remaining(key)
        free = [("X-Credits-Used", "0"), ("X-Credits-Remaining", str(remaining))]
        if fault.kind in STATUS_CODES:
            return status_response(fault, free)
        if fault.kind == "echo_secret":
            return echo_secret_response(key, free)
        rows, count = page.rows, page.count
        next_cursor, has_more, capped = page.next_cursor, page.has_more, page.capped
        if fault.kind == "capped":
            capped = True
        elif fault.kind == "repeat_cursor":
            next_cursor, has_more = q.after, True
        elif fault.kind == "more_no_cursor":
            next_cursor, has_more = None, True
        elif fault.kind == "bad_rows" and count:
            parsed = orjson.loads(b"[" + rows + b"]")
            del parsed[0]["usd_value"]
            parsed[min(1, count - 1)]["quantity"] = str(parsed[min(1, count - 1)]["quantity"])
            rows = _join_rows(parsed)
        body = page_body(q.symbol, rows, count, next_cursor, has_more)
        headers = page_headers(0, remaining, count, capped)
        if fault.kind == "drop":
            return Response(200, body, headers, drop=True)
        if fault.kind == "malformed_json":
            return Response(200, body[: len(body) // 2], headers)
        self.usage.count(key, ok=1, rows=count)
        return Response(200, body, headers)


def _join_rows(rows: list[dict]) -> bytes:
    return orjson.dumps(rows)[1:-1]


def _applies(fault: Fault, q: Query, page: Page) -> bool:
    """Whether a queued Kwery fault applies to this request (and its would-be page)."""
    if fault.kind == "repeat_cursor":
        return q.after is not None
    if fault.kind == "bad_value":
        return page.count > fault.row
    return True
