"""The measurements: each pipeline run (the `dagster` CLI in a temporary DAGSTER_HOME) paired
with a floor run (bench/floor.py) over the same window, checked, and kept as Samples."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.launch import (
    DAGSTER,
    DIRECT,
    FLOOR,
    SQLITE_INSTANCE_YAML,
    BenchError,
    Child,
    Instance,
    LatentSimulator,
    Warehouse,
    checked,
    fresh_warehouse,
    postgres_instance,
    run_child,
    sqlite_instance,
)
from bench.plan import (
    KWERY_FAULTS,
    KWERY_KEY,
    LATENCY_MS,
    NEWHEDGE_FAULTS,
    NEWHEDGE_REQUESTS,
    START_DATE,
    SYMBOL,
    Window,
    cursor_minimum,
    fault_skips,
    minimum,
)
from liq_pipeline.simulator import DEMO_NEWHEDGE_TOKEN

ALL_ASSETS = "*"
# Kwery-only figures materialize the events asset (and its day check) alone: kwery_daily_job
# also runs the analytics of the day.
KWERY_ONLY = "kwery_liquidations_btc"
ANALYTICS = "group:analytics"
DEFINITIONS = ("-m", "liq_pipeline.definitions")
WARM_UP = Window.of("2026-03-20")  # a quiet day: one untimed Kwery run per instance


@dataclass(frozen=True)
class Run:
    """One `dagster` CLI invocation: the child, what the simulator counted for it, and the
    event accounting of the run it created."""

    child: Child
    kwery: dict[str, int]
    newhedge: dict[str, int]
    events: dict[str, int]


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
    events: dict[str, int] | None = None  # the run's event-log entries by type
    instance: str = "sqlite"
    cursor_floor_seconds: float | None = None  # the one-cursor floor (kwery-1m), when measured
    cursor_floor: dict[str, Any] | None = None
    analytics_seconds: float | None = None  # the analytics alone over the stored events

    @classmethod
    def of(cls, run: Run, floor: tuple[Child, dict] | None = None, **extra: Any) -> Sample:
        sample = cls(
            run.child.seconds, run.child.rss_mib, run.kwery, run.newhedge, events=run.events
        )
        if floor is not None:
            sample.floor_seconds, sample.floor_rss_mib = floor[0].seconds, floor[0].rss_mib
            sample.floor = floor[1]
        for name, value in extra.items():
            setattr(sample, name, value)
        return sample

    @property
    def ratio(self) -> float:
        assert self.floor_seconds is not None
        return self.seconds / self.floor_seconds

    @property
    def bookkeeping_seconds(self) -> float:
        """Pipeline wall − floor wall: what Dagster and our code add to the bare data path."""
        assert self.floor_seconds is not None
        return self.seconds - self.floor_seconds


def add_events(total: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    return {k: total.get(k, 0) + v for k, v in more.items()}


class Bench:
    """The simulator, the instances and the temporary folder every measurement shares."""

    def __init__(
        self,
        sim: LatentSimulator,
        tmp: Path,
        postgres_url: str | None,
        env: dict[str, str],
        dagster_yaml: Path = SQLITE_INSTANCE_YAML,
    ) -> None:
        self.sim = sim
        self.tmp = tmp
        self.postgres_url = postgres_url
        self.extra_env = env
        self.dagster_yaml = dagster_yaml
        self.started = time.perf_counter()
        self.raw: dict[str, Any] = {}
        self._cache: dict[tuple[str, ...], list[Sample]] = {}
        self._instances: dict[str, Instance] = {}
        self._stack = contextlib.ExitStack()
        self._seen_runs: set[str] = set()
        self.counting_seconds = 0.0  # opening instances to count events, outside measurements

    def __enter__(self) -> Bench:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    # progress goes to stderr; the table to stdout
    def log(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.started:6.1f} s] {message}", file=sys.stderr)

    # -- instances and environment ---------------------------------------------------------------

    def instance(self, name: str = "sqlite") -> Instance:
        """The suite's instance `name`, made (and warmed up by one untimed run) on first use."""
        if name not in self._instances:
            if name == "sqlite":
                made = self._stack.enter_context(sqlite_instance(self.tmp, self.dagster_yaml))
            elif self.postgres_url is None:
                raise BenchError("the PostgreSQL instance needs a PostgreSQL server")
            else:
                made = self._stack.enter_context(postgres_instance(self.tmp, self.postgres_url))
            self._instances[name] = made
            self.log(f"{made.label}: warming up")
            with self.warehouse("sqlite") as warehouse:
                self.materialize(warehouse, KWERY_ONLY, WARM_UP, name)
        return self._instances[name]

    def env(self, warehouse: Warehouse, instance: Instance) -> dict[str, str]:
        return {
            **os.environ,
            "DAGSTER_HOME": str(instance.home),
            "KWERY_API_KEY": KWERY_KEY,
            "NEWHEDGE_API_TOKEN": DEMO_NEWHEDGE_TOKEN,
            "KWERY_BASE_URL": self.sim.url,
            "NEWHEDGE_BASE_URL": self.sim.url,
            "LIQ_WAREHOUSE_URL": warehouse.url,
            "LIQ_START_DATE": START_DATE,
            "LIQ_KWERY_SYMBOLS": SYMBOL,
            **instance.env,
            **self.extra_env,
        }

    def warehouse(self, backend: str) -> contextlib.AbstractContextManager[Warehouse]:
        return fresh_warehouse(backend, self.tmp, self.postgres_url)

    # -- the two sides ---------------------------------------------------------------------------

    def cli(self, warehouse: Warehouse, instance: str, *args: str) -> Run:
        """One `dagster` CLI invocation, with the API accounting the simulator saw for it and
        the event accounting of the run it created."""
        inst = self.instance(instance)
        self.sim.reset_stats()
        child = run_child([DAGSTER, *args], cwd=inst.home, env=self.env(warehouse, inst))
        checked(child, f"dagster {' '.join(args)}")
        kwery, newhedge = self.sim.stats(KWERY_KEY), self.sim.stats(DEMO_NEWHEDGE_TOKEN)
        counting = time.perf_counter()
        run = inst.newest_run_events(self._seen_runs)
        self.counting_seconds += time.perf_counter() - counting
        if run["status"] != "SUCCESS":
            raise BenchError(f"run {run['run_id']} ended {run['status']}")
        return Run(child, kwery, newhedge, run["events"])

    def materialize(
        self, warehouse: Warehouse, select: str, window: Window, instance: str = "sqlite"
    ) -> Run:
        if window.first == window.last:
            where = ("--partition", str(window.first))
        else:
            where = ("--partition-range", window.partition_range)
        return self.cli(
            warehouse, instance, "asset", "materialize", *DEFINITIONS, "--select", select, *where
        )

    def job(
        self, warehouse: Warehouse, job: str, tags: dict[str, str], instance: str = "sqlite"
    ) -> Run:
        args = ("job", "execute", *DEFINITIONS, "-j", job, "--tags", json.dumps(tags))
        return self.cli(warehouse, instance, *args)

    def floor(
        self, backend: str, window: Window, *, newhedge: bool, one_cursor: bool = False
    ) -> tuple[Child, dict]:
        """bench/floor.py over `window`: one query per day (the pipeline's pages), or with
        `one_cursor` a single query over the whole window."""
        with self.warehouse(backend) as warehouse:
            argv = [sys.executable, FLOOR, "--base-url", self.sim.url, "--kwery-key", KWERY_KEY]
            argv += ["--first", str(window.first), "--last", str(window.last), "--symbol", SYMBOL]
            argv += [*warehouse.floor_args]
            if newhedge:
                argv += ["--newhedge-token", DEMO_NEWHEDGE_TOKEN]
            if one_cursor:
                argv += ["--one-cursor"]
            self.sim.reset_stats()
            child = checked(run_child(argv, cwd=self.tmp, env=dict(os.environ)), "floor")
        result = json.loads(child.stdout.strip().splitlines()[-1])
        expected = cursor_minimum(window) if one_cursor else minimum(window)
        requests = expected.kwery_requests + (NEWHEDGE_REQUESTS if newhedge else 0)
        if result["rows"] != expected.rows or result["requests"] != requests:
            raise BenchError(f"floor fetched {result}, expected {expected}")
        return child, result

    def direct(self, backend: str, window: Window) -> dict[str, Any]:
        with self.warehouse(backend) as warehouse:
            argv = [sys.executable, DIRECT, "--base-url", self.sim.url, "--kwery-key", KWERY_KEY]
            argv += ["--first", str(window.first), "--last", str(window.last)]
            argv += ["--symbol", SYMBOL, "--warehouse", warehouse.url]
            child = checked(run_child(argv, cwd=self.tmp, env=dict(os.environ)), "direct")
            self.check_stored(warehouse, window)
        return json.loads(child.stdout.strip().splitlines()[-1])

    def check_stored(self, warehouse: Warehouse, window: Window) -> None:
        stored = warehouse.kwery_rows()
        if stored != minimum(window).rows:
            raise BenchError(f"{stored} rows stored, expected {minimum(window)}")

    def cached(self, key: tuple[str, ...], repeats: int) -> list[Sample] | None:
        samples = self._cache.get(key)
        return samples if samples is not None and len(samples) >= repeats else None

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
        instance: str = "sqlite",
        analytics: bool = False,
    ) -> list[Sample]:
        """Single-run backfills of every asset over `window`, each paired with a floor run
        (and, with `direct`, with bench/direct.py over the same Kwery rows; with `analytics`,
        a run of the analytics alone over the events just stored). Samples already
        measured for the same (backend, instance, window), with a floor if one is asked for,
        are reused."""
        key = ("backfill", backend, instance, *window.key)
        have = self.cached(key, repeats)
        if have is not None and (not floor or all(s.floor_seconds for s in have)):
            return have
        self.instance(instance)  # warmed up before the first pair, not between its two runs
        samples = []
        for _ in range(repeats):
            paired = self.floor(backend, window, newhedge=True) if floor else None
            report = self.direct(backend, window) if direct else None
            with self.warehouse(backend) as warehouse:
                run = self.materialize(warehouse, ALL_ASSETS, window, instance)
                self.check_stored(warehouse, window)
                again = (
                    self.materialize(warehouse, ANALYTICS, window, instance) if analytics else None
                )
            sample = Sample.of(run, paired, direct=report, instance=instance)
            sample.analytics_seconds = again.child.seconds if again is not None else None
            samples.append(sample)
            self.log(
                f"backfill {backend} warehouse, {instance} instance, {window}: pipeline "
                f"{run.child.seconds:.1f} s ({run.child.rss_mib:.0f} MiB, "
                f"{run.events['total']:,} events)"
                + (f", floor {paired[0].seconds:.2f} s" if paired else "")
                + (f", direct {report['seconds']:.2f} s" if report else "")
            )
        return self.record(key, samples)

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
                run = self.materialize(warehouse, ALL_ASSETS, window)
                self.check_stored(warehouse, window)
            self.sim.clear_faults()
            samples.append(Sample.of(run))
            self.log(
                f"faults {window}: {run.child.seconds:.1f} s, kwery {run.kwery}, "
                f"newhedge {run.newhedge}"
            )
        return self.record(("faults", *window.key), samples)

    def one_run_per_partition(self, window: Window, days: list[dt.date]) -> list[Sample]:
        """`--partition D` for each of `days` (of `window`), into one warehouse."""
        samples = []
        with self.warehouse("sqlite") as warehouse:
            for day in days:
                run = self.materialize(warehouse, ALL_ASSETS, Window(day, day))
                samples.append(Sample.of(run))
            stored = warehouse.kwery_rows()
        expected = sum(minimum(Window(d, d)).rows for d in days)
        if stored != expected:
            raise BenchError(f"per-partition runs stored {stored} rows, expected {expected}")
        total = sum(s.seconds for s in samples)
        self.log(f"one run per partition, {len(days)} runs: {total:.1f} s")
        return self.record(("per-partition", *window.key), samples)

    def kwery_job(
        self, window: Window, repeats: int, *, direct: bool = False, one_cursor: bool = False
    ) -> list[Sample]:
        """The Kwery job (events only, as scheduled) over `window`, each run paired with a
        Kwery-only floor of the same pages (with `one_cursor`, also with the floor that fetches
        the window as ONE query; with `direct`, with bench/direct.py over the same rows)."""
        key = ("kwery-job", *window.key)
        have = self.cached(key, repeats)
        if (
            have is not None
            and (not direct or all(s.direct for s in have))
            and (not one_cursor or all(s.cursor_floor for s in have))
        ):
            return have
        samples = []
        for _ in range(repeats):
            floor = self.floor("sqlite", window, newhedge=False)
            cursor = (
                self.floor("sqlite", window, newhedge=False, one_cursor=True)
                if one_cursor
                else None
            )
            report = self.direct("sqlite", window) if direct else None
            with self.warehouse("sqlite") as warehouse:
                run = self.materialize(warehouse, KWERY_ONLY, window)
                self.check_stored(warehouse, window)
            sample = Sample.of(run, floor, direct=report)
            if cursor is not None:
                sample.cursor_floor_seconds, sample.cursor_floor = cursor[0].seconds, cursor[1]
            samples.append(sample)
            self.log(
                f"{KWERY_ONLY} {window}: pipeline {run.child.seconds:.1f} s, "
                f"floor {floor[0].seconds:.2f} s"
                + (f", one-cursor floor {cursor[0].seconds:.2f} s" if cursor else "")
                + (f", direct {report['seconds']:.2f} s" if report else "")
            )
        return self.record(key, samples)

    def daily(self, day: dt.date, repeats: int) -> list[Sample]:
        """The scheduled ticks after `day` (both daily schedules), end to end, vs the floor."""
        ticks = scheduled_run_tags(day)
        samples = []
        for _ in range(repeats):
            floor = self.floor("sqlite", Window(day, day), newhedge=True)
            seconds = rss = 0.0
            kwery = dict.fromkeys(("requests", "credits_used", "rows"), 0)
            newhedge = dict.fromkeys(("requests",), 0)
            events: dict[str, int] = {}
            with self.warehouse("sqlite") as warehouse:
                for job, tags in ticks:
                    run = self.job(warehouse, job, tags)
                    seconds += run.child.seconds
                    rss = max(rss, run.child.rss_mib)
                    for name in kwery:
                        kwery[name] += run.kwery[name]
                    newhedge["requests"] += run.newhedge["requests"]
                    events = add_events(events, run.events)
            samples.append(
                Sample(seconds, rss, kwery, newhedge, floor[0].seconds, floor[0].rss_mib, floor[1])
            )
            samples[-1].events = events
            self.log(f"daily run {day}: {seconds:.1f} s, floor {floor[0].seconds:.2f} s")
        return self.record(("daily", str(day)), samples)

    def with_latency(self, window: Window, repeats: int, instance: str) -> list[Sample]:
        """Every asset over `window` in one run while the simulator answers after LATENCY_MS,
        each paired with the floor fetching the same pages one after another at that latency."""
        key = ("latency", instance, *window.key)
        have = self.cached(key, repeats)
        if have is not None:
            return have
        samples = []
        self.instance(instance)  # its warm-up runs without the latency
        with self.sim.latency(LATENCY_MS):
            for _ in range(repeats):
                floor = self.floor("sqlite", window, newhedge=True)
                with self.warehouse("sqlite") as warehouse:
                    run = self.materialize(warehouse, ALL_ASSETS, window, instance)
                    self.check_stored(warehouse, window)
                samples.append(Sample.of(run, floor, instance=instance))
                self.log(
                    f"latency {LATENCY_MS:g} ms, {instance} instance, {window}: pipeline "
                    f"{run.child.seconds:.1f} s, floor {floor[0].seconds:.1f} s"
                )
        return self.record(key, samples)


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

    defs = project_definitions()
    ticks = []
    for name in ("kwery_daily_schedule", "newhedge_daily_schedule"):
        schedule = defs.resolve_schedule_def(name)
        minute, hour = (int(x) for x in str(schedule.cron_schedule).split()[:2])
        at = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(hour, minute), dt.UTC)
        with (
            dg.instance_for_test() as instance,
            dg.build_schedule_context(
                instance=instance,
                scheduled_execution_time=at,
                repository_def=defs.get_repository_def(),
            ) as context,
        ):
            # A partitioned RunRequest is resolved against the job's partitions, so the tick
            # needs the repository.
            result = schedule.evaluate_tick(context)
        [request] = result.run_requests or []
        if request.partition_key != str(day):
            raise BenchError(f"{name} at {at} requested {request.partition_key}, not {day}")
        ticks.append((schedule.job_name, {**request.tags, "dagster/partition": str(day)}))
    return ticks


def project_definitions() -> Any:
    from liq_pipeline.definitions import build_definitions

    return build_definitions(start_date=START_DATE, symbols=(SYMBOL,))


def asset_count() -> int:
    """Assets a `--select '*'` run materializes: every asset of the project's definitions."""
    return len(project_definitions().resolve_all_asset_keys())
