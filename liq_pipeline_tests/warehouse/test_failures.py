"""A failed write leaves the previous rows exactly as they were; bad frames fail clearly."""

import os
import shutil
import subprocess
import sys
import tempfile
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
    SwapGate,
    Warehouse,
    Worker,
    concat,
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
    for backend in (backends_module.SqliteBackend, backends_module.PostgresBackend):
        real_ingest = backend._ingest

        def ingest(self, cur, spec, rows, real_ingest=real_ingest) -> int:  # type: ignore[no-untyped-def]
            seen.append(real_ingest(self, cur, spec, rows))
            return seen[-1]

        def fail_before_commit(self, conn, cur) -> None:  # type: ignore[no-untyped-def]
            raise WarehouseError("injected failure between ingest and commit")

        monkeypatch.setattr(backend, "_ingest", ingest)
        monkeypatch.setattr(backend, "_commit", fail_before_commit)
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


@pytest.mark.parametrize("budget", [300.0, 0.0])
def test_a_connection_dropped_mid_write_is_retried_from_the_stage(
    pg_wh: Warehouse, monkeypatch: pytest.MonkeyPatch, budget: float
) -> None:
    """The server ends the writer's connection mid-write (as a restart would): the transaction
    rolls back; within the retry budget the staged rows are written again, else it fails."""
    io = pg_wh.io(retry_budget_seconds=budget)
    old = kwery_frame("2026-03-02", n=5, seed=100)
    write(io, old)
    waits: list[float] = []
    monkeypatch.setattr(backends_module.Backend, "sleep", staticmethod(waits.append))
    gate = SwapGate(monkeypatch)
    new = [kwery_frame("2026-03-02", n=4, seed=1), kwery_frame("2026-03-02", n=4, seed=2)]
    writer = Worker(lambda: write(io, new))
    assert gate.paused.wait(30)
    # The writer's backend is the one holding advisory locks (old rows deleted, none ingested).
    pids = pg_wh.rows(
        "SELECT DISTINCT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND pid <> pg_backend_pid()"
    )
    assert len(pids) == 1
    assert pg_wh.scalar("SELECT pg_terminate_backend(:pid)", pid=pids[0][0]) is True
    gate.release.set()
    if budget:
        assert writer.finish()["run_rows"] == 8  # type: ignore[index]
        assert len(waits) == 1 and 1.0 <= waits[0] <= 2.0
        expected = concat(*new).sort_values("timestamp", kind="stable").reset_index(drop=True)
        pd.testing.assert_frame_equal(read(io), expected)
        return
    with pytest.raises(WarehouseError) as err:
        writer.finish()
    assert "terminating connection due to administrator command" in str(err.value)
    assert str(err.value).endswith(
        f"(write to kwery_liquidations {WINDOW}: 1 attempt in 0 s; the retry budget of 0 s is "
        "used up, raise retry_budget_seconds to wait longer)"
    )
    pd.testing.assert_frame_equal(read(io), old)
    write(io, kwery_frame("2026-03-02", n=2, seed=3))  # and the partition is writable again
    assert pg_wh.scalar("SELECT count(*) FROM kwery_liquidations") == 2


CHILD = textwrap.dedent(
    """
    import sys
    import pyarrow as pa
    from liq_pipeline.warehouse import FrameStream, WarehouseIOManager
    from liq_pipeline.warehouse.frames import Stage
    from liq_pipeline_tests.warehouse.helpers import kwery_frame, write

    def pause(where):
        print(where, flush=True)
        sys.stdin.read()  # blocks until the parent kills this process

    def frames():
        yield kwery_frame("2026-03-02", n=4, seed=1)
        yield kwery_frame("2026-03-02", n=4, seed=2)
        if sys.argv[2] == "fetch":
            pause("mid-fetch")
        yield kwery_frame("2026-03-02", n=4, seed=3)

    real_reader = Stage.reader

    def reader(stage):  # the ingest reads the stage: pause after its first batch
        batches = iter(real_reader(stage))

        def paused():
            yield next(batches)
            pause("mid-write")
            yield from batches

        return pa.RecordBatchReader.from_batches(stage.schema, paused())

    Stage.reader = reader
    write(WarehouseIOManager(url=sys.argv[1]), FrameStream(frames()))
    """
)


@pytest.mark.e2e
@pytest.mark.parametrize("where", ["fetch", "write"])
def test_killed_process_mid_fetch_or_mid_write(
    wh: Warehouse, old: pd.DataFrame, where: str
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, wh.url, where],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == f"mid-{where}\n"
        locks = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
        if wh.kind == "sqlite":  # only the write's transaction holds the write lock
            assert wh.write_lock_is_held() is (where == "write")
        elif where == "write":
            assert wh.scalar(locks) >= 1
        else:
            assert wh.scalar(locks) == 0
        child.kill()
    finally:
        child.wait(30)
    assert child.returncode == -9
    assert_untouched(wh, old)
    write(wh.io(), kwery_frame("2026-03-02", n=1, seed=4))  # no lock left behind
    if wh.kind == "postgres":  # the server notices the dead client and releases its locks
        wait_until(
            lambda: wh.scalar(locks) == 0,
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


def test_values_no_table_can_hold_are_refused_naming_row_and_column(
    wh: Warehouse, old: pd.DataFrame
) -> None:
    frame = kwery_frame("2026-03-02", n=3, seed=9)
    at = frame["timestamp"].iloc[1].isoformat(sep=" ")
    infinite = frame.assign(usd_value=[1.0, float("inf"), 2.0])
    with pytest.raises(FrameError) as err:
        write(wh.io(), infinite)
    assert str(err.value) == (
        f"row 1 of the frame for kwery_liquidations (timestamp {at}) has a value that is not a "
        "finite number in usd_value: inf; nothing was written"
    )
    nul = frame.assign(source=["binance_futures", "bin\x00ance", "binance_futures"])
    with pytest.raises(FrameError) as err:
        write(wh.io(), nul)
    assert str(err.value) == (
        f"row 1 of the frame for kwery_liquidations (timestamp {at}) has a NUL character in "
        "source: 'bin\\x00ance'; nothing was written"
    )
    assert_untouched(wh, old)


def test_a_stage_folder_that_is_not_there_is_named(wh: Warehouse, old: pd.DataFrame) -> None:
    with pytest.raises(WarehouseError) as err:
        write(wh.io(stage_dir="/nonexistent/liq-stage"), kwery_frame("2026-03-02", n=2))
    assert str(err.value) == (
        "cannot stage the rows of kwery_liquidations in /nonexistent/liq-stage: No such file or "
        "directory; nothing was written (set the IO manager's stage_dir to a writable folder)"
    )
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
        match=r"^the warehouse IO manager writes pandas DataFrames or Arrow tables \(or an "
        r"iterable of them\) to kwery_liquidations, got dict$",
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


READ_ONLY_CHILD = textwrap.dedent(
    """
    import sys
    from liq_pipeline.warehouse import WarehouseError
    from liq_pipeline.warehouse.backends import make_backend
    try:
        make_backend("sqlite:///" + sys.argv[1]).ensure_tables()
    except WarehouseError as exc:
        print(exc)
    """
)


@pytest.mark.e2e
@pytest.mark.skipif(os.geteuid() == 0 and not shutil.which("setpriv"), reason="needs setpriv")
def test_a_read_only_sqlite_folder_is_named_not_called_out_of_memory() -> None:
    """The driver says "failed to allocate memory"; the message must say what is wrong."""
    with tempfile.TemporaryDirectory() as top:
        os.chmod(top, 0o755)  # noqa: S103  # nobody must reach the folder inside
        folder = Path(top) / "read-only"
        folder.mkdir(mode=0o555)
        # root ignores file permissions: run the check as nobody, as a real user would be
        as_user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        result = subprocess.run(
            [*(as_user if os.geteuid() == 0 else []), sys.executable, "-c", READ_ONLY_CHILD,
             str(folder / "warehouse.sqlite")],
            cwd=REPO, capture_output=True, text=True, timeout=60,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )  # fmt: skip
    assert result.stdout.strip() == (
        f"the SQLite warehouse folder {folder} is not writable (permission denied or a read-only "
        "file system); point LIQ_WAREHOUSE_URL at a writable place"
    ), result.stderr
