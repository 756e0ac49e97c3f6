"""Injectable faults: the kinds, their validation, the queue, and the API-agnostic responses.

Queue rules: faults are consumed only by requests that would otherwise have been answered 200
(so a 401 or a 400 never eats a fault), and only by requests they apply to (below). Each
queued fault counts its ``skip`` over the requests it applies to; the oldest fault whose skip
is used up fires, ``count`` times. A faulted response costs 0 credits (``X-Credits-Used: 0``).

Kinds (API: effect):

- ``429``, ``500``, ``502``, ``503`` (both): that status with an ``error`` body (codes
  ``rate_limited``, ``internal_error``, ``bad_gateway``, ``service_unavailable``); a 429
  carries ``Retry-After: <retry_after>`` unless ``retry_after`` is None.
- ``drop`` (both): the full ``Content-Length``, half the body, then the socket is closed.
- ``malformed_json`` (both): the first half of the body with a matching Content-Length.
- ``capped`` (Kwery): only sets ``X-Rows-Capped: true`` (meta unchanged).
- ``repeat_cursor`` (Kwery): ``next_cursor`` = the request's ``after`` and ``has_more: true``;
  applies only to requests that carry ``after`` (page 2 then repeats page 1's cursor).
- ``more_no_cursor`` (Kwery): ``has_more: true`` with ``next_cursor: null``.
- ``bad_rows`` (Kwery): removes ``usd_value`` from row 0 and turns row 1's ``quantity`` into a
  string (row 0 if alone).
- ``lag`` (Newhedge): the series ends a day early (yesterday's point is not out yet).

A Newhedge fault given a ``metric`` applies only to that metric.
"""

import threading
from collections.abc import Callable
from dataclasses import dataclass

from liq_pipeline.simulator import data
from liq_pipeline.simulator.http import Response, error_body

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
STATUS_CODES = {
    "429": "rate_limited",
    "500": "internal_error",
    "502": "bad_gateway",
    "503": "service_unavailable",
}


@dataclass
class Fault:
    kind: str
    api: str
    count: int
    skip: int
    retry_after: str | None = None
    metric: str | None = None


def make_fault(
    kind: str,
    count: int = 1,
    *,
    api: str = "kwery",
    skip: int = 0,
    retry_after: str | None = "1",
    metric: str | None = None,
) -> Fault:
    """A validated `Fault` (ValueError says what is wrong)."""
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
    return Fault(kind, api, count, skip, None if retry_after is None else str(retry_after), metric)


class FaultQueue:
    """Thread-safe queue of pending faults, in injection order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, api: str, applies: Callable[[Fault], bool]) -> Fault | None:
        """The fault this request gets (None: answer normally), counting skips on the way.

        Call it only once the request is known to deserve a 200; `applies` says whether a
        queued fault of `api` applies to this request.
        """
        with self._lock:
            chosen: Fault | None = None
            for fault in self._faults:
                if fault.api != api or not applies(fault):
                    continue
                if fault.skip > 0:
                    fault.skip -= 1
                elif chosen is None:
                    chosen = fault
                    fault.count -= 1
            if chosen is not None and chosen.count == 0:
                self._faults.remove(chosen)
            return chosen


def status_response(fault: Fault, headers: list[tuple[str, str]]) -> Response:
    """The 429/5xx answer of a status fault, after the API's own `headers`."""
    status = int(fault.kind)
    out = list(headers)
    if fault.kind == "429" and fault.retry_after is not None:
        out.append(("Retry-After", fault.retry_after))
    return Response(status, error_body(STATUS_CODES[fault.kind], f"Simulated {status} fault."), out)
