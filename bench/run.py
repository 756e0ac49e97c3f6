"""Benchmark suite (issue 5): API efficiency, backfill wall time, memory and the daily run, each
figure side by side with a floor measured in the same run, with the Dagster events of each run.

    .venv/bin/python bench/run.py            # full: median [min-max] of 3 runs, < 15 min
    .venv/bin/python bench/run.py --quick    # smaller windows, 1 run each, < 2 min

Options: --skip-postgres, --postgres-url (default LIQ_TEST_POSTGRES_URL or the test server),
--json FILE (every raw sample), --latency-ms N (delay every API answer like the internet would),
--env NAME=VALUE and --dagster-yaml FILE (try Dagster settings on the pipeline side).

Modules: plan.py (windows, minimums, the quick/full plans), launch.py (children through
launcher.py, the simulator, warehouses, the instance), measure.py (the paired runs), report.py
(statistics, sections, rendering), this file (the command line).

Set-up, identical for every figure:
- The simulator of both APIs runs in this process with its clock frozen at 2026-03-21 12:00 UTC
  (Business key, full history), so every run fetches exactly the same rows. Every simulated day
  the suite needs is generated once up front and kept (the simulator caches only 96 days), so
  neither side pays the simulator's data generation inside a measurement.
- The pipeline side is the real `dagster` CLI, run as a child process in one temporary
  DAGSTER_HOME holding the repository's dagster.yaml (warmed by one untimed run), each
  measurement into a fresh SQLite file or a fresh PostgreSQL schema (dropped afterwards).
  Wall time is the child's whole life, Dagster start-up included; peak RSS is the child's own
  ru_maxrss (see launcher.py; the project's in-process executor starts no further processes).
- After each pipeline run the instance is opened here, from its home directory and with the
  child's environment (so relative and absolute storage paths both work), and the run's
  event-log entries are counted by type (a "Dagster events per run" row under each wall time):
  ASSET_MATERIALIZATION_PLANNED, ASSET_CHECK_EVALUATION_PLANNED, ASSET_MATERIALIZATION,
  ASSET_CHECK_EVALUATION, every other type together, and the total. Every event is a write to
  the instance. The run must be new and have ended SUCCESS.
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
from bench.measure import Bench, sample_days
from bench.plan import FULL, QUICK, SIM_NOW, Window, cache_simulated_days
from bench.report import (
    api_section,
    backfill_section,
    daily_section,
    machine,
    memory_section,
    partitions_section,
    render,
    throughput_section,
)


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
        default=SQLITE_INSTANCE_YAML,
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

    cache_simulated_days(plan.windows())
    with (
        tempfile.TemporaryDirectory(prefix="liq-bench-") as tmp,
        LatentSimulator(port=0, now=SIM_NOW, latency_s=args.latency_ms / 1000) as sim,
        Bench(sim, Path(tmp), postgres_url, extra_env, args.dagster_yaml.resolve()) as bench,
    ):
        bench.log(f"{plan.name} run; simulated days generated")
        warm_up = Window(plan.daily_schedule_day, plan.daily_schedule_day)
        bench.instance("sqlite")  # one untimed run
        bench.floor("sqlite", warm_up, newhedge=True)  # the simulator's Newhedge series too

        backends = ["sqlite", *(["postgresql"] if postgres_url else [])]
        backfills = {
            b: bench.backfill(
                b, plan.backfill, plan.repeats, direct=plan.direct_backfill and b == "sqlite"
            )
            for b in backends
        }
        faulted = bench.with_faults(plan.backfill, plan.repeats)
        single = bench.backfill("sqlite", plan.single_vs_partitions, plan.repeats)
        days = sample_days(plan.single_vs_partitions, plan.partition_sample)
        per_partition = bench.one_run_per_partition(plan.single_vs_partitions, days)
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
        bench.log(f"done; counting events took {bench.counting_seconds:.1f} s of it")

    sections = [
        api_section(plan, backends, [s for v in backfills.values() for s in v], faulted),
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
    if args.dagster_yaml.resolve() != SQLITE_INSTANCE_YAML.resolve():
        command += f" --dagster-yaml {args.dagster_yaml}"
    print(f"command: {command}" + "".join(f" --env {e}" for e in args.env))
    print()
    print(render(sections))
    print(f"\nwhole suite: {total / 60:.1f} min")
    if args.json:
        args.json.write_text(json.dumps({"plan": plan.name, "samples": bench.raw}, indent=1))


if __name__ == "__main__":
    main()
