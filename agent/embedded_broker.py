"""An MQTT broker inside this process (amqtt), for machines without mosquitto.

Only the demo and quick trials use it; fleets run mosquitto. It has no shared
subscriptions, so collectors subscribe plainly (one collector). ``tls_folder``: a
TLS listener with a throwaway site CA there (as ``Mosquitto(tls=True)``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from typing import Any

from gridcast.agent.broker import BrokerAddress, BrokerError, free_port


class EmbeddedBroker(BrokerAddress):
    kind = "embedded (amqtt)"
    supports_shared_subscriptions = False

    def __init__(self, port: int | None = None, bind: str = "127.0.0.1",
                 tls_folder: str | None = None) -> None:
        self.port = port or free_port()
        self.bind = bind
        self.ca_file = None
        self._listener: dict[str, Any] = {"type": "tcp", "bind": f"{bind}:{port or self.port}"}
        if tls_folder:
            from gridcast.agent.site_ca import SiteCA, broker_names

            ca = SiteCA(os.path.join(tls_folder, "tls"))
            ca.ensure()
            issued = ca.issue("gridcast embedded broker", os.path.join(tls_folder, "broker.crt"),
                              os.path.join(tls_folder, "broker.key"),
                              server_names=broker_names(bind))
            self.ca_file = ca.cert_path
            self._listener |= {"ssl": True, "certfile": issued.cert_path,
                               "keyfile": issued.key_path}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker: Any = None
        self._thread: threading.Thread | None = None

    def start(self, timeout_s: float = 5.0) -> None:
        try:
            from amqtt.broker import Broker
        except ImportError as exc:
            raise BrokerError("no MQTT broker: install mosquitto (apt-get install mosquitto) "
                              "or amqtt (pip install amqtt)") from exc
        logging.getLogger("amqtt").setLevel(logging.ERROR)
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)

            async def boot() -> None:
                self._broker = Broker({"listeners": {"default": self._listener}}, loop=loop)
                await self._broker.start()

            try:
                loop.run_until_complete(boot())
            except BaseException as exc:  # reported to start()
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="embedded-broker", daemon=True)
        self._thread.start()
        ready.wait(timeout_s)
        if failure:
            raise BrokerError(f"embedded broker on port {self.port}: {failure[0]}")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.bind, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise BrokerError(f"embedded broker did not open port {self.port}")

    def stop(self) -> None:
        if self._loop is None or self._broker is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
        with contextlib.suppress(Exception):  # shutting down anyway
            future.result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(5)
        self._loop = None

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
