"""What the suite measures: windows of simulated days, their theoretical minimum of requests and
credits, the faults injected, and the plans of `--quick` and the full run."""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from liq_pipeline.simulator import data

SIM_NOW = dt.datetime(2026, 3, 21, 12, 0, tzinfo=dt.UTC)  # Newhedge published through 03-20
KWERY_KEY = "demo-business-key"
SYMBOL = "BTC"
START_DATE = "2019-09-01"  # first Kwery day of the simulator: every window is a partition
PAGE_ROWS = 1000  # limit= of every Kwery request, both sides
NEWHEDGE_REQUESTS = 8  # the 8 whole series, whatever the range

# Faults of the API-efficiency run, (kind, count) in the order they hit; spread over the run by
# `fault_skips`. Retry-After "1" keeps the real waits short; a faulted request costs 0 credits.
KWERY_FAULTS = (("429", 2), ("500", 1), ("502", 1), ("503", 1), ("drop", 1))
NEWHEDGE_FAULTS = (("429", 1), ("503", 1), ("drop", 1))

# Section names for --only, in the order they are measured and printed.
SECTIONS = (
    "api",
    "backfill",
    "partitions",
    "throughput",
    "memory",
    "daily",
    "kwery-1m",
    "latency",
    "bookkeeping",
    "year",
)
# Left out of --quick (they need the PostgreSQL instance, long runs or 100 ms per request, and
# --quick stays under 2 minutes); `--quick --only NAME` runs their small versions.
NOT_IN_QUICK = ("latency", "bookkeeping", "year")


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
    def n_days(self) -> int:
        return (self.last - self.first).days + 1

    @property
    def partition_range(self) -> str:
        return f"{self.first}...{self.last}"

    @property
    def key(self) -> tuple[str, str]:
        return str(self.first), str(self.last)

    def __str__(self) -> str:
        span = f"{self.first}" if self.first == self.last else f"{self.first}…{self.last}"
        return f"{span} ({self.n_days} d, {minimum(self).rows:,} events)"


@dataclass(frozen=True)
class Minimum:
    rows: int
    kwery_requests: int
    kwery_credits: int
    newhedge_requests: int = NEWHEDGE_REQUESTS


def pages(rows: int) -> int:
    """Requests of one query: an empty result is still one request."""
    return max(1, math.ceil(rows / PAGE_ROWS))


@functools.cache
def minimum(window: Window) -> Minimum:
    """What the window must cost at least: every day is one query of ceil(N/1000) pages."""
    rows = requests = credits = 0
    for day in window.days:
        n = len(data.day_data(SYMBOL, day))
        rows += n
        requests += pages(n)
        credits += 25 * pages(n) + 2 * n
    return Minimum(rows, requests, credits)


def cursor_minimum(window: Window) -> Minimum:
    """The cost of ONE query over the whole window (the sequential floor of `kwery-1m`): fewer
    pages than one query per day, as no day ends on a partly filled page."""
    rows = minimum(window).rows
    return Minimum(rows, pages(rows), 25 * pages(rows) + 2 * rows)


def cache_simulated_days(windows: Iterable[Window]) -> None:
    # The simulator keeps 96 generated days (a 60k-event day takes ~0.2 s to generate). Longer
    # windows would regenerate days inside every measured run, on both sides alike, so keep every
    # day of the suite and generate it now, outside any measurement.
    if data.day_data.cache_parameters()["maxsize"] is not None:  # not yet unbounded
        data.day_data = functools.lru_cache(maxsize=None)(data.day_data.__wrapped__)
    for window in windows:
        minimum(window)


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
    kwery_million: Window  # the Kwery asset alone, one run, vs ONE sequential cursor
    kwery_million_rows: int  # the events that window must hold at least (checked up front)
    latency: Window  # every asset, one run, the simulator answering after LATENCY_MS
    bookkeeping: tuple[Window, ...]  # every asset, one run: points of the per-(asset, day) fit
    year: Window  # every asset, one run: wall time and peak RSS on both instances
    long_repeats: int  # runs per instance of the latency, bookkeeping and year figures

    def windows(self, sections: Iterable[str]) -> list[Window]:
        """Every window the selected sections measure (their days are generated up front)."""
        wanted = set(sections)
        out = [Window(self.daily_schedule_day, self.daily_schedule_day)]  # the warm-up
        if wanted & {"api", "backfill", "bookkeeping"}:
            out.append(self.backfill)
        if wanted & {"partitions", "bookkeeping"}:
            out.append(self.single_vs_partitions)
        if "memory" in wanted:
            out += [self.memory_small, self.memory_large]
        if "throughput" in wanted:
            out += [w for _, w in self.throughput]
        if "kwery-1m" in wanted:
            out.append(self.kwery_million)
        if "latency" in wanted:
            out.append(self.latency)
        if "bookkeeping" in wanted:
            out += list(self.bookkeeping)
        if "year" in wanted:
            out.append(self.year)
        return out


LATENCY_MS = 100.0  # the latency figure's round trip per API answer, both sides
MILLION = 1_000_000
THROUGHPUT = (
    ("quiet day", Window.of("2026-03-07")),
    ("crash day", Window.of("2025-10-10")),
)
# The simulator has no 80-day window of ≥ 1M BTC events (crash days are ~2 % of days: the
# densest 80 days hold 285k events, all six symbols 872k). This is the shortest BTC window
# that reaches 1M; the suite checks the count before it measures.
MILLION_WINDOW = Window.of("2025-01-02", "2026-02-02")  # 397 d, 1,013,887 events
FULL = Plan(
    name="full",
    repeats=3,
    backfill=Window.ending("2026-03-20", 90),
    single_vs_partitions=Window.ending("2026-03-20", 30),
    # Every third day: 10 real runs (~5 s each) keep the full suite near 20 minutes.
    partition_sample=10,
    direct_backfill=True,
    memory_small=Window.ending("2026-03-20", 30),
    memory_large=Window.ending("2026-03-20", 180),
    throughput=(*THROUGHPUT, ("~1M-event range", MILLION_WINDOW)),
    daily_schedule_day=dt.date(2026, 3, 20),
    kwery_million=MILLION_WINDOW,
    kwery_million_rows=MILLION,
    latency=Window.ending("2026-03-20", 90),
    # 30 and 90 days are the windows of sections 2b and 2: on the SQLite instance those runs
    # are reused, so the fit costs one extra run there (the year).
    bookkeeping=(
        Window.ending("2026-03-20", 30),
        Window.ending("2026-03-20", 90),
        Window.ending("2026-03-20", 365),
    ),
    year=Window.ending("2026-03-20", 365),
    # A year-long run takes 1.5-2 min on each instance and a 100 ms-latency run ~1 min: once
    # each keeps the full suite near 20 minutes (the fit's residuals show the noise). Runs
    # already made by another section (the SQLite instance's 30 and 90 days) are all reused.
    long_repeats=1,
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
    kwery_million=Window.of("2026-01-27", "2026-02-02"),
    kwery_million_rows=0,
    latency=Window.ending("2026-03-20", 5),
    bookkeeping=(
        Window.ending("2026-03-20", 5),
        Window.ending("2026-03-20", 15),
        Window.ending("2026-03-20", 30),
    ),
    year=Window.ending("2026-03-20", 30),
    long_repeats=1,
)
