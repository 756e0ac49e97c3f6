"""Partition replace, ranges, slices, streams and round trips on SQLite and PostgreSQL."""

import gc
import weakref
from collections.abc import Iterator

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from liq_pipeline.warehouse import FrameStream, WarehouseError, warehouse_metadata
from liq_pipeline_tests.warehouse.helpers import (
    BTC,
    DAILY,
    ETH,
    OKX_LONG,
    Warehouse,
    concat,
    kwery_frame,
    read,
    value_frame,
    write,
)


class Stream(FrameStream):
    def __init__(self, frames: Iterator[pd.DataFrame], metadata: dict[str, int]) -> None:
        super().__init__(frames)
        self.metadata = metadata

    def run_metadata(self) -> dict[str, int]:
        return self.metadata


RANGE_TAGS = {
    "dagster/asset_partition_range_start": "2026-03-02",
    "dagster/asset_partition_range_end": "2026-03-04",
}


def day_slice(frame: pd.DataFrame, start: object, end: object) -> pd.DataFrame:
    keep = (frame["timestamp"] >= start) & (frame["timestamp"] < end)
    return frame[keep].reset_index(drop=True)


def kwery_asset(source: dict[str, pd.DataFrame]) -> dg.AssetsDefinition:
    """A daily BTC asset returning the rows of `source` (mutable: tests swap the data)."""

    @dg.asset(
        name="kwery_liquidations_btc",
        partitions_def=DAILY,
        metadata=BTC,
        io_manager_key="warehouse",
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def _asset(context: dg.AssetExecutionContext) -> pd.DataFrame:
        window = context.partition_time_window
        return day_slice(source["frame"], window.start, window.end)

    return _asset


def materialized_rows(result: dg.ExecuteInProcessResult, node: str) -> list[tuple[str, int]]:
    return [
        (m.partition, m.metadata["dagster/row_count"].value)
        for m in result.asset_materializations_for_node(node)
    ]


def test_day_a_day_b_day_a_again(wh: Warehouse) -> None:
    a1, b, a2 = kwery_frame("2026-03-02", n=5), kwery_frame("2026-03-03", n=7, seed=1), None
    a2 = kwery_frame("2026-03-02", n=3, seed=2)
    source = {"frame": concat(a1, b)}
    asset = kwery_asset(source)
    resources = {"warehouse": wh.io()}

    result = dg.materialize([asset], resources=resources, partition_key="2026-03-02")
    assert materialized_rows(result, "kwery_liquidations_btc") == [("2026-03-02", 5)]
    result = dg.materialize([asset], resources=resources, partition_key="2026-03-03")
    assert materialized_rows(result, "kwery_liquidations_btc") == [("2026-03-03", 7)]
    source["frame"] = concat(a2, b)
    result = dg.materialize([asset], resources=resources, partition_key="2026-03-02")
    assert materialized_rows(result, "kwery_liquidations_btc") == [("2026-03-02", 3)]

    pd.testing.assert_frame_equal(read(wh.io(), "2026-03-02"), a2)
    pd.testing.assert_frame_equal(read(wh.io(), "2026-03-03"), b)
    assert wh.scalar("SELECT count(*) FROM kwery_liquidations") == 10


def test_single_run_range_backfill_and_downstream_loads(wh: Warehouse) -> None:
    days = [kwery_frame(f"2026-03-0{d}", n=d, seed=d) for d in (1, 2, 3, 4, 5)]
    source = {"frame": concat(*days)}
    asset = kwery_asset(source)
    seen: dict[str, pd.DataFrame] = {}

    @dg.asset(partitions_def=DAILY, io_manager_key="mem")
    def per_day(kwery_liquidations_btc: pd.DataFrame) -> int:
        seen["per_day"] = kwery_liquidations_btc
        return len(kwery_liquidations_btc)

    @dg.asset(io_manager_key="mem")
    def all_days(kwery_liquidations_btc: pd.DataFrame) -> int:
        seen["all_days"] = kwery_liquidations_btc
        return len(kwery_liquidations_btc)

    resources = {"warehouse": wh.io(), "mem": dg.InMemoryIOManager()}
    result = dg.materialize([asset], resources=resources, tags=RANGE_TAGS)
    # One run, one write of the 3-day window. The IO manager knows the write, not each day: it
    # gives run-wide figures only (the assets add each day's row count, see per_day.py).
    events = result.asset_materializations_for_node("kwery_liquidations_btc")
    assert [m.partition for m in events] == ["2026-03-02", "2026-03-03", "2026-03-04"]
    for event in events:
        assert "dagster/row_count" not in event.metadata
        assert event.metadata["run_rows"].value == 9
        assert event.metadata["run_window"].value == (
            "[2026-03-02T00:00:00+00:00, 2026-03-05T00:00:00+00:00)"
        )

    # Downstream with the same partitions: the input context's window (one day).
    dg.materialize(
        [asset, per_day], resources=resources, selection=[per_day], partition_key="2026-03-03"
    )
    pd.testing.assert_frame_equal(seen["per_day"], days[2])
    # Unpartitioned downstream: every upstream partition, i.e. the whole partitions def window.
    dg.materialize([asset, all_days], resources=resources, selection=[all_days])
    pd.testing.assert_frame_equal(seen["all_days"], concat(*days[1:4]))


def test_range_via_output_context_replaces_only_its_window(wh: Warehouse) -> None:
    io = wh.io()
    before = {d: kwery_frame(f"2026-03-0{d}", n=4, seed=d) for d in (1, 2, 3, 4, 5)}
    for d, frame in before.items():
        write(io, frame, f"2026-03-0{d}")
    new = concat(kwery_frame("2026-03-02", n=2, seed=9), kwery_frame("2026-03-04", n=1, seed=8))
    meta = write(io, new, "2026-03-02", "2026-03-04")  # no rows at all on the 3rd now
    assert meta["run_rows"] == 3
    pd.testing.assert_frame_equal(
        read(io, "2026-03-01", "2026-03-05"), concat(before[1], new, before[5])
    )


def test_symbol_slice(wh: Warehouse) -> None:
    io = wh.io()
    btc, eth = kwery_frame("2026-03-02", "BTC", n=4), kwery_frame("2026-03-02", "ETH", n=5, seed=3)
    write(io, btc)
    write(io, eth, asset="kwery_liquidations_eth", metadata=ETH)
    btc2 = kwery_frame("2026-03-02", "BTC", n=2, seed=4)
    meta = write(io, btc2)
    assert (meta["run_rows"], meta["slice"]) == (2, "symbol=BTC")
    pd.testing.assert_frame_equal(read(io), btc2)
    pd.testing.assert_frame_equal(read(io, asset="kwery_liquidations_eth", metadata=ETH), eth)
    assert wh.rows(
        "SELECT symbol, count(*) FROM kwery_liquidations GROUP BY symbol ORDER BY 1"
    ) == [
        ("BTC", 2),
        ("ETH", 5),
    ]


def test_empty_frame_replaces_old_rows(wh: Warehouse) -> None:
    io = wh.io()
    write(io, kwery_frame("2026-03-02", n=4))
    write(io, kwery_frame("2026-03-03", n=2), "2026-03-03")
    empty = kwery_frame("2026-03-02", n=0)
    assert write(io, empty)["run_rows"] == 0
    pd.testing.assert_frame_equal(read(io), empty)
    assert wh.scalar("SELECT count(*) FROM kwery_liquidations") == 2
    # pd.DataFrame(columns=...) (object dtypes, no values) is an empty result too.
    write(io, kwery_frame("2026-03-02", n=4))
    write(io, pd.DataFrame(columns=list(empty.columns)))
    assert wh.scalar("SELECT count(*) FROM kwery_liquidations") == 2


def test_round_trip_keeps_dtypes_and_insertion_order(wh: Warehouse) -> None:
    io = wh.io()
    frame = kwery_frame("2026-03-02", n=50, seed=7)
    # Millisecond edges of the window and sub-second precision.
    frame.loc[0, "timestamp"] = pd.Timestamp("2026-03-02T00:00:00.000Z")
    frame.loc[0:2, "timestamp"] = frame.loc[0, "timestamp"]
    frame.loc[49, "timestamp"] = pd.Timestamp("2026-03-02T23:59:59.999Z")
    write(io, frame)
    loaded = read(io)
    pd.testing.assert_frame_equal(loaded, frame, check_dtype=True)
    assert list(loaded["source"][:3]) == ["zeta", "beta", "alpha"]
    assert {str(t) for t in loaded.dtypes} == {"datetime64[ms, UTC]", "str", "float64"}

    days = value_frame(["2026-03-02", "2026-03-03"], [-1234.5678901234, 0.0])
    write(io, days, "2026-03-02", "2026-03-03", asset=OKX_LONG, metadata=None)
    loaded = read(io, "2026-03-01", "2026-03-31", asset=OKX_LONG, metadata=None)
    pd.testing.assert_frame_equal(loaded, days, check_dtype=True)
    assert str(loaded["day"].dtype) == "datetime64[s]"


def test_totals_table_round_trip(wh: Warehouse) -> None:
    io = wh.io()
    cols = [
        f"{e}_{s}_usd" for e in ("binance", "bybit", "deribit", "okx") for s in ("long", "short")
    ]
    totals = pd.DataFrame(
        {
            "day": pd.to_datetime(["2026-03-02"]).astype("datetime64[s]"),
            **{c: [float(i)] for i, c in enumerate(cols)},
            "long_usd": [12.0],
            "short_usd": [16.0],
            "total_usd": [28.0],
        }
    )
    meta = write(
        io,
        totals,
        asset="daily_liquidation_totals",
        metadata=warehouse_metadata("daily_liquidation_totals"),
    )
    assert meta["dagster/table_name"] == "daily_liquidation_totals"
    pd.testing.assert_frame_equal(read(io, asset="daily_liquidation_totals", metadata=None), totals)


def test_integer_columns_round_trip_as_int64_and_refuse_floats(wh: Warehouse) -> None:
    io = wh.io()
    bars_btc = warehouse_metadata("kwery_liquidation_bars", symbol="BTC")
    bars = pd.DataFrame(
        {
            "bucket_start": pd.to_datetime(["2026-03-02 00:01", "2026-03-02 00:01"], utc=True)
            .astype("datetime64[ms, UTC]")
            .array,
            "symbol": pd.array(["BTC", "BTC"], dtype="str"),
            "side": pd.array(["long", "short"], dtype="str"),
            "events": np.array([3, 2**40], dtype="int64"),  # beyond 32 bits: BIGINT on PostgreSQL
            "quantity": [0.5, 1.25],
            "usd_value": [45_000.0, 110_000.5],
            "max_usd_value": [30_000.0, 110_000.5],
        }
    )
    write(io, bars, asset="kwery_liquidation_bars_btc", metadata=bars_btc)
    loaded = read(io, asset="kwery_liquidation_bars_btc", metadata=bars_btc)
    pd.testing.assert_frame_equal(loaded, bars)
    assert str(loaded["events"].dtype) == "int64"
    if wh.kind == "sqlite":
        assert wh.rows("SELECT typeof(events) FROM kwery_liquidation_bars LIMIT 1") == [
            ("integer",)
        ]
    with pytest.raises(WarehouseError, match="column events has dtype float64, expected int64"):
        write(
            io,
            bars.astype({"events": "float64"}),
            asset="kwery_liquidation_bars_btc",
            metadata=bars_btc,
        )


def test_iterator_of_frames_and_empty_iterator(wh: Warehouse) -> None:
    io = wh.io()
    parts = [
        kwery_frame(day, n=n, seed=n)
        for day, n in (("2026-03-02", 3), ("2026-03-02", 0), ("2026-03-03", 4))
    ]
    meta = write(
        io,
        Stream(iter(parts), {"credits_used": 77}),
        "2026-03-02",
        "2026-03-03",
    )
    assert (meta["run_rows"], meta["credits_used"]) == (7, 77)
    pd.testing.assert_frame_equal(read(io, "2026-03-02", "2026-03-03"), concat(*parts))

    # A plain list and a bare generator work too (called directly, not returned from an asset).
    assert write(io, [parts[0]])["run_rows"] == 3
    meta = write(io, (f for f in []), "2026-03-02", "2026-03-03")
    assert meta["run_rows"] == 0
    assert wh.scalar("SELECT count(*) FROM kwery_liquidations") == 0


def test_run_metadata_of_a_stream_is_added_after_its_last_frame(wh: Warehouse) -> None:
    class Batches(FrameStream):
        def __init__(self, frames: list[pd.DataFrame]) -> None:
            super().__init__()
            self.frames, self.requests = frames, 0

        def __iter__(self) -> Iterator[pd.DataFrame]:
            for frame in self.frames:
                self.requests += 1
                yield frame

        def run_metadata(self) -> dict[str, int]:
            return {"requests": self.requests, "credits_used": 25 * self.requests}

    meta = write(wh.io(), Batches([kwery_frame("2026-03-02", n=2)] * 3))
    assert {k: meta[k] for k in ("run_rows", "requests", "credits_used")} == {
        "run_rows": 6,
        "requests": 3,
        "credits_used": 75,
    }
    assert meta["table"] == "kwery_liquidations"
    assert meta["run_rows"] == 6
    assert meta["run_rows_per_second"] >= 0


def test_stream_holds_one_frame_at_a_time(wh: Warehouse) -> None:
    """Frames already written are freed: peak memory does not grow with the number of frames."""
    refs: list[weakref.ref[pd.DataFrame]] = []
    still_alive: list[int] = []

    def produce() -> Iterator[pd.DataFrame]:
        for i in range(12):
            gc.collect(0)  # young generation only: frames die by refcount
            still_alive.append(sum(r() is not None for r in refs))
            frame = kwery_frame("2026-03-02", n=2_000, seed=i)
            refs.append(weakref.ref(frame))
            yield frame
            del frame

    meta = write(wh.io(), FrameStream(produce()))
    assert meta["run_rows"] == 24_000
    # While producing frame i, at most frame i-1 (being converted/ingested) is still referenced.
    assert max(still_alive) <= 1, still_alive


def test_db_schema_config_field(wh: Warehouse) -> None:
    if wh.kind == "sqlite":
        with pytest.raises(WarehouseError, match=r"^db_schema is only supported on PostgreSQL$"):
            write(wh.io(db_schema="other"), kwery_frame("2026-03-02"))
        return
    import uuid

    schema = f"t_{uuid.uuid4().hex[:12]}"
    io = wh.io(db_schema=schema)  # created by the IO manager; tables qualified with it
    try:
        meta = write(io, kwery_frame("2026-03-02", n=3))
        assert meta["dagster/table_name"] == f"{schema}.kwery_liquidations"
        assert wh.scalar(f'SELECT count(*) FROM "{schema}".kwery_liquidations') == 3
        pd.testing.assert_frame_equal(read(io), kwery_frame("2026-03-02", n=3))
        assert wh.scalar("SELECT to_regclass('kwery_liquidations') IS NULL") is True
    finally:
        with wh.engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')


def test_unpartitioned_asset_replaces_its_whole_slice(wh: Warehouse) -> None:
    io = wh.io()
    write(io, kwery_frame("2026-03-02", n=3, seed=1))
    write(io, kwery_frame("2026-03-03", n=2, seed=2), "2026-03-03")
    eth = kwery_frame("2026-03-02", "ETH", n=4, seed=3)
    write(io, eth, asset="kwery_liquidations_eth", metadata=ETH)
    every_btc = concat(kwery_frame("2026-03-01", n=2, seed=4), kwery_frame("2026-04-09", n=1))
    with dg.build_output_context(
        asset_key="kwery_liquidations_btc", definition_metadata=BTC
    ) as ctx:
        io.handle_output(ctx, every_btc)
        meta = ctx.get_logged_metadata()
    assert meta["run_rows"].value == 3
    assert meta["run_window"].value == "all rows"
    pd.testing.assert_frame_equal(read(io, None), every_btc)
    pd.testing.assert_frame_equal(read(io, None, asset="kwery_liquidations_eth", metadata=ETH), eth)


def test_arrow_tables_are_written_like_frames(wh: Warehouse) -> None:
    import pyarrow as pa

    from liq_pipeline.clients.kwery import KWERY_SCHEMA
    from liq_pipeline.warehouse import FrameError

    frame = kwery_frame("2026-03-02", n=7, seed=3)
    table = pa.Table.from_pandas(frame, schema=KWERY_SCHEMA, preserve_index=False)
    meta = write(wh.io(), FrameStream([table.slice(0, 4), table.slice(4)]))
    assert meta["run_rows"] == 7
    pd.testing.assert_frame_equal(read(wh.io()), frame)
    wrong = table.set_column(4, "quantity", table["quantity"].cast(pa.float32()))
    with pytest.raises(FrameError) as err:
        write(wh.io(), wrong)
    assert str(err.value) == (
        "Arrow table does not match table kwery_liquidations: quantity is float, expected double"
    )
    pd.testing.assert_frame_equal(read(wh.io()), frame)
