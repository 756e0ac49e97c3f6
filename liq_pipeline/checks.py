"""Checks that span assets: Kwery ↔ Newhedge reconciliation and partition freshness."""

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from liq_pipeline.assets.kwery import kwery_asset_name
from liq_pipeline.partitions import partition_key, run_window, window_days
from liq_pipeline.per_day import DayCheck, check_evaluations, materialization_target
from liq_pipeline.warehouse import WarehouseResource

RECONCILIATION_CHECK = "reconciles_with_newhedge_binance"
RECONCILIATION_FIGURES = (
    "kwery_long_usd",
    "newhedge_long_usd",
    "long_ratio",
    "kwery_short_usd",
    "newhedge_short_usd",
    "short_ratio",
)

FRESHNESS_CHECK = "freshness_check"
# The newest day (yesterday, UTC) must be materialized by these times of day (UTC).
KWERY_FRESHNESS_DEADLINE = dt.time(2, 0)  # 02:00: the 00:15 run plus its retries
NEWHEDGE_FRESHNESS_DEADLINE = dt.time(4, 0)  # 04:00: published ~01:00, run at 01:30, plus retries
ONE_DAY = dt.timedelta(days=1)


def reconciliation_table(
    kwery_sums: pd.DataFrame,
    binance_long: pd.DataFrame,
    binance_short: pd.DataFrame,
    days: pd.DatetimeIndex,
) -> pd.DataFrame:
    """Per day: Kwery BTC long/short USD, Newhedge Binance long/short USD, and their ratios."""
    table = pd.DataFrame({"day": days})
    for side, published in (("long", binance_long), ("short", binance_short)):
        events = kwery_sums[kwery_sums["side"] == side].set_index("day")["usd_value"]
        table[f"kwery_{side}_usd"] = events.reindex(days, fill_value=0.0).to_numpy()
        table[f"newhedge_{side}_usd"] = (
            published.set_index("day")["value"].abs().reindex(days).to_numpy()
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            table[f"{side}_ratio"] = table[f"kwery_{side}_usd"] / table[f"newhedge_{side}_usd"]
    return table


def day_checks(table: pd.DataFrame) -> dict[str, DayCheck]:
    """Per day: passed if both ratios are in (0, 1], with that day's sums and ratios.

    Above 1 (more events than Newhedge counted), NaN (no Newhedge value) or 0 (no events) all
    mean the two sources disagree about that day.
    """
    checks = {}
    for row in table.to_dict("records"):
        ratios = (row["long_ratio"], row["short_ratio"])
        plausible = all(0 < ratio <= 1.0 + 1e-9 for ratio in ratios)  # NaN compares False
        checks[partition_key(row["day"])] = DayCheck(
            passed=plausible,
            metadata={
                name: None
                if np.isnan(row[name])
                else round(float(row[name]), 6 if "ratio" in name else 2)
                for name in RECONCILIATION_FIGURES
            },
        )
    return checks


def build_reconciliation_check(partitions_def: dg.PartitionsDefinition) -> dg.AssetChecksDefinition:
    # Yields one AssetCheckEvaluation per day (supported by Dagster, see per_day.py); the
    # decorator's annotation only knows a returned AssetCheckResult.
    @dg.asset_check(  # type: ignore[arg-type]
        asset=kwery_asset_name("BTC"),
        name=RECONCILIATION_CHECK,
        description=(
            "Kwery BTC events summed per day and side vs Newhedge's Binance long/short. Binance "
            "publishes at most one liquidation per symbol per second, so the event sums are lower "
            "bounds: the check warns when they exceed Newhedge's figure or the day has no events."
        ),
        # Also the spec's additional_deps: the check's upstream in the asset graph.
        additional_ins={
            "binance_long": dg.AssetIn("bitcoin_liquidations_binance_long"),
            "binance_short": dg.AssetIn("bitcoin_liquidations_binance_short"),
        },
        partitions_def=partitions_def,
        blocking=False,
    )
    def reconciles_with_newhedge_binance(
        context: dg.AssetCheckExecutionContext,
        warehouse: WarehouseResource,
        binance_long: pd.DataFrame,
        binance_short: pd.DataFrame,
    ) -> Iterator[dg.Output[None] | dg.AssetCheckEvaluation]:
        window = run_window(context)
        days = window_days(window.start, window.end)
        sums = warehouse.kwery_daily_usd_by_side("BTC", window.start, window.end)
        table = reconciliation_table(sums, binance_long, binance_short, days)
        [spec] = context.check_specs
        yield from check_evaluations(
            context, spec, day_checks(table), severity=dg.AssetCheckSeverity.WARN
        )

    return reconciles_with_newhedge_binance


# --- freshness: evaluated by the sensor (sensors.py), or by the check when run from the UI ------


@dataclass(frozen=True)
class FreshnessRule:
    """The assets of one daily job, whose newest due day must exist by `deadline` (UTC)."""

    name: str  # the check's step, e.g. kwery_freshness
    deadline: dt.time
    asset_keys: tuple[dg.AssetKey, ...]


def freshness_rules(
    kwery_assets: Sequence[dg.AssetsDefinition], newhedge_assets: Sequence[dg.AssetsDefinition]
) -> list[FreshnessRule]:
    """Kwery's raw events by 02:00 UTC; Newhedge's metrics and the totals by 04:00 UTC."""

    def keys(assets: Sequence[dg.AssetsDefinition]) -> tuple[dg.AssetKey, ...]:
        return tuple(sorted((k for a in assets for k in a.keys), key=dg.AssetKey.to_user_string))

    return [
        FreshnessRule("kwery_freshness", KWERY_FRESHNESS_DEADLINE, keys(kwery_assets)),
        FreshnessRule("newhedge_freshness", NEWHEDGE_FRESHNESS_DEADLINE, keys(newhedge_assets)),
    ]


def due_day(deadline: dt.time, now: dt.datetime) -> tuple[str, dt.datetime]:
    """The partition that must exist at `now`, and the deadline from which it must.

    A day is due from the deadline of the day after it: before 02:00 UTC (Kwery's deadline) the
    day before yesterday is still the newest one due, yesterday from 02:00 on.
    """
    now = now.astimezone(dt.UTC)
    deadline_at = dt.datetime.combine(now.date(), deadline, tzinfo=dt.UTC)
    if deadline_at > now:
        deadline_at -= ONE_DAY
    return partition_key(deadline_at - ONE_DAY), deadline_at


@dataclass(frozen=True)
class Freshness:
    """One asset's freshness at one moment: is the day due by then materialized?"""

    asset_key: dg.AssetKey
    due: str | None  # None: no day is due yet (the partitions start later)
    deadline: dt.datetime
    due_record: dg.EventLogRecord | None  # the due day's newest materialization
    latest: dg.EventLogRecord | None  # the asset's newest materialization, of any day

    @property
    def passed(self) -> bool:
        return self.due is None or self.due_record is not None

    @property
    def description(self) -> str:
        deadline = f"{self.deadline:%Y-%m-%d %H:%M} UTC"
        if self.due is None:
            return f"No day is due yet (as of the deadline of {deadline})."
        if self.passed:
            return f"{self.due} is materialized (due by {deadline})."
        if self.latest is None:
            return f"{self.due} is not materialized (due by {deadline}); nothing ever was."
        return (
            f"{self.due} is not materialized (due by {deadline}); the newest materialization "
            f"is of {self.latest.partition_key}."
        )

    @property
    def metadata(self) -> dict[str, Any]:
        def when(record: dg.EventLogRecord | None) -> dg.MetadataValue | None:
            return dg.MetadataValue.timestamp(record.timestamp) if record else None

        return {
            "expected_partition": self.due,
            "deadline": dg.MetadataValue.timestamp(self.deadline),
            "expected_partition_materialized_at": when(self.due_record),
            "latest_materialization_partition": self.latest.partition_key if self.latest else None,
            "latest_materialization_at": when(self.latest),
        }

    def state(self) -> dict[str, Any]:
        """What the sensor compares between ticks: the result, the day and the materialization
        judged (the UI shows a check's result only beside the materialization it judged)."""
        return {
            "passed": self.passed,
            "due": self.due,
            "judged": self.latest.storage_id if self.latest else None,
        }

    def _common(self) -> dict[str, Any]:
        return {
            "asset_key": self.asset_key,
            "check_name": FRESHNESS_CHECK,
            "passed": self.passed,
            "severity": dg.AssetCheckSeverity.WARN,
            "description": self.description,
            "metadata": self.metadata,
        }

    def result(self) -> dg.AssetCheckResult:
        """In a run (the check launched from the UI); Dagster adds the materialization judged."""
        return dg.AssetCheckResult(**self._common())

    def evaluation(self) -> dg.AssetCheckEvaluation:
        """Outside a run (reported by the sensor), aimed at the asset's newest materialization."""
        target = materialization_target(self.latest) if self.latest else None
        return dg.AssetCheckEvaluation(
            **self._common(), blocking=False, target_materialization_data=target
        )


def _newest(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, partition: str | None = None
) -> dg.EventLogRecord | None:
    # One indexed query for one partition: never the set of every materialized day.
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=asset_key, asset_partitions=[partition] if partition else None
        ),
        limit=1,
    ).records
    return records[0] if records else None


def evaluate_freshness(
    instance: dg.DagsterInstance,
    asset_key: dg.AssetKey,
    deadline: dt.time,
    first_day: str,
    now: dt.datetime,
) -> Freshness:
    """`asset_key`'s freshness at `now`; `first_day` is the first partition (nothing before it
    is ever due)."""
    due, deadline_at = due_day(deadline, now)
    latest = _newest(instance, asset_key)
    if due < first_day:
        return Freshness(asset_key, None, deadline_at, None, latest)
    due_record = (
        latest
        if latest is not None and latest.partition_key == due
        else _newest(instance, asset_key, due)
    )
    return Freshness(asset_key, due, deadline_at, due_record, latest)


def build_freshness_checks(
    rules: Sequence[FreshnessRule], first_day: str
) -> list[dg.AssetChecksDefinition]:
    """One check step per rule, named after it (kwery_freshness, newhedge_freshness)."""
    return [_freshness_check(rule, first_day) for rule in rules]


def _freshness_check(rule: FreshnessRule, first_day: str) -> dg.AssetChecksDefinition:
    deadline = f"{rule.deadline:%H:%M} UTC"
    specs = [
        dg.AssetCheckSpec(
            FRESHNESS_CHECK,
            asset=key,
            description=(
                f"Yesterday's UTC partition exists from {deadline} on (before {deadline}, the "
                "day before's); warns. Evaluated every 10 minutes by freshness_checks_sensor."
            ),
            blocking=False,
        )
        for key in rule.asset_keys
    ]

    @dg.multi_asset_check(
        name=rule.name,
        specs=specs,
        can_subset=True,
        description=f"Whether the newest day due by {deadline} is materialized, per asset.",
    )
    def freshness(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
        now = dt.datetime.now(dt.UTC)
        for check_key in sorted(context.selected_asset_check_keys, key=str):
            yield evaluate_freshness(
                context.instance, check_key.asset_key, rule.deadline, first_day, now
            ).result()

    return freshness
