"""Per-day truth of single-run ranges: each day's own metadata and check evaluations.

A run over N days still produces one materialization per (asset, day). Dagster's public API lets a
step put that day's figures on that day's event (`add_asset_metadata(partition_key=...)`) and
yield one check evaluation per day, aimed at that day's materialization. Every evaluation is one
event-log write (Dagster does not batch them), so only checks that can fail are evaluated per day
(README, Data quality).
"""

import inspect
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import pandas as pd

StepContext = dg.AssetExecutionContext | dg.AssetCheckExecutionContext

# Dagster 1.13 exports AssetCheckEvaluation (with its `partition`) but not the type of its
# `target_materialization_data`, without which the UI counts a partition's evaluation as outdated
# ("is_current" compares it with the partition's latest materialization). Take the type from the
# public constructor's signature rather than importing it from dagster's private modules.
_TargetMaterialization = typing.get_args(
    inspect.signature(dg.AssetCheckEvaluation).parameters["target_materialization_data"].annotation
)[0]


@dataclass(frozen=True)
class DayCheck:
    """The result of one check for one day."""

    passed: bool
    metadata: Mapping[str, Any] = field(default_factory=dict)


def add_day_metadata(
    context: dg.AssetExecutionContext,
    by_day: Mapping[str, Mapping[str, Any]],
    asset_key: dg.AssetKey | None = None,
) -> None:
    """Put each day's figures on that day's materialization (partition key → metadata)."""
    for key, metadata in by_day.items():
        context.add_asset_metadata(metadata, asset_key=asset_key, partition_key=key)


def materialization_target(record: dg.EventLogRecord) -> Any:
    """The `target_materialization_data` of an evaluation that judges this materialization."""
    return _TargetMaterialization(
        storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp
    )


def latest_materializations(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, partition_keys: Iterable[str]
) -> dict[str, dg.EventLogRecord]:
    """The newest materialization record of each partition that has one (few queries, any range)."""
    found: dict[str, dg.EventLogRecord] = {}
    missing = set(partition_keys)
    cursor = None
    while missing:
        result = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=sorted(missing)),
            limit=len(missing),
            cursor=cursor,
        )
        for record in result.records:  # newest first
            if record.partition_key in missing:
                found[record.partition_key] = record
                missing.discard(record.partition_key)
        if not result.has_more:
            break
        cursor = result.cursor
    return found


def check_evaluations(
    context: StepContext,
    spec: dg.AssetCheckSpec,
    by_day: Mapping[str, DayCheck],
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
) -> Iterator[dg.Output | dg.AssetCheckEvaluation]:
    """One evaluation of `spec` per day, each aimed at that day's latest materialization.

    Yield these from the step after the asset's output (so this run's materializations are the
    latest). A blocking spec keeps blocking: Dagster fails the step, and skips what is downstream,
    when any day's evaluation fails with ERROR severity.
    """
    if spec.key not in context.selected_asset_check_keys:
        return
    op_context = context.op_execution_context
    targets = latest_materializations(op_context.instance, spec.asset_key, by_day)
    # The step must still produce the check's (empty) output; the evaluations carry the results.
    output_name = op_context.assets_def.get_output_name_for_asset_check_key(spec.key)
    yield dg.Output(None, output_name=output_name)
    for key, result in by_day.items():
        record = targets.get(key)
        target = materialization_target(record) if record is not None else None
        yield dg.AssetCheckEvaluation(
            asset_key=spec.asset_key,
            check_name=spec.name,
            passed=result.passed,
            metadata=result.metadata,
            severity=severity,
            blocking=spec.blocking,
            partition=key,
            target_materialization_data=target,
        )


def markdown_table(
    frame: pd.DataFrame, formats: Mapping[str, Callable[[Any], str]] | None = None
) -> str:
    """`frame` as a Markdown table (the UI renders it), cells formatted by column if given."""
    formats = formats or {}
    columns = [str(c) for c in frame.columns]
    header = "| " + " | ".join(columns) + " |"
    rule = "|" + "---|" * len(columns)
    body = [
        "| " + " | ".join(formats.get(c, str)(v) for c, v in zip(columns, row, strict=True)) + " |"
        for row in frame.itertuples(index=False)
    ]
    return "\n".join([header, rule, *body])


def usd(value: float) -> str:
    """`314052302.035152` → `$314,052,302`, `-1234.6` → `-$1,235`; whole dollars are what a
    reader compares."""
    dollars = round(float(value))
    return f"{'-' if dollars < 0 else ''}${abs(dollars):,}"
