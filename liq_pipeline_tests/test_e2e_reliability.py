"""Misuse and failures through the real `dagster` CLI: fail fast on what will never succeed, stop
when asked, hold the write lock only while writing, and leave the warehouse as it was.

Every run here is one attempt (no Dagster retries): the checks count the steps started.
"""

import contextlib
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from liq_pipeline.clients.kwery import kwery_frame
from liq_pipeline.simulator import Simulator
from liq_pipeline.warehouse import WarehouseIOManager, warehouse_metadata
from liq_pipeline_tests.cli import DAGSTER, REPO, Cli, materialize_args, ok, sentinel_simulator

pytestmark = pytest.mark.e2e

DAY = "2026-03-10"
KWERY = "kwery_liquidations_btc"
NON_ASCII_KEY = "SENTINELkéy/123 ü"  # echoed back by a misbehaving server, in many encodings


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with sentinel_simulator() as simulator:
        simulator.kwery_keys[NON_ASCII_KEY] = "business"
        yield simulator


@pytest.fixture
def cli(tmp_path: Path, sim: Simulator) -> Iterator[Cli]:
    sim.clear_faults()
    sim.reset_stats()
    cli = Cli(tmp_path, sim, f"sqlite:///{tmp_path / 'warehouse.sqlite'}")
    yield cli
    cli.assert_no_secrets()


def an_old_day(cli: Cli) -> pd.DataFrame:
    """A Kwery day already in the warehouse (hand-built): what a failed run must not touch."""
    frame = kwery_frame(
        [
            {"timestamp": f"{DAY}T01:02:03.004Z", "symbol": "BTC", "source": "binance_futures",
             "side": "long", "quantity": 1.0, "price": 90_000.0, "avg_price": 90_000.0,
             "usd_value": 90_000.0},
        ]
    )  # fmt: skip
    with dg.build_output_context(
        asset_key=KWERY,
        definition_metadata=warehouse_metadata("kwery_liquidations", symbol="BTC"),
        asset_partitions_def=dg.DailyPartitionsDefinition(start_date="2026-01-01"),
        asset_partition_key_range=dg.PartitionKeyRange(DAY, DAY),
    ) as context:
        WarehouseIOManager(url=cli.warehouse_url).handle_output(context, frame)
    return cli.read("kwery_liquidations", DAY, DAY, symbol="BTC")


def assert_one_failed_attempt(cli: Cli) -> None:
    [run] = cli.runs()
    assert run.status == dg.DagsterRunStatus.FAILURE
    starts = cli.step_starts(run.run_id)
    assert len(starts) == len(set(starts)), starts  # no step ran twice
    for event in (dg.DagsterEventType.STEP_UP_FOR_RETRY, dg.DagsterEventType.STEP_RESTARTED):
        assert not cli.events(event)


PG = "postgresql+psycopg2://{}@127.0.0.1:5432/{}"


@pytest.mark.parametrize(
    ("env", "fault", "message", "ok_requests"),
    [
        ({"LIQ_WAREHOUSE_URL": "not a url"}, None, "is not a valid SQLAlchemy URL: use ", 0),
        ({"LIQ_WAREHOUSE_URL": "sqlite://"}, None, "the SQLite warehouse must be a file path", 0),
        ({"LIQ_WAREHOUSE_URL": "mysql://u@h/db"}, None, "unsupported warehouse database", 0),
        ({"LIQ_WAREHOUSE_URL": "postgresql+psycopg2://u:x@127.0.0.1:notaport/db"}, None,
         "has a port that is not a number", 0),
        ({"LIQ_WAREHOUSE_URL": PG.format("postgres", "liq_no_such_db")}, None,
         'database "liq_no_such_db" does not exist', 0),
        ({"LIQ_WAREHOUSE_URL": PG.format("liq_no_such_role", "test")}, None,
         'role "liq_no_such_role" does not exist', 0),
        ({"KWERY_BASE_URL": "ftp://kwery.example"}, None,
         "base_url must start with http:// or https://, got 'ftp://kwery.example'", 0),
        ({"KWERY_BASE_URL": "http://kwery-api.invalid"}, None,
         "failed: the host name does not resolve (DNS). Check the base URL and the machine's "
         "DNS/network; retrying would not help.", 0),
        ({}, {"kind": "bad_value", "field": "symbol", "value": "ETH"},
         "row 0: symbol 'ETH' answers a query for 'BTC'", 1),
        ({}, {"kind": "bad_value", "field": "quantity", "value": -1.0},
         "row 0: field 'quantity' must be a finite number > 0 and <= 1e+15, got -1.0", 1),
        ({}, {"kind": "bad_value", "field": "price", "value": 0},
         "row 0: field 'price' must be a finite number > 0 and <= 1e+15, got 0", 1),
        ({}, {"kind": "bad_value", "field": "usd_value", "value": 1.7e308},
         "row 0: field 'usd_value' must be a finite number > 0 and <= 1e+11, got 1.7e+308", 1),
        ({}, {"kind": "bad_value", "field": "source", "value": "bin\u0000ance"},
         "row 0: field 'source' contains the control character U+0000", 1),
    ],
    ids=["not-a-url", "sqlite-memory", "mysql", "bad-port", "no-database", "no-role", "ftp",
         "dns", "other-symbol", "negative-quantity", "zero-price", "huge-usd", "nul-source"],
)  # fmt: skip
def test_what_will_never_succeed_fails_at_once_with_its_message(
    cli: Cli, sim: Simulator, env: dict, fault: dict | None, message: str, ok_requests: int
) -> None:
    old = an_old_day(cli)
    cli.env.update(env)
    if fault:
        sim.inject(fault.pop("kind"), api="kwery", **fault)
    started = time.monotonic()
    result = cli.materialize(KWERY, DAY)
    assert time.monotonic() - started < 60
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert_one_failed_attempt(cli)
    # A misconfigured warehouse fails before any paid request; bad data after its one page.
    assert sim.stats(cli.secrets[0])["ok_requests"] == ok_requests
    cli.env["LIQ_WAREHOUSE_URL"] = cli.warehouse_url
    pd.testing.assert_frame_equal(cli.read("kwery_liquidations", DAY, DAY, symbol="BTC"), old)


def test_a_reversed_range_says_so(cli: Cli, sim: Simulator) -> None:
    result = cli.materialize("*", "2026-03-10", "2026-03-08")
    assert result.returncode != 0
    assert (
        "the partition range 2026-03-10...2026-03-08 is reversed: give the first day first, e.g. "
        "--partition-range 2026-03-08...2026-03-10"
    ) in result.stdout + result.stderr
    assert_one_failed_attempt(cli)
    assert sim.stats(cli.secrets[0])["requests"] == 0


def budget_config(seconds: float) -> str:
    kwery = {"api_key": {"env": "KWERY_API_KEY"}, "base_url": {"env": "KWERY_BASE_URL"}}
    resources = {"kwery": {"config": {**kwery, "retry_budget_seconds": seconds}}}
    return json.dumps({"resources": resources})


def test_a_hanging_api_fails_within_the_retry_budget(cli: Cli, sim: Simulator) -> None:
    sim.inject("hang", count=50, api="kwery")
    started = time.monotonic()
    result = cli.materialize(KWERY, DAY, None, "--config-json", budget_config(3))
    elapsed = time.monotonic() - started
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "ReadTimeout" in output
    assert "the run's retry budget of 3 s is used up; raise retry_budget_seconds" in output
    assert elapsed < 30  # 3 s of hanging plus the CLI's own start-up
    assert_one_failed_attempt(cli)


def wait_for(predicate, what: str, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)  # polling a real child process, not simulating time


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("during", ["fetch", "backoff"])
def test_a_stop_request_stops_the_run_at_once(
    cli: Cli, sim: Simulator, signum: int, during: str
) -> None:
    old = an_old_day(cli)
    if during == "fetch":
        sim.inject("hang", api="kwery")  # the API accepts and never answers
    else:
        sim.inject("429", api="kwery", retry_after="100")  # the client waits 100 s
    run = cli.start(*materialize_args(KWERY, DAY))
    wait_for(lambda: not sim.pending_faults(), "the run to reach the API")
    if during == "backoff":
        wait_for(lambda: "retrying in 100.00 s" in run.output, "the backoff wait")
    assert run.signal(signum) < 30
    assert run.process.returncode != 0
    [dagster_run] = cli.runs()
    assert dagster_run.status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
    assert cli.step_starts(dagster_run.run_id) == [KWERY]  # never a second attempt
    assert sim.stats(cli.secrets[0])["credits_used"] == 0  # nothing paid, nothing paid twice
    pd.testing.assert_frame_equal(cli.read("kwery_liquidations", DAY, DAY, symbol="BTC"), old)


def test_a_hanging_kwery_run_does_not_block_a_newhedge_run(cli: Cli, sim: Simulator) -> None:
    sim.inject("hang", api="kwery")
    kwery = cli.start(*materialize_args(KWERY, DAY))
    try:
        wait_for(lambda: not sim.pending_faults(), "the Kwery run to hang on the API")
        started = time.monotonic()
        ok(cli.materialize("group:newhedge", DAY))  # same SQLite warehouse file
        assert time.monotonic() - started < 60
        assert len(cli.read("bitcoin_liquidations_okx_long", DAY, DAY)) == 1
    finally:
        kwery.signal(signal.SIGTERM)


def test_a_key_echoed_in_many_encodings_leaks_nowhere(cli: Cli, sim: Simulator) -> None:
    cli.env["KWERY_API_KEY"] = NON_ASCII_KEY
    cli.secrets = (*cli.secrets, NON_ASCII_KEY)
    sim.inject("echo_secret", api="kwery")
    result = cli.materialize(KWERY, DAY)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Kwery API error 400 invalid_request for GET " in output
    assert "***" in output  # the echoed forms, redacted (cli.assert_no_secrets checks every file)


def test_instance_paths_do_not_depend_on_the_working_directory(cli: Cli, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ok(subprocess.run(
        [DAGSTER, *materialize_args("group:newhedge", DAY)], cwd=elsewhere, env=cli.env,
        capture_output=True, text=True, timeout=300,
    ))  # fmt: skip
    assert list(elsewhere.iterdir()) == []  # nothing landed in the working directory
    assert [run.status for run in cli.runs()] == [dg.DagsterRunStatus.SUCCESS]
    assert (cli.home / "history" / "runs.db").is_file()  # the run history is DAGSTER_HOME's


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes_using(home: Path) -> list[int]:
    marker = f"DAGSTER_HOME={home}".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and marker in (proc / "environ").read_bytes().split(b"\0"):
                pids.append(int(proc.name))
    return pids


def test_liq_demo_dev_stops_itself_and_its_children_on_sigterm(tmp_path: Path) -> None:
    for name in ("dagster.yaml", "workspace.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    ui = free_port()
    output = (tmp_path / "dev.log").open("w")
    demo = subprocess.Popen(
        [str(Path(sys.executable).with_name("liq-demo")), "dev", "--port", str(ui),
         "--simulator-port", str(free_port())],
        cwd=tmp_path, stdout=output, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:

        def ui_is_up() -> bool:
            with contextlib.suppress(OSError):
                return urllib.request.urlopen(f"http://127.0.0.1:{ui}/server_info").status == 200
            return False

        wait_for(ui_is_up, "the Dagster UI to answer", timeout=120)
        sent = time.monotonic()
        demo.send_signal(signal.SIGTERM)
        demo.wait(30)
        assert time.monotonic() - sent < 20
        wait_for(lambda: not processes_using(tmp_path), "dagster dev's processes to exit", 10)
    finally:
        if demo.poll() is None:
            demo.kill()
        output.close()
    log = (tmp_path / "dev.log").read_text()
    assert "Launching Dagster services" in log
    assert "superseded" not in log  # Dagster's "use dg dev" notice is left out
