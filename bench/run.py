"""Benchmark suite (issue 5): API efficiency, backfill wall time, memory and the daily run, each
figure side by side with a floor measured in the same run.

    .venv/bin/python bench/run.py            # full: median [min-max] of 3 runs, < 15 min
    .venv/bin/python bench/run.py --quick    # smaller windows, 1 run each, < 2 min

Options: --skip-postgres, --postgres-url (default LIQ_TEST_POSTGRES_URL or the test server),
--json FILE (every raw sample), --latency-ms N (delay every API answer like the internet would),
--env NAME=VALUE and --dagster-yaml FILE (try Dagster settings on the pipeline side).

Set-up, identical for every figure:
- The simulator of both APIs runs in this process with its clock frozen at 2026-03-21 12:00 UTC
  (Business key, full history), so every run fetches exactly the same rows. Every simulated day
  the suite needs is generated once up front and kept (the simulator caches only 96 days), so
  neither side pays the simulator's data generation inside a measurement.
- The pipeline side is the real `dagster` CLI, run as a child process in one temporary
  DAGSTER_HOME holding the repository's dagster.yaml (warmed by one untimed run), each
  measurement into a fresh SQLite file or a fresh PostgreSQL schema (dropped afterwards).
  Wall time is the child's whole life, Dagster start-up included; peak RSS is the child's own
  ru_maxrss (see LAUNCHER; the project's in-process executor starts no further processes).
- The floor is bench/floor.py, run the same way as a child process: the same Kwery pages
  (one query per day, limit=1000, cursor loop) with a bare `requests.Session`, the 8 Newhedge
  series when the pipeline side fetches them too, and the same rows written in one transaction
  into tables with the warehouse's columns and (timestamp, symbol) index (PostgreSQL: ADBC
  binary COPY; SQLite: sqlite3 executemany).
- bench/direct.py runs the pipeline's own Kwery path (the asset's fetcher into the IO manager)
  with no Dagster run around it, to split a backfill into "our code" and "Dagster".
- Ratios are pipeline / floor taken pair by pair (the floor run right before its pipeline run),
  then summarised as median [min-max]; API figures are compared with the theoretical minimum
  `Σ_days 25·max(1, ceil(N_d/1000)) + 2·N_d` credits, `Σ_days max(1, ceil(N_d/1000))` requests
  and 8 Newhedge requests whatever the range.
This is a benchmark, not a test: nothing here asserts a time, it reports.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from liq_pipeline.simulator import DEMO_NEWHEDGE_TOKEN, Simulator, data

REPO = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).with_name("dagster"))
FLOOR = str(REPO / "bench" / "floor.py")
DIRECT = str(REPO / "bench" / "direct.py")
PG_URL = os.environ.get(
    "LIQ_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
)
SIM_NOW = dt.datetime(2026, 3, 21, 12, 0, tzinfo=dt.UTC)  # Newhedge published through 03-20
KWERY_KEY = "demo-business-key"
SYMBOL = "BTC"
START_DATE = "2019-09-01"  # first Kwery day of the simulator: every window is a partition
ALL_ASSETS = "*"
KWERY_JOB = "kwery_daily_job"
CHILD_TIMEOUT_S = 600.0

# Faults of the API-efficiency run, (kind, count) in the order they hit; spread over the run by
# `fault_skips`. Retry-After "1" keeps the real waits short; a faulted request costs 0 credits.
KWERY_FAULTS = (("429", 2), ("500", 1), ("502", 1), ("503", 1), ("drop", 1))
NEWHEDGE_FAULTS = (("429", 1), ("503", 1), ("drop", 1))


def fault_skips(requests: int, faults: Sequence[tuple[str, int]]) -> list[tuple[str, int, int]]:
    """(kind, count, skip) so that the k-th fault hits the first attempt of request ≈ (2k+1)/2n
    of the run (the simulator counts a fault's skip over every matching request, retries
    included). One request never fails more than `count` times in a row, far below the client's
    6 attempts, so no fault escalates to a failed step and Dagster's 60 s step retry.
    """
    out, failed = [], 0
    for k, (kind, count) in enumerate(faults):
        position = (2 * k + 1) * requests // (2 * len(faults))
        out.append((kind, count, position + failed))
        failed += count
    return out


# --- windows and the theoretical minimum ---------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """UTC days [first, last] of one measurement."""

    first: dt.date
    last: dt.date

    @classmethod
    def of(cls, first: str, last: str | None = None) -> Window:
        return cls(dt.date.fromisoformat(first), dt.date.fromisoformat(last or first))

    @classmethod
    def ending(cls, last: str, days: int) -> Window:
        end = dt.date.fromisoformat(last)
        return cls(end - dt.timedelta(days=days - 1), end)

    @property
    def days(self) -> list[dt.date]:
        n = (self.last - self.first).days + 1
        return [self.first + dt.timedelta(days=i) for i in range(n)]

    @property
    def partition_range(self) -> str:
        return f"{self.first}...{self.last}"

    def __str__(self) -> str:
        span = f"{self.first}" if self.first == self.last else f"{self.first}…{self.last}"
        return f"{span} ({len(self.days)} d, {minimum(self).rows:,} events)"


@dataclass(frozen=True)
class Minimum:
    rows: int
    kwery_requests: int
    kwery_credits: int
    newhedge_requests: int = 8


@functools.cache
def minimum(window: Window) -> Minimum:
    """What the window must cost at least: every day is one query of ceil(N/1000) pages."""
    rows = requests = credits = 0
    for day in window.days:
        n = len(data.day_data(SYMBOL, day))
        pages = max(1, math.ceil(n / 1000))
        rows += n
        requests += pages
        credits += 25 * pages + 2 * n
    return Minimum(rows, requests, credits)


def cache_simulated_days(windows: Sequence[Window]) -> None:
    # The simulator keeps 96 generated days (a 60k-event day takes ~0.2 s to generate). Longer
    # windows would regenerate days inside every measured run, on both sides alike, so keep every
    # day of the suite and generate it now, outside any measurement.
    data.day_data = functools.lru_cache(maxsize=None)(data.day_data.__wrapped__)
    for window in windows:
        minimum(window)


class LatentSimulator(Simulator):
    """The simulator with a fixed delay before every API answer: the internet's round trip
    (50-150 ms per page against the real APIs, ../shared/PERFORMANCE-NOTES.md)."""

    def __init__(self, *args: Any, latency_s: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.latency_s = latency_s

    def handle(self, method: str, target: str, body: bytes = b"") -> Any:
        if self.latency_s and not target.startswith("/_sim/"):
            time.sleep(self.latency_s)
        return super().handle(method, target, body)


# --- plan: what quick and full measure -----------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    name: str
    repeats: int
    backfill: Window  # single-run backfill of every asset, both backends, + clean API counts
    single_vs_partitions: Window  # 30 days: one single run vs one run per partition
    partition_sample: int | None  # per-partition runs measured, extrapolated (None = every day)
    direct_backfill: bool  # also time our code alone (bench/direct.py) beside SQLite backfills
    memory_small: Window
    memory_large: Window
    throughput: tuple[tuple[str, Window], ...]
    daily_schedule_day: dt.date  # the scheduled ticks of the day after this partition


THROUGHPUT = (
    ("quiet day", Window.of("2026-03-07")),
    ("crash day", Window.of("2025-10-10")),
)
FULL = Plan(
    name="full",
    repeats=3,
    backfill=Window.ending("2026-03-20", 90),
    single_vs_partitions=Window.ending("2026-03-20", 30),
    # Every third day: 10 real runs (~5 s each) keep the full suite under 15 minutes.
    partition_sample=10,
    direct_backfill=True,
    memory_small=Window.ending("2026-03-20", 30),
    memory_large=Window.ending("2026-03-20", 180),
    throughput=(*THROUGHPUT, ("~1M-event range", Window.of("2025-01-02", "2026-02-02"))),
    daily_schedule_day=dt.date(2026, 3, 20),
)
QUICK = Plan(
    name="quick",
    repeats=1,
    backfill=Window.ending("2026-03-20", 5),
    single_vs_partitions=Window.ending("2026-03-20", 30),
    partition_sample=5,
    direct_backfill=False,
    memory_small=Window.ending("2026-03-20", 5),
    memory_large=Window.ending("2026-03-20", 30),
    throughput=(*THROUGHPUT, ("~100k-event week", Window.of("2026-01-27", "2026-02-02"))),
    daily_schedule_day=dt.date(2026, 3, 20),
)


# --- child processes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Child:
    """One finished child process: wall seconds, its own peak RSS, exit code and output."""

    seconds: float
    rss_mib: float
    returncode: int
    stdout: str = field(repr=False)
    stderr: str = field(repr=False)


class BenchError(RuntimeError):
    pass


# Each measured process is started by this ~10 MiB launcher, not by the benchmark process
# itself: Linux counts the pages a child shares with its parent between fork() and exec() in
# the child's peak RSS (ru_maxrss), and this process holds ~300 MiB of simulated days, which
# would then be reported as the peak of every child. The launcher reports the child's wall
# time (spawn to exit) and its own ru_maxrss from wait4().
LAUNCHER = """
import json, os, subprocess, sys, time
started = time.perf_counter()
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
report = {"seconds": time.perf_counter() - started, "rss_kib": usage.ru_maxrss,
          "returncode": os.waitstatus_to_exitcode(status)}
with open(sys.argv[1], "w") as out:
    json.dump(report, out)
"""


def run_child(argv: Sequence[str], *, cwd: Path, env: dict[str, str]) -> Child:
    """Run argv to completion; its wall time and peak RSS as measured by LAUNCHER."""
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile("r", suffix=".json") as report,
    ):
        launcher = [sys.executable, "-c", LAUNCHER, report.name, *argv]
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
            raise BenchError(f"{argv[0]} did not complete (launcher exit {proc.returncode})")
        result = json.loads(text)
        return Child(
            seconds=result["seconds"],
            rss_mib=result["rss_kib"] / 1024,  # KiB on Linux
            returncode=result["returncode"],
            stdout=stdout,
            stderr=stderr,
        )


def checked(child: Child, what: str) -> Child:
    if child.returncode != 0:
        tail = (child.stdout + child.stderr)[-4000:]
        raise BenchError(f"{what} failed (exit {child.returncode}):\n{tail}")
    return child


# --- warehouses ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Warehouse:
    backend: str
    url: str  # SQLAlchemy URL for LIQ_WAREHOUSE_URL
    floor_args: tuple[str, ...]
    count_sql: str = "SELECT count(*) FROM kwery_liquidations"


# --- one measured pair ---------------------------------------------------------------------------


@dataclass
class Sample:
    """One pipeline run (one or more CLI invocations) and the floor run paired with it."""

    seconds: float
    rss_mib: float
    kwery: dict[str, int]
    newhedge: dict[str, int]
    floor_seconds: float | None = None
    floor_rss_mib: float | None = None
    floor: dict[str, Any] | None = None  # the floor's own report (work seconds, fetch/write)
    direct: dict[str, Any] | None = None  # bench/direct.py's report, when measured

    @classmethod
    def paired(
        cls, run: tuple[Child, dict, dict], floor: tuple[Child, dict], **extra: Any
    ) -> Sample:
        (child, kwery, newhedge), (floor_child, floor_report) = run, floor
        return cls(
            child.seconds,
            child.rss_mib,
            kwery,
            newhedge,
            floor_child.seconds,
            floor_child.rss_mib,
            floor_report,
            **extra,
        )

    @property
    def ratio(self) -> float:
        assert self.floor_seconds is not None
        return self.seconds / self.floor_seconds


class Bench:
    def __init__(
        self,
        sim: Simulator,
        tmp: Path,
        postgres_url: str | None,
        env: dict[str, str],
        dagster_yaml: Path = REPO / "dagster.yaml",
    ) -> None:
        self.sim = sim
        self.tmp = tmp
        self.postgres_url = postgres_url
        self.home = tmp / "dagster_home"
        self.home.mkdir()
        shutil.copy(dagster_yaml, self.home / "dagster.yaml")
        self.extra_env = env
        self.started = time.perf_counter()
        self._cache: dict[tuple[str, ...], list[Sample]] = {}
        self.raw: dict[str, Any] = {}

    # progress goes to stderr; the table to stdout
    def log(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.started:6.1f} s] {message}", file=sys.stderr)

    def env(self, warehouse: Warehouse) -> dict[str, str]:
        return {
            **os.environ,
            "DAGSTER_HOME": str(self.home),
            "KWERY_API_KEY": KWERY_KEY,
            "NEWHEDGE_API_TOKEN": DEMO_NEWHEDGE_TOKEN,
            "KWERY_BASE_URL": self.sim.url,
            "NEWHEDGE_BASE_URL": self.sim.url,
            "LIQ_WAREHOUSE_URL": warehouse.url,
            "LIQ_START_DATE": START_DATE,
            "LIQ_KWERY_SYMBOLS": SYMBOL,
            **self.extra_env,
        }

    @contextlib.contextmanager
    def warehouse(self, backend: str) -> Iterator[Warehouse]:
        """A fresh, empty warehouse, removed afterwards."""
        name = f"bench_{uuid.uuid4().hex[:10]}"
        if backend == "sqlite":
            path = self.tmp / f"{name}.sqlite"
            try:
                yield Warehouse(backend, f"sqlite:///{path}", ("--sqlite", str(path)))
            finally:
                for suffix in ("", "-wal", "-shm", "-journal"):
                    path.with_name(path.name + suffix).unlink(missing_ok=True)
            return
        assert self.postgres_url is not None
        engine = sa.create_engine(self.postgres_url)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
            url = sa.make_url(self.postgres_url).update_query_dict(
                {"options": f"-csearch_path={name}"}
            )
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

    def kwery_rows_stored(self, warehouse: Warehouse) -> int:
        engine = sa.create_engine(warehouse.url)
        try:
            with engine.connect() as conn:
                return int(conn.execute(sa.text(warehouse.count_sql)).scalar_one())
        finally:
            engine.dispose()

    # -- the two sides ---------------------------------------------------------------------------

    def cli(self, warehouse: Warehouse, *args: str) -> tuple[Child, dict, dict]:
        """One `dagster` CLI invocation, with the API accounting the simulator saw for it."""
        self.sim.reset_stats()
        child = run_child([DAGSTER, *args], cwd=self.home, env=self.env(warehouse))
        checked(child, f"dagster {' '.join(args)}")
        return child, self.sim.stats(KWERY_KEY), self.sim.stats(DEMO_NEWHEDGE_TOKEN)

    def materialize(self, warehouse: Warehouse, select: str, window: Window) -> tuple:
        if window.first == window.last:
            where = ("--partition", str(window.first))
        else:
            where = ("--partition-range", window.partition_range)
        module = ("-m", "liq_pipeline.definitions")
        return self.cli(warehouse, "asset", "materialize", *module, "--select", select, *where)

    def job(self, warehouse: Warehouse, job: str, tags: dict[str, str]) -> tuple:
        module = ("-m", "liq_pipeline.definitions")
        return self.cli(warehouse, "job", "execute", *module, "-j", job, "--tags", json.dumps(tags))

    def floor(self, backend: str, window: Window, *, newhedge: bool) -> tuple[Child, dict]:
        with self.warehouse(backend) as warehouse:
            argv = [sys.executable, FLOOR, "--base-url", self.sim.url, "--kwery-key", KWERY_KEY]
            argv += ["--first", str(window.first), "--last", str(window.last), "--symbol", SYMBOL]
            argv += [*warehouse.floor_args]
            if newhedge:
                argv += ["--newhedge-token", DEMO_NEWHEDGE_TOKEN]
            self.sim.reset_stats()
            child = checked(run_child(argv, cwd=self.tmp, env=dict(os.environ)), "floor")
        result = json.loads(child.stdout.strip().splitlines()[-1])
        expected = minimum(window)
        if result["rows"] != expected.rows or result["requests"] != expected.kwery_requests + (
            8 if newhedge else 0
        ):
            raise BenchError(f"floor fetched {result}, expected {expected}")
        return child, result

    def record(self, key: tuple[str, ...], samples: list[Sample]) -> list[Sample]:
        self._cache[key] = samples
        self.raw[" ".join(key)] = [asdict(s) for s in samples]
        return samples

    # -- measurements ----------------------------------------------------------------------------

    def backfill(
        self,
        backend: str,
        window: Window,
        repeats: int,
        *,
        direct: bool = False,
        floor: bool = True,
    ) -> list[Sample]:
        """Single-run backfills of every asset over `window`, each paired with a floor run
        (and, with `direct`, with bench/direct.py over the same Kwery rows)."""
        key = ("backfill", backend, str(window.first), str(window.last))
        if key in self._cache:
            return self._cache[key]
        samples = []
        for _ in range(repeats):
            paired = self.floor(backend, window, newhedge=True) if floor else None
            report = self.direct(backend, window) if direct else None
            with self.warehouse(backend) as warehouse:
                run = self.materialize(warehouse, ALL_ASSETS, window)
                self.check_stored(warehouse, window)
            if paired is None:
                samples.append(Sample(run[0].seconds, run[0].rss_mib, run[1], run[2]))
            else:
                samples.append(Sample.paired(run, paired, direct=report))
            self.log(
                f"backfill {backend} {window}: pipeline {run[0].seconds:.1f} s "
                f"({run[0].rss_mib:.0f} MiB)"
                + (f", floor {paired[0].seconds:.2f} s" if paired else "")
                + (f", direct {report['seconds']:.2f} s" if report else "")
            )
        return self.record(key, samples)

    def direct(self, backend: str, window: Window) -> dict[str, Any]:
        with self.warehouse(backend) as warehouse:
            argv = [sys.executable, DIRECT, "--base-url", self.sim.url, "--kwery-key", KWERY_KEY]
            argv += ["--first", str(window.first), "--last", str(window.last)]
            argv += ["--symbol", SYMBOL, "--warehouse", warehouse.url]
            child = checked(run_child(argv, cwd=self.tmp, env=dict(os.environ)), "direct")
            self.check_stored(warehouse, window)
        return json.loads(child.stdout.strip().splitlines()[-1])

    def check_stored(self, warehouse: Warehouse, window: Window) -> None:
        stored = self.kwery_rows_stored(warehouse)
        if stored != minimum(window).rows:
            raise BenchError(f"{stored} rows stored, expected {minimum(window)}")

    def with_faults(self, window: Window, repeats: int) -> list[Sample]:
        samples = []
        need = minimum(window)
        for _ in range(repeats):
            self.sim.clear_faults()
            for kind, count, skip in fault_skips(need.kwery_requests, KWERY_FAULTS):
                self.sim.inject(kind, count, api="kwery", skip=skip, retry_after="1")
            for kind, count, skip in fault_skips(need.newhedge_requests, NEWHEDGE_FAULTS):
                self.sim.inject(kind, count, api="newhedge", skip=skip, retry_after="1")
            with self.warehouse("sqlite") as warehouse:
                child, kwery, newhedge = self.materialize(warehouse, ALL_ASSETS, window)
                self.check_stored(warehouse, window)
            self.sim.clear_faults()
            samples.append(Sample(child.seconds, child.rss_mib, kwery, newhedge))
            self.log(f"faults {window}: {child.seconds:.1f} s, kwery {kwery}, newhedge {newhedge}")
        return self.record(("faults", str(window.first), str(window.last)), samples)

    def one_run_per_partition(self, window: Window, sample: int | None) -> list[Sample]:
        """`--partition D` for the days of `window` (or `sample` evenly spaced of them)."""
        days = sample_days(window, sample)
        samples = []
        with self.warehouse("sqlite") as warehouse:
            for day in days:
                child, kwery, newhedge = self.materialize(warehouse, ALL_ASSETS, Window(day, day))
                samples.append(Sample(child.seconds, child.rss_mib, kwery, newhedge))
            stored = self.kwery_rows_stored(warehouse)
        expected = sum(minimum(Window(d, d)).rows for d in days)
        if stored != expected:
            raise BenchError(f"per-partition runs stored {stored} rows, expected {expected}")
        total = sum(s.seconds for s in samples)
        self.log(f"one run per partition, {len(days)} runs: {total:.1f} s")
        return self.record(("per-partition", str(window.first), str(window.last)), samples)

    def kwery_job(self, window: Window, repeats: int, *, direct: bool = False) -> list[Sample]:
        """The Kwery job (events only, as scheduled) over `window`, each run paired with a
        Kwery-only floor (and, with `direct`, with bench/direct.py over the same rows)."""
        if window.first == window.last:
            tags = {"dagster/partition": str(window.first)}
        else:
            tags = {
                "dagster/asset_partition_range_start": str(window.first),
                "dagster/asset_partition_range_end": str(window.last),
            }
        samples = []
        for _ in range(repeats):
            floor = self.floor("sqlite", window, newhedge=False)
            report = self.direct("sqlite", window) if direct else None
            with self.warehouse("sqlite") as warehouse:
                run = self.job(warehouse, KWERY_JOB, tags)
                self.check_stored(warehouse, window)
            samples.append(Sample.paired(run, floor, direct=report))
            self.log(
                f"{KWERY_JOB} {window}: pipeline {run[0].seconds:.1f} s, "
                f"floor {floor[0].seconds:.2f} s"
                + (f", direct {report['seconds']:.2f} s" if report else "")
            )
        return self.record(("kwery-job", str(window.first), str(window.last)), samples)

    def daily(self, day: dt.date, repeats: int) -> list[Sample]:
        """The scheduled ticks after `day` (both daily schedules), end to end, vs the floor."""
        ticks = scheduled_run_tags(day)
        samples = []
        for _ in range(repeats):
            floor_child, floor_report = self.floor("sqlite", Window(day, day), newhedge=True)
            seconds = rss = 0.0
            kwery = dict.fromkeys(("requests", "credits_used", "rows"), 0)
            newhedge = dict.fromkeys(("requests",), 0)
            with self.warehouse("sqlite") as warehouse:
                for job, tags in ticks:
                    child, k, n = self.job(warehouse, job, tags)
                    seconds += child.seconds
                    rss = max(rss, child.rss_mib)
                    for name in kwery:
                        kwery[name] += k[name]
                    newhedge["requests"] += n["requests"]
            floor_seconds, floor_rss = floor_child.seconds, floor_child.rss_mib
            samples.append(
                Sample(seconds, rss, kwery, newhedge, floor_seconds, floor_rss, floor_report)
            )
            self.log(f"daily run {day}: {seconds:.1f} s, floor {floor_seconds:.2f} s")
        return self.record(("daily", str(day)), samples)


def sample_days(window: Window, sample: int | None) -> list[dt.date]:
    """Every day of `window`, or `sample` of them evenly spaced."""
    days = window.days
    if sample is None or sample >= len(days):
        return days
    step = len(days) / sample
    return [days[int(i * step)] for i in range(sample)]


def scheduled_run_tags(day: dt.date) -> list[tuple[str, dict[str, str]]]:
    """(job, run tags) of each daily schedule's tick on the day after `day`, in tick order.

    Evaluated with the project's own schedule definitions, so the runs are exactly what the
    schedules would launch.
    """
    import dagster as dg

    from liq_pipeline.definitions import build_definitions

    defs = build_definitions(start_date=START_DATE, symbols=(SYMBOL,))
    ticks = []
    for name in ("kwery_daily_schedule", "newhedge_daily_schedule"):
        schedule = defs.resolve_schedule_def(name)
        minute, hour = (int(x) for x in str(schedule.cron_schedule).split()[:2])
        at = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(hour, minute), dt.UTC)
        with dg.build_schedule_context(scheduled_execution_time=at) as context:
            result = schedule.evaluate_tick(context)
        [request] = result.run_requests or []
        if request.partition_key != str(day):
            raise BenchError(f"{name} at {at} requested {request.partition_key}, not {day}")
        ticks.append((schedule.job_name, {**request.tags, "dagster/partition": str(day)}))
    return ticks


# --- summaries and the table ---------------------------------------------------------------------


@dataclass(frozen=True)
class Stat:
    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        return cls(tuple(values))

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def show(self, fmt: str = "{:.2f}", unit: str = "") -> str:
        med = fmt.format(self.median) + unit
        if len(self.values) == 1:
            return f"{med} (n=1)"
        return f"{med} [{fmt.format(min(self.values))}–{fmt.format(max(self.values))}]"


@dataclass
class Row:
    figure: str
    pipeline: str = ""
    floor: str = ""
    ratio: str = ""
    target: str = ""
    verdict: str = ""


@dataclass
class Section:
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def seconds(stat: Stat) -> str:
    return stat.show("{:.2f}", " s")


def times(stat: Stat) -> str:
    return stat.show("{:.2f}", "×")


def kwery_requests(sample: Sample) -> int:
    return sample.kwery["requests"]


def kwery_credits(sample: Sample) -> int:
    return sample.kwery["credits_used"]


def newhedge_requests(sample: Sample) -> int:
    return sample.newhedge["requests"]


def api_section(bench: Bench, plan: Plan, clean: list[Sample], faulted: list[Sample]) -> Section:
    need = minimum(plan.backfill)
    section = Section(f"1. API efficiency — BTC backfill {plan.backfill}, every asset, one run")
    n_kwery = sum(count for _, count in KWERY_FAULTS)
    n_newhedge = sum(count for _, count in NEWHEDGE_FAULTS)
    fault_need = need
    kwery_faulted = f"{fault_need.kwery_requests:,} + {n_kwery} faulted"
    newhedge_faulted = f"8 + {n_newhedge} faulted"
    checks: list[tuple[str, list[Sample], Callable[[Sample], int], int, str]] = [
        ("Kwery requests, clean", clean, kwery_requests, need.kwery_requests, ""),
        ("Kwery credits, clean", clean, kwery_credits, need.kwery_credits, ""),
        ("Newhedge requests, clean", clean, newhedge_requests, 8, ""),
        (
            "Kwery requests, with faults",
            faulted,
            kwery_requests,
            fault_need.kwery_requests + n_kwery,
            kwery_faulted,
        ),
        ("Kwery credits, with faults", faulted, kwery_credits, fault_need.kwery_credits, ""),
        (
            "Newhedge requests, with faults",
            faulted,
            newhedge_requests,
            8 + n_newhedge,
            newhedge_faulted,
        ),
    ]
    for figure, samples, get, floor, label in checks:
        values = Stat.of([get(s) for s in samples])
        section.rows.append(
            Row(
                figure,
                values.show("{:,.0f}"),
                f"{label or f'{floor:,}'} (minimum)",
                times(Stat.of([get(s) / floor for s in samples])),
                "= 1.00×",
                verdict(all(get(s) == floor for s in samples)),
            )
        )
    faults = ", ".join(f"{k}×{c}" for k, c in KWERY_FAULTS)
    section.notes.append(
        f"clean: {len(clean)} runs (SQLite and PostgreSQL); faults: {len(faulted)} run(s) over "
        f"the same window into SQLite with Kwery {faults} and Newhedge "
        f"{', '.join(f'{k}×{c}' for k, c in NEWHEDGE_FAULTS)} (Retry-After 1 s); a "
        "faulted request is charged 0 credits and must be sent again, so the minimum with faults "
        "is the clean minimum plus one request per fault."
    )
    return section


def backfill_rows(label: str, samples: list[Sample], rows: int) -> list[Row]:
    wall = Stat.of([s.seconds for s in samples])
    floor = Stat.of([s.floor_seconds or 0.0 for s in samples])
    ratio = Stat.of([s.ratio for s in samples])
    return [
        Row(
            f"{label}: wall time",
            seconds(wall),
            seconds(floor),
            times(ratio),
            "≤ 1.30×",
            verdict(ratio.median <= 1.3),
        ),
        Row(
            f"{label}: rows/s",
            Stat.of([rows / s.seconds for s in samples]).show("{:,.0f}"),
            Stat.of([rows / (s.floor_seconds or 1.0) for s in samples]).show("{:,.0f}"),
        ),
    ]


def floor_split(samples: list[Sample]) -> str:
    fetch = Stat.of([s.floor["fetch_seconds"] for s in samples if s.floor])
    write = Stat.of([s.floor["write_seconds"] for s in samples if s.floor])
    return f"fetch+parse {fetch.median:.2f} s, write {write.median:.2f} s"


def backfill_section(plan: Plan, results: dict[str, list[Sample]]) -> Section:
    section = Section(f"2. Backfill wall time — {plan.backfill}, every asset, one single run")
    for backend, samples in results.items():
        section.rows.extend(backfill_rows(backend, samples, minimum(plan.backfill).rows))
        ours = [s for s in samples if s.direct and s.floor]
        if ours:
            # Work time on both sides: interpreter start-up and imports left out.
            direct = Stat.of([s.direct["seconds"] for s in ours if s.direct])
            floor = Stat.of([s.floor["kwery_seconds"] for s in ours if s.floor])
            section.rows.append(
                Row(
                    f"{backend}: Kwery rows, our code only (no Dagster)",
                    seconds(direct),
                    seconds(floor) + " work",
                    times(Stat.of([s.direct["seconds"] / s.floor["kwery_seconds"] for s in ours])),
                    "report",
                )
            )
            rest = Stat.of([s.seconds - s.direct["seconds"] for s in ours])
            section.notes.append(
                f"{backend}: the CLI run minus our code = {seconds(rest)} of Dagster (process "
                "start-up, definitions, run and event bookkeeping)"
            )
        section.notes.append(
            f"{backend} floor work: {floor_split(samples)}; pipeline peak RSS "
            f"{Stat.of([s.rss_mib for s in samples]).show('{:.0f}', ' MiB')}"
        )
    return section


def partitions_section(plan: Plan, single: list[Sample], per_partition: list[Sample]) -> Section:
    window = plan.single_vs_partitions
    section = Section(f"2b. One run per partition vs one single run — {window}, SQLite")
    section.rows.extend(backfill_rows("single run", single, minimum(window).rows))
    n_days = len(window.days)
    scale = n_days / len(per_partition)
    total = sum(s.seconds for s in per_partition) * scale
    each = Stat.of([s.seconds for s in per_partition])
    extrapolated = f" (×{scale:.0f} of {len(per_partition)} sampled)" if scale != 1 else ""
    section.rows.append(
        Row(
            f"{n_days} runs, one per partition: wall time",
            f"{total:.1f} s{extrapolated}",
            "",
            times(Stat.of([total / s.seconds for s in single])) + " of single run",
            "report",
        )
    )
    section.rows.append(Row("  each per-partition run", seconds(each)))
    # Each run asks Newhedge for the 8 whole series again; Kwery pages are per day either way.
    newhedge = sum(s.newhedge["requests"] for s in per_partition) * scale
    section.rows.append(
        Row(
            "  Newhedge requests",
            f"{newhedge:,.0f}" + (" (extrapolated)" if scale != 1 else ""),
            "8 (single run)",
            f"{newhedge / 8:.0f}×",
        )
    )
    kwery = sum(s.kwery["requests"] for s in per_partition)
    days = sample_days(window, plan.partition_sample)
    sampled = sum(minimum(Window(d, d)).kwery_requests for d in days)
    section.rows.append(
        Row(
            f"  Kwery requests of the {len(per_partition)} measured runs",
            f"{kwery:,}",
            f"{sampled:,} (minimum)",
            f"{kwery / sampled:.2f}×",
        )
    )
    return section


def throughput_section(plan: Plan, points: list[tuple[str, Window, list[Sample]]]) -> Section:
    section = Section(f"3. Throughput scaling — {KWERY_JOB} (Kwery events only), SQLite")
    medians: dict[str, dict[str, float]] = {}
    for label, window, samples in points:
        rows = minimum(window).rows
        section.rows.extend(backfill_rows(f"{label}, {rows:,} events", samples, rows))
        section.rows[-2].target = section.rows[-2].verdict = ""
        paired = [(s, s.direct, s.floor) for s in samples if s.direct and s.floor]
        median = {
            "rows": rows,
            "wall": Stat.of([s.seconds for s in samples]).median,
            "floor": Stat.of([s.floor_seconds or 0.0 for s in samples]).median,
        }
        if paired:
            ours = Stat.of([1e6 * d["seconds"] / rows for _, d, _ in paired])
            floor = Stat.of([1e6 * f["kwery_seconds"] / rows for _, _, f in paired])
            section.rows.append(
                Row(
                    f"{label}: our code only, µs/row",
                    ours.show("{:.2f}"),
                    floor.show("{:.2f}") + " work",
                    times(Stat.of([d["seconds"] / f["kwery_seconds"] for _, d, f in paired])),
                )
            )
            median["ours_per_row"] = ours.median / 1e6
            median["floor_per_row"] = floor.median / 1e6
            median["dagster"] = Stat.of([s.seconds - d["seconds"] for s, d, _ in paired]).median
        medians[label] = median
        rss = Stat.of([s.rss_mib for s in samples]).show("{:.0f}", " MiB")
        section.notes.append(f"{label}: {window}, pipeline peak RSS {rss}")

    # Linear in rows: the long range should cost the crash day plus its extra rows at the crash
    # day's marginal cost per row (our code's, resp. the floor's, work per row).
    (big, _, _), (long, window, _) = points[-2], points[-1]
    b, g = medians[big], medians[long]
    extra = g["rows"] - b["rows"]
    linear = b["wall"] + extra * b["ours_per_row"]
    floor_linear = b["floor"] + extra * b["floor_per_row"]
    section.rows.append(
        Row(
            f"{long}: measured vs linear in rows from the {big}",
            f"{g['wall']:.1f} s vs {linear:.1f} s",
            f"{g['floor']:.1f} s vs {floor_linear:.1f} s",
            f"{g['wall'] / linear:.2f}× (floor {g['floor'] / floor_linear:.2f}×)",
            "≈ 1.00× (linear)",
            verdict(g["wall"] / linear <= 1.2),
        )
    )
    days = len(window.days)
    if days >= 30:  # over a few partitions the difference is start-up noise
        per_partition = (g["dagster"] - b["dagster"]) / (days - 1)
        per_day = (g["ours_per_row"] - b["ours_per_row"]) * g["rows"] / (days - 1)
        section.rows.append(
            Row(
                "  why: cost of each extra partition in a run",
                f"{per_partition * 1000:.0f} ms Dagster + {per_day * 1000:.1f} ms our code",
                "",
                "",
                "report",
            )
        )
    section.notes.append(
        f"Dagster's share = CLI wall − our code: {b['dagster']:.1f} s for the {big} (1 "
        f"partition), {g['dagster']:.1f} s for the {days}-day range; our code per row "
        f"{1e6 * b['ours_per_row']:.1f} µs on the {big}, {1e6 * g['ours_per_row']:.1f} µs on "
        "the range (fixed costs per page and per day)."
    )
    return section


def memory_section(plan: Plan, small: list[Sample], large: list[Sample]) -> Section:
    section = Section("4. Memory — peak RSS of the CLI process, single-run backfill, SQLite")
    small_rss = Stat.of([s.rss_mib for s in small])
    large_rss = Stat.of([s.rss_mib for s in large])
    ratio = Stat.of([b.rss_mib / a.rss_mib for a, b in zip(small, large, strict=False)])
    section.rows.append(Row(f"{plan.memory_small}", small_rss.show("{:.0f}", " MiB")))
    section.rows.append(
        Row(
            f"{plan.memory_large}",
            large_rss.show("{:.0f}", " MiB"),
            "",
            times(ratio) + " of the short window",
            "≤ 1.20×, < 500 MiB",
            verdict(ratio.median <= 1.2 and max(large_rss.values) < 500),
        )
    )
    floor = Stat.of([s.floor_rss_mib for s in small if s.floor_rss_mib])
    section.notes.append(
        f"the floor process of the short window peaks at {floor.show('{:.0f}', ' MiB')} "
        "(it streams page by page)."
    )
    return section


def daily_section(day: dt.date, samples: list[Sample]) -> Section:
    need = minimum(Window(day, day))
    section = Section(
        f"5. Daily run — the scheduled ticks for {day} (kwery_daily_job 00:15 + "
        "newhedge_daily_job 01:30), SQLite"
    )
    wall = Stat.of([s.seconds for s in samples])
    floor = Stat.of([s.floor_seconds or 0.0 for s in samples])
    section.rows.append(
        Row(
            f"wall time ({need.rows:,} events)",
            seconds(wall),
            seconds(floor),
            times(Stat.of([s.ratio for s in samples])),
            "report",
        )
    )
    requests = Stat.of([s.kwery["requests"] + s.newhedge["requests"] for s in samples])
    section.rows.append(
        Row(
            "requests (Kwery + Newhedge)",
            requests.show("{:.0f}"),
            f"{need.kwery_requests} + 8 (minimum)",
            times(Stat.of([v / (need.kwery_requests + 8) for v in requests.values])),
            "= 1.00×",
            verdict(all(v == need.kwery_requests + 8 for v in requests.values)),
        )
    )
    credits = Stat.of([s.kwery["credits_used"] for s in samples])
    section.rows.append(
        Row(
            "Kwery credits",
            credits.show("{:,.0f}"),
            f"{need.kwery_credits:,} (minimum)",
            times(Stat.of([v / need.kwery_credits for v in credits.values])),
            "= 1.00×",
            verdict(all(v == need.kwery_credits for v in credits.values)),
        )
    )
    return section


def render(sections: list[Section]) -> str:
    header = Row("figure", "pipeline", "floor", "pipeline / floor", "target", "")
    rows = [header, *(row for s in sections for row in s.rows)]
    widths = [
        max(len(getattr(r, name)) for r in rows)
        for name in ("figure", "pipeline", "floor", "ratio", "target", "verdict")
    ]

    def line(row: Row) -> str:
        cells = (row.figure, row.pipeline, row.floor, row.ratio, row.target, row.verdict)
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [line(header), "-" * (sum(widths) + 2 * (len(widths) - 1))]
    for section in sections:
        out.append(section.title)
        out.extend("  " + line(row) for row in section.rows)
        out.extend(f"    · {note}" for note in section.notes)
    return "\n".join(out)


# --- machine -------------------------------------------------------------------------------------


def machine(postgres_url: str | None) -> list[str]:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                cpu = text.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kib / 2**20:.1f} GiB RAM"
    lines = [
        f"machine: {os.cpu_count()} × {cpu}{mem}, {platform.system()} {platform.release()}",
        f"python {platform.python_version()}; " + ", ".join(versions()),
    ]
    if postgres_url:
        engine = sa.create_engine(postgres_url)
        try:
            with engine.connect() as conn:
                version = conn.execute(sa.text("SHOW server_version")).scalar_one()
            lines.append(f"PostgreSQL {version} at {sa.make_url(postgres_url).host} (local)")
        finally:
            engine.dispose()
    lines.append(f"git: {git_state()}")
    return lines


def versions() -> list[str]:
    from importlib.metadata import version

    names = ("dagster", "pandas", "pyarrow", "sqlalchemy", "adbc-driver-postgresql", "requests")
    return [f"{name} {version(name)}" for name in names]


def git_state() -> str:
    git = shutil.which("git")
    if git is None:
        return "unknown (no git)"

    def run(*args: str) -> str:
        result = subprocess.run([git, *args], cwd=REPO, capture_output=True, text=True)
        return result.stdout.rstrip()

    head = run("rev-parse", "--short", "HEAD") or "unknown"
    dirty = [line[3:] for line in run("status", "--porcelain").splitlines()]
    return head + (f" + uncommitted changes in {', '.join(dirty)}" if dirty else "")


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


# --- main ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller windows, 1 run each")
    parser.add_argument("--postgres-url", default=PG_URL)
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--json", type=Path, help="also write every raw sample to this file")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for every dagster run (e.g. to try Dagster settings)",
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="delay every simulated API answer, as the real APIs' network round trip would",
    )
    parser.add_argument(
        "--dagster-yaml",
        type=Path,
        default=REPO / "dagster.yaml",
        help="instance configuration to run with (default: the repository's dagster.yaml)",
    )
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    extra_env = dict(item.split("=", 1) for item in args.env)
    postgres_url = None
    if not args.skip_postgres:
        if postgres_reachable(args.postgres_url):
            postgres_url = args.postgres_url
        else:
            print(f"PostgreSQL unreachable at {args.postgres_url}: skipped", file=sys.stderr)

    windows = [
        plan.backfill,
        plan.single_vs_partitions,
        plan.memory_small,
        plan.memory_large,
        Window(plan.daily_schedule_day, plan.daily_schedule_day),
        *(w for _, w in plan.throughput),
    ]
    cache_simulated_days(windows)
    with (
        tempfile.TemporaryDirectory(prefix="liq-bench-") as tmp,
        LatentSimulator(port=0, now=SIM_NOW, latency_s=args.latency_ms / 1000) as sim,
    ):
        bench = Bench(sim, Path(tmp), postgres_url, extra_env, args.dagster_yaml.resolve())
        bench.log(f"{plan.name} run; simulated days generated; warming up")
        warm_up = Window(plan.daily_schedule_day, plan.daily_schedule_day)
        bench.kwery_job(warm_up, 1)
        bench.floor("sqlite", warm_up, newhedge=True)  # the simulator's Newhedge series too
        bench.raw.clear()

        backends = ["sqlite", *(["postgresql"] if postgres_url else [])]
        backfills = {
            b: bench.backfill(
                b, plan.backfill, plan.repeats, direct=plan.direct_backfill and b == "sqlite"
            )
            for b in backends
        }
        faulted = bench.with_faults(plan.backfill, plan.repeats)
        single = bench.backfill("sqlite", plan.single_vs_partitions, plan.repeats)
        per_partition = bench.one_run_per_partition(
            plan.single_vs_partitions, plan.partition_sample
        )
        small = bench.backfill("sqlite", plan.memory_small, plan.repeats)
        # Memory compares the two windows with each other: no floor needed for the long one.
        large = bench.backfill("sqlite", plan.memory_large, plan.repeats, floor=False)
        # Our code alone is timed where rows dominate (not on the quiet day: start-up only).
        points = [
            (label, w, bench.kwery_job(w, plan.repeats, direct=i > 0))
            for i, (label, w) in enumerate(plan.throughput)
        ]
        daily = bench.daily(plan.daily_schedule_day, plan.repeats)
        total = time.perf_counter() - bench.started

    sections = [
        api_section(bench, plan, [s for v in backfills.values() for s in v], faulted),
        backfill_section(plan, backfills),
        partitions_section(plan, single, per_partition),
        throughput_section(plan, points),
        memory_section(plan, small, large),
        daily_section(plan.daily_schedule_day, daily),
    ]
    mode = "--quick: smaller windows, n=1" if args.quick else "full: median [min–max] of 3 runs"
    latency = f", {args.latency_ms:g} ms latency per request" if args.latency_ms else ""
    print(f"liq_pipeline benchmark ({mode}); simulator clock {SIM_NOW:%Y-%m-%d %H:%M} UTC{latency}")
    print("\n".join(machine(postgres_url)))
    command = ".venv/bin/python bench/run.py" + (" --quick" if args.quick else "")
    if args.latency_ms:
        command += f" --latency-ms {args.latency_ms:g}"
    if args.dagster_yaml.resolve() != (REPO / "dagster.yaml").resolve():
        command += f" --dagster-yaml {args.dagster_yaml}"
    print(f"command: {command}" + "".join(f" --env {e}" for e in args.env))
    print()
    print(render(sections))
    print(f"\nwhole suite: {total / 60:.1f} min")
    if args.json:
        args.json.write_text(json.dumps({"plan": plan.name, "samples": bench.raw}, indent=1))


if __name__ == "__main__":
    main()
