import datetime as dt
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from liq_pipeline.simulator import Simulator
from liq_pipeline.simulator.__main__ import build_parser
from liq_pipeline_tests.simulator.support import BUSINESS, NOW, TOKEN, Api


def test_url_needs_start() -> None:
    sim = Simulator(port=0)
    with pytest.raises(RuntimeError, match="not started"):
        _ = sim.url
    sim.start()
    try:
        assert sim.url.startswith("http://127.0.0.1:")
    finally:
        sim.close()
    sim.close()  # idempotent


def test_clock() -> None:
    sim = Simulator(now=NOW)
    assert sim.now() == NOW
    sim.set_now(dt.datetime(2026, 3, 10, 14, tzinfo=dt.timezone(dt.timedelta(hours=2))))
    assert sim.now() == dt.datetime(2026, 3, 10, 12, tzinfo=dt.UTC)
    with pytest.raises(ValueError, match="timezone-aware"):
        sim.set_now(dt.datetime(2026, 3, 10))
    sim.set_now(None)
    assert abs(sim.now() - dt.datetime.now(dt.UTC)) < dt.timedelta(seconds=5)


def test_admin_endpoints(api: Api, http: requests.Session) -> None:
    base = api.sim.url
    fault = {"kind": "429", "count": 2, "api": "kwery", "retry_after": None}
    assert http.post(f"{base}/_sim/faults", json=fault, timeout=10).json() == {"ok": True}
    first = api.kwery(symbol="BTC")
    assert (first.status_code, "Retry-After" in first.headers) == (429, False)
    assert http.delete(f"{base}/_sim/faults", timeout=10).json() == {"ok": True}
    assert api.kwery(symbol="BTC", limit=3).status_code == 200
    stats = http.get(f"{base}/_sim/stats", params={"key": BUSINESS}, timeout=10).json()
    assert stats == {
        "requests": 2,
        "ok_requests": 1,
        "rows": 3,
        "credits_used": 31,
        "credits_remaining": 99_999_969,
    }
    token_stats = http.get(f"{base}/_sim/stats", params={"key": TOKEN}, timeout=10).json()
    assert token_stats["credits_remaining"] is None
    resp = http.post(f"{base}/_sim/now", json={"now": "2026-03-10T00:30:00+00:00"}, timeout=10)
    assert resp.json() == {"now": "2026-03-10T00:30:00.000Z"}
    series = api.newhedge("bitcoin_liquidations_okx_long", api_token=TOKEN).json()
    assert series[-1][0] == 1_772_928_000_000  # 2026-03-08: yesterday is not out before 01:00
    assert http.post(f"{base}/_sim/now", json={"now": None}, timeout=10).json() == {"now": None}
    assert abs(api.sim.now() - dt.datetime.now(dt.UTC)) < dt.timedelta(seconds=5)
    bad = http.post(f"{base}/_sim/faults", json={"kind": "boom"}, timeout=10)
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "bad_request"
    assert http.put(f"{base}/_sim/faults", timeout=10).status_code == 501
    assert http.get(f"{base}/_sim/faults", timeout=10).status_code == 405


def test_cli_parser() -> None:
    args = build_parser().parse_args(
        [
            "--port",
            "0",
            "--now",
            "2026-03-10T00:00:00Z",
            "--fault",
            "429:3",
            "--fault",
            "lag:1:newhedge",
        ]
    )
    assert (args.host, args.port, args.now) == (
        "127.0.0.1",
        0,
        dt.datetime(2026, 3, 10, tzinfo=dt.UTC),
    )
    assert args.fault == [("429", 3, "kwery"), ("lag", 1, "newhedge")]
    assert build_parser().parse_args([]).port == 8765
    for bad in ("429", "429:x", "nope:1", "lag:1", "429:0", "429:1:ftx"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["--fault", bad])


def _console_script() -> list[str]:
    script = Path(sys.executable).with_name("liq-simulator")
    return [str(script)] if script.exists() else [sys.executable, "-m", "liq_pipeline.simulator"]


@pytest.mark.parametrize(
    "command",
    [[sys.executable, "-m", "liq_pipeline.simulator"], _console_script()],
    ids=["python-m", "console-script"],
)
def test_cli_serves_until_terminated(command: list[str], tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [*command, "--port", "0", "--now", "2026-03-10T12:00:00Z", "--fault", "503:1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        prefix = "liq-simulator listening on http://127.0.0.1:"
        assert line.startswith(prefix), line
        url = line.removeprefix("liq-simulator listening on ")
        params = {"api-key": BUSINESS, "symbol": "BTC", "limit": 2}
        assert requests.get(f"{url}/v1/liquidations", params=params, timeout=10).status_code == 503
        resp = requests.get(f"{url}/v1/liquidations", params=params, timeout=10)
        assert (resp.status_code, resp.json()["meta"]["returned"]) == (200, 2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()
    assert list(tmp_path.iterdir()) == []


def test_cli_stops_on_sigint(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "liq_pipeline.simulator", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("liq-simulator listening on http://")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_concurrent_clients(api: Api) -> None:
    def fetch(i: int) -> list[dict]:
        with requests.Session() as session:
            rows = []
            for j in range(10):
                params = {"api-key": BUSINESS, "symbol": "BTC", "start": "2026-03-08", "limit": 7}
                resp = session.get(f"{api.sim.url}/v1/liquidations", params=params, timeout=10)
                rows.append(resp.json()["data"][(i + j) % 7])
            return rows

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(fetch, range(8)))
    assert all(len(r) == 10 for r in results)
    assert api.sim.stats(BUSINESS) == {
        "requests": 80,
        "ok_requests": 80,
        "rows": 560,
        "credits_used": 80 * (25 + 14),
    }
