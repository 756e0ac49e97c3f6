"""The one place the Definitions are built and the environment is read (through dg.EnvVar)."""

import logging
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import dagster as dg
import yaml

from liq_pipeline.assets.analytics import build_analytics_assets
from liq_pipeline.assets.kwery import build_kwery_asset
from liq_pipeline.assets.newhedge import build_newhedge_assets
from liq_pipeline.assets.totals import build_totals_asset
from liq_pipeline.checks import build_freshness_checks, build_reconciliation_check, freshness_rules
from liq_pipeline.clients.kwery import KWERY_BASE_URL
from liq_pipeline.clients.newhedge import NEWHEDGE_BASE_URL
from liq_pipeline.jobs import build_jobs
from liq_pipeline.partitions import DEFAULT_START_DATE, daily_partitions, partition_key
from liq_pipeline.resources import KweryResource, NewhedgeResource
from liq_pipeline.schedules import build_schedules
from liq_pipeline.sensors import build_freshness_sensor
from liq_pipeline.warehouse import WarehouseIOManager, WarehouseResource, warehouse_kind

SYMBOL_PATTERN = re.compile(r"^[A-Z0-9]{1,20}$")


def parse_symbols(value: str) -> list[str]:
    """`LIQ_KWERY_SYMBOLS` ("BTC,ETH") → ["BTC", "ETH"], validated, de-duplicated, in order."""
    symbols = list(dict.fromkeys(s.strip().upper() for s in value.split(",") if s.strip()))
    bad = [s for s in symbols if not SYMBOL_PATTERN.match(s)]
    if not symbols or bad:
        raise ValueError(
            f"LIQ_KWERY_SYMBOLS must be comma-separated symbols like 'BTC,ETH', got {value!r}"
        )
    return symbols


def default_warehouse_url() -> str:
    """An SQLite file in the git-ignored `.liq/` folder beside the Dagster instance."""
    home = dg.EnvVar("DAGSTER_HOME").get_value() or str(Path.cwd())
    return f"sqlite:///{Path(home).resolve() / '.liq' / 'warehouse.sqlite'}"


def instance_home_problem(home: str | None) -> str | None:
    """What is wrong with DAGSTER_HOME for this project, if anything (None: it is fine)."""
    if not home:
        return (
            "DAGSTER_HOME is not set: Dagster keeps this command's run history in a temporary "
            "instance that is deleted when it ends, without the API pools. Run "
            "`export DAGSTER_HOME=/path/to/liq_pipeline` (the folder holding its dagster.yaml)."
        )
    config_file = Path(home) / "dagster.yaml"
    if not config_file.is_file():
        return (
            f"DAGSTER_HOME={home} has no dagster.yaml: Dagster runs with its defaults, without "
            "the one-run-per-API pools. Copy the project's dagster.yaml there (or "
            "deploy/dagster.postgres.yaml for PostgreSQL instance storage)."
        )
    try:
        config = yaml.safe_load(config_file.read_text()) or {}
        pools = config.get("concurrency", {}).get("pools")
    except (yaml.YAMLError, AttributeError):
        pools = None  # Dagster itself says what is wrong with the file
    if not pools:
        return (
            f"{config_file} sets no concurrency pools: concurrent runs could exceed the APIs' "
            "rate limits. Start from the project's dagster.yaml or deploy/dagster.postgres.yaml."
        )
    return None


def env_or_default(name: str, default: str) -> str | dg.EnvVar:
    # Bound as an EnvVar when set, so the UI and run config show the variable's name, never its
    # value (a warehouse URL may carry a password).
    return dg.EnvVar(name) if dg.EnvVar(name).get_value() else default


def build_definitions(
    *, start_date: str = DEFAULT_START_DATE, symbols: Sequence[str] = ("BTC",)
) -> dg.Definitions:
    partitions_def = daily_partitions(start_date)
    first_day = partition_key(partitions_def.start)
    url = dg.EnvVar("LIQ_WAREHOUSE_URL").get_value() or default_warehouse_url()
    warehouse_url = env_or_default("LIQ_WAREHOUSE_URL", url)
    # The catalog's storage kind: where the tables live (sqlite or postgresql).
    storage = warehouse_kind(url)
    with warnings.catch_warnings():
        # Deliberate choices, so their notices are kept out of every load: single-run backfills
        # (beta), partition-aware reconciliation checks (preview) and code references (beta).
        for category in (dg.BetaWarning, dg.PreviewWarning):
            warnings.simplefilter("ignore", category)
        kwery_assets = [build_kwery_asset(s, partitions_def, storage) for s in symbols]
        analytics_assets = [
            a for s in symbols for a in build_analytics_assets(s, partitions_def, storage)
        ]
        newhedge_assets = build_newhedge_assets(partitions_def, storage)
        totals_asset = build_totals_asset(partitions_def, storage)
        reconciliation = [build_reconciliation_check(partitions_def)] if "BTC" in symbols else []
        # Each asset's file and line in the catalog (local paths: the repository has no fixed
        # remote to link to).
        assets = dg.with_source_code_references(
            [*kwery_assets, *analytics_assets, newhedge_assets, totals_asset]
        )
    rules = freshness_rules(kwery_assets, [newhedge_assets, totals_asset])
    freshness_checks = build_freshness_checks(rules, first_day)
    kwery_job, newhedge_job, backfill_job = build_jobs(reconciliation, freshness_checks)
    return dg.Definitions(
        # One process per run: the steps are I/O-bound and sequential per API pool, and a
        # subprocess per step would add seconds of start-up to every daily run.
        executor=dg.in_process_executor,
        assets=assets,
        asset_checks=[*reconciliation, *freshness_checks],
        jobs=[kwery_job, newhedge_job, backfill_job],
        schedules=build_schedules(kwery_job, newhedge_job),
        sensors=[build_freshness_sensor(rules, first_day)],
        resources={
            "io_manager": WarehouseIOManager(url=warehouse_url),
            "warehouse": WarehouseResource(url=warehouse_url),
            "kwery": KweryResource(
                api_key=dg.EnvVar("KWERY_API_KEY"),
                base_url=env_or_default("KWERY_BASE_URL", KWERY_BASE_URL),
            ),
            "newhedge": NewhedgeResource(
                api_token=dg.EnvVar("NEWHEDGE_API_TOKEN"),
                base_url=env_or_default("NEWHEDGE_BASE_URL", NEWHEDGE_BASE_URL),
            ),
        },
    )


if problem := instance_home_problem(dg.EnvVar("DAGSTER_HOME").get_value()):
    logging.getLogger("liq_pipeline").warning(problem)

defs = build_definitions(
    start_date=dg.EnvVar("LIQ_START_DATE").get_value() or DEFAULT_START_DATE,
    symbols=parse_symbols(dg.EnvVar("LIQ_KWERY_SYMBOLS").get_value() or "BTC"),
)
