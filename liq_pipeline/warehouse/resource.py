"""Read access to the warehouse for asset checks and sensors (same URL as the IO manager)."""

import datetime as dt
from typing import ClassVar

import dagster as dg
import pandas as pd
from pydantic import Field

from liq_pipeline.redaction import SecretsMaskedInRepr
from liq_pipeline.warehouse.backends import make_backend
from liq_pipeline.warehouse.tables import KWERY_LIQUIDATIONS, Window, get_table, validate_slice


class WarehouseResource(SecretsMaskedInRepr, dg.ConfigurableResource):
    """Reads warehouse tables with the same dtypes the IO manager returns."""

    url_fields: ClassVar[tuple[str, ...]] = ("url",)

    url: str = Field(description="SQLAlchemy URL of the warehouse (as for WarehouseIOManager)")
    db_schema: str | None = Field(default=None, description="PostgreSQL schema of the tables")

    def read(
        self,
        table: str,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        **slice: str,
    ) -> pd.DataFrame:
        """Rows of `table` in [start, end) (all rows if both None) and the slice, time-ordered."""
        spec = get_table(table)
        backend = make_backend(self.url, self.db_schema, lock_timeout_s=600.0)
        return backend.read(spec, Window(start, end), validate_slice(spec, slice))

    def kwery_daily_usd_by_side(
        self, symbol: str, start: dt.datetime, end: dt.datetime
    ) -> pd.DataFrame:
        """Sum of usd_value per UTC day and side: columns day (datetime64[s]), side, usd_value.

        One row per (day, side) that has events, sorted by day then side. Aggregated in the
        database, so a year-long window never brings its events into memory.
        """
        spec = KWERY_LIQUIDATIONS
        backend = make_backend(self.url, self.db_schema, lock_timeout_s=600.0)
        slice_ = validate_slice(spec, {"symbol": symbol})
        return backend.daily_sums(spec, Window(start, end), slice_, by="side", value="usd_value")
