"""Write benchmark: pandas `to_sql` vs the warehouse IO manager, PostgreSQL and SQLite.

    .venv/bin/python bench/bench_write.py [--rows 1000000] [--repeat 3] [--to-sql-rows 200000]

Generates Kwery-shaped rows (ms timestamps over 7 days, 6 symbols, 4 floats) and, in the same run,
measures on PostgreSQL (LIQ_TEST_POSTGRES_URL, a scratch schema dropped afterwards) and on a temp
SQLite file:
- pandas `to_sql` default into a scratch table. It runs at a constant rate per row, so by
  default it gets the first 200k rows only, to keep the default run under two minutes
  (`--to-sql-rows` sets the count).
- the IO manager's `handle_output` (through `dg.build_output_context`, the public testing API),
  the atomic replace of a 7-day window of `kwery_liquidations`, twice over: `--repeat` writes
  into new, empty weeks (the daily run), then `--repeat` back-to-back replaces of the same 1M
  rows (a re-run). PostgreSQL's replace is the slower one: it deletes 1M rows and the COPY then
  goes into an index full of not-yet-vacuumed entries of the same keys. Medians reported.
- `load_input` of the whole window (checked equal to the frame written) vs `pd.read_sql`.
Peak memory is the process's peak RSS above the RSS before the write (VmHWM reset through
/proc/self/clear_refs), compared with the frame's own `memory_usage(deep=True)`.
"""

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import sqlalchemy as sa

from liq_pipeline.warehouse import WarehouseIOManager, warehouse_metadata

PG_URL = os.environ.get(
    "LIQ_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
)
DAYS = 7
START = "2026-03-01"


def kwery_rows(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t0 = np.datetime64(f"{START}T00:00:00", "ms").astype(np.int64)
    ts = np.sort(rng.integers(t0, t0 + DAYS * 86_400_000, n))
    symbols = np.array(["BTC", "ETH", "SOL", "XRP", "DOGE", "BNB"], dtype=object)
    sources = np.array(["binance_futures", "bybit", "okx", "deribit"], dtype=object)
    sides = np.array(["long", "short"], dtype=object)
    quantity = rng.lognormal(0, 1.5, n).round(3)
    price = rng.uniform(20_000, 100_000, n).round(1)
    avg_price = (price * rng.uniform(0.999, 1.001, n)).round(1)
    return pd.DataFrame(
        {
            "timestamp": pd.to_datetime(ts, unit="ms", utc=True).astype("datetime64[ms, UTC]"),
            "symbol": pd.array(symbols[rng.integers(0, len(symbols), n)], dtype="str"),
            "source": pd.array(sources[rng.integers(0, len(sources), n)], dtype="str"),
            "side": pd.array(sides[rng.integers(0, 2, n)], dtype="str"),
            "quantity": quantity,
            "price": price,
            "avg_price": avg_price,
            "usd_value": (quantity * avg_price).round(2),
        }
    )


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def measured(fn: Callable[[], object]) -> tuple[float, int]:
    """(seconds, peak RSS growth in bytes) of fn()."""
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _status_kib("VmRSS")
    started = time.perf_counter()
    fn()
    seconds = time.perf_counter() - started
    return seconds, (_status_kib("VmHWM") - before) * 1024


def to_sql_default(df: pd.DataFrame, url: str, schema: str | None) -> tuple[float, int]:
    engine = sa.create_engine(url)
    try:
        return measured(
            lambda: df.to_sql("bench_to_sql_scratch", engine, schema=schema, index=False)
        )
    finally:
        engine.dispose()


def _write(io: WarehouseIOManager, df: pd.DataFrame, week: int) -> None:
    daily = dg.DailyPartitionsDefinition(start_date=START)
    first = pd.Timestamp(START) + pd.Timedelta(weeks=week)
    last = first + pd.Timedelta(days=DAYS - 1)
    with dg.build_output_context(
        asset_key="kwery_liquidations",
        definition_metadata=warehouse_metadata("kwery_liquidations"),
        asset_partitions_def=daily,
        asset_partition_key_range=dg.PartitionKeyRange(
            first.strftime("%Y-%m-%d"), last.strftime("%Y-%m-%d")
        ),
    ) as ctx:
        io.handle_output(ctx, df)
        assert ctx.get_logged_metadata()["dagster/row_count"].value == len(df)


def io_manager_writes(
    df: pd.DataFrame, io: WarehouseIOManager, repeat: int
) -> tuple[list[tuple[float, int]], list[tuple[float, int]]]:
    """(fresh writes into empty weeks, back-to-back replaces of week 0)."""
    shifted = [df]
    for week in range(1, repeat):
        shifted.append(df.assign(timestamp=df["timestamp"] + pd.Timedelta(weeks=week)))
    fresh = []
    for week in reversed(range(repeat)):  # week 0 last: it is the one replaced next
        frame = shifted.pop()
        fresh.append(measured(lambda frame=frame, week=week: _write(io, frame, week)))
        del frame
    return fresh, [measured(lambda: _write(io, df, 0)) for _ in range(repeat)]


def io_manager_read(df: pd.DataFrame, io: WarehouseIOManager) -> float:
    """Seconds of load_input of the whole window; checks the frame comes back exactly."""
    daily = dg.DailyPartitionsDefinition(start_date=START)
    last = (pd.Timestamp(START) + pd.Timedelta(days=DAYS - 1)).strftime("%Y-%m-%d")
    upstream = dg.build_output_context(
        asset_key="kwery_liquidations", definition_metadata=warehouse_metadata("kwery_liquidations")
    )
    ctx = dg.build_input_context(
        upstream_output=upstream,
        asset_key="kwery_liquidations",
        asset_partitions_def=daily,
        asset_partition_key_range=dg.PartitionKeyRange(START, last),
    )
    started = time.perf_counter()
    loaded = io.load_input(ctx)
    seconds = time.perf_counter() - started
    pd.testing.assert_frame_equal(loaded, df)
    return seconds


def read_sql_default(url: str, schema: str | None) -> tuple[float, int]:
    engine = sa.create_engine(url)
    table = f'"{schema}".bench_to_sql_scratch' if schema else "bench_to_sql_scratch"
    try:
        started = time.perf_counter()
        n = len(pd.read_sql(f"SELECT * FROM {table}", engine))
        return time.perf_counter() - started, n
    finally:
        engine.dispose()


def report_reads(read_sql: tuple[float, int], load_seconds: float, n: int) -> None:
    base = read_sql[1] / read_sql[0]
    print(f"pd.read_sql default   : {base:>10,.0f} rows/s  ({read_sql[1]:,} rows)")
    rate = n / load_seconds
    print(
        f"IO manager load_input : {rate:>10,.0f} rows/s  "
        f"({load_seconds:.2f} s, frame identical to the one written) = {rate / base:.1f}x"
    )


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def report(
    name: str,
    to_sql: tuple[float, int],
    n_to_sql: int,
    fresh: list[tuple[float, int]],
    reps: list[tuple[float, int]],
    n: int,
    frame_bytes: int,
) -> None:
    base = n_to_sql / to_sql[0]
    peak = max(m for _, m in [*fresh, *reps])
    print(f"\n== {name}")
    print(f"pandas to_sql default : {base:>10,.0f} rows/s  ({n_to_sql:,} rows, {to_sql[0]:.1f} s)")
    print(f"                        peak +{mib(to_sql[1])} for a {n_to_sql:,}-row frame")
    for label, runs in (("new window", fresh), ("replace", reps)):
        med = statistics.median(s for s, _ in runs)
        times = ", ".join(f"{s:.2f}" for s, _ in runs)
        print(
            f"IO manager {label:<11}: {n / med:>10,.0f} rows/s = {n / med / base:4.1f}x to_sql  "
            f"(median of {len(runs)}: {times} s)"
        )
    print(
        f"IO manager peak memory: +{mib(peak)} = {peak / frame_bytes:.2f}x the frame's "
        f"{mib(frame_bytes)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--to-sql-rows", type=int, default=200_000)
    parser.add_argument("--postgres-url", default=PG_URL)
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()

    df = kwery_rows(args.rows)
    frame_bytes = int(df.memory_usage(deep=True).sum())
    sample = df.iloc[: min(args.to_sql_rows, args.rows)].copy()
    print(f"{args.rows:,} Kwery-shaped rows, frame {mib(frame_bytes)}; to_sql on {len(sample):,}")

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.sqlite"
        to_sql = to_sql_default(sample, f"sqlite:///{tmp}/to_sql.sqlite", None)
        io = WarehouseIOManager(url=url)
        fresh, reps = io_manager_writes(df, io, args.repeat)
        report("SQLite (temp file)", to_sql, len(sample), fresh, reps, args.rows, frame_bytes)
        read_sql = read_sql_default(f"sqlite:///{tmp}/to_sql.sqlite", None)
        report_reads(read_sql, io_manager_read(df, io), args.rows)

    if args.skip_postgres:
        return
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(args.postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        to_sql = to_sql_default(sample, args.postgres_url, schema)
        io = WarehouseIOManager(url=args.postgres_url, db_schema=schema)
        fresh, reps = io_manager_writes(df, io, args.repeat)
        report("PostgreSQL", to_sql, len(sample), fresh, reps, args.rows, frame_bytes)
        report_reads(
            read_sql_default(args.postgres_url, schema), io_manager_read(df, io), args.rows
        )
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


if __name__ == "__main__":
    main()
