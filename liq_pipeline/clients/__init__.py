"""Plain HTTP clients of the Kwery and Newhedge liquidation APIs (no Dagster in here)."""

from liq_pipeline.clients.kwery import (
    KWERY_COLUMNS,
    KweryClient,
    KweryResult,
    KweryStats,
)
from liq_pipeline.clients.newhedge import NewhedgeClient
from liq_pipeline.contract import EXCHANGES, NEWHEDGE_METRICS, SIDES

__all__ = [
    "EXCHANGES",
    "KWERY_COLUMNS",
    "NEWHEDGE_METRICS",
    "SIDES",
    "KweryClient",
    "KweryResult",
    "KweryStats",
    "NewhedgeClient",
]
