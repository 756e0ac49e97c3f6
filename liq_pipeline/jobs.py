"""Partitioned jobs: the two behind the daily schedules, and one for backfills of every asset."""

from typing import Any

import dagster as dg

# What dg.define_asset_job returns (an unresolved asset job) has no public type name.
AssetJob = Any


def build_jobs(
    reconciliation_checks: list[dg.AssetChecksDefinition],
    freshness_checks: list[dg.AssetChecksDefinition],
) -> tuple[AssetJob, AssetJob, AssetJob]:
    """The Kwery job (events and their analytics), the Newhedge job (metrics, totals,
    reconciliation) and the backfill job (every asset and its per-day checks).

    The analytics (bars, cascades) run in the Kwery job, after the day's events in the same run:
    they are ready as soon as the day lands, need no extra sensor, and a failed fetch skips them.

    The reconciliation compares Kwery with Newhedge's Binance numbers, so it runs with the later
    of the two daily jobs: the Newhedge one, after the day's Kwery events have landed. Freshness
    checks belong to their sensor, not to the runs they judge: they say whether the newest due day
    exists now, which a backfill of past days has nothing to do with.
    """
    reconciliation = dg.AssetSelection.checks(*reconciliation_checks)
    freshness = dg.AssetSelection.checks(*freshness_checks)
    kwery_job = dg.define_asset_job(
        "kwery_daily_job",
        selection=dg.AssetSelection.groups("kwery", "analytics") - reconciliation - freshness,
        description="Yesterday's (or a backfill range's) Kwery liquidation events, then their "
        "per-minute bars and cascades.",
    )
    newhedge_job = dg.define_asset_job(
        "newhedge_daily_job",
        selection=(dg.AssetSelection.groups("newhedge", "totals") - freshness) | reconciliation,
        description="The 8 Newhedge metrics, the daily totals and the Kwery reconciliation.",
    )
    backfill_job = dg.define_asset_job(
        "backfill_job",
        selection=dg.AssetSelection.all() - freshness,
        description="Every asset and its per-day checks, without the freshness checks.",
    )
    return kwery_job, newhedge_job, backfill_job
