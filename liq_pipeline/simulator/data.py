"""Deterministic synthetic data behind the simulator (pure functions, no server needed).

Scheme — "daily totals first, events drawn to match":

1. A cheap per-day *profile* (`_profile(symbol, day)`, a handful of draws from
   ``np.random.default_rng([crc32(symbol), day.toordinal(), 2])``) fixes the day's event count,
   the USD total of its long and of its short liquidations (the *targets*), whether it is a
   crash day, and where the crash happens. Open prices come from a log-linear interpolation of
   rough historical anchor prices times a per-day noise term (another 1-draw generator), and a
   day's close is the next day's open, so the price path is continuous across days.
2. `kwery_events(symbol, day)` draws the events of that day from
   ``np.random.default_rng([crc32(symbol), day.toordinal()])`` (vectorised numpy): clustered
   liquidation cascades (heavy-tailed cluster sizes, time-of-day intensity, a dense crash
   window on crash days), same-millisecond bursts, a Brownian-bridge price path from open to
   close (with a V-shaped dip on crash days), lognormal (heavy-tailed) sizes. Each side's sizes
   are scaled so that its USD sum hits the profile's target, then quantities are rounded to
   the symbol's lot step, so the served sums equal the targets up to lot rounding (well
   under 1 % — measured < 0.1 % for BTC).
3. `newhedge_series(metric, through)` needs only the BTC profiles (no events): Binance long of
   day D = BTC long target of D x a deterministic factor in [1.08, 1.55] (Newhedge sees every
   liquidation, the Binance stream publishes at most one per symbol per second, so Kwery is a
   lower bound), Binance short = -(short target x its own factor). So for every day
   ``newhedge_binance_long / sum(kwery BTC long usd_value)`` lies in [1.05, 1.6]; likewise for
   shorts. Bybit and OKX are Binance x noisy per-day factors; Deribit is small (often below
   50k USD, about one day in eight exactly 0.0). A 7-year series costs ~2,500 tiny generators
   (~40 ms once, then cached).

Everything is a pure function of (symbol or metric, day): the same day is identical in every
process and does not change when later days are added.
"""

import datetime as dt
import functools
import math
import zlib
from dataclasses import dataclass

import numpy as np
import orjson

KWERY_SYMBOLS: tuple[str, ...] = ("BTC", "ETH", "SOL", "XRP", "DOGE", "BNB")
NEWHEDGE_EXCHANGES: tuple[str, ...] = ("binance", "bybit", "deribit", "okx")
METRICS: tuple[str, ...] = tuple(
    f"bitcoin_liquidations_{exchange}_{side}"
    for exchange in NEWHEDGE_EXCHANGES
    for side in ("long", "short")
)
KWERY_SOURCE = "binance_futures"
# The fields of a Kwery row, in the order the API writes them.
KWERY_FIELDS: tuple[str, ...] = (
    "timestamp",
    "symbol",
    "source",
    "side",
    "quantity",
    "price",
    "avg_price",
    "usd_value",
)
KWERY_DATA_START = dt.date(2019, 9, 1)
NEWHEDGE_DATA_START = dt.date(2020, 1, 1)

DAY_MS = 86_400_000
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()

# Market-wide crash days with a fixed BTC event count; about 2 % of other days are crash days
# chosen by hash (`is_crash_day`).
FIXED_CRASH_DAYS: dict[dt.date, int] = {
    dt.date(2020, 3, 12): 46_000,
    dt.date(2021, 5, 19): 58_000,
    dt.date(2022, 11, 9): 31_000,
    dt.date(2024, 8, 5): 39_000,
    dt.date(2025, 10, 10): 60_000,
}

# Relative liquidation intensity per UTC hour (Asia open, Europe open, US open peak).
_HOURLY = np.array(
    [
        *(1.3, 1.2, 1.0, 0.9, 0.8, 0.7, 0.7, 0.8, 1.0, 1.0, 0.9, 0.9),  # 00-11 UTC
        *(1.0, 1.3, 1.6, 1.5, 1.2, 1.0, 0.9, 0.9, 0.9, 0.9, 0.9, 1.0),  # 12-23 UTC
    ]
)
_HOURLY_P = _HOURLY / _HOURLY.sum()


@dataclass(frozen=True)
class SymbolSpec:
    weight: float  # event count relative to BTC
    mean_usd: float  # mean event size on a quiet day at today's prices
    lot_den: int  # quantity step is 1 / lot_den
    price_dp: int  # price decimals; avg_price carries one more
    anchors: tuple[tuple[str, float], ...]  # rough historical prices, interpolated in log space


SYMBOLS: dict[str, SymbolSpec] = {
    "BTC": SymbolSpec(
        1.0,
        12_000.0,
        1000,
        1,
        (
            ("2019-09-01", 9_600),
            ("2019-12-01", 7_500),
            ("2020-03-11", 7_900),
            ("2020-03-13", 5_000),
            ("2020-06-01", 9_500),
            ("2020-10-01", 10_800),
            ("2021-01-01", 29_000),
            ("2021-04-14", 63_000),
            ("2021-05-18", 43_000),
            ("2021-05-20", 37_000),
            ("2021-07-20", 30_000),
            ("2021-11-10", 67_000),
            ("2022-01-01", 47_000),
            ("2022-06-18", 19_000),
            ("2022-11-08", 19_500),
            ("2022-11-10", 16_500),
            ("2023-03-01", 23_500),
            ("2023-07-01", 30_500),
            ("2023-10-01", 27_000),
            ("2024-01-01", 42_000),
            ("2024-03-14", 71_000),
            ("2024-08-04", 60_000),
            ("2024-08-06", 54_000),
            ("2024-11-15", 90_000),
            ("2024-12-17", 106_000),
            ("2025-04-08", 77_000),
            ("2025-07-14", 120_000),
            ("2025-10-06", 124_000),
            ("2025-10-11", 112_000),
            ("2025-11-21", 85_000),
            ("2026-01-01", 88_000),
            ("2026-03-08", 92_000),
        ),
    ),
    "ETH": SymbolSpec(
        0.8,
        6_000.0,
        1000,
        2,
        (
            ("2019-09-01", 175),
            ("2020-03-11", 195),
            ("2020-03-13", 110),
            ("2020-06-01", 240),
            ("2021-01-01", 730),
            ("2021-05-12", 4_200),
            ("2021-05-20", 2_500),
            ("2021-11-10", 4_800),
            ("2022-06-18", 1_000),
            ("2022-11-10", 1_100),
            ("2023-06-01", 1_800),
            ("2024-03-12", 4_000),
            ("2024-08-06", 2_300),
            ("2024-12-15", 3_900),
            ("2025-04-08", 1_500),
            ("2025-08-24", 4_900),
            ("2025-10-11", 3_800),
            ("2026-01-01", 3_000),
            ("2026-03-08", 2_100),
        ),
    ),
    "SOL": SymbolSpec(
        0.45,
        3_000.0,
        1,
        3,
        (
            ("2019-09-01", 1.0),
            ("2020-09-14", 3.0),
            ("2021-01-01", 1.8),
            ("2021-05-12", 50),
            ("2021-11-06", 250),
            ("2022-06-18", 35),
            ("2022-11-10", 14),
            ("2023-06-01", 17),
            ("2024-03-18", 180),
            ("2024-08-06", 130),
            ("2024-11-22", 250),
            ("2025-04-08", 110),
            ("2025-10-11", 190),
            ("2026-03-08", 130),
        ),
    ),
    "XRP": SymbolSpec(
        0.4,
        3_000.0,
        10,
        4,
        (
            ("2019-09-01", 0.26),
            ("2020-03-13", 0.15),
            ("2021-01-01", 0.22),
            ("2021-04-14", 1.6),
            ("2021-05-20", 1.0),
            ("2022-06-18", 0.32),
            ("2022-11-10", 0.38),
            ("2023-07-14", 0.7),
            ("2024-08-06", 0.55),
            ("2024-12-03", 2.4),
            ("2025-07-18", 3.5),
            ("2025-10-11", 2.4),
            ("2026-03-08", 2.0),
        ),
    ),
    "DOGE": SymbolSpec(
        0.35,
        2_500.0,
        1,
        5,
        (
            ("2019-09-01", 0.0026),
            ("2020-03-13", 0.0017),
            ("2021-01-01", 0.0047),
            ("2021-05-08", 0.7),
            ("2021-05-20", 0.35),
            ("2022-06-18", 0.06),
            ("2022-11-10", 0.1),
            ("2023-07-01", 0.07),
            ("2024-03-28", 0.2),
            ("2024-08-06", 0.09),
            ("2024-12-08", 0.45),
            ("2025-04-08", 0.15),
            ("2025-10-11", 0.2),
            ("2026-03-08", 0.15),
        ),
    ),
    "BNB": SymbolSpec(
        0.2,
        2_000.0,
        100,
        2,
        (
            ("2019-09-01", 22),
            ("2020-03-13", 12),
            ("2021-01-01", 38),
            ("2021-05-10", 680),
            ("2021-05-20", 330),
            ("2021-11-10", 640),
            ("2022-06-18", 220),
            ("2022-11-10", 300),
            ("2023-07-01", 240),
            ("2024-03-15", 600),
            ("2024-08-06", 480),
            ("2024-12-04", 700),
            ("2025-10-09", 1_300),
            ("2025-10-11", 1_100),
            ("2026-03-08", 650),
        ),
    ),
}


@dataclass(frozen=True)
class DayProfile:
    """The cheap per-day summary everything else is derived from."""

    n_events: int
    long_usd: float  # target sum of the day's long usd_value
    short_usd: float  # target sum of the day's short usd_value
    open_price: float
    close_price: float
    crash: bool
    crash_minute: float  # centre of the crash window (minutes after midnight), crash days only
    crash_depth: float  # relative depth of the intraday dip, crash days only


@dataclass(frozen=True)
class DayData:
    """One generated (symbol, day): sorted numpy columns plus the rows pre-serialized."""

    symbol: str
    day: dt.date
    ts_ms: np.ndarray  # int64 epoch milliseconds, non-decreasing
    is_long: np.ndarray  # bool
    quantity: np.ndarray  # float64
    price: np.ndarray  # float64
    avg_price: np.ndarray  # float64
    usd_value: np.ndarray  # float64, round(quantity * avg_price, 2)
    starts: np.ndarray  # int64 offset of row i in `blob`
    ends: np.ndarray  # int64 end offset (exclusive) of row i in `blob`
    blob: bytes  # the JSON rows in API shape, comma-separated (a JSON array minus brackets)

    def row_bytes(self, i: int) -> bytes:
        return self.blob[self.starts[i] : self.ends[i]]

    def __len__(self) -> int:
        return len(self.ts_ms)


def _crc(text: str) -> int:
    return zlib.crc32(text.encode())


def day_start_ms(day: dt.date) -> int:
    """Epoch milliseconds of the UTC midnight starting `day`."""
    return (day.toordinal() - _EPOCH_ORDINAL) * DAY_MS


def day_of_ms(ms: int) -> dt.date:
    """The UTC day holding the epoch millisecond `ms`."""
    return dt.date.fromordinal(_EPOCH_ORDINAL + ms // DAY_MS)


def is_crash_day(day: dt.date) -> bool:
    """Market-wide crash days: the fixed famous ones plus ~2 % of days chosen by hash."""
    if day in FIXED_CRASH_DAYS:
        return True
    return _crc(f"liq-crash:{day.isoformat()}") % 1000 < 20


@functools.cache
def _anchor_arrays(symbol: str) -> tuple[np.ndarray, np.ndarray]:
    anchors = SYMBOLS[symbol].anchors
    ordinals = np.array([dt.date.fromisoformat(d).toordinal() for d, _ in anchors], dtype=float)
    logs = np.log(np.array([p for _, p in anchors], dtype=float))
    return ordinals, logs


def _anchor_price(symbol: str, day: dt.date) -> float:
    ordinals, logs = _anchor_arrays(symbol)
    return math.exp(float(np.interp(day.toordinal(), ordinals, logs)))


@functools.lru_cache(maxsize=65_536)
def _open_price(symbol: str, day: dt.date) -> float:
    rng = np.random.default_rng([_crc(symbol), day.toordinal(), 1])
    return _anchor_price(symbol, day) * math.exp(0.018 * float(rng.standard_normal()))


def _activity(day: dt.date) -> float:
    """Slow deterministic market-activity cycles (regimes), shared by all symbols."""
    o = day.toordinal()
    return math.exp(
        0.35 * math.sin(2 * math.pi * o / 91.0 + 1.0)
        + 0.25 * math.sin(2 * math.pi * o / 365.25 + 2.0)
        + 0.2 * math.sin(2 * math.pi * o / 29.5)
    )


@functools.lru_cache(maxsize=65_536)
def _profile(symbol: str, day: dt.date) -> DayProfile:
    spec = SYMBOLS[symbol]
    rng = np.random.default_rng([_crc(symbol), day.toordinal(), 2])
    # Fixed draw order: never reorder or insert draws, that would change every day's data.
    z_count, z_size = rng.standard_normal(2)
    u_crash_n, u_long, u_minute, u_depth = rng.random(4)
    beta_long = float(rng.beta(2.2, 2.2))

    crash = is_crash_day(day)
    open_price = _open_price(symbol, day)
    close_price = _open_price(symbol, day + dt.timedelta(days=1))
    weekend = 0.7 if day.weekday() >= 5 else 1.0
    if crash:
        btc_n = FIXED_CRASH_DAYS.get(day) or int(20_000 + 25_000 * u_crash_n)
        n = btc_n * min(spec.weight * math.exp(0.2 * z_count), 0.95) if symbol != "BTC" else btc_n
        long_share = 0.75 + 0.2 * float(u_long)
    else:
        n = 1_100 * _activity(day) * weekend * math.exp(0.4 * z_count)
        n = min(max(n, 150.0), 6_000.0) * spec.weight
        long_share = min(max(beta_long, 0.08), 0.92)
    n_events = max(round(n), 4)

    # Smaller markets in early years: scale the typical event size with the price level.
    era = (_anchor_price(symbol, day) / spec.anchors[-1][1]) ** 0.35
    mean_usd = spec.mean_usd * min(max(era, 0.35), 1.3) * math.exp(0.25 * z_size)
    if crash:
        mean_usd *= 2.2
    total = n_events * mean_usd
    return DayProfile(
        n_events=n_events,
        long_usd=float(total * long_share),
        short_usd=float(total * (1.0 - long_share)),
        open_price=open_price,
        close_price=close_price,
        crash=crash,
        crash_minute=180.0 + 1_080.0 * float(u_minute),
        crash_depth=0.06 + 0.09 * float(u_depth),
    )


def _check_symbol(symbol: str) -> SymbolSpec:
    try:
        return SYMBOLS[symbol]
    except KeyError:
        raise ValueError(f"unknown symbol {symbol!r}; expected one of {KWERY_SYMBOLS}") from None


_EMPTY_I8 = np.zeros(0, dtype=np.int64)
_EMPTY_F8 = np.zeros(0, dtype=np.float64)


@functools.lru_cache(maxsize=96)
def day_data(symbol: str, day: dt.date) -> DayData:
    """Generate (and cache) every event of `symbol` on the UTC `day`."""
    spec = _check_symbol(symbol)
    if day < KWERY_DATA_START:
        f8 = _EMPTY_F8
        return DayData(
            symbol, day, _EMPTY_I8, np.zeros(0, bool), f8, f8, f8, f8, _EMPTY_I8, _EMPTY_I8, b""
        )
    prof = _profile(symbol, day)
    rng = np.random.default_rng([_crc(symbol), day.toordinal()])
    n = prof.n_events

    # Liquidation cascades: heavy-tailed cluster sizes, centres by time-of-day intensity.
    n_clusters = max(1, n // (6 if prof.crash else 3))
    weights = rng.pareto(1.3, n_clusters) + 1.0
    cluster = rng.choice(n_clusters, size=n, p=weights / weights.sum())
    centres = (
        rng.choice(24, size=n_clusters, p=_HOURLY_P) * 3_600_000.0
        + rng.random(n_clusters) * 3_600_000.0
    )
    if prof.crash:
        in_crash = rng.random(n_clusters) < 0.6
        crash_centres = prof.crash_minute * 60_000.0 + rng.normal(0.0, 5_400_000.0, n_clusters)
        centres = np.where(in_crash, crash_centres, centres)
    spread = np.exp(rng.uniform(math.log(500.0), math.log(900_000.0), n_clusters))
    t = centres[cluster] + rng.exponential(1.0, n) * spread[cluster]
    outside = (t < 0) | (t >= DAY_MS)
    t = np.where(outside, rng.random(n) * DAY_MS, t).astype(np.int64)

    # Cascades are mostly one-sided.
    cluster_long = rng.random(n_clusters) < prof.long_usd / (prof.long_usd + prof.short_usd)
    is_long = np.where(rng.random(n) < 0.9, cluster_long[cluster], ~cluster_long[cluster])
    size_w = rng.lognormal(0.0, 1.4, n)

    order = np.argsort(t, kind="stable")
    t, is_long, size_w = t[order], is_long[order], size_w[order]
    # Bursts: several liquidations stamped with the very same millisecond.
    same_ms = rng.random(n) < (0.12 if prof.crash else 0.05)
    same_ms[0] = False
    src = np.maximum.accumulate(np.where(same_ms, 0, np.arange(n)))
    t = t[src]

    # Brownian bridge from open to close on a minute grid (+ a V-shaped dip on crash days).
    minutes = np.arange(1_441, dtype=float)
    sigma = 0.04 if prof.crash else 0.02
    walk = np.concatenate(([0.0], np.cumsum(rng.normal(0.0, sigma / math.sqrt(1_440), 1_440))))
    bridge = walk - minutes / 1_440 * walk[-1]
    log_path = (
        math.log(prof.open_price)
        + minutes / 1_440 * math.log(prof.close_price / prof.open_price)
        + bridge
    )
    if prof.crash:
        log_path += np.log1p(
            -prof.crash_depth * np.exp(-(((minutes - prof.crash_minute) / 90.0) ** 2))
        )
    market = np.exp(np.interp(t / 60_000.0, minutes, log_path))
    sign = np.where(is_long, 1.0, -1.0)  # a long is closed by a sell: fills at or below price
    scale_p = 10.0**spec.price_dp
    scale_a = scale_p * 10.0
    price = np.rint(market * (1.0 - sign * np.abs(rng.normal(0.0, 2e-4, n))) * scale_p) / scale_p
    avg_price = np.rint(price * (1.0 - sign * np.abs(rng.normal(0.0, 6e-5, n))) * scale_a) / scale_a

    # Sizes: each side scaled to its USD target, then rounded to whole lots (at least one).
    usd_target = np.empty(n)
    for mask, target in ((is_long, prof.long_usd), (~is_long, prof.short_usd)):
        w = size_w[mask]
        if w.size:
            usd_target[mask] = target * w / w.sum()
    lots = np.maximum(np.rint(usd_target / avg_price * spec.lot_den), 1.0)
    quantity = lots / spec.lot_den

    q_list = quantity.tolist()
    a_list = avg_price.tolist()
    usd_list = [round(q * a, 2) for q, a in zip(q_list, a_list, strict=True)]
    ts_ms = t + day_start_ms(day)
    stamps = np.datetime_as_string(ts_ms.astype("datetime64[ms]"), unit="ms").tolist()
    sides = ["long" if x else "short" for x in is_long.tolist()]
    rows = [
        {
            "timestamp": stamp + "Z",
            "symbol": symbol,
            "source": KWERY_SOURCE,
            "side": side,
            "quantity": q,
            "price": p,
            "avg_price": a,
            "usd_value": u,
        }
        for stamp, side, q, p, a, u in zip(
            stamps, sides, q_list, price.tolist(), a_list, usd_list, strict=True
        )
    ]
    # One JSON array for the whole day; row i is blob[starts[i]:ends[i]] (rows contain no
    # nested objects, so every "{" starts a row). Pages are then slices, not re-serialization.
    blob = orjson.dumps(rows)[1:-1]
    starts = np.flatnonzero(np.frombuffer(blob, dtype=np.uint8) == ord("{")).astype(np.int64)
    ends = np.append(starts[1:] - 1, len(blob)).astype(np.int64)
    arrays = (ts_ms, is_long, quantity, price, avg_price, np.array(usd_list), starts, ends)
    for arr in arrays:
        arr.flags.writeable = False
    return DayData(symbol, day, *arrays, blob=blob)


def kwery_events(symbol: str, day: dt.date) -> list[dict]:
    """Every Kwery row of `symbol` on the UTC `day`, in API shape and API order.

    Sorted by timestamp, ties (same millisecond) in a stable generation order. The API serves
    exactly these rows, restricted to timestamps before the simulator's `now`. Returns fresh
    dicts (callers may mutate them); days before 2019-09-01 are empty.
    """
    return orjson.loads(b"[" + day_data(symbol, day).blob + b"]")


@functools.lru_cache(maxsize=65_536)
def _newhedge_day(day: dt.date) -> dict[str, float]:
    prof = _profile("BTC", day)
    rng = np.random.default_rng([_crc("newhedge"), day.toordinal()])
    f_long, f_short = 1.08 + 0.47 * rng.random(2)
    bybit_l, bybit_s = np.clip(0.55 * np.exp(0.35 * rng.standard_normal(2)), 0.15, 1.6)
    okx_l, okx_s = np.clip(0.22 * np.exp(0.5 * rng.standard_normal(2)), 0.03, 1.0)
    deribit_l, deribit_s = 0.0015 * np.exp(1.2 * rng.standard_normal(2))
    deribit_zero_l, deribit_zero_s = rng.random(2) < 0.12
    binance_long = prof.long_usd * float(f_long)
    binance_short = prof.short_usd * float(f_short)
    values = {
        "binance_long": binance_long,
        "binance_short": binance_short,
        "bybit_long": binance_long * float(bybit_l),
        "bybit_short": binance_short * float(bybit_s),
        "okx_long": binance_long * float(okx_l),
        "okx_short": binance_short * float(okx_s),
        "deribit_long": 0.0 if deribit_zero_l else binance_long * float(deribit_l),
        "deribit_short": 0.0 if deribit_zero_s else binance_short * float(deribit_s),
    }
    out: dict[str, float] = {}
    for key, value in values.items():
        # Newhedge publishes shorts as negative numbers (never -0.0).
        value = float(value)
        out[f"bitcoin_liquidations_{key}"] = -value if key.endswith("short") and value else value
    return out


def newhedge_value(metric: str, day: dt.date) -> float:
    """The published value of `metric` for the UTC `day` (shorts ≤ 0, longs ≥ 0)."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}")
    return _newhedge_day(day)[metric]


def newhedge_series(metric: str, through: dt.date) -> list[list]:
    """``[[ms, value], ...]`` for each UTC day from 2020-01-01 through `through` (inclusive)."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}")
    out: list[list] = []
    day = NEWHEDGE_DATA_START
    one = dt.timedelta(days=1)
    while day <= through:
        out.append([day_start_ms(day), _newhedge_day(day)[metric]])
        day += one
    return out
