"""Fixtures of the client tests: a wait recorder, a seeded RNG and the simulator."""

import random
from collections.abc import Iterator

import pytest

from liq_pipeline.simulator import DEMO_KWERY_KEYS, DEMO_NEWHEDGE_TOKEN, Simulator
from liq_pipeline_tests.clients.helpers import (
    FIXED_NOW,
    SENTINEL_BUSINESS_KEY,
    SENTINEL_PRO_KEY,
    SENTINEL_TOKEN,
    Sleeper,
    VirtualClock,
)


@pytest.fixture(scope="module")
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def sleeps(clock: VirtualClock) -> Sleeper:
    """Pass ``sleep=sleeps.append``: records the waits, never sleeps."""
    return Sleeper(clock)


@pytest.fixture
def rng() -> random.Random:
    return random.Random(1234)


@pytest.fixture(scope="module")
def sim(clock: VirtualClock) -> Iterator[Simulator]:
    """Both APIs on an ephemeral loopback port, the data clock fixed at FIXED_NOW and the
    rate limiters on the virtual clock; the sentinel keys are valid credentials."""
    keys = {**DEMO_KWERY_KEYS, SENTINEL_BUSINESS_KEY: "business", SENTINEL_PRO_KEY: "pro"}
    with Simulator(
        port=0,
        now=FIXED_NOW,
        kwery_keys=keys,
        newhedge_tokens=(DEMO_NEWHEDGE_TOKEN, SENTINEL_TOKEN),
        monotonic=clock,
    ) as server:
        yield server


@pytest.fixture
def fresh_sim(sim: Simulator, clock: VirtualClock) -> Simulator:
    """The module's simulator with no faults, the fixed clock, zeroed stats, full rate buckets."""
    sim.clear_faults()
    sim.set_now(FIXED_NOW)
    sim.reset_stats()
    clock.now += 3_600.0
    return sim
