"""The pipeline's own Kwery data path with Dagster's run machinery left out (child of run.py).

    python bench/direct.py --base-url URL --kwery-key KEY --first 2026-03-01 --last 2026-03-20
        --warehouse SQLALCHEMY_URL [--symbol BTC]

What the Kwery asset and the IO manager do inside a run, minus the run: the asset's day-by-day
fetcher (`KweryDayBatches` over `KweryClient`) consumed by `WarehouseIOManager.handle_output`
through `dg.build_output_context` (Dagster's public testing API). No instance, no run, no
events, no checks. Set beside the floor and the CLI run of the same rows, it splits a backfill's
wall time into "our code" and "Dagster". Prints one JSON line: `seconds` is `handle_output`
alone (fetching included, as the batches are lazy); imports are reported as `startup_seconds`.
"""

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402 - imports are timed apart from the work
import datetime as dt  # noqa: E402
import json  # noqa: E402

import dagster as dg  # noqa: E402

from liq_pipeline.assets.kwery import KweryDayBatches  # noqa: E402
from liq_pipeline.contract import KWERY_TABLE  # noqa: E402
from liq_pipeline.resources import KweryResource  # noqa: E402  # its defaults, as in a run
from liq_pipeline.warehouse import WarehouseIOManager, warehouse_metadata  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--kwery-key", required=True)
    parser.add_argument("--symbol", default="BTC")
    parser.add_argument("--first", type=dt.date.fromisoformat, required=True)
    parser.add_argument("--last", type=dt.date.fromisoformat, required=True)
    parser.add_argument("--warehouse", required=True, help="SQLAlchemy URL, as LIQ_WAREHOUSE_URL")
    args = parser.parse_args()

    imported = time.perf_counter()
    start = dt.datetime.combine(args.first, dt.time(), dt.UTC)
    end = dt.datetime.combine(args.last + dt.timedelta(days=1), dt.time(), dt.UTC)
    io_manager = WarehouseIOManager(url=args.warehouse)
    with KweryResource(api_key=args.kwery_key, base_url=args.base_url).get_client() as client:
        batches = KweryDayBatches(client, args.symbol, start, end)
        with dg.build_output_context(
            asset_key=f"kwery_liquidations_{args.symbol.lower()}",
            definition_metadata=warehouse_metadata(KWERY_TABLE, symbol=args.symbol),
            asset_partitions_def=dg.DailyPartitionsDefinition(start_date=str(args.first)),
            asset_partition_key_range=dg.PartitionKeyRange(str(args.first), str(args.last)),
        ) as context:
            # Only the write is timed: build_output_context's ephemeral instance is a testing
            # artefact, not part of a run's data path. The batches fetch lazily, inside it.
            writing = time.perf_counter()
            io_manager.handle_output(context, batches)
            finished = time.perf_counter()
    print(
        json.dumps(
            {
                "rows": batches.rows,
                "requests": batches.requests,
                "startup_seconds": round(imported - STARTED, 4),
                "seconds": round(finished - writing, 4),
            }
        )
    )


if __name__ == "__main__":
    main()
