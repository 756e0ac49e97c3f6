"""`liq-demo`, the README's first command: its date range, and the whole run end to end."""

import datetime as dt
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from liq_pipeline.backfill import RANGE_END_TAG, RANGE_START_TAG
from liq_pipeline.demo import EXAMPLE_SQL, demo_range
from liq_pipeline.warehouse import WarehouseResource

REPO = Path(__file__).resolve().parents[1]
LIQ_DEMO = str(Path(sys.executable).with_name("liq-demo"))


@pytest.mark.parametrize(
    ("now", "first", "last"),
    [
        # Newhedge publishes day D at D+1 01:00 UTC: at 00:59 on the 21st the 20th is not out yet.
        ("2026-03-21T00:59", "2026-03-13", "2026-03-19"),
        ("2026-03-21T01:00", "2026-03-14", "2026-03-20"),
        ("2026-01-02T12:00", "2025-12-26", "2026-01-01"),
    ],
)
def test_the_demo_covers_the_last_seven_published_days(now, first, last):
    utc_now = dt.datetime.fromisoformat(now).replace(tzinfo=dt.UTC)
    assert demo_range(utc_now) == (dt.date.fromisoformat(first), dt.date.fromisoformat(last))


@pytest.mark.e2e
def test_liq_demo_runs_the_week_end_to_end_and_says_what_to_do_next(tmp_path: Path):
    # A fresh "clone": only the instance and workspace files the demo needs beside it.
    for name in ("dagster.yaml", "workspace.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    result = subprocess.run(
        [LIQ_DEMO], cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    first, last = re.search(r"every asset for (\S+)\.\.\.(\S+) in one run", out).groups()
    days = [(dt.date.fromisoformat(first) + dt.timedelta(days=i)).isoformat() for i in range(7)]
    assert days[-1] == last

    warehouse_file = tmp_path / ".liq" / "warehouse.sqlite"
    totals = WarehouseResource(url=f"sqlite:///{warehouse_file}").read(
        "daily_liquidation_totals",
        dt.datetime.fromisoformat(first).replace(tzinfo=dt.UTC),
        dt.datetime.fromisoformat(last).replace(tzinfo=dt.UTC) + dt.timedelta(days=1),
    )
    # The printed table is the warehouse's, day by day, in USD millions.
    printed = re.findall(r"^(\d{4}-\d{2}-\d{2})((?:\s+\d+\.\d\d){7})$", out, re.MULTILINE)
    assert [day for day, _ in printed] == days
    for (_, figures), row in zip(printed, totals.to_dict("records"), strict=True):
        long_, short, total = (float(f) for f in figures.split()[4:])
        assert long_ == round(row["long_usd"] / 1e6, 2)
        assert short == round(row["short_usd"] / 1e6, 2)
        assert total == round(row["total_usd"] / 1e6, 2)

    # The credits line counts exactly the events stored.
    with sqlite3.connect(warehouse_file) as conn:
        (events,) = conn.execute("SELECT COUNT(*) FROM kwery_liquidations").fetchone()
        example = conn.execute(EXAMPLE_SQL).fetchall()
    assert re.search(rf"Kwery: {events:,} BTC events, \d+ requests, [\d,]+ credits", out)

    # Next steps: the UI command, the warehouse file, and a query that runs on it as printed.
    assert f"{LIQ_DEMO} dev" in out
    assert f"the warehouse: {warehouse_file}" in out
    assert f'sqlite3 {warehouse_file} "{EXAMPLE_SQL}"' in out
    assert [row[0] for row in example] == days[::-1]
    assert all(total == pytest.approx(lg + sh) for _, lg, sh, total in example)
    assert "docs/INTERFACE.md" in out
    assert (REPO / "docs" / "INTERFACE.md").is_file()

    # One run of backfill_job (so every day's page names its job), without Dagster's notices.
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        [run] = instance.get_runs()
    assert (run.job_name, run.status) == ("backfill_job", dg.DagsterRunStatus.SUCCESS)
    assert (run.tags[RANGE_START_TAG], run.tags[RANGE_END_TAG]) == (first, last)
    log = (tmp_path / ".liq" / "demo-last-run.log").read_text()
    assert "RUN_SUCCESS" in log
    assert "superseded" not in log + result.stderr
