"""The warehouse tables of docs/INTERFACE.md, declared once.

Every other module (DDL, frame validation, reads, asset metadata) derives from `TABLES`.

Kwery events can legitimately repeat exactly, so `kwery_liquidations` has no natural key. To give
`load_input` a stable order within a millisecond (insertion order, as the API returned the rows)
the rows live in the storage table `_kwery_liquidations`, which adds one internal `_seq` column
(the row's position within the write that produced it), and `kwery_liquidations` is a view with
exactly the interface's columns, which analysts query.
"""

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import dagster as dg
import sqlalchemy as sa

from liq_pipeline.contract import (
    BARS_TABLE,
    CASCADES_TABLE,
    EXCHANGES,
    KWERY_TABLE,
    NEWHEDGE_METRICS,
    SIDES,
    TOTALS_TABLE,
)
from liq_pipeline.warehouse.errors import WarehouseError

ColumnKind = Literal["timestamp", "date", "float", "integer", "text"]

IDENTIFIER_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
SEQ_COLUMN = "_seq"

# Keys of the asset definition metadata read by the IO manager (built by `warehouse_metadata`).
META_TABLE = "warehouse/table"
META_SLICE = "warehouse/slice"

_PANDAS_DTYPE: dict[ColumnKind, str] = {
    "timestamp": "datetime64[ms, UTC]",
    "date": "datetime64[s]",
    "float": "float64",
    "integer": "int64",
    "text": "str",
}


def validate_identifier(name: object, what: str = "identifier") -> str:
    """Return `name` if it may be used as an SQL identifier, else raise a WarehouseError."""
    if not isinstance(name, str) or not IDENTIFIER_RE.fullmatch(name):
        raise WarehouseError(f"invalid {what} {name!r}: must match ^[a-z_][a-z0-9_]*$")
    return name


@dataclass(frozen=True)
class Column:
    name: str
    kind: ColumnKind
    # Shown in the Dagster catalog (column schema) and docs/INTERFACE.md: unit, time zone, sign.
    description: str

    @property
    def pandas_dtype(self) -> str:
        return _PANDAS_DTYPE[self.kind]


@dataclass(frozen=True)
class TableSpec:
    """One warehouse table: its columns, time column, allowed slice columns and keys."""

    name: str
    columns: tuple[Column, ...]
    time_column: str
    slice_columns: tuple[str, ...] = ()
    # One row per value of the time column (the daily tables): a primary key on it.
    unique_time: bool = False
    # No natural key: store an internal `_seq` in `_<name>` and expose `name` as a view.
    ordered: bool = False
    # Secondary index (the primary key covers unique_time tables).
    index: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        validate_identifier(self.name, "table name")
        names = [validate_identifier(c.name, "column name") for c in self.columns]
        if len(set(names)) != len(names):
            raise WarehouseError(f"table {self.name} declares a column twice")
        for col in (self.time_column, *self.slice_columns, *self.index):
            if col not in names:
                raise WarehouseError(f"table {self.name} has no column {col}")
        if self.column(self.time_column).kind not in ("timestamp", "date"):
            raise WarehouseError(f"time column {self.name}.{self.time_column} must be a time")
        for col in self.slice_columns:
            if self.column(col).kind != "text":
                raise WarehouseError(f"slice column {self.name}.{col} must be text")

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def storage_name(self) -> str:
        """The physical table the rows are written to (the view's base table if ordered)."""
        return f"_{self.name}" if self.ordered else self.name

    @property
    def time_kind(self) -> ColumnKind:
        return self.column(self.time_column).kind

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def pandas_dtypes(self) -> dict[str, str]:
        return {c.name: c.pandas_dtype for c in self.columns}

    def dagster_schema(self) -> dg.TableSchema:
        return dg.TableSchema(
            columns=[
                dg.TableColumn(name=c.name, type=c.pandas_dtype, description=c.description)
                for c in self.columns
            ]
        )


@dataclass(frozen=True)
class Window:
    """The rows a run owns: [start, end) in UTC; both None = every row (unpartitioned asset)."""

    start: dt.datetime | None = None
    end: dt.datetime | None = None

    def __post_init__(self) -> None:
        if (self.start is None) != (self.end is None):
            raise WarehouseError("a window needs both a start and an end")
        for t in (self.start, self.end):
            if t is not None and t.tzinfo is None:
                raise WarehouseError(f"window bound {t} must be timezone-aware")
        if self.start is not None and self.end is not None:
            start, end = self.start.astimezone(dt.UTC), self.end.astimezone(dt.UTC)
            object.__setattr__(self, "start", start)
            object.__setattr__(self, "end", end)
            if start >= end:
                raise WarehouseError(f"empty window {self}")

    @property
    def bounded(self) -> bool:
        return self.start is not None

    def bounds(self, kind: ColumnKind) -> tuple[dt.datetime, dt.datetime] | tuple[dt.date, dt.date]:
        """The window in the time column's own type (dates for date columns)."""
        assert self.start is not None and self.end is not None
        if kind == "timestamp":
            return self.start, self.end
        for t in (self.start, self.end):
            if t.timetz() != dt.time(0, tzinfo=dt.UTC):
                raise WarehouseError(f"window {self} is not aligned to UTC days; table keys days")
        return self.start.date(), self.end.date()

    def __str__(self) -> str:
        if self.start is None or self.end is None:
            return "all rows"
        return f"[{self.start.isoformat()}, {self.end.isoformat()})"


_SYMBOL = Column("symbol", "text", "Kwery symbol, the base asset (e.g. BTC)")
_SIDE = Column("side", "text", "long (a long position closed by force) or short")
# What the analytics tables aggregate per (symbol, side) over a minute or a cascade.
_AGGREGATES = (
    _SYMBOL,
    _SIDE,
    Column("events", "integer", "number of liquidation events"),
    Column("quantity", "float", "sum of the events' quantity, in the base asset"),
    Column("usd_value", "float", "sum of the events' usd_value, USD"),
    Column("max_usd_value", "float", "largest single event's usd_value, USD"),
)

KWERY_LIQUIDATIONS = TableSpec(
    name=KWERY_TABLE,
    columns=(
        Column("timestamp", "timestamp", "time of the forced liquidation, UTC, ms precision"),
        _SYMBOL,
        Column("source", "text", "where the event comes from: binance_futures"),
        _SIDE,
        Column("quantity", "float", "liquidated quantity, in the base asset (> 0)"),
        Column("price", "float", "bankruptcy price that triggered the liquidation, USD (> 0)"),
        Column("avg_price", "float", "average fill price, USD (> 0)"),
        Column("usd_value", "float", "liquidated notional, USD (> 0), as the API sent it"),
    ),
    time_column="timestamp",
    slice_columns=("symbol",),
    ordered=True,
    # Measured on 1M rows, both backends: (timestamp, symbol) costs no more on COPY/ingest than
    # (timestamp) alone (time-ordered rows append at the right edge of the btree), keeps the
    # partition delete (window + symbol) ~4x faster than a timestamp-only index on PostgreSQL,
    # and serves analysts' per-day queries over all symbols, which (symbol, timestamp) does not.
    # Two indexes (timestamp; symbol) were the slowest option to write on both.
    index=("timestamp", "symbol"),
)

_DAY = Column("day", "date", "UTC day")

NEWHEDGE_TABLES = tuple(
    TableSpec(
        name=metric,
        columns=(
            _DAY,
            Column(
                "value",
                "float",
                "USD liquidated that day, as published: "
                + ("long liquidations, >= 0" if metric.endswith("_long") else "shorts negative"),
            ),
        ),
        time_column="day",
        unique_time=True,
    )
    for metric in NEWHEDGE_METRICS
)

DAILY_LIQUIDATION_TOTALS = TableSpec(
    name=TOTALS_TABLE,
    columns=(
        _DAY,
        *(
            Column(f"{e}_{s}_usd", "float", f"{s} liquidations on {e}, USD (>= 0)")
            for e in EXCHANGES
            for s in SIDES
        ),
        Column("long_usd", "float", "long liquidations over the four exchanges, USD (>= 0)"),
        Column("short_usd", "float", "short liquidations over the four exchanges, USD (>= 0)"),
        Column("total_usd", "float", "long_usd + short_usd, USD"),
    ),
    time_column="day",
    unique_time=True,
)

# Analytics derived from the stored events (assets/analytics.py), sliced by symbol like the events.
# Both are small (at most 2 x 1,440 bars per symbol and day), so one (time, symbol) index serves
# the partition delete and analysts' time-range queries.
KWERY_LIQUIDATION_BARS = TableSpec(
    name=BARS_TABLE,
    columns=(
        Column("bucket_start", "timestamp", "start of the UTC minute, ms precision"),
        *_AGGREGATES,
    ),
    time_column="bucket_start",
    slice_columns=("symbol",),
    index=("bucket_start", "symbol"),
)

KWERY_LIQUIDATION_CASCADES = TableSpec(
    name=CASCADES_TABLE,
    columns=(
        Column("start", "timestamp", "first event of the cascade, UTC"),
        Column("end", "timestamp", "last event of the cascade, UTC"),
        *_AGGREGATES,
        Column("first_avg_price", "float", "avg_price of the first event, USD"),
        Column("last_avg_price", "float", "avg_price of the last event, USD"),
        Column("price_move_pct", "float", "(last_avg_price / first_avg_price - 1) x 100, %"),
    ),
    time_column="start",
    slice_columns=("symbol",),
    index=("start", "symbol"),
)

TABLES: Mapping[str, TableSpec] = {
    t.name: t
    for t in (
        KWERY_LIQUIDATIONS,
        *NEWHEDGE_TABLES,
        DAILY_LIQUIDATION_TOTALS,
        KWERY_LIQUIDATION_BARS,
        KWERY_LIQUIDATION_CASCADES,
    )
}


def get_table(name: str) -> TableSpec:
    try:
        return TABLES[name]
    except KeyError:
        raise WarehouseError(
            f"unknown warehouse table {name!r}; known tables: {', '.join(sorted(TABLES))}"
        ) from None


def validate_slice(spec: TableSpec, slice_: Mapping[str, object]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in slice_.items():
        if key not in spec.slice_columns:
            allowed = ", ".join(spec.slice_columns) or "none"
            raise WarehouseError(
                f"table {spec.name} cannot be sliced by {key!r} (slice columns: {allowed})"
            )
        if not isinstance(value, str) or not value:
            raise WarehouseError(f"slice value for {spec.name}.{key} must be a non-empty string")
        out[key] = value
    return out


def warehouse_metadata(table: str, **slice: str) -> dict[str, Any]:
    """Asset definition metadata that routes an asset's output to a warehouse table.

    `warehouse_metadata("kwery_liquidations", symbol="BTC")` makes the asset own the BTC rows of
    kwery_liquidations; re-materializing a partition replaces only those rows. Assets without this
    metadata write to the table named like the last component of their asset key.
    """
    spec = get_table(table)
    return {
        META_TABLE: spec.name,
        META_SLICE: validate_slice(spec, slice),
        "dagster/table_name": spec.name,
        "dagster/column_schema": spec.dagster_schema(),
    }


# --- SQLAlchemy DDL ---------------------------------------------------------------------------

# SQLite: TIMESTAMP/DATE/REAL/INTEGER/TEXT declared types (times stored as fixed-width UTC
# ISO-8601 text, encoded by the SQLite backend in backends.py).
_SA_TYPES: dict[ColumnKind, Any] = {
    "timestamp": sa.TIMESTAMP(timezone=True),
    "date": sa.Date(),
    "float": sa.Double().with_variant(sa.REAL(), "sqlite"),
    "integer": sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
    "text": sa.Text(),
}


def build_metadata(schema: str | None) -> sa.MetaData:
    """SQLAlchemy tables (storage tables) for every spec, in `schema` (None = default)."""
    md = sa.MetaData(schema=schema)
    for spec in TABLES.values():
        cols: list[Any] = [
            sa.Column(
                c.name,
                _SA_TYPES[c.kind],
                nullable=False,
                primary_key=spec.unique_time and c.name == spec.time_column,
            )
            for c in spec.columns
        ]
        if spec.ordered:
            cols.append(sa.Column(SEQ_COLUMN, sa.BigInteger(), nullable=False))
        table = sa.Table(spec.storage_name, md, *cols)
        if spec.index:
            sa.Index(f"ix_{spec.name}_{'_'.join(spec.index)}", *(table.c[c] for c in spec.index))
    return md


def quote(name: str) -> str:
    """Double-quote a validated identifier (both dialects)."""
    return f'"{validate_identifier(name)}"'


def qualified(name: str, schema: str | None) -> str:
    return f"{quote(schema)}.{quote(name)}" if schema else quote(name)


def view_sql(spec: TableSpec, schema: str | None, dialect: str) -> str:
    cols = ", ".join(quote(c) for c in spec.column_names)
    base = qualified(spec.storage_name, schema)
    create = "CREATE OR REPLACE VIEW" if dialect == "postgresql" else "CREATE VIEW IF NOT EXISTS"
    return f"{create} {qualified(spec.name, schema)} AS SELECT {cols} FROM {base}"
