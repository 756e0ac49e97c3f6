"""Long backfills in chunks: each chunk one single run of a job, with progress per chunk.

    liq-backfill 2024-01-01 2025-12-31                       every asset and its day checks
    liq-backfill 2024-01-01 2025-12-31 --job kwery_daily_job --chunk-days 180

Each chunk is `dagster job execute` of the job over the chunk's days as ONE run (the assets'
single-run backfill policy), so a failure costs at most one chunk, which the command names
with the line to resume from. It runs in the environment it is given (DAGSTER_HOME, the API
keys, LIQ_WAREHOUSE_URL), against the instance there, like any `dagster` command.

`--planned-subset` asks Dagster to record a run's planned materializations as one event per
asset instead of one per (asset, day) (DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS): a
run's bookkeeping is then about halved, but a failed run's days show no status in the UI
instead of "failed" (this command says which chunk failed). README, Performance, has the
measurements behind both defaults.
"""

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from liq_pipeline.processes import run_child

DEFAULT_JOB = "backfill_job"
DEFAULT_CHUNK_DAYS = 90
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
SUBSET_FLAG = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"


def chunks(first: dt.date, last: dt.date, days: int) -> list[tuple[dt.date, dt.date]]:
    """[first, last] cut into consecutive chunks of at most `days` days."""
    if last < first:
        raise ValueError(f"the range {first}...{last} is reversed: give the first day first")
    if days < 1:
        raise ValueError(f"--chunk-days must be at least 1, got {days}")
    out = []
    start = first
    while start <= last:
        end = min(last, start + dt.timedelta(days=days - 1))
        out.append((start, end))
        start = end + dt.timedelta(days=1)
    return out


def job_command(job: str, first: dt.date, last: dt.date) -> list[str]:
    tags = {RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat()}
    return [
        str(Path(sys.executable).with_name("dagster")),
        "job", "execute", "-m", "liq_pipeline.definitions", "-j", job,
        "--tags", json.dumps(tags),
    ]  # fmt: skip


def why_it_failed(log: str) -> str:
    """The errors a failed `dagster job execute` logged (each once), else its last lines."""
    errors = [
        line for line in log.splitlines()
        if line.startswith(("dagster.", "Error:")) and ("Failure" in line or "Error" in line)
    ]  # fmt: skip
    return "\n".join(dict.fromkeys(errors)) or "\n".join(log.splitlines()[-15:])


def run_backfill(
    first: dt.date, last: dt.date, job: str, chunk_days: int, planned_subset: bool, log_dir: Path
) -> int:
    env = dict(os.environ)
    if planned_subset:
        env[SUBSET_FLAG] = "1"
    parts = chunks(first, last, chunk_days)
    print(f"Backfilling {job} for {first}...{last}: {len(parts)} chunk(s) of <= {chunk_days} days")
    started = time.perf_counter()
    for i, (start, end) in enumerate(parts, start=1):
        log = log_dir / f"liq-backfill-{start}-{end}.log"
        chunk_started = time.perf_counter()
        with log.open("w") as out:
            returncode = run_child(job_command(job, start, end), cwd=Path.cwd(), env=env,
                                   stdout=out)  # fmt: skip
        seconds = time.perf_counter() - chunk_started
        days = (end - start).days + 1
        status = "done" if returncode == 0 else "FAILED"
        print(
            f"  chunk {i}/{len(parts)} {start}...{end} ({days} days): {status} in {seconds:.1f} s"
        )
        if returncode != 0:
            print(f"\nWhy (the whole log: {log}):\n{why_it_failed(log.read_text())}")
            resume = f"liq-backfill {start} {last} --job {job} --chunk-days {chunk_days}"
            print(f"Days before {start} are done. To go on from the failed chunk:\n  {resume}")
            return returncode
        log.unlink()
    print(f"Done: {(last - first).days + 1} days in {time.perf_counter() - started:.1f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="liq-backfill", description=__doc__.splitlines()[0])
    parser.add_argument("first", type=dt.date.fromisoformat, help="first UTC day, YYYY-MM-DD")
    parser.add_argument("last", type=dt.date.fromisoformat, help="last UTC day, YYYY-MM-DD")
    parser.add_argument("--job", default=DEFAULT_JOB, help=f"(default {DEFAULT_JOB})")
    parser.add_argument(
        "--chunk-days", type=int, default=DEFAULT_CHUNK_DAYS,
        help=f"days per run (default {DEFAULT_CHUNK_DAYS})",
    )  # fmt: skip
    parser.add_argument(
        "--planned-subset", action=argparse.BooleanOptionalAction, default=False,
        help="one planned event per asset and run (faster; failed days show no status)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    log_dir = Path(os.environ.get("DAGSTER_HOME") or tempfile.gettempdir())
    try:
        return run_backfill(
            args.first, args.last, args.job, args.chunk_days, args.planned_subset, log_dir
        )
    except ValueError as exc:  # the range or the chunk size, before anything ran
        parser.error(str(exc))


if __name__ == "__main__":
    sys.exit(main())
