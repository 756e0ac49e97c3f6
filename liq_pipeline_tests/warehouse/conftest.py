"""Warehouse fixtures: every test runs on a real SQLite file and on the real PostgreSQL."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from liq_pipeline_tests.warehouse.helpers import Warehouse


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def wh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Warehouse]:
    if request.param == "sqlite":
        path = tmp_path / "warehouse.sqlite"
        url = f"sqlite:///{path}"
        warehouse = Warehouse("sqlite", url, path=path)
    else:
        # A fresh schema per test, selected through the URL's search_path (the lead's fixture).
        url = request.getfixturevalue("postgres_schema_url")
        warehouse = Warehouse("postgres", url, sa.create_engine(url))
    try:
        yield warehouse
    finally:
        if warehouse.engine is not None:
            warehouse.engine.dispose()


@pytest.fixture
def pg_wh(postgres_schema_url: str) -> Iterator[Warehouse]:
    """PostgreSQL only (for behaviour SQLite has no counterpart of, e.g. pg_terminate_backend)."""
    warehouse = Warehouse("postgres", postgres_schema_url, sa.create_engine(postgres_schema_url))
    try:
        yield warehouse
    finally:
        warehouse.engine.dispose()
