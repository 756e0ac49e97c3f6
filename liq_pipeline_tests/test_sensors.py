"""The freshness sensor and checks: real materializations, a frozen clock for the ticks."""

import datetime as dt
import json
from collections.abc import Iterator

import dagster as dg
import pytest
from freezegun import freeze_time

from liq_pipeline.checks import (
    FRESHNESS_CHECK,
    KWERY_FRESHNESS_DEADLINE,
    NEWHEDGE_FRESHNESS_DEADLINE,
    due_day,
    evaluate_freshness,
)
from liq_pipeline.clients import NEWHEDGE_METRICS
from liq_pipeline.definitions import build_definitions
from liq_pipeline.sensors import FRESHNESS_SENSOR
from liq_pipeline.simulator import DEMO_NEWHEDGE_TOKEN, Simulator

KWERY = dg.AssetKey("kwery_liquidations_btc")
TOTALS = dg.AssetKey("daily_liquidation_totals")
NEWHEDGE = [*(dg.AssetKey(m) for m in NEWHEDGE_METRICS), TOTALS]
UTC = dt.UTC


@pytest.fixture
def defs(monkeypatch: pytest.MonkeyPatch, tmp_path) -> Iterator[dg.Definitions]:
    """The project's definitions, wired to the simulator and a warehouse in tmp_path."""
    with Simulator(port=0, now=dt.datetime(2026, 3, 21, 12, tzinfo=UTC)) as sim:
        monkeypatch.setenv("LIQ_WAREHOUSE_URL", f"sqlite:///{tmp_path / 'warehouse.sqlite'}")
        monkeypatch.setenv("KWERY_API_KEY", "demo-business-key")
        monkeypatch.setenv("KWERY_BASE_URL", sim.url)
        monkeypatch.setenv("NEWHEDGE_API_TOKEN", DEMO_NEWHEDGE_TOKEN)
        monkeypatch.setenv("NEWHEDGE_BASE_URL", sim.url)
        yield build_definitions(start_date="2026-03-01", symbols=("BTC",))


def materialize(
    defs: dg.Definitions, instance: dg.DagsterInstance, day: str, *keys: dg.AssetKey
) -> None:
    dg.materialize(
        [*(defs.assets or []), *(defs.asset_checks or [])],
        # Without the separate checks (reconciliation, freshness): the assets and their own.
        selection=dg.AssetSelection.assets(*keys) - dg.AssetSelection.checks(*defs.asset_checks),
        resources=defs.resources,
        instance=instance,
        partition_key=day,
    )


def latest(instance: dg.DagsterInstance, key: dg.AssetKey) -> dg.EventLogRecord:
    [record] = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key), limit=1
    ).records
    return record


def tick(
    defs: dg.Definitions, instance: dg.DagsterInstance, at: str, cursor: str | None
) -> tuple[dict[dg.AssetKey, dg.AssetCheckEvaluation], str]:
    """One sensor tick at `at`: the evaluations it reports (by asset) and its new cursor."""
    sensor = defs.resolve_sensor_def(FRESHNESS_SENSOR)
    with freeze_time(at):
        result = sensor(dg.build_sensor_context(instance=instance, cursor=cursor))
    assert isinstance(result, dg.SensorResult)
    assert not result.run_requests
    events = list(result.asset_events)
    assert all(isinstance(e, dg.AssetCheckEvaluation) for e in events)
    by_asset = {e.asset_key: e for e in events}
    assert len(by_asset) == len(events)
    assert result.skip_reason is not None
    assert result.skip_reason.skip_message == (
        f"{len(events)} freshness result(s) changed and reported"
        if events
        else "no freshness result changed"
    )
    assert result.cursor is not None
    return by_asset, result.cursor  # type: ignore[return-value]


def outcome(evaluation: dg.AssetCheckEvaluation) -> tuple[bool, str | None, str | None]:
    meta = evaluation.metadata
    return (
        evaluation.passed,
        meta["expected_partition"].value,
        meta["latest_materialization_partition"].value,
    )


def logged(capsys: pytest.CaptureFixture[str]) -> list[str]:
    """The sensor's INFO lines printed since the last call (Dagster's handler writes stderr)."""
    lines = capsys.readouterr().err.splitlines()
    return [line.split(" - INFO - ", 1)[1] for line in lines if " - INFO - " in line]


def test_the_sensor_runs_by_default_every_ten_minutes(defs):
    # From the list, not defs.resolve_sensor_def: building a repository outside an instance
    # fails once an earlier test's instance is gone (Dagster 1.13.27's DagsterInstance.__exit__
    # leaves the instance's defs-state storage as the process's current one).
    [sensor] = [s for s in defs.sensors or [] if s.name == FRESHNESS_SENSOR]
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds == 600


@pytest.mark.parametrize(
    ("now", "deadline", "due", "deadline_at"),
    [
        ("2026-03-21T01:59:59", KWERY_FRESHNESS_DEADLINE, "2026-03-19", "2026-03-20T02:00"),
        ("2026-03-21T02:00:00", KWERY_FRESHNESS_DEADLINE, "2026-03-20", "2026-03-21T02:00"),
        ("2026-03-21T23:59:00", KWERY_FRESHNESS_DEADLINE, "2026-03-20", "2026-03-21T02:00"),
        ("2026-03-21T03:00:00", NEWHEDGE_FRESHNESS_DEADLINE, "2026-03-19", "2026-03-20T04:00"),
        ("2026-03-21T04:30:00", NEWHEDGE_FRESHNESS_DEADLINE, "2026-03-20", "2026-03-21T04:00"),
    ],
)
def test_yesterday_is_due_from_the_deadline_on_and_the_day_before_until_then(
    now, deadline, due, deadline_at
):
    at = dt.datetime.fromisoformat(now).replace(tzinfo=UTC)
    assert due_day(deadline, at) == (
        due,
        dt.datetime.fromisoformat(deadline_at).replace(tzinfo=UTC),
    )
    # The same instant in another time zone is the same UTC day.
    assert due_day(deadline, at.astimezone(dt.timezone(dt.timedelta(hours=-8))))[0] == due


def test_no_day_is_due_before_the_first_partition():
    with dg.instance_for_test() as instance:
        fresh = evaluate_freshness(
            instance, KWERY, KWERY_FRESHNESS_DEADLINE, "2026-03-21",
            dt.datetime(2026, 3, 21, 12, tzinfo=UTC),
        )  # fmt: skip
    assert (fresh.passed, fresh.due, fresh.latest) == (True, None, None)
    assert fresh.description == "No day is due yet (as of the deadline of 2026-03-21 02:00 UTC)."


@pytest.mark.e2e
def test_the_sensor_reports_each_change_once_and_is_silent_otherwise(defs, capsys):
    with dg.instance_for_test() as instance:
        materialize(defs, instance, "2026-03-19", KWERY)
        first_kwery = latest(instance, KWERY)

        # 02:30 on the 21st: the 20th is due for Kwery (02:00), the 19th for Newhedge (04:00).
        reported, cursor = tick(defs, instance, "2026-03-21T02:30:00Z", None)
        assert {k: outcome(e) for k, e in reported.items()} == {
            KWERY: (False, "2026-03-20", "2026-03-19"),
            **{key: (False, "2026-03-19", None) for key in NEWHEDGE},
        }
        kwery = reported[KWERY]
        assert (kwery.check_name, kwery.severity, kwery.blocking) == (
            FRESHNESS_CHECK, dg.AssetCheckSeverity.WARN, False,
        )  # fmt: skip
        assert kwery.description == (
            "2026-03-20 is not materialized (due by 2026-03-21 02:00 UTC); the newest "
            "materialization is of 2026-03-19."
        )
        assert {k: v.value for k, v in kwery.metadata.items()} == {
            "expected_partition": "2026-03-20",
            "deadline": dt.datetime(2026, 3, 21, 2, tzinfo=UTC).timestamp(),
            "expected_partition_materialized_at": None,
            "latest_materialization_partition": "2026-03-19",
            "latest_materialization_at": first_kwery.timestamp,
        }
        # Aimed at the newest materialization, so the UI shows it beside that materialization.
        assert kwery.target_materialization_data.storage_id == first_kwery.storage_id
        assert reported[TOTALS].target_materialization_data is None
        assert reported[TOTALS].description == (
            "2026-03-19 is not materialized (due by 2026-03-20 04:00 UTC); nothing ever was."
        )
        messages = logged(capsys)
        assert len(messages) == 10
        assert (
            "kwery_liquidations_btc freshness_check failed: 2026-03-20 is not materialized "
            "(due by 2026-03-21 02:00 UTC); the newest materialization is of 2026-03-19."
        ) in messages
        assert json.loads(cursor)["kwery_liquidations_btc"] == {
            "passed": False, "due": "2026-03-20", "judged": first_kwery.storage_id,
        }  # fmt: skip

        # Ten minutes later, nothing changed: nothing reported, nothing logged.
        again, same_cursor = tick(defs, instance, "2026-03-21T02:40:00Z", cursor)
        assert again == {}
        assert same_cursor == cursor
        assert logged(capsys) == []

        # The 20th lands everywhere: Kwery passes; Newhedge still lacks its due 19th, but its
        # result now judges a new materialization, so it is reported again (once).
        materialize(defs, instance, "2026-03-20", KWERY, *NEWHEDGE)
        logged(capsys)
        reported, cursor = tick(defs, instance, "2026-03-21T02:50:00Z", cursor)
        assert {k: outcome(e) for k, e in reported.items()} == {
            KWERY: (True, "2026-03-20", "2026-03-20"),
            **{key: (False, "2026-03-19", "2026-03-20") for key in NEWHEDGE},
        }
        kwery = reported[KWERY]
        landed = latest(instance, KWERY)
        assert kwery.description == "2026-03-20 is materialized (due by 2026-03-21 02:00 UTC)."
        assert kwery.metadata["expected_partition_materialized_at"].value == landed.timestamp
        assert kwery.target_materialization_data.storage_id == landed.storage_id
        assert len(logged(capsys)) == 10

        # 04:30: the 20th is due for Newhedge too, and is there; Kwery's result is unchanged.
        reported, cursor = tick(defs, instance, "2026-03-21T04:30:00Z", cursor)
        assert {k: outcome(e) for k, e in reported.items()} == {
            key: (True, "2026-03-20", "2026-03-20") for key in NEWHEDGE
        }
        assert tick(defs, instance, "2026-03-21T04:40:00Z", cursor) == ({}, cursor)

        # Re-materializing an old day gives Kwery a newer materialization to be judged beside.
        materialize(defs, instance, "2026-03-19", KWERY)
        reported, cursor = tick(defs, instance, "2026-03-21T04:50:00Z", cursor)
        assert {k: outcome(e) for k, e in reported.items()} == {
            KWERY: (True, "2026-03-20", "2026-03-19")
        }


def test_an_unreadable_cursor_reports_every_result_again(defs):
    with dg.instance_for_test() as instance:
        reported, cursor = tick(defs, instance, "2026-03-21T02:30:00Z", "not json")
        assert set(reported) == {KWERY, *NEWHEDGE}
        assert tick(defs, instance, "2026-03-21T02:30:00Z", cursor) == ({}, cursor)


@pytest.mark.e2e
def test_the_checks_run_from_the_ui_say_what_the_sensor_says(defs):
    with dg.instance_for_test() as instance:
        materialize(defs, instance, "2026-03-20", KWERY)
        materialize(defs, instance, "2026-03-19", *NEWHEDGE)
        reported, _ = tick(defs, instance, "2026-03-21T04:30:00Z", None)
        checks = [
            c for c in defs.asset_checks or [] if FRESHNESS_CHECK in {s.name for s in c.check_specs}
        ]
        assert sorted(c.node_def.name for c in checks) == ["kwery_freshness", "newhedge_freshness"]
        job = dg.define_asset_job("freshness", selection=dg.AssetSelection.checks(*checks))
        with_job = dg.Definitions.merge(defs, dg.Definitions(jobs=[job]))
        with freeze_time("2026-03-21T04:30:00Z"):
            run = with_job.resolve_job_def("freshness").execute_in_process(instance=instance)
        evaluations = {e.asset_key: e for e in run.get_asset_check_evaluations()}
        assert set(evaluations) == set(reported) == {KWERY, *NEWHEDGE}
        assert {k: outcome(e) for k, e in evaluations.items()} == {
            KWERY: (True, "2026-03-20", "2026-03-20"),
            **{key: (False, "2026-03-20", "2026-03-19") for key in NEWHEDGE},
        }
        for key, evaluation in evaluations.items():
            assert evaluation.description == reported[key].description
            assert evaluation.metadata == reported[key].metadata
            assert evaluation.severity == dg.AssetCheckSeverity.WARN
