"""Benchmark suite (issue 5): API efficiency, backfill wall time, memory, the daily run and
Dagster's own bookkeeping, each figure side by side with a floor measured in the same run.

    .venv/bin/python bench/run.py            # full: median [min-max] of 3 runs, ~20 min
    .venv/bin/python bench/run.py --quick    # smaller windows, 1 run each, < 2 min
    .venv/bin/python bench/run.py --only bookkeeping,year   # just those sections

Options: --only SECTION[,SECTION] (api, backfill, partitions, throughput, memory, daily,
kwery-1m, latency, bookkeeping, year; --quick leaves out the last three unless named),
--instance sqlite|postgres|both (the Dagster instances of the latency, bookkeeping and year
figures; default both), --skip-postgres (no PostgreSQL warehouse nor instance), --postgres-url
(default LIQ_TEST_POSTGRES_URL or the test server), --json FILE (every raw sample),
--latency-ms N (delay every API answer like the internet would), --env NAME=VALUE and
--dagster-yaml FILE (try Dagster settings on the pipeline side).

Modules: plan.py (windows, minimums, the quick/full plans), launch.py (children through
launcher.py, the simulator, warehouses, instances), measure.py (the paired runs), report.py
(statistics, sections, rendering), this file (the command line).

Set-up, identical for every figure:
- The simulator of both APIs runs in this process with its clock frozen at 2026-03-21 12:00 UTC
  (Business key, full history), so every run fetches exactly the same rows. Every simulated day
  the suite needs is generated once up front and kept (the simulator caches only 96 days), so
  neither side pays the simulator's data generation inside a measurement.
- The pipeline side is the real `dagster` CLI, run as a child process in a temporary
  DAGSTER_HOME (warmed by one untimed run), each measurement into a fresh SQLite file or a
  fresh PostgreSQL schema (dropped afterwards). The "SQLite instance" holds the repository's
  dagster.yaml (or --dagster-yaml); the "PostgreSQL instance" holds deploy/dagster.postgres.yaml
  over a fresh database bench_<uuid> (dropped afterwards), and its runs get
  DAGSTER_EVENT_BATCH_SIZE=1000. Wall time is the child's whole life, Dagster start-up
  included; peak RSS is the child's own ru_maxrss (see launcher.py; the project's in-process
  executor starts no further processes). Every figure not naming an instance uses SQLite's.
- After each pipeline run the instance is opened here, from its home directory and with the
  child's environment (so relative and absolute storage paths both work), and the run's
  event-log entries are counted by type (figure 1, a "Dagster events per run" row under each
  wall time): ASSET_MATERIALIZATION_PLANNED, ASSET_CHECK_EVALUATION_PLANNED,
  ASSET_MATERIALIZATION, ASSET_CHECK_EVALUATION, every other type together, and the total.
  Every event is a write to the instance. The run must be new and have ended SUCCESS.
- The floor is bench/floor.py, run the same way as a child process: the same Kwery pages
  (one query per day, limit=1000, cursor loop) with a bare `requests.Session`, the 8 Newhedge
  series when the pipeline side fetches them too, and the same rows written in one transaction
  into tables with the warehouse's columns and (timestamp, symbol) index (PostgreSQL: ADBC
  binary COPY; SQLite: sqlite3 executemany). `--one-cursor` makes it ONE query over the whole
  window instead (section 6).
- bench/direct.py runs the pipeline's own Kwery path (the asset's fetcher into the IO manager)
  with no Dagster run around it, to split a backfill into "our code" and "Dagster".
- Ratios are pipeline / floor taken pair by pair (the floor run right before its pipeline run),
  then summarised as median [min-max]; API figures are compared with the theoretical minimum
  `Σ_days 25·max(1, ceil(N_d/1000)) + 2·N_d` credits, `Σ_days max(1, ceil(N_d/1000))` requests
  and 8 Newhedge requests whatever the range.

The figures of sections 6-9 (full run; --quick and its smaller windows in plan.py):
6 kwery-1m     kwery_liquidations_btc over 2025-01-02…2026-02-02 (397 d, 1,013,887 events; no 80-day
               window of the simulator reaches 1M) in one run, SQLite warehouse and instance,
               vs the floor fetching it as ONE cursor. Target ≤ 1.00×.
7 latency      every asset over 90 days in one run while the simulator answers every API
               request after 100 ms, vs the floor fetching the same pages one after another at
               the same latency. Target ≤ 0.50×.
8 bookkeeping  every asset over 30, 90 and 365 days in one run; y = pipeline wall − floor
               wall, x = assets × days; least squares over the points' medians: the slope in
               ms per (asset, day) (targets ≤ 10 ms SQLite instance, ≤ 3 ms PostgreSQL
               instance) and the intercept, the fixed cost per run.
9 year         the 365-day point of 8: wall time and peak RSS on each instance (< 500 MiB).
Runs of 7, 8 and 9 are made once per instance (a 365-day or a 100 ms-latency run takes 1-2 min),
and every run of sections 2b and 2 is reused as the SQLite instance's 30- and 90-day points.
This is a benchmark, not a test: nothing here asserts a time, it reports.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # `python bench/run.py`: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.launch import (
    PG_URL,
    SQLITE_INSTANCE_YAML,
    LatentSimulator,
    postgres_reachable,
)
from bench.measure import Bench, Sample, asset_count, sample_days
from bench.plan import (
    FULL,
    NOT_IN_QUICK,
    QUICK,
    SECTIONS,
    SIM_NOW,
    Plan,
    Window,
    cache_simulated_days,
    minimum,
)
from bench.report import (
    Section,
    api_section,
    backfill_section,
    bookkeeping_section,
    daily_section,
    latency_section,
    machine,
    memory_section,
    million_section,
    partitions_section,
    render,
    throughput_section,
    year_section,
)


def measure(
    bench: Bench, plan: Plan, selected: list[str], backends: list[str], instances: list[str]
) -> list[Section]:
    """Run the selected sections' measurements, in section order, and summarise each."""
    sections: list[Section] = []
    backfills: dict[str, list[Sample]] = {}
    if "api" in selected or "backfill" in selected:
        backfills = {
            b: bench.backfill(
                b,
                plan.backfill,
                plan.repeats,
                direct=plan.direct_backfill and b == "sqlite",
                analytics=b == "sqlite",
            )
            for b in backends
        }
    if "api" in selected:
        faulted = bench.with_faults(plan.backfill, plan.repeats)
        clean = [s for v in backfills.values() for s in v]
        sections.append(api_section(plan, backends, clean, faulted))
    if "backfill" in selected:
        sections.append(backfill_section(plan, backfills))
    if "partitions" in selected:
        single = bench.backfill("sqlite", plan.single_vs_partitions, plan.repeats)
        days = sample_days(plan.single_vs_partitions, plan.partition_sample)
        per_partition = bench.one_run_per_partition(plan.single_vs_partitions, days)
        sections.append(partitions_section(plan, single, per_partition))
    if "throughput" in selected:
        # Our code alone is timed where rows dominate (not on the quiet day: start-up only).
        # Section 6's window is one of these points: its one-cursor floor is paired here too.
        points = [
            (
                label,
                w,
                bench.kwery_job(
                    w,
                    plan.repeats,
                    direct=i > 0,
                    one_cursor="kwery-1m" in selected and w == plan.kwery_million,
                ),
            )
            for i, (label, w) in enumerate(plan.throughput)
        ]
        sections.append(throughput_section(plan, points))
    if "memory" in selected:
        small = bench.backfill("sqlite", plan.memory_small, plan.repeats)
        # Memory compares the two windows with each other: no floor needed for the long one.
        large = bench.backfill("sqlite", plan.memory_large, plan.repeats, floor=False)
        sections.append(memory_section(plan, small, large))
    if "daily" in selected:
        daily = bench.daily(plan.daily_schedule_day, plan.repeats)
        sections.append(daily_section(plan.daily_schedule_day, daily))
    if "kwery-1m" in selected:
        million = bench.kwery_job(plan.kwery_million, plan.repeats, one_cursor=True)
        sections.append(million_section(plan.kwery_million, million))
    if "latency" in selected:
        latency = {i: bench.with_latency(plan.latency, plan.long_repeats, i) for i in instances}
        sections.append(latency_section(plan.latency, latency))

    if "bookkeeping" in selected:
        points_by_instance = {
            i: [
                (w, bench.backfill("sqlite", w, plan.long_repeats, instance=i))
                for w in plan.bookkeeping
            ]
            for i in instances
        }
        sections.append(bookkeeping_section(points_by_instance, asset_count()))
    if "year" in selected:
        year = {
            i: bench.backfill("sqlite", plan.year, plan.long_repeats, instance=i) for i in instances
        }
        sections.append(year_section(plan.year, year))
    return sections


def selection(only: list[str], quick: bool) -> list[str]:
    if not only:
        return [s for s in SECTIONS if not (quick and s in NOT_IN_QUICK)]
    names = {name.strip() for item in only for name in item.split(",") if name.strip()}
    unknown = names - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown section(s) {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    return [s for s in SECTIONS if s in names]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller windows, 1 run each")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="SECTION[,SECTION]",
        help=f"measure and print only these sections: {', '.join(SECTIONS)}",
    )
    parser.add_argument(
        "--instance",
        choices=("sqlite", "postgres", "both"),
        default="both",
        help="Dagster instance(s) of the latency, bookkeeping and year figures",
    )
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
        default=SQLITE_INSTANCE_YAML,
        help="instance configuration to run with (default: the repository's dagster.yaml)",
    )
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    selected = selection(args.only, args.quick)
    extra_env = dict(item.split("=", 1) for item in args.env)
    postgres_url = None
    if not args.skip_postgres:
        if postgres_reachable(args.postgres_url):
            postgres_url = args.postgres_url
        else:
            print(f"PostgreSQL unreachable at {args.postgres_url}: skipped", file=sys.stderr)
    backends = ["sqlite", *(["postgresql"] if postgres_url else [])]
    instances = ["sqlite", "postgres"] if args.instance == "both" else [args.instance]
    if postgres_url is None and "postgres" in instances:
        instances.remove("postgres")
        if not instances:
            raise SystemExit("--instance postgres needs a PostgreSQL server")

    cache_simulated_days(plan.windows(selected))
    if "kwery-1m" in selected and minimum(plan.kwery_million).rows < plan.kwery_million_rows:
        raise SystemExit(
            f"{plan.kwery_million} holds fewer than {plan.kwery_million_rows:,} events: pick "
            "another window (plan.MILLION_WINDOW) from the simulator's data"
        )
    with (
        tempfile.TemporaryDirectory(prefix="liq-bench-") as tmp,
        LatentSimulator(port=0, now=SIM_NOW, latency_s=args.latency_ms / 1000) as sim,
        Bench(sim, Path(tmp), postgres_url, extra_env, args.dagster_yaml.resolve()) as bench,
    ):
        bench.log(f"{plan.name} run ({', '.join(selected)}); simulated days generated")
        warm_up = Window(plan.daily_schedule_day, plan.daily_schedule_day)
        bench.instance("sqlite")  # one untimed run
        bench.floor("sqlite", warm_up, newhedge=True)  # the simulator's Newhedge series too
        sections = measure(bench, plan, selected, backends, instances)
        total = time.perf_counter() - bench.started
        bench.log(f"done; counting events took {bench.counting_seconds:.1f} s of it")

    mode = "--quick: smaller windows, n=1" if args.quick else "full: median [min–max] of 3 runs"
    latency = f", {args.latency_ms:g} ms latency per request" if args.latency_ms else ""
    print(f"liq_pipeline benchmark ({mode}); simulator clock {SIM_NOW:%Y-%m-%d %H:%M} UTC{latency}")
    print("\n".join(machine(postgres_url)))
    command = ".venv/bin/python bench/run.py" + (" --quick" if args.quick else "")
    if args.only:
        command += f" --only {','.join(selected)}"
    if args.instance != "both":
        command += f" --instance {args.instance}"
    if args.latency_ms:
        command += f" --latency-ms {args.latency_ms:g}"
    if args.dagster_yaml.resolve() != SQLITE_INSTANCE_YAML.resolve():
        command += f" --dagster-yaml {args.dagster_yaml}"
    print(f"command: {command}" + "".join(f" --env {e}" for e in args.env))
    left_out = [s for s in SECTIONS if s not in selected]
    if left_out:
        print(f"sections left out: {', '.join(left_out)} (--only NAME runs one)")
    print()
    print(render(sections))
    print(f"\nwhole suite: {total / 60:.1f} min")
    if args.json:
        args.json.write_text(json.dumps({"plan": plan.name, "samples": bench.raw}, indent=1))


if __name__ == "__main__":
    main()
