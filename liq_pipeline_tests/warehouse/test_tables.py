"""DDL, storage formats, identifiers, URLs and secrets."""

import datetime as dt
import logging

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import sqlalchemy as sa

from liq_pipeline.warehouse import (
    TABLES,
    WarehouseError,
    WarehouseIOManager,
    WarehouseResource,
    warehouse_metadata,
)
from liq_pipeline.warehouse.backends import make_backend
from liq_pipeline.warehouse.frames import format_timestamps
from liq_pipeline.warehouse.tables import Column, TableSpec
from liq_pipeline_tests.warehouse.helpers import (
    DAILY,
    OKX_LONG,
    Warehouse,
    kwery_frame,
    read,
    value_frame,
    write,
)

KWERY_COLUMNS = [
    "timestamp",
    "symbol",
    "source",
    "side",
    "quantity",
    "price",
    "avg_price",
    "usd_value",
]
SENTINEL = "S3ntinel-pw-7f1c"


def columns(wh: Warehouse, table: str) -> list[tuple[str, str]]:
    if wh.kind == "sqlite":
        return [(r[1], r[2]) for r in wh.rows(f"PRAGMA table_info({table})")]
    return wh.rows(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = :t ORDER BY ordinal_position",
        t=table,
    )


def test_tables_have_real_types_and_indexes(wh: Warehouse) -> None:
    write(wh.io(), kwery_frame("2026-03-02", n=1))  # creates every table
    ts, text, real, date, big = (
        ("TIMESTAMP", "TEXT", "REAL", "DATE", "BIGINT")
        if wh.kind == "sqlite"
        else ("timestamp with time zone", "text", "double precision", "date", "bigint")
    )
    integer = "INTEGER" if wh.kind == "sqlite" else "bigint"
    kinds = {"timestamp": ts, "text": text, "float": real, "date": date, "integer": integer}
    for spec in TABLES.values():
        expected = [(c.name, kinds[c.kind]) for c in spec.columns]
        assert columns(wh, spec.name) == expected  # the interface columns (a view for kwery)
    assert columns(wh, "_kwery_liquidations") == [*columns(wh, "kwery_liquidations"), ("_seq", big)]
    assert [c for c, _ in columns(wh, "kwery_liquidations")] == KWERY_COLUMNS
    if wh.kind == "sqlite":
        indexes = wh.rows(
            "SELECT name, sql FROM sqlite_master "
            "WHERE type = 'index' AND tbl_name = '_kwery_liquidations'"
        )
        assert indexes == [
            (
                "ix_kwery_liquidations_timestamp_symbol",
                "CREATE INDEX ix_kwery_liquidations_timestamp_symbol "
                "ON _kwery_liquidations (timestamp, symbol)",
            )
        ]
        assert (
            wh.scalar(f"SELECT count(*) FROM pragma_index_list('{OKX_LONG}') WHERE origin = 'pk'")
            == 1
        )
        assert wh.scalar("PRAGMA journal_mode") == "wal"
        assert (
            wh.scalar(
                "SELECT count(*) FROM pragma_table_info('_kwery_liquidations') "
                'WHERE "notnull" = 0'
            )
            == 0
        )
    else:
        assert wh.rows(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
            "AND tablename = '_kwery_liquidations'"
        ) == [
            (
                "ix_kwery_liquidations_timestamp_symbol",
                "CREATE INDEX ix_kwery_liquidations_timestamp_symbol ON "
                f"{wh.scalar('SELECT current_schema()')}._kwery_liquidations "
                'USING btree ("timestamp", symbol)',
            )
        ]
        assert (
            wh.scalar(
                "SELECT count(*) FROM information_schema.table_constraints WHERE table_schema = "
                "current_schema() AND table_name = :t AND constraint_type = 'PRIMARY KEY'",
                t=OKX_LONG,
            )
            == 1
        )
        assert (
            wh.scalar(
                "SELECT count(*) FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND is_nullable = 'YES' "
                "AND table_name <> 'kwery_liquidations'"  # a view's columns report YES
            )
            == 0
        )


def test_analysts_query_in_plain_sql(wh: Warehouse) -> None:
    io = wh.io()
    frame = kwery_frame("2026-03-02", n=4)
    frame.loc[0:2, "timestamp"] = pd.Timestamp("2026-03-02T00:00:00.007Z")
    write(io, frame)
    write(io, value_frame(["2026-03-02"], [-3.25]), asset=OKX_LONG, metadata=None)
    in_day = (
        "SELECT count(*) FROM kwery_liquidations WHERE symbol = 'BTC' "
        "AND timestamp >= '2026-03-02' AND timestamp < '2026-03-03'"
    )
    if wh.kind == "sqlite":
        # Readable, fixed-width ISO-8601 UTC text: string order is time order.
        assert wh.rows(
            "SELECT timestamp, typeof(timestamp), typeof(quantity) FROM kwery_liquidations "
            "ORDER BY timestamp LIMIT 1"
        ) == [("2026-03-02 00:00:00.007+00:00", "text", "real")]
        assert wh.rows(f"SELECT day, value FROM {OKX_LONG}") == [("2026-03-02", -3.25)]
        assert wh.scalar("SELECT date(min(timestamp)) FROM kwery_liquidations") == "2026-03-02"
    else:
        assert wh.scalar("SELECT min(timestamp) FROM kwery_liquidations") == dt.datetime(
            2026, 3, 2, 0, 0, 0, 7000, tzinfo=dt.UTC
        )
        assert wh.rows(f"SELECT day, value FROM {OKX_LONG}") == [(dt.date(2026, 3, 2), -3.25)]
    assert wh.scalar(in_day) == 4


def test_format_timestamps_matches_arrow_strftime() -> None:
    ms = np.array(
        [0, -1, 951_782_400_000, 1_772_409_599_999, 253_402_300_799_999, -62_135_596_800_000],
        dtype=np.int64,
    )
    rng = np.random.default_rng(0)
    ms = np.concatenate([ms, rng.integers(-(10**12), 4 * 10**12, 2000)])
    arr = pa.array(ms, pa.timestamp("ms", tz="UTC"))
    expected = pc.binary_join_element_wise(pc.strftime(arr, "%Y-%m-%d %H:%M:%S"), "+00:00", "")
    assert format_timestamps(arr).to_pylist() == expected.to_pylist()
    assert format_timestamps(arr[:3]).to_pylist() == [
        "1970-01-01 00:00:00.000+00:00",
        "1969-12-31 23:59:59.999+00:00",
        "2000-02-29 00:00:00.000+00:00",
    ]
    assert format_timestamps(arr[:0]).to_pylist() == []


def test_identifiers_are_validated(tmp_path: object) -> None:
    with pytest.raises(WarehouseError) as err:
        warehouse_metadata("kwery_liquidations; drop table x")
    assert str(err.value).startswith(
        "unknown warehouse table 'kwery_liquidations; drop table x'; "
        "known tables: bitcoin_liquidations_binance_long, "
    )
    with pytest.raises(
        WarehouseError,
        match=r"^table kwery_liquidations cannot be sliced by 'side' \(slice columns: symbol\)$",
    ):
        warehouse_metadata("kwery_liquidations", side="long")
    with pytest.raises(
        WarehouseError,
        match=r"^table daily_liquidation_totals cannot be sliced by 'symbol' "
        r"\(slice columns: none\)$",
    ):
        warehouse_metadata("daily_liquidation_totals", symbol="BTC")
    with pytest.raises(WarehouseError, match=r"^invalid table name 'Bad-Name': must match"):
        TableSpec("Bad-Name", (Column("day", "date", "UTC day"),), "day")
    io = WarehouseIOManager(url=f"sqlite:///{tmp_path}/w.sqlite")
    frame = value_frame(["2026-03-02"], [1.0])
    with pytest.raises(
        WarehouseError, match=r"^invalid table name 'x\"y': must match \^\[a-z_\]\[a-z0-9_\]\*\$$"
    ):
        write(io, frame, asset='x"y', metadata=None)
    with pytest.raises(
        WarehouseError, match=r"^unknown warehouse table 'some_asset'; known tables: "
    ):
        write(io, frame, asset="some_asset", metadata=None)
    with pytest.raises(WarehouseError, match=r"^invalid db_schema 'a;b': must match"):
        write(
            WarehouseIOManager(url="postgresql://u@localhost/db", db_schema="a;b"),
            frame,
            asset=OKX_LONG,
            metadata=None,
        )


def test_urls() -> None:
    backend = make_backend("postgresql://u:p@localhost:5433/db?sslmode=disable", None, 1.0)
    assert backend.url.drivername == "postgresql+psycopg2"  # type: ignore[attr-defined]
    assert backend.adbc_uri == "postgresql://u:p@localhost:5433/db?sslmode=disable"  # type: ignore[attr-defined]
    for url, message in [
        (
            "mysql://u@h/db",
            "unsupported warehouse database 'mysql': use sqlite:///path or postgresql+psycopg2://user@host:5432/db",
        ),
        (
            "sqlite://",
            "the SQLite warehouse must be a file path (sqlite:////abs/path.sqlite); an "
            "in-memory database is not shared between a write and a later read",
        ),
        (
            "not a url",
            "the warehouse URL (LIQ_WAREHOUSE_URL) is not a valid SQLAlchemy URL: use "
            "sqlite:////abs/path.sqlite or postgresql+psycopg2://user:password@host:5432/db",
        ),
        (
            "postgresql+psycopg2://u:x@127.0.0.1:notaport/db",
            "the warehouse URL (LIQ_WAREHOUSE_URL) has a port that is not a number",
        ),
    ]:
        with pytest.raises(WarehouseError) as err:
            make_backend(url, None, 1.0)
        assert str(err.value) == message


def test_no_secret_in_repr_metadata_logs_or_errors(
    pg_wh: Warehouse, caplog: pytest.LogCaptureFixture
) -> None:
    url = sa.make_url(pg_wh.url).set(password=SENTINEL).render_as_string(hide_password=False)
    assert SENTINEL in url  # trust auth ignores it, the IO manager still has to carry it
    io = WarehouseIOManager(url=url)
    assert SENTINEL not in repr(io) and SENTINEL not in str(io)
    assert SENTINEL not in repr(WarehouseResource(url=url))

    @dg.asset(name=OKX_LONG, partitions_def=DAILY, io_manager_key="warehouse")
    def okx(context: dg.AssetExecutionContext) -> pd.DataFrame:
        return value_frame([context.partition_key], [1.0])

    caplog.set_level(logging.DEBUG)
    result = dg.materialize([okx], resources={"warehouse": io}, partition_key="2026-03-02")
    assert result.success
    assert "***" not in caplog.text and SENTINEL not in caplog.text
    assert all(SENTINEL not in str(event) for event in result.all_events)
    pd.testing.assert_frame_equal(
        read(io, asset=OKX_LONG, metadata=None), value_frame(["2026-03-02"], [1.0])
    )

    # A database error (duplicate day across frames) and a connection error.
    frames = [value_frame(["2026-03-02"], [1.0])] * 2
    with pytest.raises(WarehouseError) as err:
        write(io, frames, asset=OKX_LONG, metadata=None)
    assert SENTINEL not in str(err.value)
    dead = sa.make_url(url).set(port=1).render_as_string(hide_password=False)
    with pytest.raises(WarehouseError) as err:
        io = WarehouseIOManager(url=dead, retry_budget_seconds=0)
        write(io, frames[0], asset=OKX_LONG, metadata=None)
    assert str(err.value).startswith("cannot connect to the PostgreSQL warehouse: ")
    assert str(err.value).endswith(
        "(connecting to the PostgreSQL warehouse: 1 attempt in 0 s; the retry budget of 0 s is "
        "used up, raise retry_budget_seconds to wait longer)"
    )
    assert SENTINEL not in str(err.value) and SENTINEL not in repr(err.value)


def test_password_is_redacted_from_driver_messages() -> None:
    backend = make_backend(f"postgresql://u:{SENTINEL}@localhost/db", None, 1.0)
    assert (
        backend.redact(f"failed: postgresql://u:{SENTINEL}@localhost/db")
        == "failed: postgresql://u:***@localhost/db"
    )


def test_warehouse_resource_reads_and_sums(wh: Warehouse) -> None:
    io = wh.io()
    days = [kwery_frame(f"2026-03-0{d}", n=4, seed=d) for d in (2, 3)]
    for frame in days:
        write(io, frame, frame["timestamp"].dt.strftime("%Y-%m-%d")[0])
    resource = WarehouseResource(url=wh.url)
    start, end = dt.datetime(2026, 3, 2, tzinfo=dt.UTC), dt.datetime(2026, 3, 4, tzinfo=dt.UTC)
    both = pd.concat(days, ignore_index=True)
    pd.testing.assert_frame_equal(
        resource.read("kwery_liquidations", start, end, symbol="BTC"), both
    )
    sums = resource.kwery_daily_usd_by_side("BTC", start, end)
    expected = (
        both.assign(
            day=both["timestamp"].dt.tz_localize(None).dt.floor("D").astype("datetime64[s]")
        )
        .groupby(["day", "side"], as_index=False)["usd_value"]
        .sum()
    )
    pd.testing.assert_frame_equal(sums, expected)
    assert list(sums.columns) == ["day", "side", "usd_value"]
    assert len(resource.kwery_daily_usd_by_side("ETH", start, end)) == 0


def test_a_failing_read_or_sum_says_what_failed(wh: Warehouse) -> None:
    frame = kwery_frame("2026-03-02", n=4)
    write(wh.io(), frame, "2026-03-02")
    # Tables are created once per process, so the reads below find the table gone.
    wh.execute('DROP TABLE "_kwery_liquidations"' + (" CASCADE" if wh.kind == "postgres" else ""))
    resource = WarehouseResource(url=wh.url)
    start, end = dt.datetime(2026, 3, 2, tzinfo=dt.UTC), dt.datetime(2026, 3, 3, tzinfo=dt.UTC)
    with pytest.raises(WarehouseError) as err:
        resource.read("kwery_liquidations", start, end, symbol="BTC")
    assert str(err.value).startswith(
        "read of kwery_liquidations [2026-03-02T00:00:00+00:00, 2026-03-03T00:00:00+00:00) failed: "
    )
    assert "_kwery_liquidations" in str(err.value).removeprefix("read of kwery_liquidations")
    with pytest.raises(WarehouseError) as err:
        resource.kwery_daily_usd_by_side("BTC", start, end)
    assert str(err.value).startswith("daily sums of kwery_liquidations failed: ")
    assert "_kwery_liquidations" in str(err.value).removeprefix("daily sums of kwery_liquidations")


def test_every_column_is_described_in_the_dagster_column_schema():
    for spec in TABLES.values():
        schema = spec.dagster_schema()
        assert [c.name for c in schema.columns] == list(spec.column_names)
        described = {c.name: c.description for c in schema.columns}
        assert all(described.values()), f"{spec.name}: {described}"
    totals = {c.name: c.description for c in TABLES["daily_liquidation_totals"].columns}
    assert totals["okx_short_usd"] == "short liquidations on okx, USD (>= 0)"
    short_metric = TABLES["bitcoin_liquidations_bybit_short"].column("value").description
    assert short_metric == "USD liquidated that day, as published: shorts negative"
