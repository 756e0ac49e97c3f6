"""The warehouse fixtures (a real SQLite file and a fresh PostgreSQL schema) for the asset tests."""

from liq_pipeline_tests.warehouse.conftest import wh

__all__ = ["wh"]
