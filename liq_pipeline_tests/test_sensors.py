"""The freshness sensor and checks, on a frozen clock (no wall-clock dependence)."""

import dagster as dg
import pytest
from freezegun import freeze_time

from liq_pipeline.definitions import build_definitions

KWERY = dg.AssetKey("kwery_liquidations_btc")
TOTALS = dg.AssetKey("daily_liquidation_totals")


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    return build_definitions(start_date="2026-03-01", symbols=("BTC",))


def evaluate_freshness(defs: dg.Definitions, instance: dg.DagsterInstance) -> dict:
    """Run the sensor once, execute the checks it requests, return {asset key: passed}."""
    sensor = defs.resolve_sensor_def("freshness_checks_sensor")
    context = dg.build_sensor_context(instance=instance, definitions=defs)
    result = sensor.evaluate_tick(context)
    check_keys = {key for request in result.run_requests for key in request.asset_check_keys}
    job = dg.define_asset_job("freshness", selection=dg.AssetSelection.checks(*check_keys))
    with_job = dg.Definitions.merge(defs, dg.Definitions(jobs=[job]))
    run = with_job.resolve_job_def("freshness").execute_in_process(instance=instance)
    return {
        evaluation.asset_key: evaluation.passed for evaluation in run.get_asset_check_evaluations()
    }


def land(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=partition))


def test_sensor_is_running_by_default(defs):
    with dg.instance_for_test():
        sensor = defs.resolve_sensor_def("freshness_checks_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds == 600


def test_missing_yesterday_is_flagged_after_the_deadline_and_passes_once_it_lands(defs):
    with dg.instance_for_test() as instance:
        land(instance, KWERY, "2026-03-19")  # the day before yesterday: not enough
        with freeze_time("2026-03-21T02:30:00Z"):  # after the 02:00 Kwery deadline
            results = evaluate_freshness(defs, instance)
        assert results[KWERY] is False
        land(instance, KWERY, "2026-03-20")
        with freeze_time("2026-03-21T02:40:00Z"):
            results = evaluate_freshness(defs, instance)
        assert results[KWERY] is True


def test_before_the_deadline_the_previous_day_is_what_counts(defs):
    with dg.instance_for_test() as instance:
        land(instance, KWERY, "2026-03-19")
        land(instance, TOTALS, "2026-03-19")
        # 01:00 UTC on the 21st: the Kwery deadline (02:00) has not passed, so the 20th is not
        # due yet and the 19th satisfies it; same for the totals (deadline 04:00).
        with freeze_time("2026-03-21T01:00:00Z"):
            results = evaluate_freshness(defs, instance)
        assert results[KWERY] is True
        assert results[TOTALS] is True
        with freeze_time("2026-03-21T04:30:00Z"):
            results = evaluate_freshness(defs, instance)
        assert results[KWERY] is False
        assert results[TOTALS] is False
