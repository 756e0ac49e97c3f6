"""The warehouse IO manager: asset DataFrames <-> the tables of docs/INTERFACE.md.

Behaviour copied from dagster-duckdb's DbIOManager (delete the partition's time window, insert,
one transaction) with public Dagster API only.
"""

import contextlib
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import dagster as dg
import pandas as pd
import pyarrow as pa
from pydantic import Field

from liq_pipeline.redaction import SecretsMaskedInRepr
from liq_pipeline.warehouse.backends import Backend, make_backend
from liq_pipeline.warehouse.errors import WarehouseError
from liq_pipeline.warehouse.tables import (
    META_SLICE,
    META_TABLE,
    TableSpec,
    Window,
    get_table,
    validate_identifier,
    validate_slice,
)


class FrameStream:
    """DataFrames written one after another inside the single transaction of a write.

    Return this from an asset to stream a large result (one frame per day or per API page batch):
    peak memory stays that of one frame. The IO manager drives the iteration, so a stream whose
    frames are fetched lazily (`KweryDayBatches`) is fetched while the IO manager writes. A bare
    generator cannot be returned, because Dagster iterates a returned generator as the op's
    events. Subclasses add `run_metadata()`, figures of the whole write added to the output
    metadata once the last frame was written.
    """

    def __init__(self, frames: Iterable[pd.DataFrame] = ()) -> None:
        self._frames = frames

    def __iter__(self) -> Iterator[pd.DataFrame]:
        return iter(self._frames)

    def run_metadata(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True)
class Target:
    spec: TableSpec
    slice: dict[str, str]


def _raw(value: object) -> object:
    return value.value if isinstance(value, dg.MetadataValue) else value


def resolve_target(metadata: Mapping[str, object], asset_key: dg.AssetKey | None) -> Target:
    """The table and slice of an asset: `warehouse_metadata(...)` or the asset key's last part."""
    table = _raw(metadata.get(META_TABLE))
    if table is None:
        if asset_key is None:
            raise WarehouseError(
                "the warehouse IO manager stores assets only: this output has no asset key and "
                f"no {META_TABLE!r} metadata"
            )
        table = asset_key.path[-1]
    spec = get_table(validate_identifier(table, "table name"))
    slice_ = _raw(metadata.get(META_SLICE)) or {}
    if not isinstance(slice_, Mapping):
        raise WarehouseError(f"{META_SLICE!r} metadata must be a mapping of column to value")
    return Target(spec, validate_slice(spec, slice_))


def _window(context: dg.OutputContext | dg.InputContext) -> Window:
    if not context.has_asset_partitions:
        return Window()
    try:
        tw = context.asset_partitions_time_window
    except Exception as exc:  # not time-partitioned, or several disjoint ranges
        raise WarehouseError(
            f"the warehouse IO manager needs one contiguous time window of partitions: {exc}"
        ) from None
    return Window(tw.start, tw.end)


def _frames(obj: object, table: str) -> Iterable[pd.DataFrame | pa.Table]:
    if isinstance(obj, pd.DataFrame | pa.Table):
        return (obj,)
    if obj is None:
        raise WarehouseError(
            f"the asset for {table} returned None; return an empty DataFrame for a day "
            "without rows (it replaces the old rows)"
        )
    if isinstance(obj, str | bytes | Mapping) or not isinstance(obj, Iterable):
        raise WarehouseError(
            f"the warehouse IO manager writes a DataFrame or an iterable of DataFrames to "
            f"{table}, got {type(obj).__name__}"
        )
    return obj


class WarehouseIOManager(SecretsMaskedInRepr, dg.ConfigurableIOManager):
    """Stores asset frames in the warehouse tables of docs/INTERFACE.md (SQLite or PostgreSQL).

    A write replaces exactly the run's partition time window (and the asset's slice, e.g. one
    Kwery symbol) in one transaction; loads return the window with the interface's dtypes.
    """

    url_fields: ClassVar[tuple[str, ...]] = ("url",)

    url: str = Field(
        description="SQLAlchemy URL: sqlite:////abs/path.sqlite or "
        "postgresql+psycopg2://user:password@host:5432/db (options=-csearch_path%3D... honoured)"
    )
    db_schema: str | None = Field(
        default=None, description="PostgreSQL schema of the tables (created if missing)"
    )
    lock_timeout_seconds: float = Field(
        default=600.0, description="How long a write waits for another writer of its rows"
    )
    retry_budget_seconds: float = Field(
        default=300.0,
        ge=0,
        description="How long a write may keep retrying when the database restarts or drops "
        "the connection (the staged rows are written again), before the run fails",
    )
    stage_dir: str | None = Field(
        default=None,
        description="Local folder for the rows staged before a write (default: the system's "
        "temporary folder); needs room for one run's rows",
    )

    def _backend(self) -> Backend:
        return make_backend(
            self.url,
            self.db_schema,
            self.lock_timeout_seconds,
            self.retry_budget_seconds,
            self.stage_dir,
        )

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        asset_key = context.asset_key if context.has_asset_key else None
        target = resolve_target(context.definition_metadata, asset_key)
        window = _window(context)
        backend = self._backend()
        frames = _frames(obj, target.spec.name)
        started = time.perf_counter()
        rows = backend.replace(target.spec, window, target.slice, frames)
        seconds = time.perf_counter() - started
        # Figures of the whole write, on every day's event of a range: named run_* so that none
        # reads as the day's own (the assets put each day's row count on that day's event).
        metadata: dict[str, Any] = {
            "dagster/table_name": backend.describe(target.spec),
            "table": target.spec.name,
            "run_window": str(window),
            "run_rows": rows,
            "run_write_seconds": round(seconds, 4),
            "run_rows_per_second": round(rows / seconds) if seconds > 0 else 0,
        }
        if not context.has_asset_partitions or len(context.asset_partition_keys) == 1:
            metadata["dagster/row_count"] = rows  # the write is one day (or the whole slice)
        if target.slice:
            metadata["slice"] = ", ".join(f"{k}={v}" for k, v in target.slice.items())
        if isinstance(obj, FrameStream):
            metadata.update(obj.run_metadata())
        context.add_output_metadata(metadata)
        _log(context, f"replaced {target.spec.name} {window}: {rows} rows in {seconds:.2f} s")

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        upstream = context.upstream_output
        metadata = upstream.definition_metadata if upstream is not None else {}
        asset_key = context.asset_key if context.has_asset_key else None
        target = resolve_target(metadata or {}, asset_key)
        return self._backend().read(target.spec, _window(context), target.slice)


def _log(context: dg.OutputContext, message: str) -> None:
    with contextlib.suppress(dg.DagsterInvariantViolationError):  # bare build_output_context
        context.log.debug(message)
