"""The example SQL of docs/analytics.md, run verbatim on both databases and compared with pandas."""

import datetime as dt
import re
from pathlib import Path

import adbc_driver_sqlite.dbapi as sqlite_dbapi
import pandas as pd
import pytest

from liq_pipeline.simulator.data import kwery_events
from liq_pipeline_tests.assets.analytics_helpers import (
    StoredDays,
    assert_same_rows,
    read,
    run_analytics,
)
from liq_pipeline_tests.warehouse.helpers import Warehouse

# Every query runs on bars and cascades materialized from simulator days, on both databases.
pytestmark = pytest.mark.e2e

DOC = Path(__file__).resolve().parents[2] / "docs" / "analytics.md"
DAY = "2026-03-06"  # the day the examples query: two BTC cascades in the simulator
EXAMPLE = re.compile(r"```sql\n(-- example: (\w+) \(([a-z, ]+)\)\n.*?)```", re.DOTALL)


def examples() -> dict[tuple[str, str], str]:
    """(name, dialect) -> the SQL of each `-- example:` block of the doc."""
    found = {}
    for sql, name, dialects in EXAMPLE.findall(DOC.read_text()):
        for dialect in dialects.split(", "):
            found[(name, dialect)] = sql
    return found


def test_the_doc_has_every_example_for_both_databases():
    names = {"bars_5m", "bars_1h", "bars_1d", "imbalance_1h", "top_cascades"}
    assert set(examples()) == {(n, d) for n in names for d in ("sqlite", "postgresql")}


def query(wh: Warehouse, sql: str) -> pd.DataFrame:
    """`sql` exactly as written (a script, `;` and all), as a SQL client sends it."""
    if wh.kind == "sqlite":
        # Through ADBC's SQLite, as the warehouse itself (see README, The warehouse).
        conn = sqlite_dbapi.connect(str(wh.path))
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetch_arrow_table().to_pandas()
        finally:
            conn.close()
    assert wh.engine is not None
    raw = wh.engine.raw_connection()  # psycopg2, as psql would: no COPY wrapping, no parameters
    try:
        cur = raw.cursor()
        cur.execute(sql)
        columns = [d[0] for d in cur.description]
        return pd.DataFrame(cur.fetchall(), columns=columns)
    finally:
        raw.close()


def as_utc(values: pd.Series) -> pd.Series:
    """SQLite's UTC text or PostgreSQL's timestamptz, as UTC timestamps."""
    return pd.to_datetime(values.astype(str), utc=True).astype("datetime64[ms, UTC]")


def expected_rollup(events: pd.DataFrame, freq: str) -> pd.DataFrame:
    bucket = events["timestamp"].dt.floor(freq).rename("bucket_start")
    grouped = events.groupby([bucket, "side"])
    return pd.DataFrame(
        {
            "events": grouped.size(),
            "quantity": grouped["quantity"].sum(),
            "usd_value": grouped["usd_value"].sum(),
            "max_usd_value": grouped["usd_value"].max(),
        }
    ).reset_index()


@pytest.fixture
def landed(wh: Warehouse) -> Warehouse:
    """Three simulator days of BTC and one of ETH, stored, with their analytics."""
    days = StoredDays(wh.url)
    for day in ("2026-03-05", DAY, "2026-03-07"):
        days.set_kwery_day("BTC", day, kwery_events("BTC", dt.date.fromisoformat(day)))
    days.set_kwery_day("ETH", DAY, kwery_events("ETH", dt.date.fromisoformat(DAY)))
    run_analytics(wh.url, "2026-03-05", "2026-03-07")
    run_analytics(wh.url, DAY, symbols=("ETH",))
    return wh


def test_rollups_to_5_minutes_1_hour_and_1_day(landed: Warehouse):
    dialect = "sqlite" if landed.kind == "sqlite" else "postgresql"
    events = read(landed.url, "kwery_liquidations", DAY, symbol="BTC")
    for name, freq in (("bars_5m", "5min"), ("bars_1h", "h"), ("bars_1d", "D")):
        got = query(landed, examples()[(name, dialect)])
        expected = expected_rollup(events, freq)
        if name == "bars_1d":
            assert got.columns[0] == "day"
            assert got["day"].astype(str).tolist() == [DAY, DAY]
            got = got.rename(columns={"day": "bucket_start"})
        elif landed.kind == "sqlite":  # the stored text format: it sorts and compares as such
            stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:00\.000\+00:00"
            assert got["bucket_start"].str.fullmatch(stamp).all()
        got["bucket_start"] = as_utc(got["bucket_start"])
        got["events"] = got["events"].astype("int64")
        assert len(expected) > 40 or name != "bars_5m"
        assert_same_rows(got, expected)


def test_imbalance(landed: Warehouse):
    dialect = "sqlite" if landed.kind == "sqlite" else "postgresql"
    got = query(landed, examples()[("imbalance_1h", dialect)])
    events = read(landed.url, "kwery_liquidations", DAY, symbol="BTC")
    hour = events["timestamp"].dt.floor("h").rename("hour")
    by_side = events.pivot_table(
        index=hour, columns="side", values="usd_value", aggfunc="sum", fill_value=0.0
    )
    expected = pd.DataFrame(
        {
            "long_usd": by_side["long"],
            "short_usd": by_side["short"],
            "imbalance_usd": by_side["long"] - by_side["short"],
            "imbalance": (by_side["long"] - by_side["short"])
            / (by_side["long"] + by_side["short"]),
        }
    ).reset_index()
    got["hour"] = as_utc(got["hour"])
    assert len(got) == 24
    assert_same_rows(got, expected)


def test_top_cascades(landed: Warehouse):
    dialect = "sqlite" if landed.kind == "sqlite" else "postgresql"
    got = query(landed, examples()[("top_cascades", dialect)])
    cascades = read(
        landed.url, "kwery_liquidation_cascades", "2026-03-05", "2026-03-07", symbol="BTC"
    )
    expected = cascades.sort_values(["usd_value", "start"], ascending=[False, True]).head(3)
    expected = expected[["start", "end", "side", "events", "usd_value", "price_move_pct"]]
    assert len(expected) == 3
    for column in ("start", "end"):
        got[column] = as_utc(got[column])
    assert_same_rows(got, expected)
