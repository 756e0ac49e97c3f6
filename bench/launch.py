"""Running things for the suite: measured child processes (through bench/launcher.py), the
simulator, fresh warehouses, and the Dagster instances the pipeline runs in (with the event
accounting of each run)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from liq_pipeline.simulator import Simulator

REPO = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).with_name("dagster"))
LAUNCHER = str(REPO / "bench" / "launcher.py")
FLOOR = str(REPO / "bench" / "floor.py")
DIRECT = str(REPO / "bench" / "direct.py")
SQLITE_INSTANCE_YAML = REPO / "dagster.yaml"
POSTGRES_INSTANCE_YAML = REPO / "deploy" / "dagster.postgres.yaml"
PG_URL = os.environ.get(
    "LIQ_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
)
CHILD_TIMEOUT_S = 900.0  # a year-long run on the SQLite instance takes ~2 min on a quiet machine


class BenchError(RuntimeError):
    pass


# --- child processes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Child:
    """One finished child process: wall seconds, its own peak RSS, exit code and output."""

    seconds: float
    rss_mib: float
    returncode: int
    stdout: str = field(repr=False)
    stderr: str = field(repr=False)


def run_child(argv: Sequence[str], *, cwd: Path, env: dict[str, str]) -> Child:
    """Run argv to completion; its wall time and peak RSS as measured by bench/launcher.py."""
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile("r", suffix=".json") as report,
    ):
        launcher = [sys.executable, LAUNCHER, report.name, *argv]
        proc = subprocess.Popen(
            launcher, cwd=cwd, env=env, stdout=out, stderr=err, start_new_session=True
        )
        try:
            proc.wait(timeout=CHILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
        text = report.read()
        if proc.returncode != 0 or not text:
            tail = stderr[-2000:]
            raise BenchError(f"{argv[0]} did not complete (launcher exit {proc.returncode}) {tail}")
        result = json.loads(text)
        return Child(
            seconds=result["seconds"],
            rss_mib=result["rss_kib"] / 1024,
            returncode=result["returncode"],
            stdout=stdout,
            stderr=stderr,
        )


def checked(child: Child, what: str) -> Child:
    if child.returncode != 0:
        tail = (child.stdout + child.stderr)[-4000:]
        raise BenchError(f"{what} failed (exit {child.returncode}):\n{tail}")
    return child


# --- the simulator -------------------------------------------------------------------------------


class LatentSimulator(Simulator):
    """The simulator with a fixed delay before every API answer: the internet's round trip
    (50-150 ms per page measured against the real APIs). The server
    answers each connection in its own thread, so concurrent requests wait concurrently."""

    def __init__(self, *args: Any, latency_s: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.latency_s = latency_s

    def handle(self, method: str, target: str, body: bytes = b"") -> Any:
        if self.latency_s and not target.startswith("/_sim/"):
            time.sleep(self.latency_s)
        return super().handle(method, target, body)

    @contextlib.contextmanager
    def latency(self, ms: float) -> Iterator[None]:
        """Answer after `ms` for the duration of the block (one figure), then as before."""
        before, self.latency_s = self.latency_s, ms / 1000
        try:
            yield
        finally:
            self.latency_s = before


# --- warehouses ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Warehouse:
    backend: str
    url: str  # SQLAlchemy URL for LIQ_WAREHOUSE_URL
    floor_args: tuple[str, ...]
    count_sql: str = "SELECT count(*) FROM kwery_liquidations"

    def kwery_rows(self) -> int:
        engine = sa.create_engine(self.url)
        try:
            with engine.connect() as conn:
                return int(conn.execute(sa.text(self.count_sql)).scalar_one())
        finally:
            engine.dispose()


@contextlib.contextmanager
def fresh_warehouse(backend: str, tmp: Path, postgres_url: str | None) -> Iterator[Warehouse]:
    """A fresh, empty warehouse (an SQLite file, or a PostgreSQL schema), removed afterwards."""
    name = f"bench_{uuid.uuid4().hex[:10]}"
    if backend == "sqlite":
        path = tmp / f"{name}.sqlite"
        try:
            yield Warehouse(backend, f"sqlite:///{path}", ("--sqlite", str(path)))
        finally:
            for suffix in ("", "-wal", "-shm", "-journal"):
                path.with_name(path.name + suffix).unlink(missing_ok=True)
        return
    assert postgres_url is not None
    engine = sa.create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
        url = sa.make_url(postgres_url).update_query_dict({"options": f"-csearch_path={name}"})
        libpq = url.set(drivername="postgresql").render_as_string(hide_password=False)
        yield Warehouse(
            backend,
            url.render_as_string(hide_password=False),
            ("--postgres", libpq),
            f'SELECT count(*) FROM "{name}".kwery_liquidations',
        )
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        engine.dispose()


def postgres_reachable(url: str) -> bool:
    engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return True
    except sa.exc.OperationalError:
        return False
    finally:
        engine.dispose()


# --- Dagster instances ---------------------------------------------------------------------------

INSTANCE_LABELS = {"sqlite": "SQLite instance", "postgres": "PostgreSQL instance"}
# Event-log entry types counted apart; every other type (and plain log lines) counts as "other".
EVENT_KINDS = {
    "ASSET_MATERIALIZATION_PLANNED": "planned",
    "ASSET_MATERIALIZATION": "materializations",
    "ASSET_CHECK_EVALUATION_PLANNED": "check_planned",
    "ASSET_CHECK_EVALUATION": "check_evaluations",
}


@dataclass(frozen=True)
class Instance:
    """One DAGSTER_HOME the pipeline runs in. `env` goes to every pipeline child (and is what
    opening the instance here needs, e.g. the DAGSTER_PG_* its dagster.yaml reads)."""

    name: str  # "sqlite" or "postgres"
    home: Path
    yaml: Path  # the dagster.yaml it was made from
    env: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return INSTANCE_LABELS[self.name]

    @contextlib.contextmanager
    def opened(self) -> Iterator[Any]:
        """The instance opened in this process exactly as the CLI child sees it: from its home
        directory (today's dagster.yaml has storage paths relative to the working directory; an
        absolute or default path works the same) with its environment."""
        import dagster as dg

        saved_cwd, saved_env = Path.cwd(), dict(os.environ)
        os.environ.update({"DAGSTER_HOME": str(self.home), **self.env})
        os.chdir(self.home)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with dg.DagsterInstance.from_config(str(self.home)) as instance:
                    yield instance
        finally:
            os.chdir(saved_cwd)
            os.environ.clear()
            os.environ.update(saved_env)

    def newest_run_events(self, seen: set[str]) -> dict[str, Any]:
        """Event-log entries of the newest run, by type (every entry is one write to the
        instance, batched or not). `seen` holds the runs already counted: the newest run must be
        a new one, so a CLI call that created no run cannot pass for the previous one."""
        with self.opened() as instance:
            runs = instance.get_runs(limit=1)
            if not runs or runs[0].run_id in seen:
                raise BenchError(f"no new run in the {self.label} at {self.home}")
            run = runs[0]
            logs = instance.all_logs(run.run_id)
        counts = dict.fromkeys([*EVENT_KINDS.values(), "other"], 0)
        for entry in logs:
            kind = entry.dagster_event_type
            counts[EVENT_KINDS.get(kind.value if kind else "", "other")] += 1
        counts["total"] = len(logs)
        seen.add(run.run_id)
        return {"run_id": run.run_id, "status": run.status.value, "events": counts}


@contextlib.contextmanager
def sqlite_instance(tmp: Path, dagster_yaml: Path = SQLITE_INSTANCE_YAML) -> Iterator[Instance]:
    """A temporary DAGSTER_HOME holding `dagster_yaml` (the repository's: SQLite storage)."""
    home = tmp / "dagster_home"
    home.mkdir()
    shutil.copy(dagster_yaml, home / "dagster.yaml")
    yield Instance("sqlite", home, dagster_yaml)


@contextlib.contextmanager
def postgres_instance(
    tmp: Path, postgres_url: str, dagster_yaml: Path = POSTGRES_INSTANCE_YAML
) -> Iterator[Instance]:
    """A temporary DAGSTER_HOME with the production dagster.yaml (run, event-log and schedule
    storage on PostgreSQL) over a fresh database `bench_<uuid>`, dropped afterwards. The
    pipeline runs with DAGSTER_EVENT_BATCH_SIZE=1000, as the deploy notes ask of every process
    that runs steps (Dagster then batch-writes materialization and planned events)."""
    database = f"bench_{uuid.uuid4().hex[:12]}"
    server = sa.make_url(postgres_url)
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    home = tmp / "dagster_home_postgres"
    home.mkdir()
    shutil.copy(dagster_yaml, home / "dagster.yaml")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{database}"'))
        yield Instance(
            "postgres",
            home,
            dagster_yaml,
            {
                "DAGSTER_PG_HOST": server.host or "127.0.0.1",
                "DAGSTER_PG_PORT": str(server.port or 5432),
                "DAGSTER_PG_USER": server.username or "postgres",
                "DAGSTER_PG_PASSWORD": server.password or "",
                "DAGSTER_PG_DB": database,
                "DAGSTER_EVENT_BATCH_SIZE": "1000",
            },
        )
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()
