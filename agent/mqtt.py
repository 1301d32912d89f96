"""One MQTT connection per process: connect, subscribe, reconnect, publish, stop.

Every part of a process that speaks MQTT (the transport, the registry, the
telemetry collector, the simulation's broker witness) registers its subscriptions
on one ``MqttConnection``::

    conn = MqttConnection("127.0.0.1", 1883, client_id="gridcast-agent")
    conn.subscribe("gridcast/v1/dev/+/status", qos=1, handler=on_status)
    sub = conn.subscribe("$share/g/gridcast/v1/dev/+/telemetry", manual_ack=True,
                         handler=on_telemetry)   # message.ack() once the data is safe
    conn.start()                                  # returns once every SUBACK is in
    conn.publish(topic, payload, qos=1)
    conn.stop()

Handlers run in paho's network thread and get an ``MqttMessage`` (topic, payload,
receive time in agent microseconds). A subscription without a handler is read
with ``async for message in sub``. The connection is *ready* only once the broker
has acknowledged every subscription: what a device publishes before that reaches
no session and would be lost. After a lost connection it reconnects with a
jittered, capped back-off, subscribes again and is ready again once acknowledged.

Acknowledgements: paho's manual acks are client-wide, so this layer always takes
them over; it acknowledges a message itself after the handlers have run, except on
subscriptions made with ``manual_ack=True``, whose handler calls ``message.ack()``
when the data is safe (the collector: after the database commit). With a
persistent session (``clean_session=False`` and a stable client id) what was not
acknowledged is delivered again after a restart.

Two different filters on one connection may not overlap: an MQTT 3.1.1 broker may
deliver one copy per matching subscription, and the copies cannot be told apart.
The same filter may be subscribed several times (each gets every message).

TLS: ``MqttConnection.from_url("mqtts://HOST:8883?ca=ca.crt")`` (or ``tls=TlsSettings``)
verifies the broker against the site CA and its host name (agent/broker_url.py). A
failed handshake (unknown CA, expired certificate, wrong host name, a refused client
certificate) is one line naming the broker and the reason, in the log and in
``error``; the connection keeps retrying with its back-off, as for any outage.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import os
import random
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from gridcast.agent import broker_url
from gridcast.agent.broker_url import TlsSettings
from gridcast.agent.clock import now_us
from gridcast.agent.transport import TransportError

log = logging.getLogger("gridcast.mqtt")

DEFAULT_KEEPALIVE_S = 15
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 8.0
_TOPIC_CACHE_MAX = 20_000  # topics remembered with their subscriptions (devices x leaves)
_ids = itertools.count()


class MqttError(TransportError):
    """The broker refused or could not be reached; says which broker, topic and why."""

    def __init__(self, message: str, *, broker: str, topic: str | None = None) -> None:
        super().__init__(message)
        self.broker, self.topic = broker, topic


def _no_ack() -> None:
    """The ack of a message this layer acknowledges itself."""


@dataclass(frozen=True, slots=True)
class MqttMessage:
    topic: str
    payload: bytes
    received_us: int  # agent clock (gridcast.agent.clock.now_us) when paho handed it over
    qos: int = 0
    retain: bool = False
    ack: Callable[[], None] = _no_ack  # manual_ack subscriptions: call once the data is safe


Handler = Callable[[MqttMessage], None]


def filters_overlap(a: str, b: str) -> bool:
    """Whether some topic matches both filters."""
    la, lb = a.split("/"), b.split("/")
    for i in range(max(len(la), len(lb))):
        x = la[i] if i < len(la) else None
        y = lb[i] if i < len(lb) else None
        if x == "#" or y == "#":
            return True
        if x is None or y is None:
            return False
        if x != y and "+" not in (x, y):
            return False
    return True


def _match_filter(topic_filter: str) -> str:
    """The filter topics are matched against: a shared subscription without its prefix."""
    if topic_filter.startswith("$share/"):
        parts = topic_filter.split("/", 2)
        return parts[2] if len(parts) == 3 else topic_filter
    return topic_filter


class Subscription:
    """One subscription on a connection: a handler, or messages to ``async for``."""

    def __init__(self, conn: MqttConnection, topic_filter: str, qos: int,
                 handler: Handler | None, manual_ack: bool) -> None:
        self.connection = conn
        self.topic = topic_filter  # as sent to the broker
        self.match = _match_filter(topic_filter)
        self.qos = qos
        self.manual_ack = manual_ack
        self._queue: asyncio.Queue[MqttMessage] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        if handler is None:  # async iteration: queued on the subscriber's event loop
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:
                raise TypeError(f"subscribe({topic_filter!r}) without a handler must be called "
                                "in the event loop that reads it") from None
            self._queue = asyncio.Queue()
            handler = self._enqueue
        self.handler: Handler = handler

    def _enqueue(self, message: MqttMessage) -> None:
        assert self._loop is not None and self._queue is not None
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._queue.put_nowait, message)

    def __aiter__(self) -> AsyncIterator[MqttMessage]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[MqttMessage]:
        if self._queue is None:
            raise TypeError(f"subscription to {self.topic} has a handler; it cannot be iterated")
        while True:
            yield await self._queue.get()

    def cancel(self) -> None:
        self.connection.unsubscribe(self)

    def __repr__(self) -> str:
        return f"Subscription({self.topic!r}, qos={self.qos}, manual_ack={self.manual_ack})"


class MqttConnection:
    """A paho-mqtt client with its network thread, shared by every part of a process."""

    def __init__(self, host: str, port: int = 1883, *, client_id: str | None = None,
                 username: str | None = None, password: str | None = None,
                 clean_session: bool = True, keepalive_s: int = DEFAULT_KEEPALIVE_S,
                 backoff_min_s: float = BACKOFF_MIN_S,
                 backoff_max_s: float = BACKOFF_MAX_S, tls: TlsSettings | None = None) -> None:
        """``host``: a host name, or a broker URL (``mqtt://`` or ``mqtts://...?ca=``,
        which then also gives the port and the TLS settings)."""
        if "://" in host:
            address = broker_url.parse(host)
            host, port, tls = address.host, address.port, tls or address.tls
        self.host, self.port = host, port
        self.tls = tls
        self.broker = f"{'mqtts' if tls else 'mqtt'}://{host}:{port}"
        self._tls_failure: BaseException | None = None  # last handshake/record error
        self.client_id = client_id or f"gridcast-{os.getpid()}-{next(_ids)}"
        self.keepalive_s = keepalive_s
        self.backoff_min_s, self.backoff_max_s = backoff_min_s, backoff_max_s
        self._backoff_s = backoff_min_s
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                  clean_session=clean_session)
        if username:
            self.client.username_pw_set(username, password)
        if tls is not None:
            self.client.tls_set_context(self._tls_context(tls))
        self.client.manual_ack_set(True)  # client-wide; this layer acks (see module doc)
        self.client.max_inflight_messages_set(0)  # no client-side cap: the broker paces
        self.client.max_queued_messages_set(0)
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self._lock = threading.Lock()
        self._subs: list[Subscription] = []
        self._granted: set[str] = set()  # filters the broker acknowledged this session
        self._pending: dict[int, list[str]] = {}  # SUBSCRIBE mid -> filters
        # topic -> (its subscriptions, whether one acknowledges manually)
        self._by_topic: dict[str, tuple[tuple[Subscription, ...], bool]] = {}
        self._connected = False
        self._generation = 0  # connection count: acks of an older session are not sent
        self._ready = threading.Event()
        self._settled = threading.Event()  # ready, or failed for good (start() waits)
        self.error: MqttError | None = None  # why it is not ready (refused), if known
        self._started = False
        self._heard = 0.0  # time.monotonic() of the last packet from the broker
        self._unreachable_logged = False
        self.connects = 0

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MqttConnection:
        """``mqtt://HOST[:PORT]`` or ``mqtts://HOST[:PORT]?ca=...`` (agent/broker_url.py)."""
        try:
            address = broker_url.parse(url)
        except broker_url.BrokerUrlError as exc:
            raise MqttError(str(exc), broker=url) from exc
        return cls(address.host, address.port, tls=address.tls, **options)

    # -- TLS -----------------------------------------------------------------------------
    def _tls_context(self, tls: TlsSettings) -> ssl.SSLContext:
        """The client context, with a socket class that remembers why TLS failed: paho
        only reports "connection failed", and the operator needs the reason."""
        ctx = tls.context()
        conn = self

        class RecordingSocket(ssl.SSLSocket):
            def do_handshake(self, *args: Any, **kwargs: Any) -> None:
                try:
                    super().do_handshake(*args, **kwargs)
                except (ssl.SSLError, ssl.CertificateError) as exc:
                    conn._tls_failure = exc
                    raise

            def recv(self, *args: Any, **kwargs: Any) -> bytes:
                try:
                    return super().recv(*args, **kwargs)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):  # paho tries again
                    raise
                except ssl.SSLError as exc:  # TLS 1.3: a refused client cert shows here
                    conn._tls_failure = exc
                    raise

        ctx.sslsocket_class = RecordingSocket
        return ctx

    def _tls_error(self, exc: BaseException | None = None) -> MqttError | None:
        """The recorded (or given) TLS failure as an MqttError, once; None if there is none."""
        failure = exc if exc is not None else self._tls_failure
        self._tls_failure = None
        if failure is None or self.tls is None:
            return None
        text = broker_url.explain_tls_failure(failure, self.broker, self.tls)
        return MqttError(text, broker=self.broker) if text else None

    # -- subscriptions -------------------------------------------------------------------
    def subscribe(self, topic_filter: str, qos: int = 1, handler: Handler | None = None, *,
                  manual_ack: bool = False) -> Subscription:
        """Register a subscription (sent now if connected, else at connect). Without a
        handler, read it with ``async for`` (call this from the reading event loop)."""
        sub = Subscription(self, topic_filter, qos, handler, manual_ack)
        with self._lock:
            for other in self._subs:
                if other.topic == sub.topic:
                    if manual_ack and other.manual_ack:
                        raise MqttError(f"{topic_filter}: only one subscription per filter may "
                                        "acknowledge manually", broker=self.broker,
                                        topic=topic_filter)
                elif filters_overlap(other.match, sub.match):
                    raise MqttError(f"{topic_filter} overlaps {other.topic} on one connection: "
                                    "the broker may deliver copies that cannot be told apart",
                                    broker=self.broker, topic=topic_filter)
            new_filter = all(other.topic != sub.topic or other.qos < qos for other in self._subs)
            self._subs.append(sub)
            self._by_topic.clear()
            if new_filter:
                self._granted.discard(sub.topic)
                self._ready.clear()
                if self._connected:
                    self._send_subscribe([sub.topic])
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub not in self._subs:
                return
            self._subs.remove(sub)
            self._by_topic.clear()
            if all(other.topic != sub.topic for other in self._subs):
                self._granted.discard(sub.topic)
                if self._connected:
                    self.client.unsubscribe(sub.topic)
            self._check_ready()

    def _qos_of(self, topic_filter: str) -> int:
        return max(s.qos for s in self._subs if s.topic == topic_filter)

    def _send_subscribe(self, filters: list[str]) -> None:
        """Called with the lock held."""
        if not filters:
            return
        rc, mid = self.client.subscribe([(f, self._qos_of(f)) for f in filters])
        if rc == mqtt.MQTT_ERR_SUCCESS and mid is not None:
            self._pending[mid] = filters

    def _check_ready(self) -> None:
        """Called with the lock held."""
        wanted = {s.topic for s in self._subs}
        if self._connected and wanted <= self._granted and self.error is None:
            self._ready.set()
            self._settled.set()
        else:
            self._ready.clear()

    # -- paho callbacks (network thread) ---------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            cause = ("check the user name and password (broker_username / broker_password)"
                     if reason_code.value in (4, 5, 134, 135) else "see the broker's log")
            self._fail(MqttError(f"the broker at {self.broker} refused the connection: "
                                 f"{reason_code}; {cause}", broker=self.broker))
            return
        self._heard = time.monotonic()
        with self._lock:
            self._connected = True
            self._generation += 1
            self.connects += 1
            self._backoff_s = self.backoff_min_s
            self.error = None
            self._granted.clear()
            self._pending.clear()
            # Every time, also on a resumed session: one place, and a SUBACK to wait for.
            self._send_subscribe(sorted({s.topic for s in self._subs}))
            self._check_ready()
        if self.connects > 1 or self._unreachable_logged:
            log.info("connected to %s; subscribing", self.broker)
        self._unreachable_logged = False

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self._heard = time.monotonic()
        with self._lock:
            filters = self._pending.pop(mid, [])
            for topic_filter, rc in zip(filters, reason_codes, strict=False):
                if rc.is_failure:
                    shared = topic_filter.startswith("$share/")
                    cause = ("a broker without shared subscriptions (set "
                             "shared_subscription = false)" if shared else "")
                    cause = " or ".join(c for c in ("an ACL that denies it", cause) if c)
                    self.error = MqttError(f"the broker at {self.broker} refused the "
                                           f"subscription to {topic_filter} ({cause}?)",
                                           broker=self.broker, topic=topic_filter)
                else:
                    self._granted.add(topic_filter)
            failed = self.error
            self._check_ready()
        if failed is not None:
            self._fail(failed)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        received = now_us()
        self._heard = time.monotonic()
        topic = msg.topic  # paho decodes it on every access
        route = self._by_topic.get(topic)
        if route is None:
            with self._lock:
                subs = tuple(s for s in self._subs if mqtt.topic_matches_sub(s.match, topic))
                route = (subs, any(s.manual_ack for s in subs))
                if len(self._by_topic) >= _TOPIC_CACHE_MAX:
                    self._by_topic.clear()
                self._by_topic[topic] = route
        subs, manual = route
        ack = (functools.partial(self._ack, self._generation, msg.mid, msg.qos) if manual
               else _no_ack)
        payload = msg.payload if isinstance(msg.payload, bytes) else bytes(msg.payload)
        message = MqttMessage(topic, payload, received, msg.qos, msg.retain, ack)
        for sub in subs:
            try:
                sub.handler(message)
            except Exception:  # one bad handler must not stop the network thread
                log.exception("handler for %s failed on %s", sub.topic, topic)
        if not manual:
            client.ack(msg.mid, msg.qos)

    def _ack(self, generation: int, mid: int, qos: int) -> None:
        # An ack from an older connection would name a packet id of the old session; the
        # broker delivers such messages again, and they are acknowledged then.
        if generation == self._generation:
            self.client.ack(mid, qos)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._lock:
            was = self._connected
            self._connected = False
            self._granted.clear()
            self._check_ready()
        tls_error = self._tls_error()
        if tls_error is not None:
            self._fail(tls_error)  # logged once per distinct reason
        elif (not was and self.tls is None and self.connects == 0 and self._started
              and self.error is None):
            # Closed before any CONNACK: what a TLS-only (provisioned) listener does to a
            # plain CONNECT.
            self._fail(MqttError(f"the broker at {self.broker} closed the connection before "
                                 "answering; if it is a provisioned (TLS) broker, connect with "
                                 "mqtts://HOST:PORT?ca=CA_FILE", broker=self.broker))
        elif was and self._started:
            log.warning("lost the broker %s (%s); reconnecting", self.broker, reason_code)
        self._next_delay()

    def _on_connect_fail(self, client, userdata) -> None:
        tls_error = self._tls_error()
        if tls_error is not None:
            self._fail(tls_error)
            self._unreachable_logged = True
        elif not self._unreachable_logged and self._started:  # once per outage
            self._unreachable_logged = True
            log.error("cannot reach the broker at %s; retrying (every %g s at most)",
                      self.broker, self.backoff_max_s)
        self._next_delay()

    def _next_delay(self) -> None:
        """Jittered, capped exponential back-off for paho's next reconnect attempt."""
        delay = self._backoff_s * random.uniform(0.5, 1.0)
        self._backoff_s = min(self._backoff_s * 2, self.backoff_max_s)
        self.client.reconnect_delay_set(delay, delay)  # type: ignore[arg-type]

    def _fail(self, error: MqttError) -> None:
        if self.error is None or str(self.error) != str(error):
            log.error("%s", error)
        self.error = error
        self._settled.set()

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """Connected, and every subscription acknowledged by the broker."""
        return self._ready.is_set()

    @property
    def connected(self) -> bool:
        return self._connected

    def wait_ready(self, timeout_s: float | None = None) -> bool:
        return self._ready.wait(timeout_s)

    def start(self, timeout_s: float = 5.0, wait: bool = True) -> None:
        """Connect and start the network thread. ``wait``: return once ready, or raise
        MqttError after ``timeout_s`` without a word from the broker (a persistent session
        may first deliver a long backlog, SUBACKs queued behind it); else return at once
        and keep trying in the background."""
        self._started = True
        self._settled.clear()
        self._next_delay()
        if not wait:
            self.client.connect_async(self.host, self.port, keepalive=self.keepalive_s)
            self.client.loop_start()
            return
        try:
            self.client.connect(self.host, self.port, keepalive=self.keepalive_s)
        except OSError as exc:
            self._started = False
            tls_error = self._tls_error(exc)
            if tls_error is not None:
                log.error("%s", tls_error)
                raise tls_error from exc
            raise MqttError(f"cannot reach the broker at {self.broker} "
                            f"({exc.strerror or exc}); is it running?",
                            broker=self.broker) from exc
        self._heard = time.monotonic()
        self.client.loop_start()
        while not self._settled.wait(0.1) and time.monotonic() - self._heard < timeout_s:
            pass
        if not self.ready:
            error = self.error or MqttError(
                f"the broker at {self.broker} did not accept the connection and "
                f"subscriptions within {timeout_s:g} s (a slow link, credentials, or an ACL "
                "that denies the topics?)", broker=self.broker)
            self.stop()
            raise error

    async def start_async(self, timeout_s: float = 5.0, wait: bool = True) -> None:
        await asyncio.to_thread(self.start, timeout_s, wait)

    def publish(self, topic: str, payload: bytes, qos: int = 0,
                retain: bool = False) -> mqtt.MQTTMessageInfo:
        """Queue a message. QoS 1 and 2 messages wait in paho while the broker is away."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS and not (info.rc == mqtt.MQTT_ERR_NO_CONN
                                                     and qos > 0):
            raise MqttError(f"publish to {topic} on {self.broker} failed: "
                            f"{mqtt.error_string(info.rc)}", broker=self.broker, topic=topic)
        return info

    def stop(self) -> None:
        """Disconnect and end the network thread. A persistent session stays with the
        broker: what was not acknowledged comes again on the next start."""
        self._started = False
        self.client.disconnect()
        self.client.loop_stop()
        with self._lock:
            self._connected = False
            self._check_ready()
