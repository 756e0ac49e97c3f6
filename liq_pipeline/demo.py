"""End-to-end demo: simulator → `dagster` CLI → SQLite warehouse → printed summary.

    liq-demo          materialize the last 7 published days of every asset (backfill_job, one
                      run), print the totals and the week's largest liquidation cascades
    liq-demo dev      open `dagster dev` with every asset wired to the simulator

Run from the repository root: DAGSTER_HOME is the root (its dagster.yaml is the instance config)
and all state lands in the git-ignored `.liq/` folder.
"""

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

from liq_pipeline.backfill import job_command
from liq_pipeline.contract import BARS_TABLE, CASCADES_TABLE, EXCHANGES
from liq_pipeline.per_day import usd
from liq_pipeline.processes import run_child
from liq_pipeline.simulator import DEMO_NEWHEDGE_TOKEN, Simulator
from liq_pipeline.warehouse import WarehouseResource

DEMO_KWERY_KEY = "demo-business-key"  # full history, as a backfill needs
DEMO_DAYS = 7
# Newhedge publishes day D at D+1 01:00 UTC (docs/INTERFACE.md, the simulator).
NEWHEDGE_PUBLICATION = dt.timedelta(hours=1)
EXAMPLE_SQL = (
    "SELECT day, long_usd, short_usd, total_usd FROM daily_liquidation_totals "
    "ORDER BY day DESC LIMIT 7"
)


def project_root() -> Path:
    for folder in (Path.cwd(), *Path.cwd().parents):
        if (folder / "dagster.yaml").is_file() and (folder / "workspace.yaml").is_file():
            return folder
    sys.exit("liq-demo: run it from the liq_pipeline repository (no dagster.yaml found)")


def demo_range(now: dt.datetime, days: int = DEMO_DAYS) -> tuple[dt.date, dt.date]:
    """The last `days` complete UTC days whose Newhedge values are already published."""
    last = (now - NEWHEDGE_PUBLICATION).date() - dt.timedelta(days=1)
    return last - dt.timedelta(days=days - 1), last


def demo_env(root: Path, sim_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DAGSTER_HOME=str(root),
        KWERY_API_KEY=DEMO_KWERY_KEY,
        NEWHEDGE_API_TOKEN=DEMO_NEWHEDGE_TOKEN,
        KWERY_BASE_URL=sim_url,
        NEWHEDGE_BASE_URL=sim_url,
    )
    return env


def print_summary(warehouse_url: str, first: dt.date, last: dt.date) -> None:
    start = dt.datetime.combine(first, dt.time(), dt.UTC)
    end = dt.datetime.combine(last, dt.time(), dt.UTC) + dt.timedelta(days=1)
    totals = WarehouseResource(url=warehouse_url).read("daily_liquidation_totals", start, end)
    columns = {e: totals[f"{e}_long_usd"] + totals[f"{e}_short_usd"] for e in EXCHANGES}
    columns |= {
        "long": totals["long_usd"],
        "short": totals["short_usd"],
        "total": totals["total_usd"],
    }
    print("\nDaily BTC liquidations across exchanges (USD millions)")
    print(f"{'day':<10}" + "".join(f"{name:>10}" for name in columns))
    for i, day in enumerate(totals["day"]):
        print(f"{day:%Y-%m-%d}" + "".join(f"{c.iloc[i] / 1e6:>10.2f}" for c in columns.values()))


def print_analytics(warehouse_url: str, first: dt.date, last: dt.date, symbol: str = "BTC") -> None:
    """The week's largest cascades and busiest minute, from the analytics tables."""
    start = dt.datetime.combine(first, dt.time(), dt.UTC)
    end = dt.datetime.combine(last, dt.time(), dt.UTC) + dt.timedelta(days=1)
    warehouse = WarehouseResource(url=warehouse_url)
    cascades = warehouse.read(CASCADES_TABLE, start, end, symbol=symbol)
    bars = warehouse.read(BARS_TABLE, start, end, symbol=symbol)
    top = cascades.sort_values(["usd_value", "start"], ascending=[False, True]).head(3)
    print(
        f"\nLargest {symbol} liquidation cascades of {first}...{last} (UTC; {len(cascades)} in all)"
    )
    if top.empty:
        print("  none (a cascade: >= 5 events of one side, <= 60 s apart, >= $1,000,000)")
    else:
        print(f"{'start':<19}{'end':>10}{'side':>7}{'events':>8}{'USD':>15}{'move':>9}")
    for c in top.to_dict("records"):
        print(
            f"{c['start']:%Y-%m-%d %H:%M:%S}{format(c['end'], '%H:%M:%S'):>10}{c['side']:>7}"
            f"{c['events']:>8,}{usd(c['usd_value']):>15}{c['price_move_pct']:>+8.2f}%"
        )
    if len(bars):
        per_minute = bars.groupby("bucket_start")["usd_value"].sum()
        print(
            f"Busiest minute: {per_minute.idxmax():%Y-%m-%d %H:%M} UTC, "
            f"{usd(per_minute.max())} liquidated."
        )


def run_demo(root: Path) -> int:
    first, last = demo_range(dt.datetime.now(dt.UTC))
    data = root / ".liq"
    data.mkdir(exist_ok=True)
    warehouse_file = data / "warehouse.sqlite"
    warehouse_url = f"sqlite:///{warehouse_file}"
    log_path = data / "demo-last-run.log"
    with Simulator(port=0) as sim:
        env = demo_env(root, sim.url)
        env["LIQ_WAREHOUSE_URL"] = warehouse_url
        print(f"Simulator of Kwery and Newhedge at {sim.url}")
        print(f"Materializing every asset for {first}...{last} in one run (log: {log_path})")
        # backfill_job: every asset and its per-day checks in one run, named in the UI.
        command = job_command("backfill_job", first, last)
        started = time.perf_counter()
        with log_path.open("w") as log:
            returncode = run_child(command, cwd=root, env=env, stdout=log)
        elapsed = time.perf_counter() - started
        if returncode != 0:
            print(f"The run failed after {elapsed:.1f}s; last lines of {log_path}:")
            print("".join(log_path.read_text().splitlines(keepends=True)[-25:]))
            return returncode
        kwery, newhedge = sim.stats(DEMO_KWERY_KEY), sim.stats(DEMO_NEWHEDGE_TOKEN)
    print(f"Run succeeded in {elapsed:.1f}s, warehouse: {warehouse_url}")
    print_summary(warehouse_url, first, last)
    print_analytics(warehouse_url, first, last)
    print(
        f"\nKwery: {kwery['rows']:,} BTC events, {kwery['ok_requests']} requests, "
        f"{kwery['credits_used']:,} credits. Newhedge: {newhedge['ok_requests']} requests."
    )
    print_next_steps(warehouse_file)
    return 0


def print_next_steps(warehouse_file: Path) -> None:
    liq_demo = Path(sys.executable).with_name("liq-demo")
    print(
        "\nNext:\n"
        f"  {liq_demo} dev\n"
        "      the Dagster UI on http://127.0.0.1:3000: these days' assets, their checks, charts\n"
        "      and per-day metadata, wired to a simulator like this one\n"
        f"  the warehouse: {warehouse_file} (any SQLite client), e.g.\n"
        f'      sqlite3 {warehouse_file} "{EXAMPLE_SQL}"\n'
        "  tables, columns and settings: docs/INTERFACE.md"
    )


def run_dev(root: Path, simulator_port: int, ui_port: int) -> int:
    with Simulator(port=simulator_port) as sim:
        print(f"Simulator of Kwery and Newhedge at {sim.url}; starting dagster dev (Ctrl-C stops)")
        dagster = str(Path(sys.executable).with_name("dagster"))
        command = [dagster, "dev", "-w", "workspace.yaml", "-p", str(ui_port)]
        return run_child(command, cwd=root, env=demo_env(root, sim.url))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="liq-demo", description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", choices=("run", "dev"), default="run")
    parser.add_argument("--simulator-port", type=int, default=8765, help="for `dev` (default 8765)")
    parser.add_argument("--port", type=int, default=3000, help="the UI's port, for `dev`")
    args = parser.parse_args(argv)
    root = project_root()
    if args.mode == "run":
        return run_demo(root)
    return run_dev(root, args.simulator_port, args.port)


if __name__ == "__main__":
    sys.exit(main())
