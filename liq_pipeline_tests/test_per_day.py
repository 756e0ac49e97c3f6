"""Per-day metadata and check evaluations of single-run ranges, on a real (temporary) instance."""

import dagster as dg
import pandas as pd
import pytest

from liq_pipeline.per_day import DayCheck, add_day_metadata, check_evaluations, markdown_table, usd

DAILY = dg.DailyPartitionsDefinition(start_date="2026-03-01", timezone="UTC")
RANGE = {
    "dagster/asset_partition_range_start": "2026-03-01",
    "dagster/asset_partition_range_end": "2026-03-03",
}
DAYS = ("2026-03-01", "2026-03-02", "2026-03-03")


def build(severity: dg.AssetCheckSeverity, bad_day: str | None) -> list[dg.AssetsDefinition]:
    spec = dg.AssetCheckSpec("positive", asset="events", partitions_def=DAILY, blocking=True)

    @dg.asset(
        partitions_def=DAILY,
        backfill_policy=dg.BackfillPolicy.single_run(),
        check_specs=[spec],
    )
    def events(context: dg.AssetExecutionContext):
        keys = context.partition_keys
        add_day_metadata(context, {k: {"dagster/row_count": i + 1} for i, k in enumerate(keys)})
        yield dg.Output(len(keys))
        checks = {k: DayCheck(k != bad_day, {"day": k}) for k in keys}
        yield from check_evaluations(context, spec, checks, severity=severity)

    @dg.asset(partitions_def=DAILY, backfill_policy=dg.BackfillPolicy.single_run(), deps=[events])
    def summary() -> None:
        return None

    return [events, summary]


def run(
    instance: dg.DagsterInstance, severity: dg.AssetCheckSeverity, bad_day: str | None
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        build(severity, bad_day),
        instance=instance,
        tags=RANGE,
        resources={"io_manager": dg.InMemoryIOManager()},
        raise_on_error=False,
    )


def check_status(instance: dg.DagsterInstance) -> dict[str, tuple[str, bool]]:
    key = dg.AssetCheckKey(dg.AssetKey("events"), "positive")
    infos = instance.event_log_storage.get_asset_check_partition_info([key])
    return {i.partition_key: (i.latest_execution_status.value, i.is_current) for i in infos}


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def test_each_day_gets_its_own_metadata_and_its_own_current_evaluation(instance):
    result = run(instance, dg.AssetCheckSeverity.ERROR, bad_day=None)
    assert result.success
    events = result.asset_materializations_for_node("events")
    assert [(m.partition, m.metadata["dagster/row_count"].value) for m in events] == [
        ("2026-03-01", 1),
        ("2026-03-02", 2),
        ("2026-03-03", 3),
    ]
    assert check_status(instance) == dict.fromkeys(DAYS, ("SUCCEEDED", True))
    evaluations = result.get_asset_check_evaluations()
    assert [(e.partition, e.metadata["day"].value) for e in evaluations] == [(d, d) for d in DAYS]


def test_a_blocking_check_failing_one_day_stops_what_is_downstream(instance):
    result = run(instance, dg.AssetCheckSeverity.ERROR, bad_day="2026-03-02")
    assert not result.success
    assert result.asset_materializations_for_node("summary") == []
    assert check_status(instance) == {
        "2026-03-01": ("SUCCEEDED", True),
        "2026-03-02": ("FAILED", True),
        "2026-03-03": ("SUCCEEDED", True),
    }


def test_a_warning_failing_one_day_lets_downstream_run(instance):
    result = run(instance, dg.AssetCheckSeverity.WARN, bad_day="2026-03-02")
    assert result.success
    assert [m.partition for m in result.asset_materializations_for_node("summary")] == list(DAYS)
    assert check_status(instance)["2026-03-02"] == ("FAILED", True)


def test_a_later_materialization_makes_the_old_evaluation_outdated(instance):
    run(instance, dg.AssetCheckSeverity.ERROR, bad_day=None)
    instance.report_runless_asset_event(dg.AssetMaterialization("events", partition="2026-03-02"))
    status = check_status(instance)
    assert status["2026-03-01"] == ("SUCCEEDED", True)
    assert status["2026-03-02"] == ("SUCCEEDED", False)  # not evaluated against the new data


def test_markdown_table_and_usd_format():
    frame = pd.DataFrame({"exchange": ["okx"], "long": [314052302.035152]})
    assert markdown_table(frame, {"long": usd}).splitlines() == [
        "| exchange | long |",
        "|---|---|",
        "| okx | $314,052,302 |",
    ]
    assert [usd(v) for v in (-1234.6, -0.4, 0.0, 999.5, 1e9)] == [
        "-$1,235", "$0", "$0", "$1,000", "$1,000,000,000",
    ]  # fmt: skip
