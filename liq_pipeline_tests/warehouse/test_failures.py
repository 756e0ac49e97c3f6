"""A failed write leaves the previous rows exactly as they were; bad frames fail clearly."""

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from liq_pipeline.warehouse import FrameError, FrameStream, WarehouseError, warehouse_metadata
from liq_pipeline.warehouse import backends as backends_module
from liq_pipeline_tests.warehouse.helpers import (
    OKX_LONG,
    Gate,
    Warehouse,
    Worker,
    kwery_frame,
    read,
    value_frame,
    wait_until,
    write,
)

REPO = Path(__file__).resolve().parents[2]
WINDOW = "[2026-03-02T00:00:00+00:00, 2026-03-03T00:00:00+00:00)"


@pytest.fixture
def old(wh: Warehouse) -> pd.DataFrame:
    """Rows already in the partition, which every failed write below must leave intact."""
    frame = kwery_frame("2026-03-02", n=5, seed=100)
    write(wh.io(), frame)
    write(wh.io(), kwery_frame("2026-03-03", n=2, seed=101), "2026-03-03")
    return frame


def assert_untouched(wh: Warehouse, old: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(read(wh.io()), old)
    assert wh.scalar("SELECT count(*) FROM kwery_liquidations") == 7


def test_producer_error_in_third_frame(wh: Warehouse, old: pd.DataFrame) -> None:
    def frames() -> Iterator[pd.DataFrame]:
        yield kwery_frame("2026-03-02", n=4, seed=1)
        yield kwery_frame("2026-03-02", n=4, seed=2)
        raise RuntimeError("API page 3 failed")

    with pytest.raises(RuntimeError, match=r"^API page 3 failed$"):
        write(wh.io(), FrameStream(frames()))
    assert_untouched(wh, old)


def test_missing_value_in_late_frame(wh: Warehouse, old: pd.DataFrame) -> None:
    bad = kwery_frame("2026-03-02", n=3, seed=3)
    bad.loc[1, "usd_value"] = np.nan
    frames = [kwery_frame("2026-03-02", n=4, seed=1), kwery_frame("2026-03-02", n=4, seed=2), bad]
    with pytest.raises(FrameError) as err:
        write(wh.io(), FrameStream(frames))
    assert str(err.value) == (
        "the frame for kwery_liquidations has missing values (NaN/None/NaT) in: usd_value (1); "
        "its columns are NOT NULL"
    )
    assert_untouched(wh, old)


def test_failure_after_ingest_rolls_back(
    wh: Warehouse, old: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ingest runs inside the write's transaction: failing after it undoes it all."""
    seen: list[int] = []

    def fail_before_commit(stream: object, ingested: int) -> None:
        seen.append(ingested)
        raise WarehouseError("injected failure between ingest and commit")

    monkeypatch.setattr(backends_module, "_check_ingested", fail_before_commit)
    with pytest.raises(WarehouseError, match=r"^injected failure between ingest and commit$"):
        write(wh.io(), kwery_frame("2026-03-02", n=9, seed=5))
    assert seen == [9]  # the rows had been ingested
    assert_untouched(wh, old)


def test_database_error_during_ingest(wh: Warehouse) -> None:
    """The day tables' key is enforced by the database too (duplicates across frames)."""
    io = wh.io()
    before = value_frame(["2026-03-02", "2026-03-03"], [1.0, 2.0])
    write(io, before, "2026-03-02", "2026-03-03", asset=OKX_LONG, metadata=None)
    frames = [value_frame(["2026-03-02"], [5.0]), value_frame(["2026-03-02"], [6.0])]
    with pytest.raises(WarehouseError) as err:
        write(io, FrameStream(frames), "2026-03-02", "2026-03-03", asset=OKX_LONG, metadata=None)
    assert str(err.value).startswith(
        "write to bitcoin_liquidations_okx_long "
        "[2026-03-02T00:00:00+00:00, 2026-03-04T00:00:00+00:00) failed: "
    )
    loaded = read(io, "2026-03-02", "2026-03-03", asset=OKX_LONG, metadata=None)
    pd.testing.assert_frame_equal(loaded, before)


def test_terminated_connection_mid_write(pg_wh: Warehouse) -> None:
    io = pg_wh.io()
    old = kwery_frame("2026-03-02", n=5, seed=100)
    write(io, old)
    gate = Gate(kwery_frame("2026-03-02", n=4, seed=1), kwery_frame("2026-03-02", n=4, seed=2))
    writer = Worker(lambda: write(io, FrameStream(gate)))
    assert gate.paused.wait(30)
    # The writer's backend is the one holding advisory locks (mid-COPY, old rows deleted).
    pids = pg_wh.rows(
        "SELECT DISTINCT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND pid <> pg_backend_pid()"
    )
    assert len(pids) == 1
    assert pg_wh.scalar("SELECT pg_terminate_backend(:pid)", pid=pids[0][0]) is True
    gate.release.set()
    with pytest.raises(WarehouseError) as err:
        writer.finish()
    assert str(err.value).startswith(f"write to kwery_liquidations {WINDOW} failed: ")
    pd.testing.assert_frame_equal(read(io), old)
    write(io, kwery_frame("2026-03-02", n=2, seed=3))  # and the partition is writable again
    assert pg_wh.scalar("SELECT count(*) FROM kwery_liquidations") == 2


CHILD = textwrap.dedent(
    """
    import sys
    from liq_pipeline.warehouse import FrameStream, WarehouseIOManager
    from liq_pipeline_tests.warehouse.helpers import kwery_frame, write

    def frames():
        yield kwery_frame("2026-03-02", n=4, seed=1)
        yield kwery_frame("2026-03-02", n=4, seed=2)
        print("mid-write", flush=True)
        sys.stdin.read()  # blocks until the parent kills this process
        yield kwery_frame("2026-03-02", n=4, seed=3)

    write(WarehouseIOManager(url=sys.argv[1]), FrameStream(frames()))
    """
)


def test_killed_process_mid_write(wh: Warehouse, old: pd.DataFrame) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, wh.url],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "mid-write\n"
        if wh.kind == "sqlite":  # the child holds the write lock: its transaction is open
            assert wh.write_lock_is_held()
        else:
            assert wh.scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") >= 1
        child.kill()
    finally:
        child.wait(30)
    assert child.returncode == -9
    assert_untouched(wh, old)
    write(wh.io(), kwery_frame("2026-03-02", n=1, seed=4))  # no lock left behind
    if wh.kind == "postgres":  # the server notices the dead client and releases its locks
        wait_until(
            lambda: wh.scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0,
            "the killed writer's locks are released",
        )


# --- frames that do not fit: rejected before anything is written -------------------------------


def _cases() -> list[tuple[str, object, str]]:
    f = kwery_frame("2026-03-02", n=3, seed=9)
    naive = f.assign(timestamp=f["timestamp"].dt.tz_localize(None))
    return [
        ("missing", f.drop(columns=["usd_value"]), "missing columns: usd_value"),
        ("extra", f.assign(fee=1.0), "unexpected columns: fee"),
        (
            "dtype",
            f.assign(quantity=f["quantity"].astype(str)),
            "column quantity has dtype str, expected float64",
        ),
        ("naive", naive, "column timestamp has dtype datetime64[ms], expected datetime64[ms, UTC]"),
        (
            "several",
            f.drop(columns=["side"]).rename(columns={"price": "Price"}),
            "missing columns: side, price; unexpected columns: Price",
        ),
    ]


@pytest.mark.parametrize(("case", "frame", "problem"), _cases(), ids=[c[0] for c in _cases()])
def test_schema_mismatch_messages(
    wh: Warehouse, old: pd.DataFrame, case: str, frame: pd.DataFrame, problem: str
) -> None:
    with pytest.raises(FrameError) as err:
        write(wh.io(), frame)
    assert str(err.value) == f"frame does not match table kwery_liquidations: {problem}"
    assert_untouched(wh, old)


def test_columns_matched_by_name_not_position(wh: Warehouse) -> None:
    frame = kwery_frame("2026-03-02", n=4)
    write(wh.io(), frame[list(reversed(frame.columns))])
    pd.testing.assert_frame_equal(read(wh.io()), frame)


def test_day_table_messages(wh: Warehouse) -> None:
    io = wh.io()
    ints = pd.DataFrame({"day": value_frame(["2026-03-02"], [1])["day"], "value": [1]})
    with pytest.raises(
        FrameError,
        match=r"^frame does not match table bitcoin_liquidations_okx_long: "
        r"column value has dtype int64, expected float64$",
    ):
        write(io, ints, asset=OKX_LONG, metadata=None)
    noon = value_frame(["2026-03-02 12:00"], [1.0])
    with pytest.raises(FrameError) as err:
        write(io, noon, asset=OKX_LONG, metadata=None)
    assert str(err.value) == (
        "column day of the frame for bitcoin_liquidations_okx_long has times other than "
        "midnight; it holds UTC days"
    )
    twice = value_frame(["2026-03-02", "2026-03-02"], [1.0, 2.0])
    with pytest.raises(FrameError) as err:
        write(io, twice, asset=OKX_LONG, metadata=None)
    assert str(err.value) == (
        "the frame for bitcoin_liquidations_okx_long has day values more than once: 2026-03-02"
    )
    outside = value_frame(["2026-03-02", "2026-03-05"], [1.0, 2.0])
    with pytest.raises(FrameError) as err:
        write(io, outside, "2026-03-02", "2026-03-03", asset=OKX_LONG, metadata=None)
    assert str(err.value) == (
        "1 of 2 rows of the frame for bitcoin_liquidations_okx_long have day outside the run's "
        "window [2026-03-02T00:00:00+00:00, 2026-03-04T00:00:00+00:00) (frame spans "
        "2026-03-02 .. 2026-03-05); nothing was written"
    )


def test_rows_outside_the_window_are_rejected(wh: Warehouse, old: pd.DataFrame) -> None:
    frame = kwery_frame("2026-03-02", n=4, seed=6)
    frame.loc[3, "timestamp"] = pd.Timestamp("2026-03-03T00:00:00.000Z")  # first ms of next day
    with pytest.raises(FrameError) as err:
        write(wh.io(), frame)
    first = frame["timestamp"].min().isoformat(sep=" ")
    assert str(err.value) == (
        f"1 of 4 rows of the frame for kwery_liquidations have timestamp outside the run's window "
        f"{WINDOW} (frame spans {first} .. 2026-03-03 00:00:00+00:00); nothing was written"
    )
    assert_untouched(wh, old)


def test_rows_of_another_symbol_are_rejected(wh: Warehouse, old: pd.DataFrame) -> None:
    frame = kwery_frame("2026-03-02", n=4, seed=6)
    frame.loc[1:2, "symbol"] = "ETH"
    with pytest.raises(FrameError) as err:
        write(wh.io(), frame)
    assert str(err.value) == (
        "2 rows of the frame for kwery_liquidations have symbol other than 'BTC' (found 'ETH'); "
        "nothing was written"
    )
    assert_untouched(wh, old)


def test_values_are_bound_not_formatted(wh: Warehouse) -> None:
    odd = "B'TC\"; DROP TABLE kwery_liquidations; --"
    meta = warehouse_metadata("kwery_liquidations", symbol=odd)
    frame = kwery_frame("2026-03-02", symbol=odd, n=3)
    write(wh.io(), frame, metadata=meta)
    pd.testing.assert_frame_equal(read(wh.io(), metadata=meta), frame)


def test_outputs_that_are_not_frames(wh: Warehouse) -> None:
    io = wh.io()
    with pytest.raises(WarehouseError) as err:
        write(io, None)
    assert str(err.value) == (
        "the asset for kwery_liquidations returned None; return an empty DataFrame for a day "
        "without rows (it replaces the old rows)"
    )
    with pytest.raises(
        WarehouseError,
        match=r"^the warehouse IO manager writes a DataFrame or an iterable of DataFrames to "
        r"kwery_liquidations, got str$",
    ):
        write(io, "rows")
    with pytest.raises(
        FrameError,
        match=r"^the warehouse IO manager writes pandas DataFrames \(or an iterable of them\) "
        r"to kwery_liquidations, got dict$",
    ):
        write(io, [{"timestamp": 1}])
    static = dg.StaticPartitionsDefinition(["a"])
    with (
        dg.build_output_context(
            asset_key="kwery_liquidations_btc",
            definition_metadata=warehouse_metadata("kwery_liquidations", symbol="BTC"),
            asset_partitions_def=static,
            partition_key="a",
        ) as ctx,
        pytest.raises(
            WarehouseError,
            match=r"^the warehouse IO manager needs one contiguous time window of partitions: ",
        ),
    ):
        io.handle_output(ctx, kwery_frame("2026-03-02"))
