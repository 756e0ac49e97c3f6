import datetime as dt

import dagster as dg
import pytest

from liq_pipeline.definitions import build_definitions


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    return build_definitions(start_date="2026-01-01", symbols=("BTC", "ETH"))


def tick(defs: dg.Definitions, name: str, at: dt.datetime) -> list[dg.RunRequest]:
    schedule = defs.resolve_schedule_def(name)
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=at, repository_def=defs.get_repository_def()
        )
        return list(schedule.evaluate_tick(context).run_requests or [])


@pytest.mark.parametrize(
    ("name", "cron", "job"),
    [
        ("kwery_daily_schedule", "15 0 * * *", "kwery_daily_job"),
        ("newhedge_daily_schedule", "30 1 * * *", "newhedge_daily_job"),
    ],
)
def test_schedules_run_daily_after_the_day_ends_and_start_stopped(defs, name, cron, job):
    schedule = defs.resolve_schedule_def(name)
    assert schedule.cron_schedule == cron
    assert schedule.execution_timezone == "UTC"
    assert schedule.job_name == job
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED


@pytest.mark.parametrize("name", ["kwery_daily_schedule", "newhedge_daily_schedule"])
def test_a_tick_materializes_the_day_that_just_ended(defs, name):
    hour, minute = (0, 15) if name.startswith("kwery") else (1, 30)
    at = dt.datetime(2026, 3, 21, hour, minute, tzinfo=dt.UTC)
    [request] = tick(defs, name, at)
    assert request.partition_key == "2026-03-20"
    # Month and year boundaries.
    [request] = tick(defs, name, dt.datetime(2026, 3, 1, hour, minute, tzinfo=dt.UTC))
    assert request.partition_key == "2026-02-28"


def test_jobs_select_their_assets_and_the_reconciliation_runs_with_newhedge(defs):
    kwery = defs.resolve_job_def("kwery_daily_job")
    newhedge = defs.resolve_job_def("newhedge_daily_job")
    # The analytics run in the Kwery job, after the day's events (docs/analytics.md).
    assert {k.to_user_string() for k in kwery.asset_layer.selected_asset_keys} == {
        f"kwery_{table}_{symbol}"
        for table in ("liquidations", "liquidation_bars", "liquidation_cascades")
        for symbol in ("btc", "eth")
    }
    assert {k.to_user_string() for k in newhedge.asset_layer.selected_asset_keys} == {
        *(
            f"bitcoin_liquidations_{e}_{s}"
            for e in ("binance", "bybit", "deribit", "okx")
            for s in ("long", "short")
        ),
        "daily_liquidation_totals",
    }
    kwery_checks = {
        f"{k.asset_key.to_user_string()}:{k.name}"
        for k in kwery.asset_layer.asset_graph.asset_check_keys
    }
    newhedge_checks = {
        f"{k.asset_key.to_user_string()}:{k.name}"
        for k in newhedge.asset_layer.asset_graph.asset_check_keys
    }
    assert kwery_checks == {
        f"kwery_liquidations_{s}:usd_value_matches_quantity_times_avg_price" for s in ("btc", "eth")
    }
    assert newhedge_checks == {"kwery_liquidations_btc:reconciles_with_newhedge_binance"}
