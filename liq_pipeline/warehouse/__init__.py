"""The warehouse: tables of docs/INTERFACE.md and the IO manager that writes and reads them."""

from liq_pipeline.warehouse.backends import warehouse_kind
from liq_pipeline.warehouse.errors import FrameError, WarehouseError
from liq_pipeline.warehouse.io_manager import FrameStream, WarehouseIOManager
from liq_pipeline.warehouse.resource import WarehouseResource
from liq_pipeline.warehouse.tables import TABLES, TableSpec, warehouse_metadata

__all__ = [
    "TABLES",
    "FrameError",
    "FrameStream",
    "TableSpec",
    "WarehouseError",
    "WarehouseIOManager",
    "WarehouseResource",
    "warehouse_kind",
    "warehouse_metadata",
]
