"""Partitioned jobs behind the daily schedules."""

from typing import Any

import dagster as dg

# What dg.define_asset_job returns (an unresolved asset job) has no public type name.
AssetJob = Any


def build_jobs(
    reconciliation_checks: list[dg.AssetChecksDefinition],
    freshness_checks: list[dg.AssetChecksDefinition],
) -> tuple[AssetJob, AssetJob]:
    """The Kwery job (events only) and the Newhedge job (metrics, totals, reconciliation).

    The reconciliation compares Kwery with Newhedge's Binance numbers, so it runs with the later
    of the two jobs: the Newhedge one, after the day's Kwery events have landed. Freshness checks
    belong to their sensor, not to the runs they judge.
    """
    reconciliation = dg.AssetSelection.checks(*reconciliation_checks)
    freshness = dg.AssetSelection.checks(*freshness_checks)
    kwery_job = dg.define_asset_job(
        "kwery_daily_job",
        selection=dg.AssetSelection.groups("kwery") - reconciliation - freshness,
        description="Yesterday's (or a backfill range's) Kwery liquidation events.",
    )
    newhedge_job = dg.define_asset_job(
        "newhedge_daily_job",
        selection=(dg.AssetSelection.groups("newhedge", "totals") - freshness) | reconciliation,
        description="The 8 Newhedge metrics, the daily totals and the Kwery reconciliation.",
    )
    return kwery_job, newhedge_job
