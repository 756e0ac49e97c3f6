"""Injectable faults: the kinds, their validation, the queue, and the API-agnostic responses.

Queue rules: faults are consumed only by requests that would otherwise have been answered 200
(so a 401 or a 400 never eats a fault), and only by requests they apply to (below). Each
queued fault counts its ``skip`` over the requests it applies to; the oldest fault whose skip
is used up fires, ``count`` times. A faulted Kwery response costs 0 credits
(``X-Credits-Used: 0``), except ``bad_value`` and ``hang`` with ``seconds``, which are charged
as the normal page they are.

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
- ``hang`` (both), optional ``seconds``: the request is read, then nothing is sent; the
  connection stays open until the client disconnects or the simulator closes (`close()` does
  not wait for it). With ``seconds`` the request is answered normally after that delay (a
  slow API): computed, charged and counted on arrival, sent ``seconds`` later, and dropped
  unsent if the client disconnects or the simulator closes meanwhile.
- ``echo_secret`` (both): HTTP 400 ``invalid_request`` whose body echoes the request's secret
  (Kwery ``api-key``, Newhedge ``api_token``) in the message and in ``error.echo``, one JSON
  string field per encoding, each written literally in the body: ``raw`` (UTF-8),
  ``percent`` (``quote(secret, safe="")``), ``plus`` (``quote_plus``), ``json_escaped``
  (``\\uXXXX`` escapes as ``json.dumps(secret)`` writes them), ``html_numeric``
  (``html.escape``, non-ASCII as ``&#233;``), ``html_named`` (non-ASCII as ``&eacute;`` where
  `html.entities.codepoint2name` has a name, else numeric). A badly behaved server or proxy.
- ``bad_value`` (Kwery), ``field`` (required: one of `KWERY_FIELDS`), ``value`` (required, any
  JSON value), ``row`` (default 0): a normal 200 page, charged as usual, whose row ``row`` has
  ``field`` set to ``value``; applies only to pages with more than ``row`` rows. Hostile data:
  ``quantity=-1.0``, ``price=0``, ``usd_value=1.7e308``, ``source="bin\\u0000ance"``,
  ``symbol="ETH"`` on a BTC query...
- ``bad_value`` (Newhedge), ``value`` (required), ``day`` (ISO date, default the latest
  published day): the series with that day's value replaced by ``value``.
- ``gap`` (Newhedge), ``day`` (required, ISO date): the series without that day's point (a
  hole while later days are present).

Newhedge ``bad_value`` and ``gap`` apply only to requests whose series holds ``day``. A
Newhedge fault given a ``metric`` applies only to that metric. Parameters a kind does not
take are refused (`make_fault` raises ValueError).
"""

import datetime as dt
import html
import json
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from html.entities import codepoint2name
from typing import Any
from urllib.parse import quote, quote_plus

import orjson

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
    "hang": frozenset({"kwery", "newhedge"}),
    "echo_secret": frozenset({"kwery", "newhedge"}),
    "bad_value": frozenset({"kwery", "newhedge"}),
    "gap": frozenset({"newhedge"}),
}
# The parameters a (kind, api) takes beyond count/skip/api/retry_after/metric.
KIND_PARAMS: dict[tuple[str, str], frozenset[str]] = {
    ("hang", "kwery"): frozenset({"seconds"}),
    ("hang", "newhedge"): frozenset({"seconds"}),
    ("bad_value", "kwery"): frozenset({"field", "value", "row"}),
    ("bad_value", "newhedge"): frozenset({"value", "day"}),
    ("gap", "newhedge"): frozenset({"day"}),
}
KWERY_FIELDS = data.KWERY_FIELDS
MAX_ROW = 999  # a Kwery page holds at most 1,000 rows
STATUS_CODES = {
    "429": "rate_limited",
    "500": "internal_error",
    "502": "bad_gateway",
    "503": "service_unavailable",
}


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  # "no value given" (None is a JSON value: null)


@dataclass
class Fault:
    kind: str
    api: str
    count: int
    skip: int
    retry_after: str | None = None
    metric: str | None = None
    seconds: float | None = None  # hang: answer after this delay instead of never
    field: str | None = None  # bad_value (Kwery)
    value: Any = UNSET  # bad_value
    row: int = 0  # bad_value (Kwery)
    day: dt.date | None = None  # gap, bad_value (Newhedge; None = the latest published day)


def make_fault(
    kind: str,
    count: int = 1,
    *,
    api: str = "kwery",
    skip: int = 0,
    retry_after: str | None = "1",
    metric: str | None = None,
    seconds: float | None = None,
    field: str | None = None,
    value: Any = UNSET,
    row: int | None = None,
    day: dt.date | str | None = None,
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
    params = {"seconds": seconds, "field": field, "row": row, "day": day}
    given = {name for name, v in params.items() if v is not None}
    if value is not UNSET:
        given.add("value")
    extra = sorted(given - KIND_PARAMS.get((kind, api), frozenset()))
    if extra:
        raise ValueError(f"parameter {extra[0]!r} does not apply to fault {kind!r} on api {api!r}")
    if kind == "bad_value" and value is UNSET:
        raise ValueError("fault 'bad_value' needs a value")
    if kind == "bad_value" and api == "kwery" and field is None:
        raise ValueError(f"fault 'bad_value' on api 'kwery' needs a field, one of {KWERY_FIELDS}")
    if kind == "gap" and day is None:
        raise ValueError("fault 'gap' needs a day (ISO date)")
    return Fault(
        kind,
        api,
        count,
        skip,
        retry_after=None if retry_after is None else str(retry_after),
        metric=metric,
        seconds=None if seconds is None else _check_seconds(seconds),
        field=None if field is None else _check_field(field),
        value=value if value is UNSET else _check_value(value),
        row=0 if row is None else _check_row(row),
        day=None if day is None else _check_day(day),
    )


def _check_seconds(seconds: object) -> float:
    if (
        not isinstance(seconds, int | float)
        or isinstance(seconds, bool)
        or not math.isfinite(seconds)
        or seconds < 0
    ):
        raise ValueError(f"seconds must be a finite number >= 0, got {seconds!r}")
    return float(seconds)


def _check_field(field: object) -> str:
    if field not in KWERY_FIELDS:
        raise ValueError(f"unknown field {field!r}; expected one of {KWERY_FIELDS}")
    return str(field)


def _check_value(value: Any) -> Any:
    try:
        same = orjson.loads(orjson.dumps(value)) == value
    except (TypeError, orjson.JSONEncodeError):
        same = False
    if not same:  # NaN/inf would be sent as null, a tuple as a list...
        raise ValueError(f"value must be a JSON value (finite numbers, lists...), got {value!r}")
    return value


def _check_row(row: object) -> int:
    if type(row) is not int or not 0 <= row <= MAX_ROW:
        raise ValueError(f"row must be an integer from 0 to {MAX_ROW}, got {row!r}")
    return row


def _check_day(day: object) -> dt.date:
    if isinstance(day, str):
        try:
            day = dt.date.fromisoformat(day)
        except ValueError:
            raise ValueError(f"day must be an ISO date (YYYY-MM-DD), got {day!r}") from None
    if not isinstance(day, dt.date) or isinstance(day, dt.datetime):
        raise ValueError(f"day must be a date or an ISO date string, got {day!r}")
    if day < data.NEWHEDGE_DATA_START:
        start = data.NEWHEDGE_DATA_START.isoformat()
        raise ValueError(f"day {day.isoformat()} is before the Newhedge series starts ({start})")
    return day


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

    def pending(self) -> list[dict[str, Any]]:
        """What is still queued: kind, api, firings left and skips left, oldest first."""
        with self._lock:
            return [
                {"kind": f.kind, "api": f.api, "count": f.count, "skip": f.skip}
                for f in self._faults
            ]

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


def echo_secret_response(secret: str, headers: list[tuple[str, str]]) -> Response:
    """400 ``invalid_request`` echoing `secret` in every encoding listed for ``echo_secret``."""
    tokens = {
        "raw": orjson.dumps(secret),  # UTF-8, non-ASCII kept
        "percent": orjson.dumps(quote(secret, safe="")),
        "plus": orjson.dumps(quote_plus(secret)),
        # Inserted as the JSON token itself, so the body holds the \\uXXXX text literally.
        "json_escaped": json.dumps(secret, ensure_ascii=True).encode(),
        "html_numeric": orjson.dumps(_html_numeric(secret)),
        "html_named": orjson.dumps(_html_named(secret)),
    }
    echo = b"{" + b",".join(orjson.dumps(name) + b":" + tok for name, tok in tokens.items()) + b"}"
    error = orjson.dumps(
        {
            "code": "invalid_request",
            "message": f"Simulated echo_secret fault; the request carried {secret}",
        }
    )
    return Response(400, b'{"error":' + error[:-1] + b',"echo":' + echo + b"}}", list(headers))


def _html_numeric(text: str) -> str:
    return _ascii_refs(html.escape(text))


def _html_named(text: str) -> str:
    return _ascii_refs(
        "".join(
            f"&{codepoint2name[ord(c)]};" if ord(c) > 127 and ord(c) in codepoint2name else c
            for c in html.escape(text)
        )
    )


def _ascii_refs(text: str) -> str:
    """Every non-ASCII character as a decimal numeric reference (``é`` → ``&#233;``)."""
    return text.encode("ascii", "xmlcharrefreplace").decode("ascii")
