"""End to end: the real `dagster` CLI in a temporary DAGSTER_HOME against the simulator.

Every run's warehouse contents are compared exactly with what the simulator served, and a
sentinel key and token are searched for in everything the runs left behind.
"""

import datetime as dt
import json
import math
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from liq_pipeline.clients import NEWHEDGE_METRICS
from liq_pipeline.clients.kwery import kwery_frame
from liq_pipeline.per_day import latest_materializations
from liq_pipeline.simulator import Simulator
from liq_pipeline.simulator.data import kwery_events, newhedge_value
from liq_pipeline_tests.cli import (
    DAGSTER,
    REPO,
    SENTINEL_KEY,
    SENTINEL_TOKEN,
    Cli,
    credits_for,
    days_of,
    ok,
    postgres_database,
    sentinel_simulator,
)

pytestmark = pytest.mark.e2e

ALL_ASSETS = "*"
# The checks evaluated once per day of a run (README, Data quality); freshness is judged per asset.
DAY_CHECKS = (
    dg.AssetCheckKey(
        dg.AssetKey("kwery_liquidations_btc"), "usd_value_matches_quantity_times_avg_price"
    ),
    dg.AssetCheckKey(dg.AssetKey("kwery_liquidations_btc"), "reconciles_with_newhedge_binance"),
)
FRESHNESS_TARGETS = ("kwery_liquidations_btc", *NEWHEDGE_METRICS, "daily_liquidation_totals")


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with sentinel_simulator() as simulator:
        yield simulator


def assert_warehouse_matches_simulator(cli: Cli, first: str, last: str) -> None:
    days = days_of(first, last)
    events = [event for day in days for event in kwery_events("BTC", day)]
    expected = kwery_frame(events)
    stored = cli.read("kwery_liquidations", first, last, symbol="BTC")
    pd.testing.assert_frame_equal(stored, expected)
    day_index = pd.DatetimeIndex([pd.Timestamp(d) for d in days]).astype("datetime64[s]")
    for metric in NEWHEDGE_METRICS:
        expected_metric = pd.DataFrame(
            {"day": day_index, "value": [newhedge_value(metric, d) for d in days]}
        )
        pd.testing.assert_frame_equal(cli.read(metric, first, last), expected_metric)
    totals = cli.read("daily_liquidation_totals", first, last)
    assert totals["day"].tolist() == list(day_index)
    for exchange in ("binance", "bybit", "deribit", "okx"):
        for side in ("long", "short"):
            values = [
                abs(newhedge_value(f"bitcoin_liquidations_{exchange}_{side}", d)) for d in days
            ]
            assert totals[f"{exchange}_{side}_usd"].tolist() == values
    long_parts = totals[[f"{e}_long_usd" for e in ("binance", "bybit", "deribit", "okx")]]
    short_parts = totals[[f"{e}_short_usd" for e in ("binance", "bybit", "deribit", "okx")]]
    assert totals["long_usd"].tolist() == long_parts.sum(axis=1).tolist()
    assert totals["short_usd"].tolist() == short_parts.sum(axis=1).tolist()
    assert totals["total_usd"].tolist() == (totals["long_usd"] + totals["short_usd"]).tolist()


def assert_every_day_tells_its_own_truth(cli: Cli, first: str, last: str) -> None:
    """Each day's latest materialization describes that day; each day-check evaluated it."""
    days = [d.isoformat() for d in days_of(first, last)]
    with cli.instance() as instance:
        latest = {
            key: latest_materializations(instance, dg.AssetKey(key), days)
            for key in ("kwery_liquidations_btc", *NEWHEDGE_METRICS, "daily_liquidation_totals")
        }
        check_infos = instance.event_log_storage.get_asset_check_partition_info(list(DAY_CHECKS))
    for day in days:
        stored = cli.read("kwery_liquidations", day, day, symbol="BTC")
        meta = metadata_of(latest["kwery_liquidations_btc"][day])
        assert (
            meta["dagster/row_count"]
            == len(stored)
            == len(kwery_events("BTC", dt.date.fromisoformat(day)))
        )
        assert meta["first_event"] == str(stored["timestamp"].min())
        assert meta["last_event"] == str(stored["timestamp"].max())
        assert meta["first_event"].startswith(day) and meta["last_event"].startswith(day)
        assert meta["credits_used"] == credits_for(len(stored))
        assert meta["requests"] == meta["pages"] == max(1, math.ceil(len(stored) / 1000))
        assert meta["long_events"] + meta["short_events"] == len(stored)
        assert meta["long_usd"] == round(stored.loc[stored["side"] == "long", "usd_value"].sum(), 2)
        preview = meta["preview"].splitlines()
        assert (
            preview[0]
            == "| timestamp | symbol | source | side | quantity | price | avg_price | usd_value |"
        )
        assert len(preview) == 2 + 5 and preview[2].startswith(f"| {stored['timestamp'].iloc[0]} |")
        for metric in NEWHEDGE_METRICS:
            meta = metadata_of(latest[metric][day])
            [value] = cli.read(metric, day, day)["value"]
            assert (meta["dagster/row_count"], meta["value_usd"]) == (1, value)
        meta = metadata_of(latest["daily_liquidation_totals"][day])
        [totals] = cli.read("daily_liquidation_totals", day, day).to_dict("records")
        assert meta["dagster/row_count"] == 1
        assert meta["total_usd"] == round(totals["total_usd"], 2)
        assert (
            f"| all | ${totals['long_usd']:,.0f} | ${totals['short_usd']:,.0f} |" in meta["totals"]
        )
    evaluations = {
        (e.asset_check_key, e.partition): e
        for e in (
            entry.dagster_event.event_specific_data
            for entry in cli.events(dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        )
    }  # the latest evaluation of each (check, day)
    usd_check, reconciliation = DAY_CHECKS
    for day in days:
        stored = cli.read("kwery_liquidations", day, day, symbol="BTC")
        usd_meta = {k: v.value for k, v in evaluations[(usd_check, day)].metadata.items()}
        assert usd_meta["events"] == len(stored)
        figures = {k: v.value for k, v in evaluations[(reconciliation, day)].metadata.items()}
        for side in ("long", "short"):
            [published] = cli.read(f"bitcoin_liquidations_binance_{side}", day, day)["value"]
            events_usd = stored.loc[stored["side"] == side, "usd_value"].sum()
            assert figures[f"kwery_{side}_usd"] == round(events_usd, 2)
            assert figures[f"newhedge_{side}_usd"] == round(abs(published), 2)
            assert figures[f"{side}_ratio"] == round(events_usd / abs(published), 6)
    by_check_and_day = {(info.check_key, info.partition_key): info for info in check_infos}
    for check_key in DAY_CHECKS:
        for day in days:
            info = by_check_and_day[(check_key, day)]
            status = info.latest_execution_status.value
            assert status in ("SUCCEEDED", "FAILED"), (check_key, day, status)
            assert info.is_current, (check_key, day)


def metadata_of(record: dg.EventLogRecord) -> dict:
    return {key: value.value for key, value in record.asset_materialization.metadata.items()}


# The CLI tests run against both warehouses. The backfill tests run on the local set-up (SQLite
# warehouse and instance) and on production's (PostgreSQL warehouse, and instance storage from
# deploy/dagster.postgres.yaml with batched events), which covers the PostgreSQL warehouse too;
# what does not depend on the warehouse runs on SQLite only.
WAREHOUSES = ["sqlite", "postgres"]
WITH_THE_PRODUCTION_INSTANCE = pytest.mark.parametrize(
    "cli", ["sqlite", "postgres-instance"], indirect=True
)
SQLITE_ONLY = pytest.mark.parametrize("cli", ["sqlite"], indirect=True)


@pytest.fixture(params=WAREHOUSES)
def cli(request: pytest.FixtureRequest, tmp_path: Path, sim: Simulator) -> Iterator[Cli]:
    """The CLI against a fresh SQLite file, then a fresh PostgreSQL schema (and instance)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'warehouse.sqlite'}"
    else:
        url = request.getfixturevalue("postgres_schema_url")
    sim.clear_faults()
    sim.reset_stats()
    if request.param == "postgres-instance":
        with postgres_database(request.getfixturevalue("postgres_url")) as instance_db:
            cli = Cli(tmp_path, sim, url, instance_db=instance_db)
            yield cli
            cli.wait_for_instance_processes_to_exit()
            cli.assert_no_secrets()
    else:
        cli = Cli(tmp_path, sim, url)
        yield cli
        cli.assert_no_secrets()


def test_one_day_lands_exactly_what_the_simulator_served(cli: Cli, sim: Simulator):
    ok(cli.materialize(ALL_ASSETS, "2026-03-10"))
    assert_warehouse_matches_simulator(cli, "2026-03-10", "2026-03-10")
    events = kwery_events("BTC", dt.date(2026, 3, 10))
    assert sim.stats(SENTINEL_KEY)["credits_used"] == credits_for(len(events))
    assert sim.stats(SENTINEL_TOKEN)["requests"] == 8
    [run] = cli.runs()
    assert run.status == dg.DagsterRunStatus.SUCCESS

    assert_every_day_tells_its_own_truth(cli, "2026-03-10", "2026-03-10")
    [kwery] = [
        entry.asset_materialization
        for entry in cli.events(dg.DagsterEventType.ASSET_MATERIALIZATION)
        if entry.asset_materialization.asset_key == dg.AssetKey("kwery_liquidations_btc")
    ]
    metadata = {key: value.value for key, value in kwery.metadata.items()}
    assert metadata["run_rows"] == metadata["dagster/row_count"] == len(events)
    assert metadata["run_credits_remaining"] == sim.credits_remaining(SENTINEL_KEY)

    checks = cli.check_results()
    # `--select '*'` also evaluates the freshness checks: on the real clock yesterday's
    # partitions are missing, so exactly those fail.
    failed = {key for key, passed in checks.items() if not passed}
    assert failed == {f"{key}:freshness_check" for key in FRESHNESS_TARGETS}
    assert set(checks) == {
        *(f"{c.asset_key.to_user_string()}:{c.name}" for c in DAY_CHECKS),
        *(f"{key}:freshness_check" for key in FRESHNESS_TARGETS),
    }


@WITH_THE_PRODUCTION_INSTANCE
def test_five_days_in_one_run_tell_each_days_truth_and_reruns_change_nothing(
    cli: Cli, sim: Simulator
):
    ok(cli.materialize(ALL_ASSETS, "2026-03-05", "2026-03-09"))
    assert [run.status for run in cli.runs()] == [dg.DagsterRunStatus.SUCCESS]
    assert_warehouse_matches_simulator(cli, "2026-03-05", "2026-03-09")
    assert_every_day_tells_its_own_truth(cli, "2026-03-05", "2026-03-09")
    days = days_of("2026-03-05", "2026-03-09")
    assert sim.stats(SENTINEL_KEY)["credits_used"] == sum(
        credits_for(len(kwery_events("BTC", d))) for d in days
    )
    assert sim.stats(SENTINEL_TOKEN)["requests"] == 8  # one per metric, whatever the range
    # One materialization per (asset, day), no extra events.
    materialized = [
        (e.asset_materialization.asset_key, e.asset_materialization.partition)
        for e in cli.events(dg.DagsterEventType.ASSET_MATERIALIZATION)
    ]
    # 10 ingest/totals assets + the 2 analytics assets of BTC.
    assert len(materialized) == len(set(materialized)) == 12 * len(days)

    before = {
        t: cli.read(t, "2026-03-01", "2026-03-20")
        for t in ("kwery_liquidations", *NEWHEDGE_METRICS, "daily_liquidation_totals")
    }
    ok(cli.materialize(ALL_ASSETS, "2026-03-07"))  # one day inside the range, again
    assert_every_day_tells_its_own_truth(cli, "2026-03-05", "2026-03-09")
    # Everything but freshness (which judges today, not these days): the backfill job.
    range_tags = {
        "dagster/asset_partition_range_start": "2026-03-05",
        "dagster/asset_partition_range_end": "2026-03-09",
    }
    ok(cli.run("job", "execute", "-m", "liq_pipeline.definitions", "-j", "backfill_job",
               "--tags", json.dumps(range_tags)))  # fmt: skip
    assert_every_day_tells_its_own_truth(cli, "2026-03-05", "2026-03-09")
    [backfill] = [run for run in cli.runs() if run.job_name == "backfill_job"]
    with cli.instance() as instance:
        checked = {
            e.dagster_event.event_specific_data.check_name
            for e in instance.all_logs(
                backfill.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
            )
        }
    assert checked == {c.name for c in DAY_CHECKS}
    for table, frame in before.items():
        pd.testing.assert_frame_equal(cli.read(table, "2026-03-01", "2026-03-20"), frame)


@SQLITE_ONLY  # the all-or-nothing write itself is tested on both warehouses (warehouse/)
def test_a_day_newhedge_has_not_published_fails_and_writes_nothing(cli: Cli, sim: Simulator):
    ok(cli.materialize(ALL_ASSETS, "2026-03-19"))
    before = {
        t: cli.read(t, "2026-03-19", "2026-03-20")
        for t in (*NEWHEDGE_METRICS, "daily_liquidation_totals")
    }
    sim.inject("lag", count=10, api="newhedge", metric="bitcoin_liquidations_okx_long")
    result = cli.materialize(ALL_ASSETS, "2026-03-19", "2026-03-20")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert (
        "bitcoin_liquidations_okx_long: not published yet for 2026-03-20; latest published day is "
        "2026-03-19. Newhedge publishes a day after it ends; re-run these partitions later."
    ) in output
    for table, frame in before.items():
        pd.testing.assert_frame_equal(cli.read(table, "2026-03-19", "2026-03-20"), frame)


def test_a_kwery_429_burst_gives_the_same_rows_for_no_extra_credits(cli: Cli, sim: Simulator):
    sim.inject("429", count=2, api="kwery", skip=1, retry_after="1")
    ok(cli.materialize("kwery_liquidations_btc", "2026-03-09"))
    events = kwery_events("BTC", dt.date(2026, 3, 9))
    pd.testing.assert_frame_equal(
        cli.read("kwery_liquidations", "2026-03-09", "2026-03-09", symbol="BTC"),
        kwery_frame(events),
    )
    stats = sim.stats(SENTINEL_KEY)
    assert stats["credits_used"] == credits_for(len(events))
    assert stats["requests"] == math.ceil(len(events) / 1000) + 2


@WITH_THE_PRODUCTION_INSTANCE
def test_a_daemon_executed_job_backfill_runs_one_run_per_partition(cli: Cli, sim: Simulator):
    (cli.home / "workspace.yaml").write_text((REPO / "workspace.yaml").read_text())
    ok(
        cli.run(
            "job", "backfill", "-w", "workspace.yaml", "-j", "newhedge_daily_job",
            "--from", "2026-03-10", "--to", "2026-03-11", "--noprompt",
        )
    )  # fmt: skip
    queued = [run for run in cli.runs() if "dagster/backfill" in run.tags]
    assert sorted(run.tags["dagster/partition"] for run in queued) == ["2026-03-10", "2026-03-11"]
    assert {run.status for run in queued} == {dg.DagsterRunStatus.QUEUED}

    daemon = subprocess.Popen(
        [str(Path(DAGSTER).with_name("dagster-daemon")), "run", "-w", "workspace.yaml"],
        cwd=cli.home,
        env=cli.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            runs = [run for run in cli.runs() if "dagster/backfill" in run.tags]
            if all(run.is_finished for run in runs):
                break
            time.sleep(1)  # waiting on the daemon's real work, not simulating time
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
        cli.wait_for_instance_processes_to_exit()
    assert {run.status for run in runs} == {dg.DagsterRunStatus.SUCCESS}
    for metric in NEWHEDGE_METRICS:
        assert cli.read(metric, "2026-03-10", "2026-03-11")["value"].tolist() == [
            newhedge_value(metric, dt.date(2026, 3, day)) for day in (10, 11)
        ]
    assert len(cli.read("daily_liquidation_totals", "2026-03-10", "2026-03-11")) == 2


@SQLITE_ONLY
def test_a_rejected_key_fails_with_an_actionable_message_and_leaks_nowhere(cli: Cli):
    cli.secrets = (*cli.secrets, "sk-SENTINEL-revoked-key-5d1e")
    cli.env["KWERY_API_KEY"] = cli.secrets[-1]
    result = cli.materialize("kwery_liquidations_btc", "2026-03-10")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Kwery API error 401 unauthorized for GET " in output
    assert "the api-key is missing or invalid; check KWERY_API_KEY." in output
    assert "api-key=***&symbol=BTC" in output
    assert cli.read("kwery_liquidations", "2026-03-10", "2026-03-10", symbol="BTC").empty


@SQLITE_ONLY
def test_liq_backfill_runs_chunks_and_names_the_chunk_to_resume_from(cli: Cli, sim: Simulator):
    def backfill(*args: str) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [str(Path(DAGSTER).with_name("liq-backfill")), *args], cwd=cli.home, env=cli.env,
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        cli.outputs.append(result.stdout + result.stderr)
        return result

    ok(backfill("2026-03-05", "2026-03-09", "--chunk-days", "3"))
    assert [run.tags["dagster/asset_partition_range_start"] for run in cli.runs()] == [
        "2026-03-08",
        "2026-03-05",
    ]  # newest first: two single runs
    assert_warehouse_matches_simulator(cli, "2026-03-05", "2026-03-09")
    assert_every_day_tells_its_own_truth(cli, "2026-03-05", "2026-03-09")

    sim.inject("bad_value", api="kwery", skip=1, field="price", value=0)
    result = backfill("2026-03-01", "2026-03-09", "--chunk-days", "3")
    assert result.returncode != 0
    assert "  chunk 1/3 2026-03-01...2026-03-03 (3 days): FAILED in " in result.stdout
    assert "liq-backfill 2026-03-01 2026-03-09 --job backfill_job --chunk-days 3" in result.stdout
    assert "field 'price' must be a finite number > 0" in result.stdout
    assert_warehouse_matches_simulator(cli, "2026-03-05", "2026-03-09")  # untouched


@SQLITE_ONLY
def test_liq_backfill_planned_subset_plans_once_per_asset_and_keeps_each_days_truth(cli: Cli):
    result = subprocess.run(
        [str(Path(DAGSTER).with_name("liq-backfill")), "2026-03-05", "2026-03-07",
         "--planned-subset"],
        cwd=cli.home, env=cli.env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    cli.outputs.append(result.stdout + result.stderr)
    ok(result)
    [run] = cli.runs()
    with cli.instance() as instance:
        planned = instance.all_logs(
            run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
        )
        landed = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
        assets = len(instance.get_asset_keys())
    assert assets == 12
    assert (len(planned), len(landed)) == (assets, 3 * assets)  # one plan per asset, not per day
    assert_warehouse_matches_simulator(cli, "2026-03-05", "2026-03-07")
    assert_every_day_tells_its_own_truth(cli, "2026-03-05", "2026-03-07")
