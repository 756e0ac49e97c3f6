from collections.abc import Iterator

import pytest
import requests

from liq_pipeline.simulator import Simulator
from liq_pipeline_tests.simulator.support import NOW, Api, FakeMonotonic


@pytest.fixture
def clock() -> FakeMonotonic:
    return FakeMonotonic()


@pytest.fixture
def sim(clock: FakeMonotonic) -> Iterator[Simulator]:
    with Simulator(port=0, now=NOW, monotonic=clock) as s:
        yield s


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture
def api(sim: Simulator, http: requests.Session) -> Api:
    return Api(sim, http)
