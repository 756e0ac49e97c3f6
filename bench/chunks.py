"""liq-backfill's chunk size and --planned-subset, measured: one long every-asset backfill run by
`liq-backfill` in chunks of several sizes, with and without one planned event per asset.

    .venv/bin/python bench/chunks.py                    # 365 days, chunks 30/91/183/365, SQLite
    .venv/bin/python bench/chunks.py --days 120 --chunks 30,120 --instance postgres

Each measurement: a fresh DAGSTER_HOME (the repository's dagster.yaml, or the production one on a
fresh PostgreSQL database) and a fresh SQLite warehouse, the simulator of bench/run.py (frozen
clock, every day generated up front), `liq-backfill FIRST LAST --chunk-days N` as one child
process (its whole life timed, peak RSS from bench/launcher.py), then the instance's events
counted (all runs of the backfill) and the warehouse's Kwery rows checked.
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.launch import (
    PG_URL,
    BenchError,
    LatentSimulator,
    checked,
    fresh_warehouse,
    postgres_instance,
    run_child,
    sqlite_instance,
)
from bench.plan import KWERY_KEY, SIM_NOW, START_DATE, Window, cache_simulated_days, minimum
from liq_pipeline.simulator import DEMO_NEWHEDGE_TOKEN

LIQ_BACKFILL = str(Path(sys.executable).with_name("liq-backfill"))


def measure(sim_url: str, window: Window, chunk: int, subset: bool, instance_kind: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="liq-chunks-") as tmp_name:
        tmp = Path(tmp_name)
        make = sqlite_instance(tmp) if instance_kind == "sqlite" else postgres_instance(tmp, PG_URL)
        with make as instance, fresh_warehouse("sqlite", tmp, None) as warehouse:
            env = {
                **os.environ,
                "DAGSTER_HOME": str(instance.home),
                "KWERY_API_KEY": KWERY_KEY,
                "NEWHEDGE_API_TOKEN": DEMO_NEWHEDGE_TOKEN,
                "KWERY_BASE_URL": sim_url,
                "NEWHEDGE_BASE_URL": sim_url,
                "LIQ_WAREHOUSE_URL": warehouse.url,
                "LIQ_START_DATE": START_DATE,
                **instance.env,
            }
            argv = [LIQ_BACKFILL, str(window.first), str(window.last), "--chunk-days", str(chunk)]
            argv += ["--planned-subset"] if subset else []
            child = checked(run_child(argv, cwd=instance.home, env=env), "liq-backfill")
            rows = warehouse.kwery_rows()
            with instance.opened() as dagster:
                runs = dagster.get_runs()
                events = sum(len(dagster.all_logs(run.run_id)) for run in runs)
    if rows != minimum(window).rows:
        raise BenchError(f"stored {rows} Kwery rows, expected {minimum(window).rows}")
    return {"seconds": child.seconds, "rss_mib": child.rss_mib, "runs": len(runs), "events": events}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--chunks", default="30,91,183,365")
    parser.add_argument("--instance", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--subset", choices=("both", "on", "off"), default="both")
    args = parser.parse_args()
    window = Window.ending("2026-03-20", args.days)
    cache_simulated_days([window])
    subsets = {"both": (False, True), "on": (True,), "off": (False,)}[args.subset]
    print(f"liq-backfill of every asset over {window}, {args.instance} instance")
    print(
        f"{'chunk days':>10} {'planned':>8} {'runs':>5} {'events':>7} {'seconds':>8} {'RSS MiB':>8}"
    )
    with LatentSimulator(port=0, now=SIM_NOW) as sim:
        for chunk in (int(c) for c in args.chunks.split(",")):
            for subset in subsets:
                m = measure(sim.url, window, chunk, subset, args.instance)
                planned = "subset" if subset else "per day"
                print(
                    f"{chunk:>10} {planned:>8} {m['runs']:>5} {m['events']:>7,} "
                    f"{m['seconds']:>8.1f} {m['rss_mib']:>8.0f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
