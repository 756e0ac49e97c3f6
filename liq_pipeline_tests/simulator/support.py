"""Constants and helpers shared by the simulator tests (fixtures live in conftest.py)."""

import datetime as dt

import requests

from liq_pipeline.simulator import Simulator

# A fixed simulator clock: Tuesday 2026-03-10 12:00 UTC.
NOW = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)
FREE, PRO, BUSINESS = "demo-free-key", "demo-pro-key", "demo-business-key"
TOKEN = "demo0newhedge0token00000"
KWERY_HEADERS = ("X-Credits-Used", "X-Credits-Remaining", "X-Rows-Returned", "X-Rows-Capped")


class FakeMonotonic:
    """Injectable monotonic clock for the token buckets; only moves when told."""

    def __init__(self) -> None:
        self.value = 1_000.0

    def __call__(self) -> float:
        return self.value

    def advance(self, seconds: float) -> None:
        self.value += seconds


class Api:
    """Thin helpers over a session and a simulator, so tests read like the contracts."""

    def __init__(self, sim: Simulator, session: requests.Session) -> None:
        self.sim = sim
        self.session = session

    def kwery(self, key: str | None = BUSINESS, **params: object) -> requests.Response:
        if key is not None:
            params = {"api-key": key, **params}
        return self.session.get(f"{self.sim.url}/v1/liquidations", params=params, timeout=10)

    def pages(self, key: str = BUSINESS, **params: object) -> list[dict]:
        """Follow next_cursor to the end; every page must be a 200."""
        out: list[dict] = []
        after = None
        while True:
            extra = {"after": after} if after else {}
            resp = self.kwery(key, **params, **extra)
            assert resp.status_code == 200, resp.text
            body = resp.json()
            out.append(body)
            after = body["meta"]["next_cursor"]
            if not body["meta"]["has_more"]:
                assert after is None
                return out
            assert len(out) < 1_000

    def newhedge(self, metric: str, **params: object) -> requests.Response:
        url = f"{self.sim.url}/api/v2/metrics/liquidations/{metric}"
        return self.session.get(url, params=params, timeout=10)


def ts(event: dict) -> dt.datetime:
    return dt.datetime.fromisoformat(event["timestamp"])


def iso(value: dt.datetime) -> str:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def clean_window(events: list[dict], n: int, first: int = 0) -> tuple[int, str, str]:
    """(k, start, end) such that [start, end) holds exactly events[k:k+n].

    start is the timestamp of events[k] and end the timestamp of events[k+n]; k is the first
    index >= `first` where neither boundary splits a group of same-millisecond events.
    """
    stamps = [e["timestamp"] for e in events]
    for k in range(max(first, 1), len(stamps) - n):
        if stamps[k] != stamps[k - 1] and stamps[k + n] != stamps[k + n - 1]:
            return k, stamps[k], stamps[k + n]
    raise AssertionError(f"no clean window of {n} events")
