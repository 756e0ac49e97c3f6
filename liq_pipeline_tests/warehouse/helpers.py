"""Test data and IO-manager call helpers for the warehouse tests."""

import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import adbc_driver_sqlite.dbapi as sqlite_dbapi
import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa

from liq_pipeline.warehouse import WarehouseIOManager, warehouse_metadata
from liq_pipeline.warehouse.frames import Stage

DAILY = dg.DailyPartitionsDefinition(start_date="2026-03-01", end_date="2026-05-01")
BTC = warehouse_metadata("kwery_liquidations", symbol="BTC")
ETH = warehouse_metadata("kwery_liquidations", symbol="ETH")
OKX_LONG = "bitcoin_liquidations_okx_long"


@dataclass
class Warehouse:
    kind: str  # "sqlite" | "postgres"
    url: str
    engine: sa.Engine | None = None  # PostgreSQL only
    path: Path | None = None  # the SQLite file

    def io(self, **kwargs: Any) -> WarehouseIOManager:
        return WarehouseIOManager(url=self.url, **kwargs)

    def rows(self, sql: str, **params: object) -> list[tuple[Any, ...]]:
        if self.kind == "sqlite":
            # Through ADBC like the IO manager: Python's sqlite3 is another copy of SQLite, and
            # two copies in one process must not share a file (POSIX locks are per process).
            conn = sqlite_dbapi.connect(str(self.path))
            try:
                with conn.cursor() as cur:
                    cur.execute(re.sub(r":(\w+)", "?", sql), tuple(params.values()) or None)
                    return [tuple(r) for r in cur.fetchall()]
            finally:
                conn.close()
        assert self.engine is not None
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql), params)]

    def execute(self, sql: str) -> None:
        """Run one statement (e.g. DDL) and commit it."""
        if self.kind == "sqlite":
            conn = sqlite_dbapi.connect(str(self.path), autocommit=True)
            try:
                with conn.cursor() as cur:
                    cur.execute(sql)
            finally:
                conn.close()
            return
        assert self.engine is not None
        with self.engine.begin() as conn:
            conn.exec_driver_sql(sql)

    def scalar(self, sql: str, **params: object) -> Any:
        return self.rows(sql, **params)[0][0]

    def write_lock_is_held(self) -> bool:
        """SQLite: could another writer begin now? (tries without waiting)"""
        conn = sqlite_dbapi.connect(str(self.path), autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute("PRAGMA busy_timeout = 0")
                try:
                    cur.execute("BEGIN IMMEDIATE")
                except sqlite_dbapi.Error as exc:
                    assert "database is locked" in str(exc), exc
                    return True
                cur.execute("ROLLBACK")
                return False
        finally:
            conn.close()


def kwery_frame(day: str, symbol: str = "BTC", n: int = 6, seed: int = 0) -> pd.DataFrame:
    """n events of one symbol in one UTC day, time-ordered, the first three in the same ms.

    Within that millisecond the rows are in an order that sorting by any other column would
    change, so a round trip proves insertion order is kept.
    """
    rng = np.random.default_rng(seed)
    ms = np.sort(rng.integers(1_000, 86_400_000, n))
    if n >= 3:
        ms[:3] = ms[0]
    quantity = rng.integers(1, 100_000, n) / 1000
    avg_price = rng.integers(2_000_000, 9_000_000, n) / 100
    sources = ["zeta", "beta", "alpha", *["binance_futures"] * max(0, n - 3)][:n]
    return pd.DataFrame(
        {
            "timestamp": (pd.Timestamp(day, tz="UTC") + pd.to_timedelta(ms, unit="ms")).astype(
                "datetime64[ms, UTC]"
            ),
            "symbol": pd.array([symbol] * n, dtype="str"),
            "source": pd.array(sources, dtype="str"),
            "side": pd.array(rng.choice(["long", "short"], n), dtype="str"),
            "quantity": quantity,
            "price": avg_price + 1.5,
            "avg_price": avg_price,
            "usd_value": (quantity * avg_price).round(2),
        }
    )


def value_frame(days: list[str], values: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "day": pd.to_datetime(days).astype("datetime64[s]"),
            "value": np.array(values, dtype="float64"),
        }
    )


def _key_range(start: str, end: str | None) -> dg.PartitionKeyRange:
    return dg.PartitionKeyRange(start, end or start)


def write(
    io: WarehouseIOManager,
    obj: object,
    start: str = "2026-03-02",
    end: str | None = None,
    *,
    asset: str = "kwery_liquidations_btc",
    metadata: Mapping[str, Any] | None = BTC,
) -> dict[str, Any]:
    """handle_output for the partition range [start, end] (keys); returns the output metadata."""
    with dg.build_output_context(
        asset_key=asset,
        definition_metadata=metadata,
        asset_partitions_def=DAILY,
        asset_partition_key_range=_key_range(start, end),
    ) as ctx:
        io.handle_output(ctx, obj)
        return {k: v.value for k, v in ctx.get_logged_metadata().items()}


def read(
    io: WarehouseIOManager,
    start: str | None = "2026-03-02",
    end: str | None = None,
    *,
    asset: str = "kwery_liquidations_btc",
    metadata: Mapping[str, Any] | None = BTC,
) -> pd.DataFrame:
    """load_input of the partition range [start, end] (keys), or of everything if start is None."""
    upstream = dg.build_output_context(asset_key=asset, definition_metadata=metadata)
    if start is None:
        ctx = dg.build_input_context(upstream_output=upstream, asset_key=asset)
    else:
        ctx = dg.build_input_context(
            upstream_output=upstream,
            asset_key=asset,
            asset_partitions_def=DAILY,
            asset_partition_key_range=_key_range(start, end),
        )
    return io.load_input(ctx)


def concat(*frames: pd.DataFrame) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True)


class Gate:
    """Frames for a write that pauses after its first frame until `release` is set.

    `paused` is set once the first frame has been staged: the producer (the API fetch) is slow,
    and the write holds no lock yet.
    """

    def __init__(self, first: pd.DataFrame, *rest: pd.DataFrame) -> None:
        self.first, self.rest = first, rest
        self.paused, self.release = threading.Event(), threading.Event()

    def __iter__(self) -> Iterator[pd.DataFrame]:
        yield self.first
        self.paused.set()
        if not self.release.wait(60):
            raise TimeoutError("gate never released")
        yield from self.rest


class SwapGate:
    """Pauses the first write that reaches its transaction, until `release` is set.

    `paused` is set inside the swap: locks held, the old rows deleted, no new row ingested yet —
    where a long real write would be. Only the ingest's reading of the stage is slowed (a slow
    database can't be produced on demand); everything else is the real write path.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.paused, self.release = threading.Event(), threading.Event()
        real_reader = Stage.reader
        gate = self

        def reader(stage: Stage) -> pa.RecordBatchReader:
            source = real_reader(stage)
            if gate.paused.is_set():
                return source

            def batches() -> Iterator[pa.RecordBatch]:
                gate.paused.set()
                if not gate.release.wait(60):
                    raise TimeoutError("swap gate never released")
                yield from source

            return pa.RecordBatchReader.from_batches(source.schema, batches())

        monkeypatch.setattr(Stage, "reader", reader)


class Worker(threading.Thread):
    """Runs fn() in a thread and keeps its result or exception."""

    def __init__(self, fn: Callable[[], object]) -> None:
        super().__init__(daemon=True)
        self.fn, self.result, self.error = fn, None, None
        self.start()

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as exc:
            self.error = exc

    def finish(self, timeout: float = 60) -> object:
        self.join(timeout)
        assert not self.is_alive(), "worker did not finish"
        if self.error is not None:
            raise self.error
        return self.result


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Poll (no sleep: each poll is a database round trip) until predicate() or fail."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
