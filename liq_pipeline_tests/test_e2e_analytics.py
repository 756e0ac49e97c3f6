"""End to end: the analytics through the real `dagster` CLI, and their charts in a real browser."""

import base64
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import requests

from liq_pipeline.per_day import latest_materializations
from liq_pipeline.simulator import Simulator
from liq_pipeline_tests.assets.analytics_helpers import (
    assert_same_rows,
    pandas_bars,
    reference_cascades,
)
from liq_pipeline_tests.cli import DAGSTER, Cli, days_of, ok, sentinel_simulator
from liq_pipeline_tests.test_e2e_cli import metadata_of

pytestmark = pytest.mark.e2e

FIRST, LAST = "2026-03-05", "2026-03-07"  # 03-05 and 03-06 have cascades, 03-07 has none
PNG_LIMIT = 150_000
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [  # playwright adds --headless and a fresh --user-data-dir of its own choosing
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ANALYTICS = ("kwery_liquidation_bars_btc", "kwery_liquidation_cascades_btc")


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with sentinel_simulator() as simulator:
        yield simulator


@pytest.fixture(params=["sqlite", "postgres"])
def cli(request: pytest.FixtureRequest, tmp_path: Path, sim: Simulator) -> Iterator[Cli]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'warehouse.sqlite'}"
    else:
        url = request.getfixturevalue("postgres_schema_url")
    cli = Cli(tmp_path, sim, url)
    yield cli
    cli.assert_no_secrets()


def chart_png(markdown: str) -> bytes:
    assert markdown.startswith("![") and "(data:image/png;base64," in markdown
    return base64.b64decode(markdown.split("base64,", 1)[1].removesuffix(")"))


def test_a_few_days_of_everything_land_the_analytics_and_each_days_figures(cli: Cli):
    ok(cli.materialize("*", FIRST, LAST))
    events = cli.read("kwery_liquidations", FIRST, LAST, symbol="BTC")
    bars = cli.read("kwery_liquidation_bars", FIRST, LAST, symbol="BTC")
    cascades = cli.read("kwery_liquidation_cascades", FIRST, LAST, symbol="BTC")
    assert_same_rows(bars.sort_values(["bucket_start", "side"]), pandas_bars(events))
    assert_same_rows(cascades.sort_values(["start", "side"]), reference_cascades(events))
    assert len(cascades) >= 3

    days = [d.isoformat() for d in days_of(FIRST, LAST)]
    with cli.instance() as instance:
        latest = {
            key: latest_materializations(instance, dg.AssetKey(key), days)
            for key in (*ANALYTICS, "daily_liquidation_totals")
        }
    for day in days:
        of_day = events[events["timestamp"].dt.strftime("%Y-%m-%d") == day]
        day_bars = bars[bars["bucket_start"].dt.strftime("%Y-%m-%d") == day]
        day_cascades = cascades[cascades["start"].dt.strftime("%Y-%m-%d") == day]
        meta = metadata_of(latest["kwery_liquidation_bars_btc"][day])
        assert meta["dagster/row_count"] == len(day_bars)
        assert meta["events"] == len(of_day)
        for side in ("long", "short"):
            side_usd = of_day.loc[of_day["side"] == side, "usd_value"].sum()
            assert meta[f"{side}_usd"] == round(side_usd, 2)
        meta = metadata_of(latest["kwery_liquidation_cascades_btc"][day])
        assert meta["dagster/row_count"] == meta["cascades"] == len(day_cascades)
        share = day_cascades["usd_value"].sum() / of_day["usd_value"].sum()
        assert meta["cascade_usd_share"] == round(share, 6)
        if len(day_cascades):
            largest = day_cascades.loc[day_cascades["usd_value"].idxmax()]
            assert meta["largest_cascade_start"] == str(largest["start"])
            assert meta["largest_cascade_usd"] == round(largest["usd_value"], 2)
        assert (meta["run_days"], meta["run_min_events"]) == (len(days), 5)
        # One chart per asset and run, on the newest day.
        for key in ("kwery_liquidation_bars_btc", "daily_liquidation_totals"):
            meta = metadata_of(latest[key][day])
            assert ("chart" in meta) == (day == LAST), (key, day)
            if day == LAST:
                assert len(chart_png(meta["chart"])) < PNG_LIMIT
    totals_table = metadata_of(latest["daily_liquidation_totals"][LAST])["run_totals"]
    assert totals_table.count("\n") == 1 + len(days) and "| $" in totals_table

    # A day again: its rows are the same, its neighbours untouched.
    ok(cli.materialize("*", "2026-03-06"))
    assert_same_rows(
        cli.read("kwery_liquidation_bars", FIRST, LAST, symbol="BTC").sort_values(
            ["bucket_start", "side"]
        ),
        bars.sort_values(["bucket_start", "side"]),
    )
    pd.testing.assert_frame_equal(
        cli.read("kwery_liquidation_cascades", FIRST, LAST, symbol="BTC"), cascades
    )


# --- the charts in a real browser -------------------------------------------------------------


def chromium_or_skip() -> str:
    if Path(CHROMIUM).exists():
        return CHROMIUM
    reason = f"no Chromium at {CHROMIUM} (Debian: apt-get install -y chromium)"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{reason}; CI must run the browser test")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Webserver:
    """`dagster-webserver` on a free loopback port against the CLI's DAGSTER_HOME."""

    def __init__(self, cli: Cli) -> None:
        self.cli = cli
        self.url = f"http://127.0.0.1:{free_port()}"
        port = self.url.rsplit(":", 1)[1]
        self.log = (cli.home / "webserver.log").open("w")
        self.process = subprocess.Popen(
            [str(Path(DAGSTER).with_name("dagster-webserver")), "-m", "liq_pipeline.definitions",
             "-h", "127.0.0.1", "-p", port],
            cwd=cli.home, env=cli.env, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def wait_until_up(self) -> None:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (self.cli.home / "webserver.log").read_text()
            try:
                if requests.get(f"{self.url}/server_info", timeout=2).ok:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.5)  # waiting on the server's real start-up, not simulating time
        raise AssertionError("dagster-webserver did not answer within 180 s")

    def skip_the_community_dialog(self) -> None:
        # On 127.0.0.1 the UI opens a "Join the Dagster community" dialog over every page until
        # it is marked seen (an instance setting, the UI's own mutation).
        response = requests.post(
            f"{self.url}/graphql", json={"query": "mutation { setNuxSeen }"}, timeout=30
        )
        assert response.json() == {"data": {"setNuxSeen": True}}, response.text

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)
        self.log.close()
        self.cli.wait_for_instance_processes_to_exit()  # its code server too


def test_the_charts_render_in_a_real_browser(tmp_path: Path, sim: Simulator):
    chromium = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    home = tmp_path / "home"
    home.mkdir()
    cli = Cli(home, sim, f"sqlite:///{home / 'warehouse.sqlite'}")
    ok(cli.materialize("*", "2026-03-06"))
    server = Webserver(cli)
    try:
        server.wait_until_up()
        server.skip_the_community_dialog()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"),  # fresh: tmp_path is new for every test
                executable_path=chromium,
                headless=True,
                args=CHROMIUM_FLAGS,
                viewport={"width": 1400, "height": 1000},
            )
            try:
                page = browser.new_page()
                for asset in ("kwery_liquidation_bars_btc", "daily_liquidation_totals"):
                    page.goto(f"{server.url}/assets/{asset}?view=partitions&partition=2026-03-06")
                    # Markdown metadata opens in a dialog from its row of the metadata table.
                    row = page.locator("tr", has=page.get_by_text("chart", exact=True))
                    row.get_by_text("[Show Markdown]").click(timeout=90_000)
                    image = page.locator('img[src^="data:image/png;base64,"]')
                    image.wait_for(timeout=30_000)
                    page.wait_for_function(
                        "() => { const i = document.querySelector('img[src^=\"data:image/png\"]');"
                        " return i !== null && i.complete; }",
                        timeout=30_000,
                    )
                    page.screenshot(path=str(tmp_path / f"{asset}.png"))
                    width, height = image.evaluate("i => [i.naturalWidth, i.naturalHeight]")
                    assert (width, height) == (1000, 400), asset
                    page.get_by_role("button", name="Close").click()
            finally:
                browser.close()
    finally:
        server.stop()
    cli.assert_no_secrets()


def test_the_browser_test_is_not_skipped_silently_in_ci(monkeypatch):
    monkeypatch.setattr(f"{__name__}.CHROMIUM", "/nonexistent/chromium")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run the browser test"):
        chromium_or_skip()
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception, match=r"apt-get install -y chromium"):
        chromium_or_skip()
