"""Transports on the device: MQTT and framed serial, one face for the app.

Each link delivers incoming messages to ``app.handle(payload, link, received_us)``
(the receive time is taken before decoding, for clock sync) and sends the
app's messages; replies go back on the link a request came from.
"""

import asyncio

from gridcast.protocol import frames, messages, topics
from gridcast.protocol.reasons import BAD_FRAME, TOO_LARGE

ERROR_REPLY_MS = 100
# What a TLS handshake may hold the event loop for, in blocking mbedTLS steps (ECDHE and
# certificate checks on P-256): 46 ms in all on the unix port on x86; an ESP32 is slower.
TLS_HANDSHAKE_WORK_US = 150_000


def _tls_from(app):
    """The TLS context for an ``mqtts://`` broker in the config (None: plain TCP). A CA
    or client certificate that does not parse gives a context that fails every attempt
    with that reason (never plain TCP: that would send the password in clear), and
    the show goes on."""
    cfg = app.cfg
    if not cfg.get("broker_tls"):
        return None
    from gridcast.firmware.mqtt_client import UnusableTls, tls_context

    try:
        return tls_context(cfg["ca_pem"], cfg.get("client_cert_pem", ""),
                           cfg.get("client_key_pem", ""))
    except (ValueError, OSError) as exc:
        return UnusableTls("config.json ca_pem/client_cert_pem unusable (%s)" % exc)


class MqttLink:
    name = "mqtt"

    def __init__(self, app, device_id, host, port, username="", password=""):
        from gridcast.firmware.mqtt_client import MqttClient

        self.app = app
        self.device_id = device_id
        self.topic = {}
        for leaf in (topics.STATUS, topics.HELLO, topics.CMD, topics.BUNDLE, topics.REPLY,
                     topics.SYNC_REQ, topics.SYNC_RESP, topics.TELEMETRY):
            self.topic[leaf] = topics.device_topic(device_id, leaf)
        lost = app.status_message("lost")
        tls = _tls_from(app)
        self.client = MqttClient(device_id, host, port,
                                 will=(self.topic[topics.STATUS], lost, 1, True),
                                 on_message=self._on_message, on_connect=self._on_connect,
                                 username=username, password=password,
                                 tls=tls, log=app.board.log,
                                 before_connect=self._quiet if tls is not None else None)
        # Subscribed again on every (re)connect by the client.
        for leaf in (topics.CMD, topics.BUNDLE, topics.SYNC_RESP):
            self.client.subscriptions.append((self.topic[leaf], topics.QOS[leaf]))
        self.client.subscriptions.append((topics.BROADCAST_CMD, 1))

    @property
    def connected(self):
        return self.client.connected

    async def _quiet(self):
        await self.app.player.quiet(TLS_HANDSHAKE_WORK_US)

    async def _on_connect(self):
        # Retained: an agent that connects later still learns versions and limits.
        await self.client.publish(self.topic[topics.HELLO], self.app.hello_message(), 1, True)
        await self.send_status(self.app.status_message("online"))

    async def _on_message(self, topic, payload):
        received = self.app.clock.now_us()
        await self.app.handle(payload, self, received)

    async def reply(self, data):
        await self.client.publish(self.topic[topics.REPLY], data, 1)

    async def send_sync(self, data):
        return await self.client.publish(self.topic[topics.SYNC_REQ], data, 0)

    async def send_telemetry(self, data):
        await self.client.publish(self.topic[topics.TELEMETRY], data, 1)

    async def send_status(self, data):
        await self.client.publish(self.topic[topics.STATUS], data, 1, True)

    async def run(self):
        await self.client.run()

    async def close(self):
        await self.send_status(self.app.status_message("offline"))
        await self.client.disconnect()


class SerialLink:
    """Messages in CRC frames over a byte stream (UART, USB-CDC, a pty in the simulator)."""

    name = "serial"
    connected = True

    def __init__(self, app, reader, writer, max_payload=2048):
        self.app = app
        self.reader = reader
        self.writer = writer
        self.deframer = frames.Deframer(max_payload)
        self._lock = asyncio.Lock()
        self._last_error_us = -ERROR_REPLY_MS * 1000
        self._bad_crc = 0
        self._oversized = 0

    async def _write(self, data):
        async with self._lock:
            self.writer.write(frames.encode_frame(data))
            await self.writer.drain()

    async def run(self):
        await self._write(self.app.hello_message())
        await self._write(self.app.status_message("online"))
        while True:
            try:
                data = await self.reader.read(512)
            except OSError:  # the other end went away (cable pulled, pty closed)
                await asyncio.sleep_ms(1000)
                continue
            if not data:
                await asyncio.sleep_ms(5)
                continue
            received = self.app.clock.now_us()
            for payload in self.deframer.feed(data):
                await self.app.handle(payload, self, received)
            # The deframer's counters are exact (its error list keeps only the newest).
            d = self.deframer
            for code, total, attr in ((BAD_FRAME, d.bad_crc, "_bad_crc"),
                                      (TOO_LARGE, d.oversized, "_oversized")):
                new = total - getattr(self, attr)
                if new:
                    setattr(self, attr, total)
                    self.app.telemetry.count_error(code, new)
            errors = d.drain_errors()
            # Tell the sender something was damaged (it resends), at most every
            # ERROR_REPLY_MS: a burst of garbage must not become a burst of replies.
            now = self.app.clock.now_us()
            if errors and now - self._last_error_us > ERROR_REPLY_MS * 1000:
                self._last_error_us = now
                code, detail = errors[-1]
                await self._write(messages.encode("error", reason=code, detail=detail))

    async def reply(self, data):
        await self._write(data)

    async def send_sync(self, data):
        await self._write(data)
        return True

    async def send_telemetry(self, data):
        await self._write(data)

    async def send_status(self, data):
        await self._write(data)

    async def close(self):
        pass
