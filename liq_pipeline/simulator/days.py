"""Hand-built Kwery days: given events served for a (symbol, UTC day) instead of generated ones.

For tests that must hit exact edges (gaps of 60.000 s vs 60.001 s, several events in one
millisecond, a burst across UTC midnight, a day with no events). A hand-built day replaces
`data.day_data` for that (symbol, day) and nothing else, so it is served with exactly the same
pagination, cursor, limit, side, min_usd, history depth, ``now``, row caps and credits as a
generated day. An empty list is a day with no events.

Events are dicts in the API's row shape, validated by `build_day`: exactly the fields
`ROW_FIELDS`; ``timestamp`` ISO 8601 with milliseconds and ``Z`` (``2026-03-10T00:00:00.000Z``)
inside that UTC day; ``symbol`` the day's symbol; ``source`` a string; ``side`` ``long`` or
``short``; ``quantity``, ``price``, ``avg_price``, ``usd_value`` finite numbers (not checked
against each other: a test may want them inconsistent). Events must be sorted by timestamp;
events sharing a millisecond are served in the given order. The rows are copied (and
serialized, fields in `ROW_FIELDS` order) when the day is set.
"""

import datetime as dt
import math
import re
import threading
from collections.abc import Iterable, Mapping

import numpy as np
import orjson

from liq_pipeline.simulator import data

ROW_FIELDS = data.KWERY_FIELDS
_NUMBERS = ("quantity", "price", "avg_price", "usd_value")
_STAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS = dt.timedelta(milliseconds=1)


def check_day_key(symbol: str, day: dt.date) -> None:
    """A (symbol, day) the Kwery API could serve."""
    if symbol not in data.KWERY_SYMBOLS:
        raise ValueError(f"unknown symbol {symbol!r}; expected one of {data.KWERY_SYMBOLS}")
    if not isinstance(day, dt.date) or isinstance(day, dt.datetime):
        raise ValueError(f"day must be a datetime.date, got {day!r}")
    if day < data.KWERY_DATA_START:
        start = data.KWERY_DATA_START.isoformat()
        raise ValueError(f"day {day.isoformat()} is before Kwery's history starts ({start})")


def build_day(symbol: str, day: dt.date, events: Iterable[Mapping]) -> data.DayData:
    """The `data.DayData` that serves `events` (ValueError naming the first bad event)."""
    check_day_key(symbol, day)
    lo = data.day_start_ms(day)
    rows: list[dict] = []
    stamps: list[int] = []
    for i, event in enumerate(events):
        row, ms = _check_event(i, event, symbol)
        if not lo <= ms < lo + data.DAY_MS:
            raise ValueError(
                f"event {i}: timestamp {row['timestamp']} is outside {day.isoformat()} (UTC)"
            )
        if stamps and ms < stamps[-1]:
            raise ValueError(
                f"event {i} ({row['timestamp']}) is earlier than event {i - 1}: "
                "events must be sorted by timestamp"
            )
        rows.append(row)
        stamps.append(ms)
    # Row i is blob[starts[i]:ends[i]], rows joined by "," as in a generated day.
    serialized = [orjson.dumps(row) for row in rows]
    lengths = np.array([len(r) for r in serialized], dtype=np.int64)
    ends = np.cumsum(lengths + 1, dtype=np.int64) - 1
    starts = ends - lengths
    quantity, price, avg_price, usd_value = (
        np.array([float(row[f]) for row in rows], dtype=np.float64) for f in _NUMBERS
    )
    arrays = {
        "ts_ms": np.array(stamps, dtype=np.int64),
        "is_long": np.array([row["side"] == "long" for row in rows], dtype=bool),
        "quantity": quantity,
        "price": price,
        "avg_price": avg_price,
        "usd_value": usd_value,
        "starts": starts,
        "ends": ends,
    }
    for arr in arrays.values():
        arr.flags.writeable = False
    return data.DayData(symbol, day, **arrays, blob=b",".join(serialized))


def _check_event(i: int, event: Mapping, symbol: str) -> tuple[dict, int]:
    """The row (fields in API order) and its epoch millisecond."""
    if not isinstance(event, Mapping):
        raise ValueError(f"event {i}: expected a dict in the API's row shape, got {event!r}")
    missing = [f for f in ROW_FIELDS if f not in event]
    extra = sorted(str(f) for f in event if f not in ROW_FIELDS)
    if missing or extra:
        raise ValueError(f"event {i}: missing fields {missing}, unknown fields {extra}")
    row = {f: event[f] for f in ROW_FIELDS}
    stamp = row["timestamp"]
    if not isinstance(stamp, str) or not _STAMP.fullmatch(stamp):
        raise ValueError(
            f"event {i}: timestamp must be ISO 8601 with milliseconds and Z "
            f"(2026-03-10T00:00:00.000Z), got {stamp!r}"
        )
    try:
        ms = (dt.datetime.fromisoformat(stamp) - _EPOCH) // _MS
    except ValueError:
        raise ValueError(f"event {i}: timestamp {stamp!r} is not a valid time") from None
    if row["symbol"] != symbol:
        raise ValueError(f"event {i}: symbol {row['symbol']!r} is not the day's symbol {symbol!r}")
    if not isinstance(row["source"], str):
        raise ValueError(f"event {i}: source must be a string, got {row['source']!r}")
    if row["side"] not in ("long", "short"):
        raise ValueError(f"event {i}: side must be 'long' or 'short', got {row['side']!r}")
    for name in _NUMBERS:
        value = row[name]
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isfinite(value)
            or (isinstance(value, int) and abs(value) >= 2**63)  # beyond what JSON tools keep
        ):
            raise ValueError(f"event {i}: {name} must be a finite number, got {value!r}")
    return row, ms


class KweryDays:
    """Thread-safe table of hand-built days; `get` falls back to the generated day."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._days: dict[tuple[str, dt.date], data.DayData] = {}

    def set(self, symbol: str, day: dt.date, events: Iterable[Mapping] | None) -> None:
        """Serve `events` for (symbol, day); None restores the generated day."""
        if events is None:
            check_day_key(symbol, day)
            with self._lock:
                self._days.pop((symbol, day), None)
            return
        built = build_day(symbol, day, events)  # outside the lock: may be a big day
        with self._lock:
            self._days[(symbol, day)] = built

    def get(self, symbol: str, day: dt.date) -> data.DayData:
        with self._lock:
            built = self._days.get((symbol, day))
        return built if built is not None else data.day_data(symbol, day)

    def events(self, symbol: str, day: dt.date) -> list[dict]:
        """Every row served for (symbol, day), like `data.kwery_events` (fresh dicts)."""
        return orjson.loads(b"[" + self.get(symbol, day).blob + b"]")
