"""Frame validation and the pandas <-> Arrow conversions of the warehouse (no database code).

A frame is checked against its TableSpec by column *name* (never by position), dtype, nulls, the
run's time window and the asset's slice, then converted to the canonical Arrow schema
(timestamp[ms, UTC], date32, float64, string). The backends write canonical batches; reads come
back through `to_frame`, which restores exactly the dtypes of docs/INTERFACE.md.
"""

import datetime as dt
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from liq_pipeline.warehouse.errors import FrameError, WarehouseError
from liq_pipeline.warehouse.tables import SEQ_COLUMN, ColumnKind, TableSpec, Window

UTC = dt.UTC
# Rows per Arrow batch handed to the database: bounds the extra memory of a write
# (SQLite timestamp strings, COPY buffers) independently of the frame's size.
BATCH_ROWS = 65_536

_ARROW_TYPES: dict[ColumnKind, pa.DataType] = {
    "timestamp": pa.timestamp("ms", tz="UTC"),
    "date": pa.date32(),
    "float": pa.float64(),
    "integer": pa.int64(),
    "text": pa.string(),
}


def arrow_schema(spec: TableSpec, *, storage: bool = False) -> pa.Schema:
    """Canonical Arrow schema of `spec` (with the internal `_seq` column if `storage`)."""
    fields = [pa.field(c.name, _ARROW_TYPES[c.kind], nullable=False) for c in spec.columns]
    if storage and spec.ordered:
        fields.append(pa.field(SEQ_COLUMN, pa.int64(), nullable=False))
    return pa.schema(fields)


# --- validation + pandas -> canonical Arrow ----------------------------------------------------


def _dtype_ok(kind: ColumnKind, dtype: object) -> bool:
    if kind == "timestamp":
        return isinstance(dtype, pd.DatetimeTZDtype) and str(dtype.tz) == "UTC"
    if kind == "date":
        return isinstance(dtype, np.dtype) and dtype.kind == "M"
    if kind == "float":
        return dtype == np.dtype("float64")
    if kind == "integer":
        return dtype == np.dtype("int64")
    return isinstance(dtype, pd.StringDtype) or dtype == np.dtype("O")


def check_columns(spec: TableSpec, df: pd.DataFrame) -> None:
    """Raise FrameError naming every difference between df's columns/dtypes and the table's."""
    labels = [str(c) for c in df.columns]
    problems: list[str] = []
    dupes = sorted({c for c in labels if labels.count(c) > 1})
    if dupes:
        problems.append(f"duplicate columns: {', '.join(dupes)}")
    missing = [c for c in spec.column_names if c not in labels]
    if missing:
        problems.append(f"missing columns: {', '.join(missing)}")
    extra = [c for c in labels if c not in spec.column_names]
    if extra:
        problems.append(f"unexpected columns: {', '.join(extra)}")
    if not problems:
        empty = len(df) == 0
        for col in spec.columns:
            dtype = df[col.name].dtype
            # pd.DataFrame(columns=[...]) has object columns; with no values they cannot be wrong.
            if not (empty and dtype == np.dtype("O")) and not _dtype_ok(col.kind, dtype):
                problems.append(f"column {col.name} has dtype {dtype}, expected {col.pandas_dtype}")
    if problems:
        raise FrameError(f"frame does not match table {spec.name}: {'; '.join(problems)}")


def _cast_column(spec: TableSpec, name: str, arr: pa.ChunkedArray) -> pa.ChunkedArray:
    kind = spec.column(name).kind
    target = _ARROW_TYPES[kind]
    if kind == "date" and pa.types.is_timestamp(arr.type):
        days = pc.cast(arr, pa.date32())
        if pc.any(pc.not_equal(pc.cast(days, arr.type), arr)).as_py():
            raise FrameError(
                f"column {name} of the frame for {spec.name} has times other than midnight; "
                "it holds UTC days"
            )
        return days
    try:
        return pc.cast(arr, target)
    except pa.ArrowInvalid as exc:
        if kind == "timestamp":
            raise FrameError(
                f"column {name} of the frame for {spec.name} has sub-millisecond values; "
                "the table stores milliseconds"
            ) from None
        raise FrameError(f"column {name} of the frame for {spec.name}: {exc}") from None


def _canonical(spec: TableSpec, table: pa.Table) -> pa.Table:
    """An Arrow table with the canonical types of `spec`'s columns, in the table's order."""
    expected = arrow_schema(spec)
    got = {field.name: field.type for field in table.schema}
    problems = [
        f"{field.name} is {got.get(field.name, 'missing')}, expected {field.type}"
        for field in expected
        if got.get(field.name) != field.type
    ]
    extra = sorted(set(got) - set(expected.names))
    if extra:
        problems.append(f"unexpected columns: {', '.join(extra)}")
    if problems:
        raise FrameError(f"Arrow table does not match table {spec.name}: {'; '.join(problems)}")
    return pa.Table.from_arrays([table[name] for name in expected.names], schema=expected)


def _check_values(spec: TableSpec, table: pa.Table) -> None:
    """Every number finite and no NUL in any text: what every table of the warehouse promises
    (PostgreSQL cannot store a NUL, and an inf would poison every sum downstream)."""
    for col in spec.columns:
        arr = table[col.name]
        if col.kind == "float":
            bad = pc.invert(pc.is_finite(arr))
            what = "a value that is not a finite number"
        elif col.kind == "text":
            bad = pc.match_substring(arr, "\x00")
            what = "a NUL character"
        else:
            continue
        if pc.any(bad).as_py():
            i = pc.index(bad, True).as_py()
            at = table[spec.time_column][i]
            raise FrameError(
                f"row {i} of the frame for {spec.name} ({spec.time_column} {_show(at)}) has "
                f"{what} in {col.name}: {arr[i].as_py()!r:.60}; nothing was written"
            )


def _check_window(spec: TableSpec, table: pa.Table, window: Window) -> None:
    if not window.bounded or table.num_rows == 0:
        return
    col = table[spec.time_column]
    lo, hi = window.bounds(spec.time_kind)
    lo_s, hi_s = pa.scalar(lo, col.type), pa.scalar(hi, col.type)
    mm = pc.min_max(col)
    if pc.less(mm["min"], lo_s).as_py() or pc.greater_equal(mm["max"], hi_s).as_py():
        outside = pc.sum(pc.or_(pc.less(col, lo_s), pc.greater_equal(col, hi_s))).as_py()
        raise FrameError(
            f"{outside} of {table.num_rows} rows of the frame for {spec.name} have "
            f"{spec.time_column} outside the run's window {window} (frame spans "
            f"{_show(mm['min'])} .. {_show(mm['max'])}); nothing was written"
        )


def _show(value: pa.Scalar) -> str:
    v = value.as_py()
    return v.isoformat(sep=" ") if isinstance(v, dt.datetime) else str(v)


def _check_slice(spec: TableSpec, table: pa.Table, slice_: Mapping[str, str]) -> None:
    for name, value in slice_.items():
        col = table[name]
        wrong = pc.not_equal(col, pa.scalar(value, pa.string()))
        n_wrong = pc.sum(wrong).as_py() or 0
        if n_wrong:
            found = sorted(pc.unique(pc.filter(col, wrong)).to_pylist())[:5]
            raise FrameError(
                f"{n_wrong} rows of the frame for {spec.name} have {name} other than {value!r} "
                f"(found {', '.join(map(repr, found))}); nothing was written"
            )


def _check_unique_time(spec: TableSpec, table: pa.Table) -> None:
    col = table[spec.time_column]
    if pc.count_distinct(col).as_py() != table.num_rows:
        counts = pc.value_counts(col).flatten()
        dupes = pc.filter(counts[0], pc.greater(counts[1], 1)).to_pylist()
        shown = ", ".join(str(d) for d in sorted(dupes)[:5])
        raise FrameError(
            f"the frame for {spec.name} has {spec.time_column} values more than once: {shown}"
        )


def frame_to_arrow(
    spec: TableSpec, df: pd.DataFrame | pa.Table, window: Window, slice_: Mapping[str, str]
) -> pa.Table:
    """Validate `df` for a write of (window, slice) to `spec`; return it as canonical Arrow.

    `df` is a pandas frame with the table's dtypes, or an Arrow table with exactly its canonical
    Arrow types (what a producer that parses straight into Arrow hands over, unconverted).
    """
    if isinstance(df, pa.Table):
        table = _canonical(spec, df)
    elif isinstance(df, pd.DataFrame):
        check_columns(spec, df)
        try:
            raw = pa.Table.from_pandas(df[list(spec.column_names)], preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise FrameError(f"frame for {spec.name} cannot be converted: {exc}") from None
        arrays = [_cast_column(spec, name, raw[name]) for name in spec.column_names]
        table = pa.Table.from_arrays(arrays, schema=arrow_schema(spec))
    else:
        raise FrameError(
            f"the warehouse IO manager writes pandas DataFrames or Arrow tables (or an iterable "
            f"of them) to {spec.name}, got {type(df).__name__}"
        )
    nulls = [f"{n} ({table[n].null_count})" for n in spec.column_names if table[n].null_count]
    if nulls:
        raise FrameError(
            f"the frame for {spec.name} has missing values (NaN/None/NaT) in: "
            f"{', '.join(nulls)}; its columns are NOT NULL"
        )
    _check_values(spec, table)
    _check_window(spec, table, window)
    _check_slice(spec, table, slice_)
    if spec.unique_time:
        _check_unique_time(spec, table)
    return table


# --- SQLite text encoding ----------------------------------------------------------------------
# ISO-8601 text, fixed width, so SQL string comparison is time order:
#   timestamps 'YYYY-MM-DD HH:MM:SS.fff+00:00' (29 chars), dates 'YYYY-MM-DD'.
# Gathered from lookup tables: ~25x faster than Arrow's strftime (README, Performance).

_EPOCH = dt.date(1970, 1, 1)
_TS_WIDTH = 29
_TS_RECORD = np.dtype([("d", "S11"), ("t", "<u8"), ("f", "<u4"), ("z", "S6")])
_HMS = np.frombuffer(
    "".join(
        f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)
    ).encode("ascii"),
    dtype="<u8",
)
_MILLIS = np.frombuffer("".join(f".{i:03d}" for i in range(1000)).encode("ascii"), dtype="<u4")
_DAY_MS = 86_400_000


def _day_strings(days: np.ndarray) -> np.ndarray:
    try:
        return np.array(
            [f"{(_EPOCH + dt.timedelta(days=int(d))).isoformat()} ".encode() for d in days],
            dtype="S11",
        )
    except OverflowError:
        raise FrameError("timestamp outside the years 1..9999") from None


def format_timestamps(arr: pa.Array | pa.ChunkedArray) -> pa.StringArray:
    """timestamp[ms, UTC] -> 'YYYY-MM-DD HH:MM:SS.fff+00:00' strings (no nulls)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    ms = arr.cast(pa.int64()).to_numpy(zero_copy_only=False)
    out = np.empty(n, dtype=_TS_RECORD)
    if n:
        days = ms // _DAY_MS
        lo, hi = int(days.min()), int(days.max())
        if hi - lo <= 4 * n + 1024:
            out["d"] = _day_strings(np.arange(lo, hi + 1))[days - lo]
        else:  # few rows spread over centuries: format only the days present
            uniq, inverse = np.unique(days, return_inverse=True)
            out["d"] = _day_strings(uniq)[inverse]
        msod = ms - days * _DAY_MS
        sod = msod // 1000
        out["t"] = _HMS[sod]
        out["f"] = _MILLIS[msod - sod * 1000]
        out["z"] = b"+00:00"
    offsets = np.arange(0, _TS_WIDTH * (n + 1), _TS_WIDTH, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(out))


def sqlite_value(value: dt.datetime | dt.date) -> str:
    """A window bound in the SQLite text encoding."""
    if isinstance(value, dt.datetime):
        return format_timestamps(pa.array([value], pa.timestamp("ms", tz="UTC")))[0].as_py()
    return value.isoformat()


def encode_for_sqlite(table: pa.Table) -> pa.Table:
    arrays, fields = [], []
    for field, col in zip(table.schema, table.columns, strict=True):
        if pa.types.is_timestamp(field.type):
            col, field = format_timestamps(col), field.with_type(pa.string())
        elif pa.types.is_date32(field.type):
            col, field = pc.cast(col, pa.string()), field.with_type(pa.string())
        arrays.append(col)
        fields.append(field)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


# --- database Arrow -> pandas ------------------------------------------------------------------


def to_frame(spec: TableSpec, table: pa.Table) -> pd.DataFrame:
    """Rows read back (Postgres types or SQLite text) -> a frame with the interface dtypes."""
    arrays = []
    for col in spec.columns:
        target = _ARROW_TYPES[col.kind]
        arr = table[col.name]
        if table.num_rows == 0 or pa.types.is_null(arr.type):
            arr = pa.chunked_array([], target)
        try:
            arr = pc.cast(arr, target)  # parses SQLite text; us -> ms is checked (safe cast)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            msg = f"{spec.name}.{col.name} holds a value not of its type: {exc}"
            raise WarehouseError(msg) from None
        if col.kind == "date":
            arr = pc.cast(arr, pa.timestamp("s"))
        arrays.append(arr)
    frame = pa.Table.from_arrays(arrays, names=list(spec.column_names)).to_pandas()
    for name, dtype in spec.pandas_dtypes().items():
        if str(frame[name].dtype) != dtype:  # e.g. empty text columns come back as object
            frame[name] = frame[name].astype(dtype)
    return frame


# --- the stage of one write --------------------------------------------------------------------


class Stage:
    """The validated, encoded rows of one write, spilled to a local Arrow file before the write.

    Filling the stage consumes the frames (for a streamed asset, that is the API fetch), checks
    every frame against the table, window and slice, numbers the rows (`_seq`) and encodes them
    for the database (`encode`, a dialect hook) — all before the write lock is taken, so a slow or
    hanging producer blocks no other writer, and a failure while filling leaves the warehouse
    untouched. Memory stays one batch; the file is read back memory-mapped by the ingest.
    """

    def __init__(
        self,
        spec: TableSpec,
        window: Window,
        slice_: Mapping[str, str],
        encode: Callable[[pa.Table], pa.Table],
        directory: str | None = None,
    ) -> None:
        self.spec, self.window, self.slice, self.encode = spec, window, slice_, encode
        self.rows = 0
        self.schema = encode(arrow_schema(spec, storage=True).empty_table()).schema
        try:
            self._dir = tempfile.TemporaryDirectory(prefix="liq-stage-", dir=directory)
        except OSError as exc:
            raise WarehouseError(
                f"cannot stage the rows of {spec.name} in {directory or tempfile.gettempdir()}: "
                f"{exc.strerror}; nothing was written (set the IO manager's stage_dir to a "
                "writable folder)"
            ) from None
        self.path = Path(self._dir.name) / f"{spec.name}.arrows"

    def __enter__(self) -> "Stage":
        return self

    def __exit__(self, *exc: object) -> None:
        self._dir.cleanup()

    def fill(self, frames: Iterable[pd.DataFrame]) -> None:
        try:
            with (
                pa.OSFile(str(self.path), "wb") as sink,
                pa.ipc.new_stream(sink, self.schema) as out,
            ):
                for frame in frames:
                    table = frame_to_arrow(self.spec, frame, self.window, self.slice)
                    for start in range(0, table.num_rows, BATCH_ROWS):
                        out.write_table(self._batch(table.slice(start, BATCH_ROWS)))
        except OSError as exc:  # disk full, no permission, ...: before anything was written
            raise WarehouseError(
                f"staging the rows of {self.spec.name} in {self.path.parent} failed: {exc}; "
                "nothing was written (free space there or set the IO manager's stage_dir)"
            ) from None

    def _batch(self, part: pa.Table) -> pa.Table:
        if self.spec.ordered:
            seq = np.arange(self.rows, self.rows + part.num_rows, dtype=np.int64)
            part = part.append_column(SEQ_COLUMN, pa.array(seq))
        self.rows += part.num_rows
        return self.encode(part).cast(self.schema)

    def reader(self) -> pa.RecordBatchReader:
        """The staged rows, read back from the file (each call starts at the first row)."""
        return pa.ipc.open_stream(pa.memory_map(str(self.path)))
