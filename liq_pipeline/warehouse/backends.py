"""SQLite and PostgreSQL backends: DDL from SQLAlchemy metadata, writes and reads through ADBC.

Both backends replace a partition with ONE flow (`Backend.replace`), written once over dialect
hooks: stage, then swap.
1. Stage, outside any lock: consume the frames (for a streamed asset, the API fetch), validate
   and encode them into a local Arrow file (`frames.Stage`). A failure here touches nothing.
2. Swap, in ONE short transaction: begin -> lock -> DELETE the run's window (and slice) ->
   ingest the staged rows -> commit. Anything failing before the commit (a dropped connection, a
   killed process) rolls the whole write back, so the previous rows stay exactly as they were;
   a transient database failure (a restart, a dropped connection) retries the swap, within the
   write's retry budget, from the same stage.

Locking
- PostgreSQL: transaction-scoped advisory locks, taken before the DELETE so that the DELETE's
  snapshot sees the rows of a writer that committed while we waited. Keys: one per
  (schema.table) taken SHARED by every windowed write, plus one EXCLUSIVE key per
  (schema.table, calendar month) the window touches, in ascending order (no deadlocks). Any two
  overlapping windows, whatever their lengths, share a month and serialize; a daily run is not
  blocked by a long backfill of other months. An unpartitioned write (whole slice) takes the table
  key EXCLUSIVE. The slice is deliberately not part of the key: a sliced and an unsliced writer
  of the same table still exclude each other.
- SQLite: one writer at a time anyway: BEGIN IMMEDIATE takes the write lock up front and waits
  up to the busy timeout; WAL lets readers go on meanwhile.

Why ADBC: binary COPY into PostgreSQL and Arrow ingest into SQLite are many times faster than
pandas `to_sql` and `executemany`, with a fraction of the memory (README, Performance, has the
measurements; bench/bench_write.py reproduces them).
"""

import abc
import contextlib
import datetime as dt
import hashlib
import importlib.util
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.pool import NullPool
from sqlalchemy.schema import CreateIndex, CreateTable

from liq_pipeline.redaction import Redactor
from liq_pipeline.warehouse.errors import WarehouseError
from liq_pipeline.warehouse.frames import Stage, encode_for_sqlite, sqlite_value, to_frame
from liq_pipeline.warehouse.tables import (
    SEQ_COLUMN,
    TABLES,
    TableSpec,
    Window,
    build_metadata,
    qualified,
    quote,
    validate_identifier,
    view_sql,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")

# What a database says when it is restarting or the connection broke: the same statement may
# succeed in a moment. Anything else (bad password, no such database, a constraint) will not.
_TRANSIENT_MESSAGES = (
    "connection refused",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "terminating connection due to administrator command",
    "server closed the connection unexpectedly",
    "connection to server was lost",
    "could not receive data from server",
    "no connection to the server",
    "connection reset by peer",
    "sorry, too many clients already",
)


class TransientWarehouseError(WarehouseError):
    """The database refused or dropped the connection; the same write may succeed in a moment."""


def transient(exc: BaseException) -> bool:
    return isinstance(exc, TransientWarehouseError) or any(
        text in str(exc).lower() for text in _TRANSIENT_MESSAGES
    )


class Backend(abc.ABC):
    """A warehouse database: the partition replace flow and reads, over dialect hooks."""

    dialect: str
    schema: str | None
    redact: Redactor
    lock_timeout_s: float
    retry_budget_s: float
    stage_dir: str | None = None
    sleep: Callable[[float], object] = staticmethod(time.sleep)

    @abc.abstractmethod
    def describe(self, spec: TableSpec) -> str: ...

    @abc.abstractmethod
    def ensure_tables(self) -> None: ...

    # -- the write flow ---------------------------------------------------------------------

    def replace(
        self,
        spec: TableSpec,
        window: Window,
        slice_: Mapping[str, str],
        frames: Iterable[pd.DataFrame],
    ) -> int:
        """Replace the window (and slice) of `spec` with `frames`; return the rows written."""
        self.ensure_tables()  # a misconfigured warehouse fails here, before any fetch
        with Stage(spec, window, slice_, self._encode, self.stage_dir) as stage:
            stage.fill(frames)  # the fetch and every check, outside any lock
            self._retrying(f"write to {self.describe(spec)} {window}",
                           lambda: self._swap(spec, window, slice_, stage))  # fmt: skip
            return stage.rows

    def _swap(
        self, spec: TableSpec, window: Window, slice_: Mapping[str, str], stage: Stage
    ) -> None:
        """One transaction: begin, lock, delete the window, ingest the stage, commit."""
        params: list[object] = []
        where = _where(spec, window, slice_, params, self._mark)
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                self._begin(cur)
                self._lock(cur, spec, window)
                cur.execute(f"DELETE FROM {qualified(spec.storage_name, self.schema)}{where}",
                            self._bind(params))  # fmt: skip
                ingested = self._ingest(cur, spec, stage.reader())
                if ingested not in (-1, stage.rows):  # the driver's count, when it gives one
                    raise WarehouseError(f"ingest wrote {ingested} rows, expected {stage.rows}")
                self._commit(conn, cur)
        except BaseException as exc:
            self._rollback(conn)
            if isinstance(exc, WarehouseError | KeyboardInterrupt | SystemExit):
                raise
            if transient(exc):
                raise TransientWarehouseError(self.redact(str(exc))) from None
            if self._lock_wait_expired(exc):
                raise WarehouseError(
                    f"gave up after {self.lock_timeout_s:g} s waiting for another writer of "
                    f"{self._locked(spec, window)}"
                ) from None
            raise WarehouseError(
                self.redact(f"write to {self.describe(spec)} {window} failed: {exc}")
            ) from None
        finally:
            _close_quietly(conn)

    def _retrying(self, what: str, attempt: Callable[[], T]) -> T:
        """`attempt()`, again after a transient database failure, within the retry budget."""
        spent, tries = 0.0, 0
        while True:
            tries += 1
            try:
                return attempt()
            except TransientWarehouseError as exc:
                wait = random.uniform(0.5, 1.0) * min(30.0, 2.0 ** min(tries, 5))
                if spent + wait > self.retry_budget_s:
                    raise WarehouseError(
                        f"{exc} ({what}: {tries} attempt{'s' if tries > 1 else ''} in "
                        f"{spent:.0f} s; the retry budget of {self.retry_budget_s:g} s is used "
                        "up, raise retry_budget_seconds to wait longer)"
                    ) from None
                logger.warning("%s: %s; retrying in %.1f s", what, exc, wait)
                self.sleep(wait)
                spent += wait

    # -- dialect hooks ----------------------------------------------------------------------

    @abc.abstractmethod
    def _connect(self) -> Any:
        """An ADBC connection; raises TransientWarehouseError if the server may come back."""

    @abc.abstractmethod
    def _encode(self, table: pa.Table) -> pa.Table:
        """Canonical Arrow rows as this database stores them."""

    @abc.abstractmethod
    def _begin(self, cur: Any) -> None: ...

    @abc.abstractmethod
    def _lock(self, cur: Any, spec: TableSpec, window: Window) -> None:
        """Exclude every other writer of the window (waiting up to lock_timeout_s)."""

    @abc.abstractmethod
    def _ingest(self, cur: Any, spec: TableSpec, rows: pa.RecordBatchReader) -> int: ...

    @abc.abstractmethod
    def _commit(self, conn: Any, cur: Any) -> None: ...

    @abc.abstractmethod
    def _rollback(self, conn: Any) -> None:
        """Roll back, quietly: a dead connection has rolled back already."""

    @abc.abstractmethod
    def _lock_wait_expired(self, exc: BaseException) -> bool: ...

    def _locked(self, spec: TableSpec, window: Window) -> str:
        """What a write's lock covers, for the message when waiting for it expired."""
        return f"{self.describe(spec)} {window}"

    @abc.abstractmethod
    def _mark(self, i: int) -> str:
        """The placeholder of the i-th (1-based) bound parameter."""

    @abc.abstractmethod
    def _bind(self, params: list[object]) -> Any:
        """`params` as the driver takes them."""

    @abc.abstractmethod
    def _utc_day_sql(self, column: str) -> str:
        """SQL of the UTC day of the quoted timestamp `column`."""

    # -- reads ------------------------------------------------------------------------------

    def read(self, spec: TableSpec, window: Window, slice_: Mapping[str, str]) -> pd.DataFrame:
        self.ensure_tables()
        params: list[object] = []
        sql = _select_sql(spec, _where(spec, window, slice_, params, self._mark), self.schema)
        table = self._fetch(sql, params, f"read of {self.describe(spec)} {window}")
        return to_frame(spec, table)

    def daily_sums(
        self, spec: TableSpec, window: Window, slice_: Mapping[str, str], by: str, value: str
    ) -> pd.DataFrame:
        """Sum of `value` per UTC day of the time column and `by`, computed in the database."""
        self.ensure_tables()
        params: list[object] = []
        where = _where(spec, window, slice_, params, self._mark)
        day = self._utc_day_sql(quote(spec.time_column))
        sql = _daily_sums_sql(spec, where, self.schema, day, by, value)
        table = self._fetch(sql, params, f"daily sums of {self.describe(spec)}")
        return _daily_sums_frame(table.to_pandas(), by, value)

    def _fetch(self, sql: str, params: list[object], what: str) -> Any:
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, self._bind(params))
                return cur.fetch_arrow_table()
        except Exception as exc:
            raise WarehouseError(self.redact(f"{what} failed: {exc}")) from None
        finally:
            _close_quietly(conn)


def make_backend(
    url: str,
    db_schema: str | None = None,
    lock_timeout_s: float = 600.0,
    retry_budget_s: float = 300.0,
    stage_dir: str | None = None,
) -> Backend:
    """The backend of a warehouse URL; every setting is checked here, before any fetch."""
    try:
        sa_url = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise WarehouseError(
            "the warehouse URL (LIQ_WAREHOUSE_URL) is not a valid SQLAlchemy URL: use "
            "sqlite:////abs/path.sqlite or postgresql+psycopg2://user:password@host:5432/db"
        ) from None
    except ValueError:  # SQLAlchemy parses the port with int()
        raise WarehouseError(
            "the warehouse URL (LIQ_WAREHOUSE_URL) has a port that is not a number"
        ) from None
    if db_schema is not None:
        validate_identifier(db_schema, "db_schema")
    if lock_timeout_s <= 0:
        raise WarehouseError("lock_timeout_seconds must be positive")
    if retry_budget_s < 0:
        raise WarehouseError("retry_budget_seconds must be >= 0")
    backend_name = sa_url.get_backend_name()
    backend: Backend
    if backend_name == "sqlite":
        backend = SqliteBackend(sa_url, db_schema, lock_timeout_s)
    elif backend_name == "postgresql":
        backend = PostgresBackend(sa_url, db_schema, lock_timeout_s)
    else:
        raise WarehouseError(
            f"unsupported warehouse database {backend_name!r}: use sqlite:///path or "
            "postgresql+psycopg2://user@host:5432/db"
        )
    backend.retry_budget_s, backend.stage_dir = retry_budget_s, stage_dir
    return backend


def warehouse_kind(url: str) -> str | None:
    """`sqlite` or `postgresql`, the database of a warehouse URL (the catalog's storage kind).

    None for a URL make_backend refuses: loading the definitions must not fail on it, the runs
    fail with make_backend's message.
    """
    try:
        name = sa.make_url(url).get_backend_name()
    except (sa.exc.ArgumentError, ValueError):
        return None
    return name if name in ("sqlite", "postgresql") else None


# DDL runs once per (database, schema) and process; guarded so threads do not race.
_ready: set[str] = set()
_ready_lock = threading.Lock()


def _where(
    spec: TableSpec,
    window: Window,
    slice_: Mapping[str, str],
    params: list[object],
    mark: Callable[[int], str],
) -> str:
    """WHERE clause of a window+slice; values appended to `params`, never formatted into SQL.

    `mark` turns the 1-based parameter number into a placeholder ($n or ?).
    """
    conds = []
    if window.bounded:
        lo, hi = window.bounds(spec.time_kind)
        col = quote(spec.time_column)
        params.append(lo)
        conds.append(f"{col} >= {mark(len(params))}")
        params.append(hi)
        conds.append(f"{col} < {mark(len(params))}")
    for name, value in slice_.items():
        params.append(value)
        conds.append(f"{quote(name)} = {mark(len(params))}")
    return " WHERE " + " AND ".join(conds) if conds else ""


def _select_sql(spec: TableSpec, where: str, schema: str | None) -> str:
    cols = ", ".join(quote(c) for c in spec.column_names)
    order = quote(spec.time_column) + (f", {quote(SEQ_COLUMN)}" if spec.ordered else "")
    return f"SELECT {cols} FROM {qualified(spec.storage_name, schema)}{where} ORDER BY {order}"


def _daily_sums_sql(
    spec: TableSpec, where: str, schema: str | None, day_sql: str, by: str, value: str
) -> str:
    """Sum of `value` per UTC day of the time column and `by`, computed in the database."""
    if spec.time_kind != "timestamp" or spec.column(by).kind != "text":
        raise WarehouseError(f"daily sums need a timestamp table and a text column, not {by!r}")
    if spec.column(value).kind != "float":
        raise WarehouseError(f"daily sums add a float column, not {value!r}")
    by_sql, value_sql = quote(by), quote(value)
    return (
        f"SELECT {day_sql} AS day, {by_sql} AS {by_sql}, SUM({value_sql}) AS {value_sql}"
        f" FROM {qualified(spec.storage_name, schema)}{where} GROUP BY 1, 2 ORDER BY 1, 2"
    )


def _daily_sums_frame(table: pd.DataFrame, by: str, value: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "day": pd.to_datetime(table["day"].astype(str)).astype("datetime64[s]"),
            by: table[by].astype("str"),
            value: table[value].astype("float64"),
        }
    )


def _orig(exc: sa.exc.SQLAlchemyError) -> BaseException:
    """The driver's own error (SQLAlchemy's wrapper adds the statement and a help link)."""
    orig = getattr(exc, "orig", None)
    return orig if isinstance(orig, BaseException) else exc


# --- PostgreSQL ---------------------------------------------------------------------------------


def _pg_lock_key(text: str) -> int:
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _months(window: Window) -> list[str]:
    assert window.start is not None and window.end is not None
    last = window.end - dt.timedelta(microseconds=1)
    y, m = window.start.year, window.start.month
    out = []
    while (y, m) <= (last.year, last.month):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def pg_lock_plan(qualified_table: str, window: Window) -> list[tuple[int, bool]]:
    """(advisory key, exclusive?) in acquisition order for a write of `window`."""
    table_key = _pg_lock_key(qualified_table)
    if not window.bounded:
        return [(table_key, True)]
    months = [(_pg_lock_key(f"{qualified_table}|{m}"), True) for m in _months(window)]
    return [(table_key, False), *months]


class PostgresBackend(Backend):
    dialect = "postgresql"

    def __init__(self, url: sa.URL, db_schema: str | None, lock_timeout_s: float) -> None:
        # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; use psycopg2 if that is missing.
        if url.drivername == "postgresql" and importlib.util.find_spec("psycopg") is None:
            url = url.set(drivername="postgresql+psycopg2")
        self.url, self.schema, self.lock_timeout_s = url, db_schema, lock_timeout_s
        self.redact = Redactor([url.password or ""], param_names=())
        # libpq URI for ADBC: same user/password/host/port/db and query (e.g. sslmode, options).
        self.adbc_uri = url.set(drivername="postgresql").render_as_string(hide_password=False)

    def describe(self, spec: TableSpec) -> str:
        return f"{self.schema}.{spec.name}" if self.schema else spec.name

    def lock_scope(self, spec: TableSpec) -> str:
        """What the advisory lock keys name: the table, qualified by its schema or search_path."""
        search_path = self.url.query.get("options", "")
        return f"{search_path}|{qualified(spec.storage_name, self.schema)}"

    def _error(self, what: str, exc: BaseException) -> WarehouseError:
        kind = TransientWarehouseError if transient(exc) else WarehouseError
        return kind(self.redact(f"{what}: {exc}"))

    def _connect(self) -> Any:
        import adbc_driver_postgresql.dbapi as pg_dbapi

        try:
            return pg_dbapi.connect(self.adbc_uri)
        except Exception as exc:
            raise self._error("cannot connect to the PostgreSQL warehouse", exc) from None

    def _encode(self, table: pa.Table) -> pa.Table:
        return table  # PostgreSQL takes the canonical Arrow types as they are (binary COPY)

    def _begin(self, cur: Any) -> None:
        # The ADBC connection is in a transaction already; bound the lock waits inside it.
        timeout_ms = max(1, round(self.lock_timeout_s * 1000))
        cur.execute("SELECT set_config('lock_timeout', $1, true)", parameters=(f"{timeout_ms}ms",))
        cur.fetchall()

    def _lock(self, cur: Any, spec: TableSpec, window: Window) -> None:
        for key, exclusive in pg_lock_plan(self.lock_scope(spec), window):
            fn = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
            cur.execute(f"SELECT {fn}($1)", parameters=(key,))
            cur.fetchall()

    def _ingest(self, cur: Any, spec: TableSpec, rows: pa.RecordBatchReader) -> int:
        return cur.adbc_ingest(spec.storage_name, rows, mode="append", db_schema_name=self.schema)

    def _commit(self, conn: Any, cur: Any) -> None:
        conn.commit()

    def _rollback(self, conn: Any) -> None:
        with contextlib.suppress(Exception):
            conn.rollback()

    def _lock_wait_expired(self, exc: BaseException) -> bool:
        return "lock timeout" in str(exc)

    def ensure_tables(self) -> None:
        ready_key = f"{self.adbc_uri}|{self.schema}"
        with _ready_lock:
            if ready_key in _ready:
                return
            self._retrying("connecting to the PostgreSQL warehouse", self._create_tables)
            _ready.add(ready_key)

    def _create_tables(self) -> None:
        engine = sa.create_engine(self.url, poolclass=NullPool)
        try:
            try:
                conn = engine.connect()
            except sa.exc.SQLAlchemyError as exc:
                msg = "cannot connect to the PostgreSQL warehouse"
                raise self._error(msg, _orig(exc)) from None
            with conn, conn.begin():
                # Concurrent CREATE TABLE IF NOT EXISTS can still collide in pg_type.
                key = _pg_lock_key("liq_pipeline.ddl")
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))
                if self.schema:
                    conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {quote(self.schema)}"))
                build_metadata(self.schema).create_all(conn)
                for spec in TABLES.values():
                    if spec.ordered:
                        conn.execute(sa.text(view_sql(spec, self.schema, self.dialect)))
        except sa.exc.SQLAlchemyError as exc:
            raise self._error("cannot create the warehouse tables", _orig(exc)) from None
        finally:
            engine.dispose()

    def _mark(self, i: int) -> str:
        return f"${i}"

    def _bind(self, params: list[object]) -> Any:
        return params or None

    def _utc_day_sql(self, column: str) -> str:
        return f"({column} AT TIME ZONE 'UTC')::date"


# --- SQLite ---------------------------------------------------------------------------------------


class SqliteBackend(Backend):
    """SQLite file warehouse.

    Storage: timestamps are ISO-8601 text 'YYYY-MM-DD HH:MM:SS.fff+00:00' and dates 'YYYY-MM-DD'
    in columns declared TIMESTAMP / DATE (floats REAL, text TEXT). Fixed width and always UTC, so
    plain SQL string comparison and ORDER BY are time order, analysts can read them, and SQLite's
    date functions accept them. Integer epoch-ms would index slightly faster but is unreadable;
    the (vectorized) formatting is small next to the insert itself.

    Every access (DDL included) goes through adbc-driver-sqlite, which links its own SQLite: in a
    process that writes the warehouse, do not also open the file with Python's sqlite3 module
    while a write may be running (see `sqlite_ddl`). Other processes (sqlite3 CLI, notebooks,
    DB browsers) are safe: locks between processes work across SQLite copies.
    """

    dialect = "sqlite"

    def __init__(self, url: sa.URL, db_schema: str | None, lock_timeout_s: float) -> None:
        if db_schema not in (None, "main"):
            raise WarehouseError("db_schema is only supported on PostgreSQL")
        database = url.database or ""
        if database in ("", ":memory:") or database.startswith("file:"):
            raise WarehouseError(
                "the SQLite warehouse must be a file path (sqlite:////abs/path.sqlite); an "
                "in-memory database is not shared between a write and a later read"
            )
        self.path = str(Path(database).expanduser().resolve())
        self.schema = None
        self.lock_timeout_s = lock_timeout_s
        self.redact = Redactor([url.password or ""], param_names=())

    def describe(self, spec: TableSpec) -> str:
        return spec.name

    def _connect(self) -> Any:
        import adbc_driver_sqlite.dbapi as sqlite_dbapi

        self._check_writable()
        try:
            # autocommit: we issue BEGIN IMMEDIATE / COMMIT / ROLLBACK ourselves.
            conn = sqlite_dbapi.connect(self.path, autocommit=True)
            with conn.cursor() as cur:
                cur.execute(f"PRAGMA busy_timeout = {max(1, round(self.lock_timeout_s * 1000))}")
        except Exception as exc:
            raise WarehouseError(f"cannot open the SQLite warehouse {self.path}: {exc}") from None
        return conn

    def _check_writable(self) -> None:
        # The driver reports a directory it cannot write as "failed to allocate memory"; SQLite
        # needs the directory writable too (WAL and shared-memory files beside the database).
        path = Path(self.path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WarehouseError(
                f"cannot create the folder of the SQLite warehouse {self.path}: {exc.strerror}"
            ) from None
        for place, what in ((path.parent, "folder"), (path, "file")):
            if place.exists() and not os.access(place, os.W_OK):
                raise WarehouseError(
                    f"the SQLite warehouse {what} {place} is not writable (permission denied "
                    "or a read-only file system); point LIQ_WAREHOUSE_URL at a writable place"
                )

    def ensure_tables(self) -> None:
        with _ready_lock:
            if self.path in _ready:
                return
            conn = self._connect()
            try:
                with conn.cursor() as cur:
                    # page_size only takes effect on a new, empty file (before WAL): 16 KiB pages
                    # made a 1M-row replace faster than 4 KiB (ISO-text index keys; README).
                    cur.execute("PRAGMA page_size = 16384")
                    cur.execute("PRAGMA journal_mode = WAL")  # persistent in the file
                    cur.fetchall()
                    cur.execute("BEGIN IMMEDIATE")
                    for statement in sqlite_ddl():
                        cur.execute(statement)
                    cur.execute("COMMIT")
            except Exception as exc:
                _sqlite_rollback(conn)
                raise WarehouseError(f"cannot create the warehouse tables: {exc}") from None
            finally:
                _close_quietly(conn)
            _ready.add(self.path)

    def _encode(self, table: pa.Table) -> pa.Table:
        return encode_for_sqlite(table)

    def _begin(self, cur: Any) -> None:
        cur.execute("BEGIN IMMEDIATE")  # the write lock now, waiting up to the busy timeout

    def _lock(self, cur: Any, spec: TableSpec, window: Window) -> None:
        pass  # BEGIN IMMEDIATE took the database's one write lock

    def _ingest(self, cur: Any, spec: TableSpec, rows: pa.RecordBatchReader) -> int:
        return cur.adbc_ingest(spec.storage_name, rows, mode="append")

    def _commit(self, conn: Any, cur: Any) -> None:
        cur.execute("COMMIT")

    def _rollback(self, conn: Any) -> None:
        _sqlite_rollback(conn)

    def _lock_wait_expired(self, exc: BaseException) -> bool:
        return "locked" in str(exc) or "busy" in str(exc).lower()

    def _locked(self, spec: TableSpec, window: Window) -> str:
        return f"{self.path} ({spec.name} {window})"  # SQLite locks the whole file

    def _mark(self, i: int) -> str:
        return "?"

    def _bind(self, params: list[object]) -> Any:
        return _sqlite_params(params)

    def _utc_day_sql(self, column: str) -> str:
        # Stored timestamps are UTC ISO text, so the day is their first 10 characters.
        return f"substr({column}, 1, 10)"


def sqlite_ddl() -> list[str]:
    """CREATE ... IF NOT EXISTS statements of every table, index and view, for SQLite.

    Compiled by SQLAlchemy but executed through the ADBC driver: adbc-driver-sqlite links its own
    copy of SQLite, and two copies of SQLite in one process must not open the same file (POSIX
    locks are per process, so one copy closing the file drops the other's locks).
    """
    dialect = sqlite_dialect.dialect()
    statements = []
    for table in build_metadata(None).sorted_tables:
        statements.append(str(CreateTable(table, if_not_exists=True).compile(dialect=dialect)))
        statements.extend(
            str(CreateIndex(index, if_not_exists=True).compile(dialect=dialect))
            for index in sorted(table.indexes, key=lambda i: str(i.name))
        )
    statements.extend(view_sql(spec, None, "sqlite") for spec in TABLES.values() if spec.ordered)
    return statements


def _sqlite_params(params: list[object]) -> tuple[object, ...] | None:
    out = tuple(sqlite_value(p) if isinstance(p, dt.date) else p for p in params)
    return out or None


def _sqlite_rollback(conn: Any) -> None:
    # If this fails the connection is closed next, and SQLite rolls back on close.
    with contextlib.suppress(Exception), conn.cursor() as cur:
        cur.execute("ROLLBACK")


def _close_quietly(conn: Any) -> None:
    with contextlib.suppress(Exception):
        conn.close()
