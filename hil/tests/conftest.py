"""The bench's fixtures: a real mosquitto on loopback, simulated devices (or a real board).

    pytest hil                                  # against simulated devices (default)
    pytest hil --target serial:/dev/ttyUSB0     # against a flashed board on a serial port
    pytest hil --mqtts                          # the broker TLS-only (GRIDCAST_HIL_MQTTS=1)

With ``--mqtts`` the ``broker`` fixture is a TLS-only mosquitto with a throwaway CA
(one for the session), ``broker.url`` is ``mqtts://...?ca=...`` and the simulator's
devices verify the broker with that CA: the scenarios run as a provisioned site does.

Scenarios that cut power, skew clocks or restart brokers need the simulator
and say so when run against a board.
"""

from __future__ import annotations

import os
import secrets

import pytest

from gridcast.agent.broker import Mosquitto
from gridcast.agent.simulation.devices import Simulator


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--target", default="sim",
                     help="sim (default) or serial:/dev/ttyUSB0 for a real board")
    parser.addoption("--mqtts", action="store_true",
                     default=os.environ.get("GRIDCAST_HIL_MQTTS") == "1",
                     help="run the broker TLS-only (devices and agent over mqtts://)")


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


@pytest.fixture(scope="session")
def mqtts_ca(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> str | None:
    """The session's throwaway CA folder with --mqtts, else None (plain MQTT)."""
    if not pytestconfig.getoption("--mqtts"):
        return None
    return str(tmp_path_factory.mktemp("mqtts-ca"))


@pytest.fixture
def broker(tmp_path, mqtts_ca):
    with Mosquitto(folder=str(tmp_path / "broker"), tls=mqtts_ca or False) as b:
        yield b


@pytest.fixture(scope="session")
def key() -> bytes:
    return secrets.token_bytes(32)


@pytest.fixture
def simulator(tmp_path, key, mqtts_ca):
    """Factory: simulator(n, broker, **options) -> a started Simulator, stopped afterwards.
    With --mqtts a HOST:PORT broker is dialled over TLS with the session's CA."""
    made: list[Simulator] = []
    ca_pem = ""
    if mqtts_ca:
        with open(os.path.join(mqtts_ca, "ca.crt"), encoding="ascii") as f:
            ca_pem = f.read()

    def start(n: int, broker_hostport: str, **options: object) -> Simulator:
        options.setdefault("ca_pem", ca_pem)
        sim = Simulator(n, broker_hostport, key, str(tmp_path / f"sim{len(made)}"),
                        **options)  # type: ignore[arg-type]
        sim.start()
        made.append(sim)
        return sim

    yield start
    for sim in made:
        sim.stop()
