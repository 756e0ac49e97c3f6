"""The real `dagster` CLI in a temporary DAGSTER_HOME against the simulator: the harness of the
end-to-end tests (test_e2e_*.py)."""

import contextlib
import datetime as dt
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import dagster as dg
import pandas as pd

from liq_pipeline.simulator import Simulator
from liq_pipeline.warehouse import WarehouseResource

REPO = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).with_name("dagster"))
# Newhedge has published through 2026-03-20 at this simulator time.
SIM_NOW = dt.datetime(2026, 3, 21, 12, 0, tzinfo=dt.UTC)
SENTINEL_KEY = "sk-SENTINEL-kwery-7f3a9c"
SENTINEL_TOKEN = "SENTINELnewhedgeTOKEN042"  # 24 characters, as the contract requires


def credits_for(n_events: int) -> int:
    return 25 * max(1, math.ceil(n_events / 1000)) + 2 * n_events


def day_window(first: str, last: str) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.fromisoformat(first).replace(tzinfo=dt.UTC)
    end = dt.datetime.fromisoformat(last).replace(tzinfo=dt.UTC) + dt.timedelta(days=1)
    return start, end


def days_of(first: str, last: str) -> list[dt.date]:
    start, end = day_window(first, last)
    return [(start + dt.timedelta(days=i)).date() for i in range((end - start).days)]


def sentinel_simulator() -> Simulator:
    """The simulator the CLI tests talk to: frozen clock, a Business sentinel key and token."""
    return Simulator(
        port=0,
        now=SIM_NOW,
        kwery_keys={SENTINEL_KEY: "business"},
        newhedge_tokens=(SENTINEL_TOKEN,),
    )


class Cli:
    """The dagster CLI with the project's dagster.yaml in a temporary DAGSTER_HOME."""

    def __init__(self, home: Path, sim: Simulator, warehouse_url: str) -> None:
        self.home = home
        self.warehouse_url = warehouse_url
        shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
        self.env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "KWERY_API_KEY": SENTINEL_KEY,
            "NEWHEDGE_API_TOKEN": SENTINEL_TOKEN,
            "KWERY_BASE_URL": sim.url,
            "NEWHEDGE_BASE_URL": sim.url,
            "LIQ_WAREHOUSE_URL": warehouse_url,
            "LIQ_START_DATE": "2026-01-01",
            "LIQ_KWERY_SYMBOLS": "BTC",
        }
        self.outputs: list[str] = []
        self.secrets = (SENTINEL_KEY, SENTINEL_TOKEN)

    def run(self, *args: str) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [DAGSTER, *args],
            cwd=self.home,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        self.outputs.append(result.stdout + result.stderr)
        return result

    def materialize(
        self, select: str, first: str, last: str | None = None, *extra: str
    ) -> subprocess.CompletedProcess:
        return self.run(*materialize_args(select, first, last), *extra)

    def start(self, *args: str) -> "Started":
        """The CLI in the background (to signal it), its output going to a file."""
        log = self.home / f"cli-{len(self.outputs)}.log"
        self.outputs.append("")
        process = subprocess.Popen(
            [DAGSTER, *args], cwd=self.home, env=self.env, stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        return Started(self, process, log, len(self.outputs) - 1)

    def step_starts(self, run_id: str) -> list[str]:
        """The step keys started in a run, once per attempt."""
        with self.instance() as instance:
            return [
                entry.step_key or ""
                for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)
            ]

    @contextlib.contextmanager
    def instance(self) -> Iterator[dg.DagsterInstance]:
        with dg.DagsterInstance.from_config(str(self.home)) as instance:
            yield instance

    def runs(self) -> list[dg.DagsterRun]:
        with self.instance() as instance:
            return list(instance.get_runs())

    def events(self, event_type: dg.DagsterEventType) -> list[dg.EventLogEntry]:
        with self.instance() as instance:
            return [
                entry
                for run in instance.get_runs()
                for entry in instance.all_logs(run.run_id, of_type=event_type)
            ]

    def check_results(self) -> dict[str, bool]:
        results = {}
        for entry in self.events(dg.DagsterEventType.ASSET_CHECK_EVALUATION):
            evaluation = entry.dagster_event.event_specific_data
            results[f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"] = (
                evaluation.passed
            )
        return results

    def read(self, table: str, first: str, last: str, **slice_: str) -> pd.DataFrame:
        start, end = day_window(first, last)
        return WarehouseResource(url=self.warehouse_url).read(table, start, end, **slice_)

    def instance_processes(self) -> list[int]:
        """Live processes using this DAGSTER_HOME: the daemon's code server, its run workers."""
        marker = f"DAGSTER_HOME={self.home}".encode()
        pids = []
        for proc in Path("/proc").iterdir():
            with contextlib.suppress(OSError):  # not a pid, or the process exited meanwhile
                if proc.name.isdigit() and marker in (proc / "environ").read_bytes().split(b"\0"):
                    pids.append(int(proc.name))
        return pids

    def wait_for_instance_processes_to_exit(self) -> None:
        """Until they exit, SQLite may still checkpoint and delete the storage's -wal files."""
        deadline = time.monotonic() + 60
        while (pids := self.instance_processes()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not pids, f"processes still using {self.home} after 60 s: {pids}"

    def assert_no_secrets(self) -> None:
        """No secret, in any encoding, in any CLI output nor any file of the instance (storage,
        logs, warehouse): the event log stores messages as JSON, where é is written \\u00e9."""
        files = [path for path in self.home.rglob("*") if path.is_file()]
        assert any(path.suffix == ".db" for path in files)  # run and event-log storage
        for secret in self.secrets:
            forms = {secret, json.dumps(secret)[1:-1], quote(secret, safe=""), quote_plus(secret)}
            for output in self.outputs:
                assert not any(form in output for form in forms)
            for path in files:
                content = path.read_bytes()
                assert not any(form.encode() in content for form in forms), path


class Started:
    """A CLI command running in the background."""

    def __init__(self, cli: Cli, process: subprocess.Popen, log: Path, index: int) -> None:
        self.cli, self.process, self.log, self.index = cli, process, log, index

    def signal(self, signum: int) -> float:
        """Send `signum`; wait for the command to end; return the seconds it took."""
        sent = time.monotonic()
        self.process.send_signal(signum)
        self.wait()
        return time.monotonic() - sent

    def wait(self, timeout: float = 120) -> int:
        returncode = self.process.wait(timeout)
        self.cli.outputs[self.index] = self.output
        return returncode

    @property
    def output(self) -> str:
        return self.log.read_text()


def materialize_args(select: str, first: str, last: str | None = None) -> list[str]:
    partition = (
        ["--partition", first] if last is None else ["--partition-range", f"{first}...{last}"]
    )
    return [
        "asset",
        "materialize",
        "-m",
        "liq_pipeline.definitions",
        "--select",
        select,
        *partition,
    ]


def ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
