"""Newhedge ``GET /api/v2/metrics/liquidations/{metric}``: one daily series per metric.

The series is `data.newhedge_series` (``[[ms, value], ...]`` from 2020-01-01). Unknown paths
and metrics → 404 (checked before the token, in `server.Simulator.handle`); a missing or wrong
``api_token`` → 401; a per-token token bucket → 429 with ``Retry-After``. Day D is published
at D+1 01:00 UTC, so the series ends with the latest day out at the simulator's `now`.
"""

import datetime as dt
import functools
import math
from collections.abc import Callable, Mapping

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

NEWHEDGE_PREFIX = "/api/v2/metrics/liquidations/"
DEMO_NEWHEDGE_TOKEN = "demo0newhedge0token00000"  # noqa: S105 - public demo token
# Newhedge day D is published at D+1 01:00 UTC.
NEWHEDGE_PUBLISH_DELAY = dt.timedelta(days=1, hours=1)
DEFAULT_NEWHEDGE_RATE: tuple[float, float] = (20.0, 40.0)  # per token: requests/s, burst
_ONE_DAY = dt.timedelta(days=1)


def last_published_day(now: dt.datetime) -> dt.date:
    """The latest Newhedge day that is out at `now` (day D appears at D+1 01:00 UTC)."""
    return (now.astimezone(dt.UTC) - NEWHEDGE_PUBLISH_DELAY).date()


@functools.lru_cache(maxsize=64)
def _series_body(metric: str, through: dt.date) -> bytes:
    return orjson.dumps(data.newhedge_series(metric, through))


def _points(through: dt.date) -> int:
    return max(0, (through - data.NEWHEDGE_DATA_START).days + 1)


class NewhedgeApi:
    """Answers the metric endpoint for the configured tokens."""

    def __init__(
        self,
        tokens: frozenset[str],
        rate: tuple[float, float],
        usage: Usage,
        faults: FaultQueue,
        now: Callable[[], dt.datetime],
    ) -> None:
        self.tokens = tokens
        self.rate = rate
        self.usage = usage
        self.faults = faults
        self.now = now

    def answer(self, metric: str, params: Mapping[str, list[str]]) -> Response:
        """`metric` is already known to exist."""
        token = query_value(params, "api_token")
        if token:
            self.usage.count(token, requests=1)
        if not token or token not in self.tokens:
            return Response(401, error_body("unauthorized", "Missing or invalid api_token."))
        wait = self.usage.rate_wait("newhedge:" + token, *self.rate)
        if wait > 0:
            resp = Response(429, error_body("rate_limited", "Too many requests."))
            resp.headers.append(("Retry-After", str(max(1, math.ceil(wait)))))
            return resp
        through = last_published_day(self.now())
        fault = self.faults.take("newhedge", lambda f: _applies(f, metric, through))
        if fault is None:
            return self._series(token, metric, through)
        return self._faulted(fault, token, metric, through)

    def _series(self, token: str, metric: str, through: dt.date) -> Response:
        self.usage.count(token, ok=1, rows=_points(through))
        return Response(200, _series_body(metric, through))

    def _faulted(self, fault: Fault, token: str, metric: str, through: dt.date) -> Response:
        if fault.kind in STATUS_CODES:
            return status_response(fault, [])
        if fault.kind == "echo_secret":
            return echo_secret_response(token, [])
        if fault.kind == "hang":
            if fault.seconds is None:
                return Response(200, b"", hang=True)
            resp = self._series(token, metric, through)
            resp.delay = fault.seconds
            return resp
        if fault.kind == "lag":
            return self._series(token, metric, through - _ONE_DAY)
        if fault.kind in ("gap", "bad_value"):
            series = data.newhedge_series(metric, through)
            i = ((fault.day or through) - data.NEWHEDGE_DATA_START).days
            if fault.kind == "gap":
                del series[i]
            else:
                series[i][1] = fault.value
            self.usage.count(token, ok=1, rows=len(series))
            return Response(200, orjson.dumps(series))
        body = _series_body(metric, through)
        if fault.kind == "drop":
            return Response(200, body, drop=True)
        if fault.kind == "malformed_json":
            return Response(200, body[: len(body) // 2])
        raise AssertionError(f"unhandled Newhedge fault {fault.kind!r}")


def _applies(fault: Fault, metric: str, through: dt.date) -> bool:
    """Whether a queued Newhedge fault applies to a request for `metric` (series to `through`)."""
    if fault.metric is not None and fault.metric != metric:
        return False
    if fault.kind in ("gap", "bad_value"):
        return data.NEWHEDGE_DATA_START <= (fault.day or through) <= through
    return True
