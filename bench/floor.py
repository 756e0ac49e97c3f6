"""The floor of bench/run.py: the same API pages and rows with no framework at all.

    python bench/floor.py --base-url URL --kwery-key KEY --first 2026-03-01 --last 2026-03-20
        (--sqlite PATH | --postgres LIBPQ_URI) [--newhedge-token TOKEN] [--symbol BTC]
        [--one-cursor]

Run as a child process by bench/run.py, exactly like the `dagster` CLI it is compared with:
- Kwery: one query per UTC day of [first, last], `limit=1000`, cursor loop (the same pages the
  pipeline fetches), a bare `requests.Session`, `orjson`. With `--one-cursor`: ONE query over
  the whole window and its cursor loop (the plainest sequential fetch; no day ends on a partly
  filled page, so it needs fewer requests than one query per day).
- Newhedge (with `--newhedge-token`): the 8 series, one request each, cut to the window.
- Writes, streamed page by page, in ONE transaction into freshly created tables with the
  warehouse's columns and its (timestamp, symbol) index: PostgreSQL through ADBC (binary COPY of
  one Arrow batch per page), SQLite through stdlib `sqlite3.executemany` (timestamps stored as
  the API's ISO text).
No retries, validation, checks or metadata: that is what makes it a floor. Prints one JSON line;
its seconds count from after the imports.
"""

import argparse
import datetime as dt
import json
import operator
import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import requests

KWERY_COLUMNS = (
    "timestamp",
    "symbol",
    "source",
    "side",
    "quantity",
    "price",
    "avg_price",
    "usd_value",
)
METRICS = tuple(
    f"bitcoin_liquidations_{exchange}_{side}"
    for exchange in ("binance", "bybit", "deribit", "okx")
    for side in ("long", "short")
)
DAY_MS = 86_400_000
EPOCH = dt.date(1970, 1, 1)


class Fetcher:
    """Bare HTTP: counts requests, rows and the seconds spent fetching and parsing."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.requests = 0
        self.rows = 0
        self.seconds = 0.0

    def get(self, path: str, params: dict[str, str]) -> Any:
        started = time.perf_counter()
        response = self.session.get(self.base_url + path, params=params, timeout=30)
        response.raise_for_status()
        doc = orjson.loads(response.content)
        self.requests += 1
        self.seconds += time.perf_counter() - started
        return doc

    def kwery_pages(
        self, key: str, symbol: str, first: dt.date, last: dt.date, *, one_cursor: bool = False
    ) -> Iterator[list[dict[str, Any]]]:
        day = first
        while day <= last:
            end = last + dt.timedelta(days=1) if one_cursor else day + dt.timedelta(days=1)
            params = {
                "api-key": key,
                "symbol": symbol,
                "start": f"{day.isoformat()}T00:00:00.000Z",
                "end": f"{end.isoformat()}T00:00:00.000Z",
                "side": "all",
                "limit": "1000",
            }
            cursor: str | None = None
            while True:
                doc = self.get("/v1/liquidations", params | ({"after": cursor} if cursor else {}))
                self.rows += len(doc["data"])
                yield doc["data"]
                if not doc["meta"]["has_more"]:
                    break
                cursor = doc["meta"]["next_cursor"]
            day = end

    def newhedge(self, token: str, first: dt.date, last: dt.date) -> dict[str, list[list[Any]]]:
        lo = (first - EPOCH).days * DAY_MS
        hi = (last - EPOCH).days * DAY_MS
        series = {}
        for metric in METRICS:
            points = self.get(f"/api/v2/metrics/liquidations/{metric}", {"api_token": token})
            series[metric] = [p for p in points if lo <= p[0] <= hi]
        return series


def write_sqlite(
    path: str, pages: Iterator[list[dict[str, Any]]], series: Callable[[], dict[str, list]]
) -> None:
    row = operator.itemgetter(*KWERY_COLUMNS)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        conn.execute(
            "CREATE TABLE kwery (timestamp TEXT NOT NULL, symbol TEXT NOT NULL, source TEXT "
            "NOT NULL, side TEXT NOT NULL, quantity REAL NOT NULL, price REAL NOT NULL, "
            "avg_price REAL NOT NULL, usd_value REAL NOT NULL)"
        )
        conn.execute("CREATE INDEX ix_kwery ON kwery (timestamp, symbol)")
        insert = f"INSERT INTO kwery VALUES ({', '.join('?' * len(KWERY_COLUMNS))})"
        for page in pages:
            conn.executemany(insert, map(row, page))
        for metric, points in series().items():
            conn.execute(f"CREATE TABLE {metric} (day TEXT PRIMARY KEY, value REAL NOT NULL)")
            conn.executemany(
                f"INSERT INTO {metric} VALUES (?, ?)",
                ((str(EPOCH + dt.timedelta(days=ms // DAY_MS)), v) for ms, v in points),
            )
        conn.execute("COMMIT")
    finally:
        conn.close()


def write_postgres(
    uri: str, pages: Iterator[list[dict[str, Any]]], series: Callable[[], dict[str, list]]
) -> None:
    import adbc_driver_postgresql.dbapi as pg
    import pyarrow as pa

    schema = pa.schema(
        [
            ("timestamp", pa.timestamp("ms", tz="UTC")),
            *((name, pa.string()) for name in ("symbol", "source", "side")),
            *((name, pa.float64()) for name in KWERY_COLUMNS[4:]),
        ]
    )

    def batches() -> Iterator[pa.RecordBatch]:
        for page in pages:
            if not page:
                continue
            arrays = [pa.array([r["timestamp"] for r in page]).cast(schema.field(0).type)]
            for field in list(schema)[1:]:
                arrays.append(pa.array([r[field.name] for r in page], field.type))
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)

    conn = pg.connect(uri)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "CREATE TABLE kwery (timestamp timestamptz NOT NULL, symbol text NOT NULL, "
                "source text NOT NULL, side text NOT NULL, quantity float8 NOT NULL, price "
                "float8 NOT NULL, avg_price float8 NOT NULL, usd_value float8 NOT NULL)"
            )
            cur.execute("CREATE INDEX ix_kwery ON kwery (timestamp, symbol)")
            reader = pa.RecordBatchReader.from_batches(schema, batches())
            cur.adbc_ingest("kwery", reader, mode="append")
            for metric, points in series().items():
                cur.execute(f"CREATE TABLE {metric} (day date PRIMARY KEY, value float8 NOT NULL)")
                table = pa.table(
                    {
                        "day": pa.array([ms // 1000 for ms, _ in points], pa.timestamp("s")).cast(
                            pa.date32()
                        ),
                        "value": pa.array([v for _, v in points], pa.float64()),
                    }
                )
                cur.adbc_ingest(metric, table, mode="append")
        conn.commit()
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--kwery-key", required=True)
    parser.add_argument("--newhedge-token")
    parser.add_argument("--symbol", default="BTC")
    parser.add_argument("--first", type=dt.date.fromisoformat, required=True)
    parser.add_argument("--last", type=dt.date.fromisoformat, required=True)
    parser.add_argument(
        "--one-cursor", action="store_true", help="one Kwery query over the whole window"
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--sqlite", help="path of a new SQLite file")
    target.add_argument("--postgres", help="libpq URI; tables go to the first search_path schema")
    args = parser.parse_args()

    if args.postgres:
        # Imported before the clock starts, like every other module (sys.modules caches them).
        import adbc_driver_postgresql.dbapi  # noqa: F401
        import pyarrow  # noqa: F401

    started = time.perf_counter()
    fetcher = Fetcher(args.base_url)
    pages = fetcher.kwery_pages(
        args.kwery_key, args.symbol, args.first, args.last, one_cursor=args.one_cursor
    )

    kwery_done: list[float] = []

    def series() -> dict[str, list]:
        # Called once the Kwery rows are all written (before the commit).
        kwery_done.append(time.perf_counter())
        if args.newhedge_token is None:
            return {}
        return fetcher.newhedge(args.newhedge_token, args.first, args.last)

    if args.sqlite:
        write_sqlite(args.sqlite, pages, series)
    else:
        write_postgres(args.postgres, pages, series)
    finished = time.perf_counter()
    total = finished - started
    print(
        json.dumps(
            {
                "rows": fetcher.rows,
                "requests": fetcher.requests,
                "fetch_seconds": round(fetcher.seconds, 4),
                "write_seconds": round(total - fetcher.seconds, 4),
                "seconds": round(total, 4),
                # Kwery pages fetched and written; the Newhedge series and the commit after.
                "kwery_seconds": round(kwery_done[0] - started, 4),
            }
        )
    )


if __name__ == "__main__":
    main()
