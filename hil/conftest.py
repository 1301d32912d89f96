"""The bench: a real mosquitto on loopback, simulated devices (or a real board), helpers.

    pytest hil                                  # against simulated devices (default)
    pytest hil --target serial:/dev/ttyUSB0     # against a flashed board on a serial port

Scenarios that cut power, skew clocks or restart brokers need the simulator
and say so when run against a board.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time

import numpy as np
import pytest

from gridcast.agent.broker import Mosquitto
from gridcast.agent.simulation.devices import Simulator
from gridcast.protocol import bundle_builder, keys


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--target", default="sim",
                     help="sim (default) or serial:/dev/ttyUSB0 for a real board")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "hil: hardware-in-the-loop scenario")
    config.addinivalue_line("markers", "sim_only: needs simulated devices (power cuts, skew)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.hil)
        if "sim_only" in item.keywords and config.getoption("--target") != "sim":
            item.add_marker(pytest.mark.skip(reason="needs the simulator (power cuts, skew "
                                                    "and broker faults cannot be made on a "
                                                    "board from here)"))


@pytest.fixture(scope="session")
def target(pytestconfig: pytest.Config) -> str:
    return str(pytestconfig.getoption("--target"))


@pytest.fixture
def broker(tmp_path):
    with Mosquitto(folder=str(tmp_path / "broker")) as b:
        yield b


@pytest.fixture(scope="session")
def key() -> bytes:
    return secrets.token_bytes(32)


def make_bundle(key: bytes, minutes: float, track: str = "hil-song", version: int = 1,
                bpm: float = 128.0, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    seconds = minutes * 60
    beats = np.arange(0.4, seconds - 0.3, 60 / bpm)
    n = len(beats)
    env = tuple(rng.random(int(seconds * 50)) for _ in range(3))
    src = bundle_builder.BundleSource(track, bytes(32), version, 1_795_000_000, seconds, bpm,
                                      beats, [i % 4 + 1 for i in range(n)], rng.random(n),
                                      50.0, env)
    return bundle_builder.build(src, key, keys.key_id(key))


@pytest.fixture
def simulator(tmp_path, key):
    """Factory: simulator(n, broker, **options) -> a started Simulator, stopped afterwards."""
    made: list[Simulator] = []

    def start(n: int, broker_hostport: str, **options: object) -> Simulator:
        sim = Simulator(n, broker_hostport, key, str(tmp_path / f"sim{len(made)}"),
                        **options)  # type: ignore[arg-type]
        sim.start()
        made.append(sim)
        return sim

    yield start
    for sim in made:
        sim.stop()


def wait_for(predicate, timeout_s: float, what: str, step_s: float = 0.05):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def run(coro):
    return asyncio.run(coro)
