"""The `Simulator`: both APIs on one local root URL, with its clock, faults, stats and admin.

Kwery ``GET /v1/liquidations`` (`kwery.py`) and Newhedge
``GET /api/v2/metrics/liquidations/{metric}`` (`newhedge.py`) are served from the
deterministic data in `data.py`, with the contracts' parameters, errors, tiers, credits and
cursor pagination, plus switchable faults (`faults.py`, queued with `Simulator.inject`). The
HTTP plumbing is in `http.py`, the per-key counters and rate limits in `usage.py`, the
hand-built Kwery days (`Simulator.set_kwery_day`) in `days.py`.

Admin routes (for the CLI and demos):

- ``POST /_sim/faults``: JSON body with the arguments of `Simulator.inject` by name, e.g.
  ``{"kind": "gap", "api": "newhedge", "day": "2026-03-01"}`` (``"value": null`` is a null
  value, an absent ``value`` none); ``DELETE /_sim/faults`` clears the queue.
- ``GET /_sim/stats?key=...``: `stats` plus ``credits_remaining`` (null for a Newhedge token).
- ``POST /_sim/now``: ``{"now": ISO 8601 or null}``.

A bad admin request → 400 ``bad_request``.
"""

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from liq_pipeline.simulator import data
from liq_pipeline.simulator.days import KweryDays
from liq_pipeline.simulator.faults import UNSET, FaultQueue, make_fault
from liq_pipeline.simulator.http import (
    Response,
    Server,
    error_body,
    json_response,
    query_value,
)
from liq_pipeline.simulator.kwery import (
    DEFAULT_TIERS,
    DEMO_KWERY_KEYS,
    KWERY_PATH,
    KweryApi,
    KweryTier,
    parse_iso,
)
from liq_pipeline.simulator.newhedge import (
    DEFAULT_NEWHEDGE_RATE,
    DEMO_NEWHEDGE_TOKEN,
    NEWHEDGE_PREFIX,
    NewhedgeApi,
)
from liq_pipeline.simulator.usage import Usage

UTC = dt.UTC
_ADMIN_PATHS = ("/_sim/faults", "/_sim/stats", "/_sim/now")


def _iso_z(value: dt.datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _not_found(path: str) -> Response:
    return Response(404, error_body("not_found", f"No route for {path!r}."))


def _method_not_allowed() -> Response:
    return Response(405, error_body("method_not_allowed", "Method not allowed."))


class Simulator:
    """Both APIs on one local root URL (module docstrings of kwery/newhedge/faults: behaviour).

    ``with Simulator(port=0, now=fixed_datetime) as sim: requests.get(sim.url + ...)``.
    Keyword-only extras (defaults = the demo set-up): `tiers` (tier name → `KweryTier`),
    `kwery_keys` (key → tier name), `newhedge_tokens`, `newhedge_rate` ((requests/s, burst)
    per token), `monotonic` (the clock of the rate limiters, injectable for tests) and
    `kwery_days` ({(symbol, day): events} served instead of the generated days, as
    `set_kwery_day` does).
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
        kwery_days: Mapping[tuple[str, dt.date], Iterable[Mapping]] | None = None,
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
        self._lock = threading.Lock()
        self._now = self._check_now(now)
        self._usage = Usage(monotonic)
        self._faults = FaultQueue()
        self._days = KweryDays()
        for (symbol, day), events in (kwery_days or {}).items():
            self._days.set(symbol, day, events)
        self._kwery = KweryApi(
            self.tiers, self.kwery_keys, self._usage, self._faults, self.now, self._days.get
        )
        self._newhedge = NewhedgeApi(
            self.newhedge_tokens, newhedge_rate, self._usage, self._faults, self.now
        )
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> "Simulator":
        if self._server is not None:
            return self
        server = Server((self.host, self.port), self)
        self._server = server
        self._thread = threading.Thread(target=server.serve, name="liq-simulator", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and end every open connection; never waits for a request in progress."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()  # returns within serve()'s poll interval
        server.server_close()
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
        host, port = (str(part) for part in self._server.server_address[:2])
        host = f"[{host}]" if ":" in host else host
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

    def inject(self, kind: str, count: int = 1, **params: Any) -> None:
        """Fault the next `count` matching requests of `api` after letting `skip` through.

        The keyword parameters are `make_fault`'s: `api`, `skip`, `retry_after` (the 429
        fault's ``Retry-After``; None: no header), `metric` (a Newhedge fault on one metric),
        `seconds` (``hang``), `field`/`value`/`row` (Kwery ``bad_value``), `value`/`day`
        (Newhedge ``bad_value``), `day` (``gap``). Kinds, their parameters and the queue rules:
        `liq_pipeline.simulator.faults`. ValueError on an unknown kind or a parameter that is
        missing, wrong or not the kind's.
        """
        self._faults.add(make_fault(kind, count, **params))

    def clear_faults(self) -> None:
        self._faults.clear()

    def pending_faults(self) -> list[dict[str, Any]]:
        """The faults still queued (``kind``, ``api``, ``count`` and ``skip`` left), oldest first.

        A test can wait for a fault to be taken, or check that every injected fault fired.
        """
        return self._faults.pending()

    # -- hand-built Kwery days ----------------------------------------------------------------

    def set_kwery_day(self, symbol: str, day: dt.date, events: Iterable[Mapping] | None) -> None:
        """Serve `events` as (symbol, UTC day) instead of the generated day; None restores it.

        Events: dicts in the API row shape, sorted, inside the day (`liq_pipeline.simulator.days`
        lists the checks; ValueError on the first bad event). ``[]`` is a day without events.
        Safe while requests are served; a cursor minted on the old day should not be reused.
        """
        self._days.set(symbol, day, events)

    def kwery_events(self, symbol: str, day: dt.date) -> list[dict]:
        """Every row this simulator serves for (symbol, UTC day): hand-built or generated.

        Like `data.kwery_events`: API shape and order, before any ``now`` cut (the API serves
        only the rows with ``timestamp < now``); fresh dicts.
        """
        return self._days.events(symbol, day)

    # -- stats -------------------------------------------------------------------------------

    def stats(self, api_key_or_token: str) -> dict[str, int]:
        """Counters of one key or token (their meaning: `liq_pipeline.simulator.usage`)."""
        return self._usage.stats(api_key_or_token)

    def credits_remaining(self, api_key: str) -> int:
        return self._kwery.credits_remaining(api_key)

    def reset_stats(self) -> None:
        """Zero every counter, including credits used (a fresh billing cycle)."""
        self._usage.reset()

    # -- dispatch ----------------------------------------------------------------------------

    def handle(self, method: str, target: str, body: bytes = b"") -> Response:
        """Answer one request (HTTP plumbing lives in `http.py`)."""
        parts = urlsplit(target)
        params = parse_qs(parts.query, keep_blank_values=True)
        path = parts.path
        if path == KWERY_PATH:
            if method != "GET":
                return _method_not_allowed()
            return self._kwery.answer(params)
        if path.startswith(NEWHEDGE_PREFIX):
            metric = path[len(NEWHEDGE_PREFIX) :]
            if metric not in data.METRICS:
                return Response(404, error_body("not_found", f"Unknown metric {metric!r}."))
            if method != "GET":
                return _method_not_allowed()
            return self._newhedge.answer(metric, params)
        if path.startswith("/_sim/"):
            return self._admin(method, path, params, body)
        return _not_found(path)

    def _admin(
        self, method: str, path: str, params: Mapping[str, list[str]], body: bytes
    ) -> Response:
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
                    seconds=spec.get("seconds"),
                    field=spec.get("field"),
                    value=spec.get("value", UNSET),
                    row=spec.get("row"),
                    day=spec.get("day"),
                )
                return json_response(200, {"ok": True})
            if path == "/_sim/faults" and method == "DELETE":
                self.clear_faults()
                return json_response(200, {"ok": True})
            if path == "/_sim/stats" and method == "GET":
                key = query_value(params, "key") or ""
                out: dict[str, Any] = self.stats(key)
                out["credits_remaining"] = (
                    self.credits_remaining(key) if key in self.kwery_keys else None
                )
                return json_response(200, out)
            if path == "/_sim/now" and method == "POST":
                spec = orjson.loads(body or b"{}")
                value = spec.get("now") if isinstance(spec, dict) else None
                self.set_now(None if value is None else parse_iso(str(value)))
                return json_response(200, {"now": None if value is None else _iso_z(self.now())})
        except (ValueError, TypeError) as err:
            return Response(400, error_body("bad_request", str(err)))
        if path in _ADMIN_PATHS:
            return _method_not_allowed()
        return _not_found(path)
