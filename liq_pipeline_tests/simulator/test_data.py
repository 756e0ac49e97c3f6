import datetime as dt
import hashlib
import itertools
import math
import subprocess
import sys
from collections import Counter

import orjson
import pytest

from liq_pipeline.simulator.data import (
    FIXED_CRASH_DAYS,
    KWERY_SYMBOLS,
    METRICS,
    SYMBOLS,
    is_crash_day,
    kwery_events,
    newhedge_series,
    newhedge_value,
)

DAY = dt.date(2026, 3, 8)
# Golden facts: the data must never change between versions (warehouses compare against it).
GOLDEN_SHA256 = "721da3b7237068177a20e76ae3c06620ee1bbeffa917bb5d8de298e86987fd6e"


def _sha(events: list[dict]) -> str:
    return hashlib.sha256(orjson.dumps(events)).hexdigest()


def test_metric_and_symbol_names() -> None:
    assert KWERY_SYMBOLS == ("BTC", "ETH", "SOL", "XRP", "DOGE", "BNB")
    assert METRICS == (
        "bitcoin_liquidations_binance_long",
        "bitcoin_liquidations_binance_short",
        "bitcoin_liquidations_bybit_long",
        "bitcoin_liquidations_bybit_short",
        "bitcoin_liquidations_deribit_long",
        "bitcoin_liquidations_deribit_short",
        "bitcoin_liquidations_okx_long",
        "bitcoin_liquidations_okx_short",
    )


def test_golden_btc_day() -> None:
    events = kwery_events("BTC", DAY)
    assert len(events) == 828
    assert events[100] == {
        "timestamp": "2026-03-08T02:04:14.454Z",
        "symbol": "BTC",
        "source": "binance_futures",
        "side": "short",
        "quantity": 0.044,
        "price": 96069.0,
        "avg_price": 96069.95,
        "usd_value": 4227.08,
    }
    assert _sha(events) == GOLDEN_SHA256
    assert [len(kwery_events(s, DAY)) for s in KWERY_SYMBOLS] == [828, 292, 343, 437, 489, 111]


def test_same_data_in_another_process() -> None:
    code = (
        "import datetime, hashlib, orjson;"
        "from liq_pipeline.simulator.data import kwery_events;"
        "print(hashlib.sha256(orjson.dumps(kwery_events('BTC', datetime.date(2026, 3, 8))))"
        ".hexdigest())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == GOLDEN_SHA256


def test_calls_return_equal_fresh_copies() -> None:
    first = kwery_events("ETH", DAY)
    first[0]["usd_value"] = -1.0  # callers may mutate; the cache must not notice
    second = kwery_events("ETH", DAY)
    assert second[0]["usd_value"] != -1.0
    assert second[1:] == first[1:]


@pytest.mark.parametrize("symbol", KWERY_SYMBOLS)
def test_rows_are_well_formed(symbol: str) -> None:
    spec = SYMBOLS[symbol]
    events = kwery_events(symbol, DAY)
    stamps = [e["timestamp"] for e in events]
    assert stamps == sorted(stamps)
    assert all(s.startswith("2026-03-08T") and len(s) == 24 and s.endswith("Z") for s in stamps)
    for e in events:
        assert list(e) == [
            "timestamp",
            "symbol",
            "source",
            "side",
            "quantity",
            "price",
            "avg_price",
            "usd_value",
        ]
        assert (e["symbol"], e["source"]) == (symbol, "binance_futures")
        assert e["side"] in ("long", "short")
        assert e["usd_value"] == round(e["quantity"] * e["avg_price"], 2)
        lots = e["quantity"] * spec.lot_den
        assert lots >= 1 and math.isclose(lots, round(lots), abs_tol=1e-6)
        assert abs(e["avg_price"] / e["price"] - 1) < 1e-3
        # a long is closed by a sell (fills at or below the bankruptcy price), a short by a buy
        assert (
            (e["avg_price"] <= e["price"]) if e["side"] == "long" else e["avg_price"] >= e["price"]
        )


def test_btc_is_realistic() -> None:
    events = kwery_events("BTC", DAY)
    prices = [e["price"] for e in events]
    assert min(prices) > 80_000 and max(prices) < 110_000
    sizes = sorted(e["usd_value"] for e in events)
    assert sizes[-1] > 20 * sizes[len(sizes) // 2]  # heavy tail
    assert max(Counter(e["timestamp"] for e in events).values()) >= 3  # same-millisecond bursts
    assert {e["side"] for e in events} == {"long", "short"}
    # quiet days: hundreds to a few thousand events, BTC the busiest symbol on average
    march = [dt.date(2026, 3, 1) + dt.timedelta(days=i) for i in range(10)]
    counts = {s: [len(kwery_events(s, d)) for d in march] for s in KWERY_SYMBOLS}
    assert all(100 <= n <= 6_000 for n in counts["BTC"])
    assert all(sum(counts["BTC"]) > sum(counts[s]) for s in KWERY_SYMBOLS[1:])


def test_crash_days() -> None:
    assert all(is_crash_day(d) for d in FIXED_CRASH_DAYS)
    assert len(kwery_events("BTC", dt.date(2025, 10, 10))) == 60_000
    assert len(kwery_events("BTC", dt.date(2020, 3, 12))) == 46_000
    days = [dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(2_000)]
    share = sum(map(is_crash_day, days)) / len(days)
    assert 0.01 < share < 0.035
    assert not is_crash_day(DAY)


def test_no_data_before_2019_09_01() -> None:
    assert kwery_events("BTC", dt.date(2019, 8, 31)) == []
    assert len(kwery_events("BTC", dt.date(2019, 9, 1))) > 0
    assert newhedge_series("bitcoin_liquidations_okx_long", dt.date(2019, 12, 31)) == []


def test_unknown_names_raise() -> None:
    with pytest.raises(ValueError, match="unknown symbol 'btc'"):
        kwery_events("btc", DAY)
    with pytest.raises(ValueError, match="unknown metric"):
        newhedge_series("bitcoin_liquidations_ftx_long", DAY)


def test_newhedge_series_shape_and_signs() -> None:
    through = dt.date(2026, 3, 9)
    days = (through - dt.date(2020, 1, 1)).days + 1
    for metric in METRICS:
        series = newhedge_series(metric, through)
        assert len(series) == days
        assert series[0][0] == 1_577_836_800_000  # 2020-01-01T00:00Z
        assert series[-1][0] == 1_773_014_400_000  # 2026-03-09T00:00Z
        assert all(b[0] - a[0] == 86_400_000 for a, b in itertools.pairwise(series))
        assert all(type(v) is float for _, v in series)
        if metric.endswith("_short"):
            assert all(v <= 0 for _, v in series)
        else:
            assert all(v >= 0 for _, v in series)
        assert series[-1][1] == newhedge_value(metric, through)
    deribit = [v for _, v in newhedge_series("bitcoin_liquidations_deribit_long", through)]
    assert 0.05 < deribit.count(0.0) / len(deribit) < 0.2
    assert sum(v < 50_000 for v in deribit) / len(deribit) > 0.8
    assert newhedge_value("bitcoin_liquidations_binance_long", DAY) == 7967367.075141177
    assert newhedge_value("bitcoin_liquidations_binance_short", DAY) == -3723485.0636097547


@pytest.mark.parametrize(
    "day", [DAY, dt.date(2026, 3, 9), dt.date(2025, 10, 10), dt.date(2020, 3, 12)]
)
def test_newhedge_binance_is_kwery_btc_times_1_05_to_1_6(day: dt.date) -> None:
    events = kwery_events("BTC", day)
    longs = sum(e["usd_value"] for e in events if e["side"] == "long")
    shorts = sum(e["usd_value"] for e in events if e["side"] == "short")
    assert 1.05 <= newhedge_value("bitcoin_liquidations_binance_long", day) / longs <= 1.6
    assert 1.05 <= -newhedge_value("bitcoin_liquidations_binance_short", day) / shorts <= 1.6
    if day == DAY:
        assert round(longs, 2) == 5635156.86
