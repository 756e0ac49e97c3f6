"""Concurrent writers: same rows -> exactly one copy; different rows -> both succeed."""

import datetime as dt

import pandas as pd
import pytest
import sqlalchemy as sa

from liq_pipeline.warehouse import TABLES, FrameStream, WarehouseError
from liq_pipeline.warehouse.backends import make_backend, pg_lock_plan
from liq_pipeline.warehouse.tables import Window
from liq_pipeline_tests.warehouse.helpers import (
    ETH,
    Gate,
    SwapGate,
    Warehouse,
    Worker,
    concat,
    kwery_frame,
    read,
    wait_until,
    write,
)

UTC = dt.UTC


def write_lock_is_held(wh: Warehouse, day: dt.datetime) -> bool:
    """Could another writer of `day`'s rows start now? (tries without waiting)"""
    if wh.kind == "sqlite":
        return wh.write_lock_is_held()
    scope = make_backend(wh.url, None, 1.0).lock_scope(TABLES["kwery_liquidations"])  # type: ignore[attr-defined]
    month_key = pg_lock_plan(scope, Window(day, day + dt.timedelta(days=1)))[1][0]
    with wh.engine.connect() as conn:
        got = conn.execute(sa.select(sa.func.pg_try_advisory_xact_lock(month_key))).scalar()
        conn.rollback()
    return not got


def wait_for_blocked_writer(wh: Warehouse) -> None:
    """PostgreSQL shows a writer waiting for an advisory lock; SQLite's busy wait is invisible."""
    if wh.kind == "postgres":
        wait_until(
            lambda: (
                wh.scalar(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                )
                == 1
            ),
            "the second writer waits for the lock",
        )


def test_a_slow_producer_holds_no_lock_and_blocks_no_other_writer(wh: Warehouse) -> None:
    io = wh.io()
    old = kwery_frame("2026-03-02", n=3, seed=1)
    write(io, old)
    slow = Gate(kwery_frame("2026-03-02", n=4, seed=2), kwery_frame("2026-03-02", n=4, seed=3))
    first = Worker(lambda: write(io, FrameStream(slow)))
    assert slow.paused.wait(30)  # the API is slow: half of the first writer's rows are staged
    assert not write_lock_is_held(wh, dt.datetime(2026, 3, 2, tzinfo=UTC))
    pd.testing.assert_frame_equal(read(io), old)  # nothing of the first write is visible yet
    other = kwery_frame("2026-03-02", n=5, seed=4)
    write(io, other)  # a writer of the very same rows goes ahead
    pd.testing.assert_frame_equal(read(io), other)
    slow.release.set()
    assert first.finish()["run_rows"] == 8  # type: ignore[index]
    last_to_commit = concat(slow.first, *slow.rest).sort_values("timestamp", kind="stable")
    pd.testing.assert_frame_equal(read(io), last_to_commit.reset_index(drop=True))
    assert wh.scalar("SELECT count(*) FROM kwery_liquidations") == 8


def test_same_partition_ends_with_exactly_one_copy(
    wh: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    io = wh.io()
    write(io, kwery_frame("2026-03-02", n=3, seed=1))
    gate = SwapGate(monkeypatch)
    first_frames = [kwery_frame("2026-03-02", n=4, seed=2), kwery_frame("2026-03-02", n=4, seed=3)]
    first = Worker(lambda: write(io, first_frames))
    assert gate.paused.wait(30)
    assert write_lock_is_held(wh, dt.datetime(2026, 3, 2, tzinfo=UTC))
    second_frame = kwery_frame("2026-03-02", n=5, seed=4)
    second = Worker(lambda: write(io, second_frame))
    wait_for_blocked_writer(wh)
    gate.release.set()
    assert first.finish()["run_rows"] == 8  # type: ignore[index]
    assert second.finish()["run_rows"] == 5  # type: ignore[index]
    # The second writer waited for the first to commit, then replaced its rows.
    pd.testing.assert_frame_equal(read(io), second_frame)
    assert wh.scalar("SELECT count(*) FROM kwery_liquidations") == 5


def test_unsynchronized_writers_of_one_partition(wh: Warehouse) -> None:
    io = wh.io()
    frame = kwery_frame("2026-03-02", n=50, seed=5)
    workers = [Worker(lambda: [write(io, frame) for _ in range(4)]) for _ in range(3)]
    for worker in workers:
        worker.finish()
    pd.testing.assert_frame_equal(read(io), frame)


def test_overlapping_windows_of_different_lengths(
    wh: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    io = wh.io()
    days = {d: kwery_frame(f"2026-03-0{d}", n=d + 1, seed=d) for d in (1, 2, 3)}
    gate = SwapGate(monkeypatch)
    three_days = Worker(lambda: write(io, list(days.values()), "2026-03-01", "2026-03-03"))
    assert gate.paused.wait(30)
    day2 = kwery_frame("2026-03-02", n=7, seed=9)
    one_day = Worker(lambda: write(io, day2, "2026-03-02"))
    wait_for_blocked_writer(wh)
    gate.release.set()
    three_days.finish()
    one_day.finish()
    pd.testing.assert_frame_equal(
        read(io, "2026-03-01", "2026-03-03"), concat(days[1], day2, days[3])
    )


def test_different_partitions_both_succeed(wh: Warehouse, monkeypatch: pytest.MonkeyPatch) -> None:
    io = wh.io()
    march = SwapGate(monkeypatch)
    march_frames = [kwery_frame("2026-03-02", n=3, seed=1), kwery_frame("2026-03-02", n=3, seed=2)]
    first = Worker(lambda: write(io, march_frames))
    assert march.paused.wait(30)
    april = kwery_frame("2026-04-02", n=4, seed=3)
    eth = kwery_frame("2026-03-03", "ETH", n=2, seed=4)
    if wh.kind == "postgres":
        # Another month is not blocked by the open March write at all.
        assert not write_lock_is_held(wh, dt.datetime(2026, 4, 2, tzinfo=UTC))
        Worker(lambda: write(io, april, "2026-04-02")).finish()
        second = None
    else:  # SQLite has one writer at a time: the second waits, then succeeds
        second = Worker(lambda: write(io, april, "2026-04-02"))
    march.release.set()
    first.finish()
    if second is not None:
        second.finish()
    write(io, eth, "2026-03-03", asset="kwery_liquidations_eth", metadata=ETH)
    # Rows of one day from two frames: time order, ties in insertion order.
    expected = concat(*march_frames).sort_values("timestamp", kind="stable")
    pd.testing.assert_frame_equal(read(io), expected.reset_index(drop=True))
    pd.testing.assert_frame_equal(read(io, "2026-04-02"), april)
    assert wh.scalar("SELECT count(*) FROM kwery_liquidations") == 12


def test_lock_plan() -> None:
    window = Window(dt.datetime(2026, 3, 30, tzinfo=UTC), dt.datetime(2026, 4, 2, tzinfo=UTC))
    plan = pg_lock_plan("t", window)
    assert [exclusive for _, exclusive in plan] == [False, True, True]  # table shared, 2 months
    april = pg_lock_plan(
        "t", Window(dt.datetime(2026, 4, 1, tzinfo=UTC), dt.datetime(2026, 4, 2, tzinfo=UTC))
    )
    assert april[0] == plan[0] and april[1] == plan[2]  # overlapping windows share a month key
    may = pg_lock_plan(
        "t", Window(dt.datetime(2026, 5, 1, tzinfo=UTC), dt.datetime(2026, 6, 1, tzinfo=UTC))
    )
    assert len(may) == 2 and may[1] not in plan  # [May 1, Jun 1) is May only
    assert pg_lock_plan("t", Window()) == [(plan[0][0], True)]  # whole table: exclusive
    assert pg_lock_plan("u", window)[0] != plan[0]


@pytest.mark.parametrize("timeout", [0.2])
def test_lock_timeout_gives_a_clear_error(
    wh: Warehouse, monkeypatch: pytest.MonkeyPatch, timeout: float
) -> None:
    io = wh.io()
    gate = SwapGate(monkeypatch)
    first = Worker(lambda: write(io, kwery_frame("2026-03-02", n=3, seed=1)))
    assert gate.paused.wait(30)
    try:
        with pytest.raises(WarehouseError) as err:
            write(wh.io(lock_timeout_seconds=timeout), kwery_frame("2026-03-02", n=1))
    finally:
        gate.release.set()
        first.finish()
    where = f"{wh.path} (kwery_liquidations " if wh.kind == "sqlite" else "kwery_liquidations "
    assert str(err.value).startswith(f"gave up after {timeout:g} s waiting for another ")
    assert where + "[2026-03-02T00:00:00+00:00, 2026-03-03T00:00:00+00:00)" in str(err.value)
