"""Local HTTP stand-in for the Kwery and Newhedge APIs (stdlib ``http.server``, one root URL).

Kwery ``GET /v1/liquidations`` and Newhedge ``GET /api/v2/metrics/liquidations/{metric}`` are
served from the deterministic data in `data.py`, with the contracts' parameters, errors, tiers,
credits and cursor pagination, plus switchable faults (see `Simulator.inject`).

Kwery behaviour the contract leaves open (decided here, keep clients in line with it):

- Order of checks: api-key (401) → rate limit (429) → symbol → side → limit → min_usd →
  start/end → credits → cursor. The first failure answers.
- ``symbol`` is case-sensitive (``BTC``, not ``btc``). ``limit`` outside 1-1000 or not an
  integer → 400 ``invalid_limit``; a ``min_usd`` that is not a finite number → 400
  ``invalid_min_usd`` (Business only; on Free/Pro any ``min_usd`` → 403 ``tier_restricted``).
- ``start``/``end``: ISO 8601 (``Z`` or any offset, optional fraction, a bare date means
  midnight, no offset means UTC). ``+`` must be percent-encoded in the query string (requests
  does it). Omitted ``end`` = now; omitted ``start`` = now minus the plan's history depth
  (Business: 2019-09-01). ``start > end``, an unparseable time, or ``start`` earlier than
  ``now`` minus the history depth (Free 1 day, Pro 30 days) → 400 ``invalid_time_range``.
  ``start == end`` is a valid empty window. Only events with ``timestamp < now`` exist. The
  depth is checked on every page (the server is stateless), so a Free client paging from
  exactly ``now - 1 day`` on the real clock fails on a later page: start at a later instant.
- ``min_usd`` keeps rows with ``usd_value > min_usd`` (strictly above).
- Cursor: base64url (no padding) JSON ``{"v", "q", "d", "i", "n", "t"}``: query fingerprint,
  day and index of the last row served, rows served so far for the query (row cap), last
  timestamp. Rows are ordered by (timestamp, index within the day), so same-millisecond
  events across a page boundary are neither skipped nor repeated. A cursor that does not
  decode, or was minted for another symbol/start/end/side/min_usd → 400 ``invalid_cursor``.
  ``limit`` may change between pages.
- ``has_more`` is exact: a page that holds the last matching row says ``has_more: false`` and
  ``next_cursor: null``, even when it has exactly ``limit`` rows. A page is never empty unless
  the whole (remaining) result is empty.
- Row cap per query (Free 1,000, Pro 200,000 rows): the page that reaches the cap while more
  rows match carries ``X-Rows-Capped: true``, ``has_more: false``, ``next_cursor: null``. A
  result of exactly the cap is not capped.
- Credits: 25 + 2 x rows per 200; errors and faulted responses cost 0 (``X-Credits-Used: 0``).
  ``X-Credits-Remaining`` = monthly allowance - credits used, floored at 0. A request made
  when nothing remains → 403 ``credits_exhausted`` (a page is never refused for costing more
  than what remains; it is served and the balance floors at 0).
- 429 ``rate_limited`` from a per-key token bucket (``Retry-After`` = whole seconds until a
  token is back, at least 1).

Newhedge: unknown paths/metrics → 404 (checked before the token), missing or wrong
``api_token`` → 401, per-token token bucket → 429. Day D is published at D+1 01:00 UTC.

Faults are consumed only by requests that would otherwise have been answered 200 (so a 401
or a 400 never eats a fault); ``repeat_cursor`` only by requests that carry ``after`` (page 2
then repeats page 1's cursor), ``lag`` with a metric only by that metric. Each queued fault
counts its `skip` over the requests it matches; the oldest fault whose skip is used up fires.
``capped`` only sets ``X-Rows-Capped: true`` (meta unchanged); ``repeat_cursor`` sets
``next_cursor`` to the request's ``after`` and ``has_more: true``; ``bad_rows`` removes
``usd_value`` from row 0 and turns row 1's ``quantity`` into a string (row 0 if alone);
``malformed_json`` sends the first half of the body with a matching Content-Length; ``drop``
sends the full Content-Length, half the body, then closes the socket.

`stats()` counts: ``requests`` every request carrying that key/token; ``ok_requests`` 200
responses delivered in full (normal pages and the capped/repeat_cursor/more_no_cursor/bad_rows/
lag pages; not drop or malformed_json); ``rows`` the rows (Newhedge: points) in those;
``credits_used`` the credits charged.

Cost: a day is generated once (a quiet day ~5 ms, a 60,000-event crash day ~0.2 s) and kept in
an LRU cache; a 1,000-row page is then a slice of the day's pre-serialized JSON (~0.1 ms in
the server, ~2 ms round trip with requests). Very sparse filters (a huge ``min_usd`` over
years of history) have to generate every day of the window once.
"""

import base64
import binascii
import contextlib
import datetime as dt
import email.utils
import functools
import hashlib
import math
import socket
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import orjson

from liq_pipeline.simulator import data

UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
_US = dt.timedelta(microseconds=1)
_ONE_DAY = dt.timedelta(days=1)

KWERY_PATH = "/v1/liquidations"
NEWHEDGE_PREFIX = "/api/v2/metrics/liquidations/"
DEMO_KWERY_KEYS: dict[str, str] = {
    "demo-free-key": "free",
    "demo-pro-key": "pro",
    "demo-business-key": "business",
}
DEMO_NEWHEDGE_TOKEN = "demo0newhedge0token00000"  # noqa: S105 - public demo token
# Newhedge day D is published at D+1 01:00 UTC.
NEWHEDGE_PUBLISH_DELAY = dt.timedelta(days=1, hours=1)
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
DEFAULT_NEWHEDGE_RATE: tuple[float, float] = (20.0, 40.0)  # per token: requests/s, burst

FAULT_KINDS: dict[str, frozenset[str]] = {
    "429": frozenset({"kwery", "newhedge"}),
    "500": frozenset({"kwery", "newhedge"}),
    "502": frozenset({"kwery", "newhedge"}),
    "503": frozenset({"kwery", "newhedge"}),
    "drop": frozenset({"kwery", "newhedge"}),
    "malformed_json": frozenset({"kwery", "newhedge"}),
    "capped": frozenset({"kwery"}),
    "repeat_cursor": frozenset({"kwery"}),
    "more_no_cursor": frozenset({"kwery"}),
    "bad_rows": frozenset({"kwery"}),
    "lag": frozenset({"newhedge"}),
}
_FAULT_CODES = {
    "429": "rate_limited",
    "500": "internal_error",
    "502": "bad_gateway",
    "503": "service_unavailable",
}


class _ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class _Response:
    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    drop: bool = False  # send the headers and half the body, then close the connection


@dataclass
class _Fault:
    kind: str
    api: str
    count: int
    skip: int
    retry_after: str | None
    metric: str | None

    def matches(self, api: str, *, has_after: bool, metric: str | None) -> bool:
        if api != self.api:
            return False
        if self.kind == "repeat_cursor" and not has_after:
            return False
        return self.metric is None or self.metric == metric


class TokenBucket:
    """Token bucket on an injectable monotonic clock; `take` returns the wait (0 = allowed)."""

    def __init__(self, rate_per_s: float, burst: float, clock: Callable[[], float]) -> None:
        self.rate = rate_per_s
        self.burst = burst
        self.clock = clock
        self.tokens = burst
        self.last = clock()

    def take(self) -> float:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


def parse_iso(text: str) -> dt.datetime:
    """Parse ISO 8601 (``Z``/offset/none = UTC, optional fraction, bare date) to aware UTC."""
    value = dt.datetime.fromisoformat(text.strip())
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _to_us(value: dt.datetime) -> int:
    return (value - _EPOCH) // _US


def _iso_z(value: dt.datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _error_body(code: str, message: str) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message}})


def _json(status: int, payload: Any) -> _Response:
    return _Response(status, orjson.dumps(payload))


def last_published_day(now: dt.datetime) -> dt.date:
    """The latest Newhedge day that is out at `now` (day D appears at D+1 01:00 UTC)."""
    return (now.astimezone(UTC) - NEWHEDGE_PUBLISH_DELAY).date()


@functools.lru_cache(maxsize=64)
def _newhedge_body(metric: str, through: dt.date) -> bytes:
    return orjson.dumps(data.newhedge_series(metric, through))


@dataclass(frozen=True)
class _Query:
    symbol: str
    side: str
    min_usd: float | None
    limit: int
    lo_ms: int  # first millisecond included (ceil of start)
    hi_ms: int  # first millisecond excluded: min(ceil(end), ceil(now))
    fingerprint: str
    after: str | None


@dataclass(frozen=True)
class _Cursor:
    day: dt.date
    index: int
    served: int


@dataclass
class _Page:
    rows: bytes  # comma-separated JSON rows
    count: int
    next_cursor: str | None
    has_more: bool
    capped: bool


def _first(params: Mapping[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None


def _encode_cursor(fingerprint: str, day: dt.date, index: int, served: int, ts: str) -> str:
    payload = {"v": 1, "q": fingerprint, "d": day.isoformat(), "i": index, "n": served, "t": ts}
    return base64.urlsafe_b64encode(orjson.dumps(payload)).rstrip(b"=").decode()


def _decode_cursor(text: str, fingerprint: str) -> _Cursor:
    bad = _ApiError(400, "invalid_cursor", "The after cursor is malformed.")
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
        raise _ApiError(400, "invalid_cursor", "The after cursor belongs to a different query.")
    return _Cursor(day, index, served)


def _collect(q: _Query, cursor: _Cursor | None, need: int) -> list[tuple[data.DayData, np.ndarray]]:
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
        dd = data.day_data(q.symbol, day)
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


def _build_page(q: _Query, cursor: _Cursor | None, tier: KweryTier) -> _Page:
    served = cursor.served if cursor else 0
    want = q.limit if tier.row_cap is None else max(0, min(q.limit, tier.row_cap - served))
    chunks = _collect(q, cursor, want + 1)  # one extra row tells whether more exist
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
        next_cursor = _encode_cursor(q.fingerprint, dd.day, last, served + count, stamp)
    return _Page(
        rows=_rows_bytes(chunks) if chunks else b"",
        count=count,
        next_cursor=next_cursor,
        has_more=next_cursor is not None,
        capped=capped,
    )


def _page_body(symbol: str, rows: bytes, count: int, next_cursor: str | None, more: bool) -> bytes:
    meta = {
        "symbol": symbol,
        "source": data.KWERY_SOURCE,
        "returned": count,
        "next_cursor": next_cursor,
        "has_more": more,
    }
    return b'{"data":[' + rows + b'],"meta":' + orjson.dumps(meta) + b"}"


class Simulator:
    """Both APIs on one local root URL; see the module docstring for the exact behaviour.

    ``with Simulator(port=0, now=fixed_datetime) as sim: requests.get(sim.url + ...)``.
    Keyword-only extras (defaults = the demo set-up): `tiers` (tier name → `KweryTier`),
    `kwery_keys` (key → tier name), `newhedge_tokens`, `newhedge_rate` ((requests/s, burst)
    per token) and `monotonic` (the clock of the rate limiters, injectable for tests).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        now: dt.datetime | None = None,
        *,
        tiers: Mapping[str, KweryTier] | None = None,
        kwery_keys: Mapping[str, str] | None = None,
        newhedge_tokens: tuple[str, ...] = (DEMO_NEWHEDGE_TOKEN,),
        newhedge_rate: tuple[float, float] = DEFAULT_NEWHEDGE_RATE,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host = host
        self.port = port
        self.tiers = dict(DEFAULT_TIERS if tiers is None else tiers)
        self.kwery_keys = dict(DEMO_KWERY_KEYS if kwery_keys is None else kwery_keys)
        for key, tier in self.kwery_keys.items():
            if tier not in self.tiers:
                raise ValueError(f"key {key!r} has unknown tier {tier!r}")
        self.newhedge_tokens = frozenset(newhedge_tokens)
        self.newhedge_rate = newhedge_rate
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._now = self._check_now(now)
        self._faults: list[_Fault] = []
        self._stats: dict[str, dict[str, int]] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> "Simulator":
        if self._server is not None:
            return self
        server = _Server((self.host, self.port), self)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="liq-simulator", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        # shutdown() waits for serve_forever's next poll (0.5 s); knock on the listening socket
        # until it returns so closing is instant.
        stopper = threading.Thread(target=server.shutdown, daemon=True)
        stopper.start()
        host, port = server.server_address[:2]
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(str(host), str(host))  # noqa: S104
        while stopper.is_alive():
            with contextlib.suppress(OSError):
                socket.create_connection((host, port), timeout=0.5).close()
            stopper.join(0.01)
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> "Simulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("Simulator is not started (use `with Simulator(...)` or .start())")
        host, port = self._server.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}"

    # -- clock -------------------------------------------------------------------------------

    @staticmethod
    def _check_now(value: dt.datetime | None) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("now must be timezone-aware (UTC)")
        return value.astimezone(UTC)

    def set_now(self, now: dt.datetime | None) -> None:
        """Freeze the simulator clock at `now` (aware datetime), or None for the real clock."""
        value = self._check_now(now)
        with self._lock:
            self._now = value

    def now(self) -> dt.datetime:
        """The simulator's current time (aware UTC)."""
        with self._lock:
            fixed = self._now
        return fixed if fixed is not None else dt.datetime.now(UTC)

    # -- faults ------------------------------------------------------------------------------

    def inject(
        self,
        kind: str,
        count: int = 1,
        *,
        api: str = "kwery",
        skip: int = 0,
        retry_after: str | None = "1",
        metric: str | None = None,
    ) -> None:
        """Fault the next `count` matching requests of `api` after letting `skip` through."""
        kind = str(kind)
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")
        if api not in FAULT_KINDS[kind]:
            raise ValueError(f"fault {kind!r} does not apply to api {api!r}")
        if type(count) is not int or count < 1:
            raise ValueError("count must be an integer >= 1")
        if type(skip) is not int or skip < 0:
            raise ValueError("skip must be an integer >= 0")
        if metric is not None and (api != "newhedge" or metric not in data.METRICS):
            raise ValueError(f"metric {metric!r} is not a Newhedge metric")
        fault = _Fault(
            kind, api, count, skip, None if retry_after is None else str(retry_after), metric
        )
        with self._lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(
        self, api: str, *, has_after: bool = False, metric: str | None = None
    ) -> _Fault | None:
        with self._lock:
            chosen: _Fault | None = None
            for fault in self._faults:
                if not fault.matches(api, has_after=has_after, metric=metric):
                    continue
                if fault.skip > 0:
                    fault.skip -= 1
                elif chosen is None:
                    chosen = fault
                    fault.count -= 1
            if chosen is not None and chosen.count == 0:
                self._faults.remove(chosen)
            return chosen

    # -- stats -------------------------------------------------------------------------------

    def stats(self, api_key_or_token: str) -> dict[str, int]:
        with self._lock:
            return dict(self._stats.get(api_key_or_token) or self._zero_stats())

    def credits_remaining(self, api_key: str) -> int:
        tier = self.tiers[self.kwery_keys[api_key]]
        with self._lock:
            used = self._stats.get(api_key, {}).get("credits_used", 0)
        return max(0, tier.monthly_credits - used)

    def reset_stats(self) -> None:
        """Zero every counter, including credits used (a fresh billing cycle)."""
        with self._lock:
            self._stats.clear()

    @staticmethod
    def _zero_stats() -> dict[str, int]:
        return {"requests": 0, "ok_requests": 0, "rows": 0, "credits_used": 0}

    def _count(
        self, key: str, *, requests: int = 0, ok: int = 0, rows: int = 0, credits: int = 0
    ) -> int:
        """Add to `key`'s counters; returns its credits used so far."""
        with self._lock:
            st = self._stats.setdefault(key, self._zero_stats())
            st["requests"] += requests
            st["ok_requests"] += ok
            st["rows"] += rows
            st["credits_used"] += credits
            return st["credits_used"]

    def _rate_wait(self, key: str, rate: float, burst: float) -> float:
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(rate, burst, self._monotonic)
            return bucket.take()

    # -- dispatch ----------------------------------------------------------------------------

    def handle(self, method: str, target: str, body: bytes = b"") -> _Response:
        """Answer one request (HTTP plumbing lives in the handler)."""
        parts = urlsplit(target)
        params = parse_qs(parts.query, keep_blank_values=True)
        path = parts.path
        if path == KWERY_PATH:
            if method != "GET":
                return self._method_not_allowed()
            return self._kwery(params)
        if path.startswith(NEWHEDGE_PREFIX):
            metric = path[len(NEWHEDGE_PREFIX) :]
            if metric not in data.METRICS:
                return _Response(404, _error_body("not_found", f"Unknown metric {metric!r}."))
            if method != "GET":
                return self._method_not_allowed()
            return self._newhedge(metric, params)
        if path.startswith("/_sim/"):
            return self._admin(method, path, params, body)
        return _Response(404, _error_body("not_found", f"No route for {path!r}."))

    @staticmethod
    def _method_not_allowed() -> _Response:
        return _Response(405, _error_body("method_not_allowed", "Method not allowed."))

    # -- Kwery -------------------------------------------------------------------------------

    def _kwery_error(self, err: _ApiError, key: str | None) -> _Response:
        headers = [("X-Credits-Used", "0")]
        if key in self.kwery_keys:
            headers.append(("X-Credits-Remaining", str(self.credits_remaining(key))))
        return _Response(err.status, _error_body(err.code, err.message), headers)

    def _kwery(self, params: Mapping[str, list[str]]) -> _Response:
        key = _first(params, "api-key")
        if key:
            self._count(key, requests=1)
        try:
            if not key or key not in self.kwery_keys:
                raise _ApiError(401, "unauthorized", "Missing or invalid api-key.")
            tier = self.tiers[self.kwery_keys[key]]
            wait = self._rate_wait(key, tier.rate_per_s, tier.burst)
            if wait > 0:
                resp = self._kwery_error(
                    _ApiError(429, "rate_limited", "You have exceeded your plan's request rate."),
                    key,
                )
                resp.headers.append(("Retry-After", str(max(1, math.ceil(wait)))))
                return resp
            q = self._parse_kwery(params, tier, self.now())
            if self.credits_remaining(key) <= 0:
                raise _ApiError(
                    403, "credits_exhausted", "No credits remain in your billing cycle."
                )
            cursor = _decode_cursor(q.after, q.fingerprint) if q.after else None
            page = _build_page(q, cursor, tier)
        except _ApiError as err:
            return self._kwery_error(err, key)

        fault = self._take_fault("kwery", has_after=q.after is not None)
        if fault is None:
            cost = BASE_CREDITS + CREDITS_PER_ROW * page.count
            used = self._count(key, ok=1, rows=page.count, credits=cost)
            remaining = max(0, tier.monthly_credits - used)
            body = _page_body(q.symbol, page.rows, page.count, page.next_cursor, page.has_more)
            headers = self._page_headers(cost, remaining, page.count, page.capped)
            return _Response(200, body, headers)
        return self._kwery_fault(fault, key, q, page)

    @staticmethod
    def _page_headers(cost: int, remaining: int, rows: int, capped: bool) -> list[tuple[str, str]]:
        return [
            ("X-Credits-Used", str(cost)),
            ("X-Credits-Remaining", str(remaining)),
            ("X-Rows-Returned", str(rows)),
            ("X-Rows-Capped", "true" if capped else "false"),
        ]

    def _kwery_fault(self, fault: _Fault, key: str, q: _Query, page: _Page) -> _Response:
        remaining = self.credits_remaining(key)
        if fault.kind in _FAULT_CODES:
            return self._transport_fault(fault, [("X-Credits-Remaining", str(remaining))], True)
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
            rows = orjson.dumps(parsed)[1:-1]
        body = _page_body(q.symbol, rows, count, next_cursor, has_more)
        headers = self._page_headers(0, remaining, count, capped)
        if fault.kind == "drop":
            return _Response(200, body, headers, drop=True)
        if fault.kind == "malformed_json":
            return _Response(200, body[: len(body) // 2], headers)
        self._count(key, ok=1, rows=count)
        return _Response(200, body, headers)

    @staticmethod
    def _transport_fault(fault: _Fault, headers: list[tuple[str, str]], kwery: bool) -> _Response:
        status = int(fault.kind)
        code = _FAULT_CODES[fault.kind]
        out = [("X-Credits-Used", "0"), *headers] if kwery else []
        if fault.kind == "429" and fault.retry_after is not None:
            out.append(("Retry-After", fault.retry_after))
        return _Response(status, _error_body(code, f"Simulated {status} fault."), out)

    def _parse_kwery(
        self, params: Mapping[str, list[str]], tier: KweryTier, now: dt.datetime
    ) -> _Query:
        symbol = _first(params, "symbol")
        if not symbol:
            raise _ApiError(400, "invalid_symbol", "The symbol parameter is required.")
        if symbol not in data.KWERY_SYMBOLS:
            raise _ApiError(400, "invalid_symbol", f"Unknown symbol {symbol!r}.")

        side = _first(params, "side")
        side = "all" if side is None else side
        if side not in ("long", "short", "all"):
            raise _ApiError(400, "invalid_side", "side must be one of long, short, all.")

        limit_text = _first(params, "limit")
        limit = DEFAULT_LIMIT
        if limit_text is not None:
            try:
                limit = int(limit_text)
            except ValueError:
                limit = 0
            if not 1 <= limit <= MAX_LIMIT or not limit_text.strip().isdigit():
                raise _ApiError(
                    400, "invalid_limit", f"limit must be an integer from 1 to {MAX_LIMIT}."
                )

        min_usd_text = _first(params, "min_usd")
        min_usd: float | None = None
        if min_usd_text is not None:
            if not tier.min_usd:
                raise _ApiError(
                    403, "tier_restricted", "The min_usd filter requires the Business plan."
                )
            try:
                min_usd = float(min_usd_text)
            except ValueError:
                min_usd = math.nan
            if not math.isfinite(min_usd):
                raise _ApiError(400, "invalid_min_usd", "min_usd must be a finite number.")

        now_us = _to_us(now)
        start_text, end_text = _first(params, "start"), _first(params, "end")
        start_us = self._parse_time("start", start_text)
        end_us = self._parse_time("end", end_text)
        if end_us is None:
            end_us = now_us
        if start_us is None:
            if tier.history is None:
                start_us = _to_us(dt.datetime.combine(data.KWERY_DATA_START, dt.time(), UTC))
            else:
                start_us = now_us - tier.history // _US
        if start_us > end_us:
            raise _ApiError(400, "invalid_time_range", "start is after end.")
        if tier.history is not None and start_us < now_us - tier.history // _US:
            days = tier.history.days
            raise _ApiError(
                400,
                "invalid_time_range",
                f"start is older than your plan's history depth ({days} day"
                f"{'s' if days != 1 else ''}).",
            )

        fp_source = f"{symbol}|{start_text and start_us}|{end_text and end_us}|{side}|{min_usd!r}"
        after = _first(params, "after") or None
        return _Query(
            symbol=symbol,
            side=side,
            min_usd=min_usd,
            limit=limit,
            lo_ms=_ceil_div(start_us, 1000),
            hi_ms=min(_ceil_div(end_us, 1000), _ceil_div(now_us, 1000)),
            fingerprint=hashlib.sha256(fp_source.encode()).hexdigest()[:16],
            after=after,
        )

    @staticmethod
    def _parse_time(name: str, text: str | None) -> int | None:
        if text is None:
            return None
        try:
            return _to_us(parse_iso(text))
        except ValueError:
            raise _ApiError(
                400, "invalid_time_range", f"{name} is not a valid ISO 8601 time."
            ) from None

    # -- Newhedge ----------------------------------------------------------------------------

    def _newhedge(self, metric: str, params: Mapping[str, list[str]]) -> _Response:
        token = _first(params, "api_token")
        if token:
            self._count(token, requests=1)
        if not token or token not in self.newhedge_tokens:
            return _Response(401, _error_body("unauthorized", "Missing or invalid api_token."))
        wait = self._rate_wait("newhedge:" + token, *self.newhedge_rate)
        if wait > 0:
            resp = _Response(429, _error_body("rate_limited", "Too many requests."))
            resp.headers.append(("Retry-After", str(max(1, math.ceil(wait)))))
            return resp
        through = last_published_day(self.now())
        fault = self._take_fault("newhedge", metric=metric)
        if fault is not None and fault.kind in _FAULT_CODES:
            return self._transport_fault(fault, [], False)
        if fault is not None and fault.kind == "lag":
            through -= _ONE_DAY
        body = _newhedge_body(metric, through)
        if fault is not None and fault.kind == "drop":
            return _Response(200, body, drop=True)
        if fault is not None and fault.kind == "malformed_json":
            return _Response(200, body[: len(body) // 2])
        points = max(0, (through - data.NEWHEDGE_DATA_START).days + 1)
        self._count(token, ok=1, rows=points)
        return _Response(200, body)

    # -- admin (for the CLI and demos) -------------------------------------------------------

    def _admin(
        self, method: str, path: str, params: Mapping[str, list[str]], body: bytes
    ) -> _Response:
        try:
            if path == "/_sim/faults" and method == "POST":
                spec = orjson.loads(body or b"{}")
                if not isinstance(spec, dict) or "kind" not in spec:
                    raise ValueError("body must be a JSON object with at least 'kind'")
                self.inject(
                    str(spec["kind"]),
                    spec.get("count", 1),
                    api=spec.get("api", "kwery"),
                    skip=spec.get("skip", 0),
                    retry_after=spec.get("retry_after", "1"),
                    metric=spec.get("metric"),
                )
                return _json(200, {"ok": True})
            if path == "/_sim/faults" and method == "DELETE":
                self.clear_faults()
                return _json(200, {"ok": True})
            if path == "/_sim/stats" and method == "GET":
                key = _first(params, "key") or ""
                out: dict[str, Any] = self.stats(key)
                out["credits_remaining"] = (
                    self.credits_remaining(key) if key in self.kwery_keys else None
                )
                return _json(200, out)
            if path == "/_sim/now" and method == "POST":
                spec = orjson.loads(body or b"{}")
                value = spec.get("now") if isinstance(spec, dict) else None
                self.set_now(None if value is None else parse_iso(str(value)))
                return _json(200, {"now": None if value is None else _iso_z(self.now())})
        except (ValueError, TypeError) as err:
            return _Response(400, _error_body("bad_request", str(err)))
        if path in ("/_sim/faults", "/_sim/stats", "/_sim/now"):
            return self._method_not_allowed()
        return _Response(404, _error_body("not_found", f"No route for {path!r}."))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every response carries Content-Length
    server_version = "liq-simulator/1.0"
    server: "_Server"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in one write anyway; NODELAY also avoids Nagle stalls.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        body = self.rfile.read(length) if length > 0 else b""
        try:
            if length < 0:
                self.close_connection = True
                resp = _Response(400, _error_body("bad_request", "Invalid Content-Length."))
            else:
                resp = self.server.sim.handle(method, self.path, body)
        except Exception:  # a simulator bug: answer 500 instead of dropping the connection
            traceback.print_exc()
            resp = _Response(500, _error_body("simulator_error", "Unexpected simulator error."))
        try:
            reason = HTTPStatus(resp.status).phrase
        except ValueError:
            reason = ""
        lines = [
            f"HTTP/1.1 {resp.status} {reason}",
            f"Server: {self.server_version}",
            f"Date: {email.utils.formatdate(usegmt=True)}",
            "Content-Type: application/json",
            f"Content-Length: {len(resp.body)}",
        ]
        lines += [f"{name}: {value}" for name, value in resp.headers]
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if resp.drop:
            self.close_connection = True
            self.wfile.write(head + resp.body[: len(resp.body) // 2])
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(head + resp.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests and demos do not want a line per request


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sim: Simulator) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.sim = sim
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, conn: socket.socket, *, add: bool) -> None:
        with self._conns_lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def close_connections(self) -> None:
        """Close idle keep-alive connections so their handler threads end with the server."""
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
