"""Helpers of the client tests: credentials, a scripted fake session, simulator data windows."""

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import requests
from requests.structures import CaseInsensitiveDict

FIXED_NOW = dt.datetime(2026, 3, 20, 12, 0, tzinfo=dt.UTC)
BUSINESS_KEY = "demo-business-key"
PRO_KEY = "demo-pro-key"
FREE_KEY = "demo-free-key"
NEWHEDGE_TOKEN = "demo0newhedge0token00000"
# Secrets that must never show up anywhere; the odd characters exercise URL-encoding.
SENTINEL = "SENTINEL-s3cr3t/k+y=&42"  # unknown to the simulator: 401
SENTINEL_BUSINESS_KEY = "SENTINEL-biz/k+y=&7"  # registered in the simulator as a Business key
SENTINEL_PRO_KEY = "SENTINEL-pro/k+y=&8"  # registered as a Pro key
SENTINEL_TOKEN = "SENTINEL/tok+n=&0000000"  # registered as a Newhedge token (24 characters)


class VirtualClock:
    """The simulator's rate-limiter clock: it only moves when a test's client "sleeps"."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class Sleeper(list[float]):
    """``sleep=sleeper.append`` records each wait and advances the virtual clock instead of
    sleeping, so the simulator's real rate limiter sees the time the client waited."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self.clock = clock

    def append(self, seconds: float) -> None:
        super().append(seconds)
        self.clock.now += seconds


def make_response(
    status: int = 200, body: Any = b"", headers: dict[str, str] | None = None, url: str = ""
) -> requests.Response:
    """A fully read requests.Response, as Session.get returns it (stream=False)."""
    response = requests.Response()
    response.status_code = status
    response._content = body if isinstance(body, bytes) else orjson.dumps(body)
    response.headers = CaseInsensitiveDict(headers or {})
    response.url = url
    response.encoding = "utf-8"
    return response


@dataclass
class FakeSession:
    """Plays a script: each item is a Response, an exception to raise, or a callable(url, params).

    Records every call; used only where the simulator cannot produce a case (timeouts raised by
    requests with the URL in their text, exotic bodies).
    """

    script: list[Any]
    calls: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)
    closed: bool = False

    def get(self, url: str, params: dict[str, str], timeout: Any) -> requests.Response:
        self.calls.append((url, dict(params), timeout))
        item = self.script.pop(0)
        if callable(item) and not isinstance(item, requests.Response):
            item = item(url, params)
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self.closed = True


def full_url(url: str, params: dict[str, str]) -> str:
    return requests.Request("GET", url, params=params).prepare().url or url


def raising(exc_type: type[Exception]) -> Callable[[str, dict[str, str]], Exception]:
    """An exception whose text contains the full URL (key included), like requests produces."""

    def make(url: str, params: dict[str, str]) -> Exception:
        return exc_type(
            f"HTTPConnectionPool(host='x', port=1): failed with url: {full_url(url, params)}"
        )

    return make


def ts_ms(timestamp: str) -> int:
    """Epoch milliseconds of an API timestamp like ``2026-03-08T03:14:22.431Z``."""
    moment = dt.datetime.fromisoformat(timestamp)
    return (moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)


def at_ms(ms: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ms)


def day_events(symbol: str, first: dt.date, last: dt.date) -> list[dict]:
    """The simulator's events of the UTC days first..last, in the API's order."""
    from liq_pipeline.simulator.data import kwery_events

    events: list[dict] = []
    day = first
    while day <= last:
        events.extend(kwery_events(symbol, day))
        day += dt.timedelta(days=1)
    return events


def window(events: list[dict], count: int, *, boundary_tie: bool = False) -> tuple[int, int]:
    """Indexes (i, j) such that [ts(i), ts(j)) holds exactly events[i:j], ``count`` of them.

    ts(i-1) != ts(i) and ts(j-1) != ts(j), so the window's start is an event (included) and its
    end is an event (excluded). With ``boundary_tie`` events i+999 and i+1000 share a
    millisecond, i.e. the same instant straddles the boundary of the first two pages.
    """
    ms = [ts_ms(e["timestamp"]) for e in events]
    for i in range(1, len(ms) - count - 1):
        j = i + count
        if ms[i - 1] == ms[i] or ms[j - 1] == ms[j]:
            continue
        if boundary_tie and ms[i + 999] != ms[i + 1000]:
            continue
        return i, j
    raise AssertionError(f"no window of {count} events")
