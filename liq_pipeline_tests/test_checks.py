"""The checks' place in the definitions: lineage, step names, and which jobs run them."""

import dagster as dg
import pytest

from liq_pipeline.checks import (
    FRESHNESS_CHECK,
    KWERY_FRESHNESS_DEADLINE,
    NEWHEDGE_FRESHNESS_DEADLINE,
    RECONCILIATION_CHECK,
)
from liq_pipeline.clients import NEWHEDGE_METRICS
from liq_pipeline.definitions import build_definitions

KWERY = dg.AssetKey("kwery_liquidations_btc")
BINANCE = {
    dg.AssetKey("bitcoin_liquidations_binance_long"),
    dg.AssetKey("bitcoin_liquidations_binance_short"),
}
RECONCILIATION = dg.AssetCheckKey(KWERY, RECONCILIATION_CHECK)
NEWHEDGE_AND_TOTALS = {
    *(dg.AssetKey(m) for m in NEWHEDGE_METRICS),
    dg.AssetKey("daily_liquidation_totals"),
}


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    return build_definitions(start_date="2026-03-01", symbols=("BTC", "ETH"))


def checks_named(defs: dg.Definitions, name: str) -> dg.AssetChecksDefinition:
    [found] = [c for c in defs.asset_checks or [] if c.node_def.name == name]
    return found


def test_the_reconciliation_depends_on_newhedges_binance_metrics_in_the_lineage(defs):
    [spec] = checks_named(
        defs, "kwery_liquidations_btc_reconciles_with_newhedge_binance"
    ).check_specs
    assert spec.key == RECONCILIATION
    assert {dep.asset_key for dep in spec.additional_deps} == BINANCE
    graph = defs.resolve_asset_graph()
    assert graph.get(RECONCILIATION).parent_entity_keys == {KWERY, *BINANCE}


def test_freshness_is_one_readable_step_per_api_with_one_check_per_asset(defs):
    kwery = checks_named(defs, "kwery_freshness")
    newhedge = checks_named(defs, "newhedge_freshness")
    assert {s.asset_key for s in kwery.check_specs} == {
        KWERY,
        dg.AssetKey("kwery_liquidations_eth"),
    }
    assert {s.asset_key for s in newhedge.check_specs} == NEWHEDGE_AND_TOTALS
    for check, deadline in (
        (kwery, KWERY_FRESHNESS_DEADLINE),
        (newhedge, NEWHEDGE_FRESHNESS_DEADLINE),
    ):
        assert {s.name for s in check.check_specs} == {FRESHNESS_CHECK}
        assert all(not s.blocking and s.partitions_def is None for s in check.check_specs)
        assert all(
            f"from {deadline:%H:%M} UTC on" in (s.description or "") for s in check.check_specs
        )
    # The freshness of one asset can be run alone (from the asset's page).
    assert kwery.can_subset and newhedge.can_subset


def test_the_jobs_leave_freshness_to_its_sensor_and_run_the_reconciliation_with_newhedge(defs):
    steps = {
        name: {node.name for node in defs.resolve_job_def(name).graph.node_defs}
        for name in ("kwery_daily_job", "newhedge_daily_job", "backfill_job")
    }
    assert steps == {
        "kwery_daily_job": {
            *(f"kwery_liquidation{kind}_{s}" for kind in ("s", "_bars", "_cascades")
              for s in ("btc", "eth")),
        },
        "newhedge_daily_job": {
            "newhedge_metrics", "daily_liquidation_totals",
            "kwery_liquidations_btc_reconciles_with_newhedge_binance",
        },
        "backfill_job": {
            "newhedge_metrics", "daily_liquidation_totals",
            "kwery_liquidations_btc_reconciles_with_newhedge_binance",
            *(f"kwery_liquidation{kind}_{s}" for kind in ("s", "_bars", "_cascades")
              for s in ("btc", "eth")),
        },
    }  # fmt: skip
