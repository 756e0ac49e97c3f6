"""Bars and cascades from the stored events, on SQLite and PostgreSQL."""

import base64
import datetime as dt
import re
import struct
import time
from collections.abc import Iterator

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from liq_pipeline.assets import analytics
from liq_pipeline.assets.analytics import (
    BARS_TABLE,
    CASCADES_TABLE,
    CascadeConfig,
    bars_asset_name,
    build_analytics_assets,
    compute_bars,
    compute_cascades,
)
from liq_pipeline.clients.kwery import kwery_frame
from liq_pipeline.simulator import Simulator
from liq_pipeline.warehouse import TABLES
from liq_pipeline_tests.assets.analytics_helpers import (
    DAILY,
    SIMULATOR_SERVES_DAYS,
    SimulatedDays,
    StoredDays,
    api_event,
    assert_same_rows,
    burst,
    day_metadata,
    pandas_bars,
    read,
    reference_cascades,
    run_analytics,
    stored,
)
from liq_pipeline_tests.warehouse.helpers import Warehouse

SIM_NOW = dt.datetime(2026, 3, 21, 12, 0, tzinfo=dt.UTC)
CRASH_DAY = "2026-02-01"  # 34,074 BTC events in the simulator
QUIET_DAY = "2026-01-31"
PNG_LIMIT = 150_000


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(port=0, now=SIM_NOW) as simulator:
        yield simulator


@pytest.fixture
def kwery_days(
    wh: Warehouse, request: pytest.FixtureRequest
) -> Iterator[StoredDays | SimulatedDays]:
    if SIMULATOR_SERVES_DAYS:
        days: StoredDays | SimulatedDays = SimulatedDays(request.getfixturevalue("sim"))
    else:
        days = StoredDays(wh.url)
    yield days
    days.restore()


def fetch_url(days: StoredDays | SimulatedDays) -> str | None:
    """The simulator to fetch the days from in each run, if it serves them."""
    return days.url if isinstance(days, SimulatedDays) else None


def chart_png(markdown: str) -> bytes:
    match = re.fullmatch(r"!\[[^\]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", markdown)
    assert match, markdown[:200]
    return base64.b64decode(match.group(1))


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", png[16:24])


# --- edge days: hand-built, API-shaped ---------------------------------------------------------

D1, D2, D3, D4, D5 = "2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05", "2026-03-06"


def edge_days() -> dict[tuple[str, str], list[dict]]:
    """Days built to hit each edge of the definition (defaults: 60 s, 5 events, $1M)."""
    same_ms = "2026-03-02 04:00:00.123"
    day1 = [
        # A gap of exactly 60.000 s still joins: one cascade of 5 x $250k.
        *burst("2026-03-02 01:00:00", [60.0] * 4),
        # 60.001 s splits: two cascades of 5 events each.
        *burst("2026-03-02 02:00:00", [10, 10, 10, 10, 60.001, 10, 10, 10, 10]),
        # $999,999.99 is just under min_usd: none; exactly $1,000,000 is one.
        *burst("2026-03-02 03:00:00", [1] * 4, "short", usd=199_999.998),
        *burst("2026-03-02 03:30:00", [1] * 4, "short", usd=200_000.0),
        # Four longs share one millisecond, served in descending price order (API order), with
        # two small shorts in the same millisecond that belong to no long cascade.
        *[api_event(same_ms, "long", 250_000.0, price) for price in (91_030, 91_020, 91_010)],
        api_event(same_ms, "short", 1_000.0),
        api_event(same_ms, "long", 250_000.0, 91_000),
        api_event(same_ms, "short", 1_000.0),
        api_event("2026-03-02 04:00:05.000", "long", 250_000.0, 90_900),
        api_event("2026-03-02 04:00:10.000", "long", 250_000.0, 90_800),
        # Sides interleave every 25 s: each side's gap is 50 s to its own previous event.
        *burst("2026-03-02 05:00:00", [50] * 5, "long", usd=200_000.0),
        *burst("2026-03-02 05:00:25", [50] * 5, "short", usd=200_000.0),
        # Four events of $2M: too few.
        *burst("2026-03-02 06:00:00", [1] * 3, usd=2_000_000.0),
    ]
    # One run from 23:59:00 to 00:00:50, every 10 s: cut at midnight into two cascades.
    across = burst("2026-03-03 23:59:00", [10] * 11)
    day2 = [e for e in across if e["timestamp"].startswith(D2)]
    day3 = [e for e in across if e["timestamp"].startswith(D3)]
    # Events, but never five within a minute of each other.
    day4 = burst("2026-03-05 00:00:00", [120] * 30, usd=900_000.0)
    eth = burst("2026-03-02 01:00:00", [5] * 9, usd=150_000.0, symbol="ETH", price=2_000.0)
    return {
        ("BTC", D1): day1,
        ("BTC", D2): day2,
        ("BTC", D3): day3,
        ("BTC", D4): day4,
        ("BTC", D5): [],  # no events at all
        ("ETH", D1): eth,
    }


def land(days: StoredDays | SimulatedDays, built: dict[tuple[str, str], list[dict]]) -> None:
    for (symbol, day), events in built.items():
        days.set_kwery_day(symbol, day, events)


@pytest.mark.e2e
def test_cascades_equal_a_plain_reference_on_the_edge_days(wh: Warehouse, kwery_days):
    land(kwery_days, edge_days())
    result = run_analytics(wh.url, D1, D5, fetch_from=fetch_url(kwery_days))
    got = stored(wh.url, "BTC", D1, D5)
    reference = reference_cascades(got["events"])
    assert_same_rows(got["cascades"], reference)

    # The reference is only as good as the days: they do hit every edge.
    cascades = got["cascades"]
    starts = [f"{t:%d %H:%M:%S.%f}"[:-3] for t in cascades["start"]]
    assert starts == [
        "02 01:00:00.000",  # exactly 60 s joins
        "02 02:00:00.000",  # 60.001 s splits ...
        "02 02:01:40.001",  # ... into two
        "02 03:30:00.000",  # exactly min_usd (the $999,999.99 one at 03:00 is not here)
        "02 04:00:00.123",  # the millisecond burst
        "02 05:00:00.000",  # interleaved long
        "02 05:00:25.000",  # interleaved short
        "03 23:59:00.000",  # the midnight run, its first day ...
        "04 00:00:00.000",  # ... and its second
    ]
    assert cascades["events"].tolist() == [5, 5, 5, 5, 6, 6, 6, 6, 6]
    burst_row = cascades.iloc[4]
    assert (burst_row["first_avg_price"], burst_row["last_avg_price"]) == (91_030.0, 90_800.0)
    assert burst_row["price_move_pct"] == pytest.approx((90_800 / 91_030 - 1) * 100, rel=1e-12)
    assert cascades.iloc[3]["usd_value"] == 1_000_000.0
    assert cascades.iloc[7]["end"] == pd.Timestamp("2026-03-03 23:59:50", tz="UTC")
    assert set(cascades["symbol"]) == {"BTC"}

    meta = day_metadata(result, "kwery_liquidation_cascades_btc")
    assert sorted(meta) == [D1, D2, D3, D4, D5]
    events = got["events"]
    for day, figures in meta.items():
        of_day = cascades[cascades["start"].dt.strftime("%Y-%m-%d") == day]
        day_events = events[events["timestamp"].dt.strftime("%Y-%m-%d") == day]
        assert figures["dagster/row_count"] == figures["cascades"] == len(of_day)
        assert figures["long_cascades"] + figures["short_cascades"] == len(of_day)
        assert figures["day_usd"] == round(day_events["usd_value"].sum(), 2)
        if len(of_day):
            largest = of_day.loc[of_day["usd_value"].idxmax()]
            assert figures["largest_cascade_usd"] == round(largest["usd_value"], 2)
            assert figures["largest_cascade_start"] == str(largest["start"])
        else:
            assert figures["largest_cascade_usd"] is figures["largest_cascade_start"] is None
        day_usd = day_events["usd_value"].sum()
        share = round(of_day["usd_value"].sum() / day_usd, 6) if day_usd > 0 else None
        assert figures["cascade_usd_share"] == share
    assert meta[D1]["largest_cascade_start"] == "2026-03-02 04:00:00.123000+00:00"
    assert (meta[D4]["cascades"], meta[D4]["cascade_usd_share"]) == (0, 0.0)
    assert (meta[D5]["cascades"], meta[D5]["day_usd"], meta[D5]["cascade_usd_share"]) == (
        0,
        0.0,
        None,
    )
    assert "| 04:00:00 | 04:00:10 | long | 6 | $1,500,000 | -0.25 % |" in meta[D1]["top_cascades"]
    run_meta = meta[D1]
    assert (run_meta["run_days"], run_meta["run_cascades"], run_meta["run_min_usd"]) == (
        5,
        9,
        1_000_000.0,
    )


@pytest.mark.e2e
def test_the_thresholds_are_run_config(wh: Warehouse, kwery_days):
    land(kwery_days, edge_days())
    config = {"gap_seconds": 10.0, "min_events": 3, "min_usd": 500_000.0}
    result = run_analytics(
        wh.url, D1, D5, cascade_config=config, only="cascades", fetch_from=fetch_url(kwery_days)
    )
    got = stored(wh.url, "BTC", D1, D5)
    reference = reference_cascades(got["events"], **config)
    assert len(reference) != len(reference_cascades(got["events"]))  # the config matters here
    assert_same_rows(got["cascades"], reference)
    meta = day_metadata(result, "kwery_liquidation_cascades_btc")[D1]
    assert (meta["run_gap_seconds"], meta["run_min_events"], meta["run_min_usd"]) == (
        10.0,
        3,
        500_000.0,
    )


@pytest.mark.e2e
def test_rematerializing_a_day_replaces_it_and_touches_nothing_else(wh: Warehouse, kwery_days):
    built = edge_days()
    built[("ETH", D2)] = burst("2026-03-03 12:00:00", [1] * 6, usd=300_000.0, symbol="ETH")
    land(kwery_days, built)
    url, fetch = wh.url, fetch_url(kwery_days)
    run_analytics(url, D1, D2, symbols=("BTC", "ETH"), fetch_from=fetch)
    before = {s: stored(url, s, D1, D3) for s in ("BTC", "ETH")}
    assert len(before["ETH"]["cascades"]) == 2 and len(before["BTC"]["bars"]) > 0

    # BTC's first day changes upstream; only that day and symbol is re-materialized.
    kwery_days.set_kwery_day("BTC", D1, burst("2026-03-02 12:00:00", [2] * 9, usd=400_000.0))
    result = run_analytics(url, D1, fetch_from=fetch)
    assert [
        m.partition for m in result.asset_materializations_for_node(bars_asset_name("BTC"))
    ] == [D1]
    after = {s: stored(url, s, D1, D3) for s in ("BTC", "ETH")}
    btc_d1 = read(url, CASCADES_TABLE, D1, symbol="BTC")
    assert btc_d1["start"].tolist() == [pd.Timestamp("2026-03-02 12:00:00", tz="UTC")]
    assert_same_rows(
        read(url, BARS_TABLE, D1, symbol="BTC"),
        pandas_bars(read(url, "kwery_liquidations", D1, symbol="BTC")),
    )
    for table in ("bars", "cascades"):
        # BTC's second day (and D3, never materialized) and every ETH row are as they were.
        pd.testing.assert_frame_equal(
            after["BTC"][table][
                after["BTC"][table].iloc[:, 0] >= pd.Timestamp(D2, tz="UTC")
            ].reset_index(drop=True),
            before["BTC"][table][
                before["BTC"][table].iloc[:, 0] >= pd.Timestamp(D2, tz="UTC")
            ].reset_index(drop=True),
        )
        pd.testing.assert_frame_equal(after["ETH"][table], before["ETH"][table])


@pytest.mark.e2e
@pytest.mark.parametrize("step", ["compute_bars", "compute_cascades"])
def test_a_failed_run_leaves_the_previous_rows(wh: Warehouse, kwery_days, monkeypatch, step):
    land(kwery_days, edge_days())
    run_analytics(wh.url, D1, D3, fetch_from=fetch_url(kwery_days))
    before = stored(wh.url, "BTC", D1, D3)
    real = getattr(analytics, step)

    def fails_on_the_last_day(events: pd.DataFrame, *args: object) -> pd.DataFrame:
        if len(events) and f"{events['timestamp'].iloc[0]:%Y-%m-%d}" == D3:
            raise RuntimeError("disk full")
        return real(events, *args)

    monkeypatch.setattr(analytics, step, fails_on_the_last_day)
    result = run_analytics(wh.url, D1, D3, raise_on_error=False, fetch_from=fetch_url(kwery_days))
    assert not result.success
    after = stored(wh.url, "BTC", D1, D3)
    for table in ("bars", "cascades"):
        pd.testing.assert_frame_equal(after[table], before[table])


# --- a busy simulator day, through the real Kwery asset ---------------------------------------


@pytest.mark.e2e
def test_bars_equal_a_groupby_of_the_stored_events_on_a_crash_day(wh: Warehouse, sim: Simulator):
    result = run_analytics(wh.url, QUIET_DAY, CRASH_DAY, fetch_from=sim.url)
    got = stored(wh.url, "BTC", QUIET_DAY, CRASH_DAY)
    events = got["events"]
    assert len(events[events["timestamp"] >= pd.Timestamp(CRASH_DAY, tz="UTC")]) > 30_000
    expected = pandas_bars(events)
    assert_same_rows(got["bars"].sort_values(["bucket_start", "side"]), expected)
    assert got["bars"]["events"].sum() == len(events)
    assert_same_rows(got["cascades"].sort_values(["start", "side"]), reference_cascades(events))
    assert len(got["cascades"]) > 20

    meta = day_metadata(result, "kwery_liquidation_bars_btc")
    for day, figures in meta.items():
        of_day = expected[expected["bucket_start"].dt.strftime("%Y-%m-%d") == day]
        assert figures["dagster/row_count"] == len(of_day)
        assert figures["events"] == of_day["events"].sum()
        assert figures["minutes"] == of_day["bucket_start"].nunique()
        per_minute = of_day.groupby("bucket_start")["usd_value"].sum()
        assert figures["busiest_minute"] == str(per_minute.idxmax())
        for side in ("long", "short"):
            assert figures[f"{side}_usd"] == round(
                of_day[of_day["side"] == side].usd_value.sum(), 2
            )
    # One chart per run, on its newest day, with the stored cascades of that day shaded.
    assert "chart" not in meta[QUIET_DAY]
    png = chart_png(meta[CRASH_DAY]["chart"])
    assert len(png) < PNG_LIMIT and png_size(png) == (1000, 400)
    crash_cascades = got["cascades"][got["cascades"]["start"] >= pd.Timestamp(CRASH_DAY, tz="UTC")]
    assert meta[CRASH_DAY]["chart_cascades"] == len(crash_cascades)
    assert meta[CRASH_DAY]["run_events"] == len(events)


# --- pure functions and definitions -----------------------------------------------------------


def test_a_day_without_events_has_no_bars_and_no_cascades():
    empty = kwery_frame([])
    for frame, table in (
        (compute_bars(empty), BARS_TABLE),
        (compute_cascades(empty, 60.0, 5, 1e6), CASCADES_TABLE),
    ):
        assert frame.empty
        assert frame.dtypes.astype(str).to_dict() == TABLES[table].pandas_dtypes()
    figures = analytics.bars_day_metadata(compute_bars(empty))
    assert (figures["dagster/row_count"], figures["busiest_minute"]) == (0, None)


def test_cascade_config_defaults_are_in_the_launchpad_and_bad_values_are_refused():
    cascades, bars = build_analytics_assets("BTC", DAILY)
    fields = cascades.op.config_schema.as_field().config_type.fields
    assert {name: f.default_value for name, f in fields.items()} == {
        "gap_seconds": 60.0,
        "min_events": 5,
        "min_usd": 1_000_000.0,
    }
    assert all(f.description for f in fields.values())
    for bad in ({"gap_seconds": -1.0}, {"min_events": 0}, {"min_usd": -5.0}):
        with pytest.raises(ValueError):
            CascadeConfig(**bad)
    for asset in (cascades, bars):
        spec = next(iter(asset.specs))
        assert spec.group_name == "analytics"
        assert spec.description and "\n" not in spec.description
        assert asset.backfill_policy == dg.BackfillPolicy.single_run()
    assert {d.asset_key.to_user_string() for d in next(iter(bars.specs)).deps} == {
        "kwery_liquidations_btc",
        "kwery_liquidation_cascades_btc",
    }


def test_bars_and_cascades_are_vectorized_enough_for_a_big_day():
    rng = np.random.default_rng(7)
    n = 200_000
    ms = np.sort(rng.integers(0, 86_400_000, n))
    events = pd.DataFrame(
        {
            "timestamp": (pd.Timestamp(D1, tz="UTC") + pd.to_timedelta(ms, unit="ms")).astype(
                "datetime64[ms, UTC]"
            ),
            "symbol": pd.array(["BTC"] * n, dtype="str"),
            "source": pd.array(["binance_futures"] * n, dtype="str"),
            "side": pd.array(rng.choice(["long", "short"], n), dtype="str"),
            "quantity": rng.random(n),
            "price": 90_000.0,
            "avg_price": 90_000.0 + rng.random(n),
            "usd_value": rng.random(n) * 100_000,
        }
    )
    started = time.perf_counter()
    bars = compute_bars(events)
    cascades = compute_cascades(events, 60.0, 5, 1e6)
    assert time.perf_counter() - started < 10  # ~0.5 s here; a loop per event takes minutes
    assert bars["events"].sum() == n and len(cascades) >= 1
