"""The ``hang`` fault: a request read and never answered (or answered late), and close()."""

import datetime as dt
import http.client
import threading
import time
from collections.abc import Callable

import pytest
import requests

from liq_pipeline.simulator import Simulator
from liq_pipeline.simulator.__main__ import build_parser
from liq_pipeline.simulator.data import kwery_events, newhedge_series
from liq_pipeline_tests.simulator.support import BUSINESS, TOKEN, Api

D8 = dt.date(2026, 3, 8)
PARAMS = {"symbol": "BTC", "start": "2026-03-08T00:00:00Z", "end": "2026-03-09T00:00:00Z"}
OKX_LONG = "bitcoin_liquidations_okx_long"
ZERO = {"requests": 0, "ok_requests": 0, "rows": 0, "credits_used": 0}


def _wait_until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    """Poll (a few ms at a time) until the server side got there."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.002)


class _Background:
    """One request on its own thread; remembers how it ended and when."""

    def __init__(self, call: Callable[[], requests.Response]) -> None:
        self.result: requests.Response | BaseException | None = None
        self.ended_at = 0.0
        self._call = call
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.result = self._call()
        except BaseException as err:  # the test inspects it
            self.result = err
        self.ended_at = time.monotonic()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the request did not end"


def test_hang_kwery_times_out_and_is_free(api: Api) -> None:
    api.sim.inject("hang")
    with pytest.raises(requests.exceptions.ReadTimeout):
        api.session.get(
            f"{api.sim.url}/v1/liquidations",
            params={"api-key": BUSINESS, **PARAMS, "limit": 10},
            timeout=0.2,
        )
    assert api.sim.stats(BUSINESS) == {**ZERO, "requests": 1}
    # The fault is used up; the session goes on with a fresh connection.
    assert api.kwery(**PARAMS, limit=10).json()["data"] == kwery_events("BTC", D8)[:10]


def test_hang_newhedge(api: Api) -> None:
    api.sim.inject("hang", api="newhedge", metric=OKX_LONG)
    url = f"{api.sim.url}/api/v2/metrics/liquidations/{OKX_LONG}"
    assert api.newhedge("bitcoin_liquidations_okx_short", api_token=TOKEN).status_code == 200
    with pytest.raises(requests.exceptions.ReadTimeout):
        api.session.get(url, params={"api_token": TOKEN}, timeout=0.2)
    assert api.newhedge(OKX_LONG, api_token=TOKEN).status_code == 200
    assert api.sim.stats(TOKEN) == {
        "requests": 3,
        "ok_requests": 2,
        "rows": 2 * 2260,
        "credits_used": 0,
    }


def test_a_hung_request_does_not_block_others(api: Api) -> None:
    api.sim.inject("hang")
    hung = _Background(
        lambda: requests.get(
            f"{api.sim.url}/v1/liquidations", params={"api-key": BUSINESS, **PARAMS}, timeout=5
        )
    )
    _wait_until(lambda: not api.sim.pending_faults())  # the request took the fault
    for _ in range(3):
        assert api.kwery(**PARAMS, limit=5).status_code == 200
    assert api.newhedge(OKX_LONG, api_token=TOKEN).status_code == 200
    assert hung.result is None  # still waiting
    api.sim.close()
    hung.join(2.0)


def test_close_is_prompt_while_a_request_hangs(sim: Simulator) -> None:
    sim.inject("hang")
    url = f"{sim.url}/v1/liquidations"
    hung = _Background(
        lambda: requests.get(url, params={"api-key": BUSINESS, **PARAMS}, timeout=10)
    )
    _wait_until(lambda: not sim.pending_faults())
    started = time.monotonic()
    sim.close()
    closed = time.monotonic() - started
    hung.join(2.0)
    assert closed < 0.5
    assert hung.ended_at - started < 0.5  # the client is let go at once, without an answer
    assert isinstance(hung.result, requests.exceptions.ConnectionError)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url, timeout=1)


def test_hang_with_seconds_answers_late_and_charges_normally(api: Api) -> None:
    api.sim.inject("hang", seconds=0.3)
    started = time.monotonic()
    resp = api.kwery(**PARAMS, limit=10)
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 1.0
    assert resp.json()["data"] == kwery_events("BTC", D8)[:10]
    assert (resp.headers["X-Credits-Used"], resp.headers["X-Rows-Returned"]) == ("45", "10")
    assert api.sim.stats(BUSINESS) == {
        "requests": 1,
        "ok_requests": 1,
        "rows": 10,
        "credits_used": 45,
    }


def test_hang_with_seconds_keeps_the_connection(sim: Simulator) -> None:
    sim.inject("hang", seconds=0.1)
    conn = http.client.HTTPConnection(sim.url.removeprefix("http://"), timeout=5)
    try:
        path = "/v1/liquidations?api-key=demo-business-key&symbol=BTC&start=2026-03-08&limit=3"
        conn.request("GET", path)
        first = conn.getresponse()
        assert (first.status, len(first.read())) == (200, int(first.headers["Content-Length"]))
        sock = conn.sock
        conn.request("GET", path)
        second = conn.getresponse()
        assert second.status == 200 and len(second.read()) > 0
        assert conn.sock is sock and sock is not None
    finally:
        conn.close()


def test_hang_with_seconds_longer_than_the_client_timeout(api: Api) -> None:
    api.sim.inject("hang", seconds=0.4, api="newhedge")
    url = f"{api.sim.url}/api/v2/metrics/liquidations/{OKX_LONG}"
    with pytest.raises(requests.exceptions.ReadTimeout):
        api.session.get(url, params={"api_token": TOKEN}, timeout=0.2)
    # Computed (and counted) on arrival, like a server that did the work; the retry is normal.
    assert api.newhedge(OKX_LONG, api_token=TOKEN).json() == newhedge_series(
        OKX_LONG, dt.date(2026, 3, 9)
    )
    assert api.sim.stats(TOKEN)["ok_requests"] == 2


def test_close_does_not_wait_for_a_slow_answer(sim: Simulator) -> None:
    sim.inject("hang", seconds=30)
    url = f"{sim.url}/v1/liquidations"
    slow = _Background(
        lambda: requests.get(url, params={"api-key": BUSINESS, **PARAMS}, timeout=10)
    )
    _wait_until(lambda: not sim.pending_faults())
    started = time.monotonic()
    sim.close()
    assert time.monotonic() - started < 0.5
    slow.join(2.0)
    assert isinstance(slow.result, requests.exceptions.ConnectionError)


def test_hang_on_the_command_line() -> None:
    args = build_parser().parse_args(["--fault", "hang:2", "--fault", "echo_secret:1:newhedge"])
    assert args.fault == [("hang", 2, "kwery"), ("echo_secret", 1, "newhedge")]
    for bad in ("bad_value:1", "gap:1:newhedge", "hang:1:ftx"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["--fault", bad])
