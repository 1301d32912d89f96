"""Rate limits: messages a device may send the agent, requests a token may make of the API.

Both are token buckets: ``rate_per_s`` tokens a second flow into a bucket that holds at
most ``burst``; a message (request) takes one, and without one it is refused.

**Ingest** (``IngestLimiter``, one per agent process, shared by the collector and the MQTT
transport): two buckets per device id, one for its telemetry and one for everything else
it sends, checked right after the topic is parsed, before the payload is decoded or
stored. A device over its rate has its excess dropped (a dropped telemetry message is
acknowledged to the broker, so it is not delivered again), counted, logged, and shows as
``throttled`` until it has stayed under the rate for ``quiet_s``. So one device sending
10,000 messages a second costs the agent a topic parse and a bucket check per message, and
the other devices' telemetry still goes through (bench/flood.py). A device's normal load
is far below the default rate: 8 (at most 50) sync requests, one telemetry batch and a few
status or transfer messages a second. The large default telemetry burst lets the backlog a
persistent session holds while the agent is away (hours of telemetry at one batch a
second) come in at once.

**API** (``ApiRateLimiter``, an aiohttp middleware before authentication): one bucket per
token name (``default`` for ``token``, the names of ``api_tokens``), and one per address
for requests without a valid token (``anonymous``). Over the limit the answer is 429 with
``Retry-After`` and a JSON body naming the limit and the setting that changes it.
A rate of 0 means no limit (``api_token_rates = {bench = 0}``).
"""

from __future__ import annotations

import hmac
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from aiohttp import web

    from gridcast.agent.config import AgentConfig

log = logging.getLogger("gridcast.rate_limit")

Clock = Callable[[], float]  # seconds, monotonic
QUIET_S = 10.0  # a throttled device is reported as such until this long without a drop
# Messages other than telemetry a device may send at once: a whole bundle transfer's chunk
# acknowledgements (1 MiB in 2 KiB chunks: 512) with room to spare, and few enough
# status messages (a database write each, in the network thread) to take well under a
# second of it.
OTHER_BURST = 1000
LOG_EVERY_S = 10.0  # a flooding device's log line repeats at most this often
MAX_TRACKED = 100_000  # device ids (or API clients) remembered; idle ones are forgotten first
DEFAULT_TOKEN_NAME = "default"
ANONYMOUS = "anonymous"
V = TypeVar("V")


class TokenBucket:
    """``rate_per_s`` tokens a second, up to ``burst``; starts full."""

    __slots__ = ("burst", "rate_per_s", "stamp", "tokens")

    def __init__(self, rate_per_s: float, burst: float, now: float) -> None:
        self.rate_per_s, self.burst = rate_per_s, burst
        self.tokens, self.stamp = burst, now

    def take(self, now: float) -> bool:
        """One token if there is one."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate_per_s)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def wait_s(self) -> float:
        """Seconds until the next token, as of the last ``take``."""
        return max(0.0, (1.0 - self.tokens) / self.rate_per_s) if self.rate_per_s > 0 else math.inf

    def full(self, now: float) -> bool:
        return self.tokens + (now - self.stamp) * self.rate_per_s >= self.burst


def forget_some(table: dict[str, V], idle: Callable[[V], bool]) -> None:
    """Make room in a table of MAX_TRACKED entries: every idle entry, and if that is under a
    tenth, the oldest entries up to a tenth (so that a stream of new keys costs one scan per
    MAX_TRACKED // 10 of them, not one each)."""
    tenth = max(1, MAX_TRACKED // 10)
    forget = {k for k, v in table.items() if idle(v)}
    for key in table:  # oldest first
        if len(forget) >= tenth:
            break
        forget.add(key)
    for key in forget:
        del table[key]


# -- ingest ------------------------------------------------------------------------------------
@dataclass
class DeviceIngest:
    """One device's buckets (telemetry, everything else) and counts."""

    bucket: TokenBucket
    other: TokenBucket
    admitted: int = 0
    dropped: int = 0
    last_drop: float = -math.inf  # clock time of the last dropped message
    logged_dropped: int = 0  # ``dropped`` when the last log line was written
    last_log: float = -math.inf
    throttled: bool = False


class IngestLimiter:
    """Per-device message rate on ingest: ``admit(device_id)`` for telemetry,
    ``admit_other(device_id)`` for the rest (status, hello, replies, sync requests), from
    any thread. Both buckets fill at ``rate_per_s``; telemetry's holds ``burst`` (the
    backlog a persistent session keeps while the agent is away is telemetry), the other
    at most ``other_burst``: each status costs the network thread a database write (the
    registry), and 10,000 of them at once held everyone's messages back for 5 s
    (bench/flood.py --leaf status)."""

    def __init__(self, rate_per_s: float, burst: int, *, other_burst: int = OTHER_BURST,
                 quiet_s: float = QUIET_S, clock: Clock = time.monotonic) -> None:
        """``rate_per_s`` 0: no limit (everything is admitted and counted)."""
        self.rate_per_s, self.burst = rate_per_s, max(1, burst)
        self.other_burst = max(1, min(other_burst, self.burst))
        self.quiet_s, self.clock = quiet_s, clock
        self.devices: dict[str, DeviceIngest] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: AgentConfig) -> IngestLimiter:
        return cls(config.ingest_rate_per_device, config.ingest_burst_per_device)

    def admit(self, device_id: str) -> bool:
        """Whether to take a telemetry message from ``device_id`` (False: drop it; it is
        counted)."""
        return self._admit(device_id, True)

    def admit_other(self, device_id: str) -> bool:
        """The same for any other message of the device."""
        return self._admit(device_id, False)

    def _admit(self, device_id: str, telemetry: bool) -> bool:
        now = self.clock()
        with self._lock:
            state = self.devices.get(device_id)
            if state is None:
                if len(self.devices) >= MAX_TRACKED:
                    self._forget_idle(now)
                state = self.devices[device_id] = DeviceIngest(
                    TokenBucket(self.rate_per_s, self.burst, now),
                    TokenBucket(self.rate_per_s, self.other_burst, now))
            bucket = state.bucket if telemetry else state.other
            if self.rate_per_s <= 0 or bucket.take(now):
                state.admitted += 1
                if state.throttled and now - state.last_drop >= self.quiet_s:
                    self._calm(device_id, state)
                return True
            state.dropped += 1
            state.last_drop = now
            if not state.throttled or now - state.last_log >= LOG_EVERY_S:
                self._report(device_id, state, now)
            return False

    def _report(self, device_id: str, state: DeviceIngest, now: float) -> None:
        if not state.throttled:
            log.warning("device %s sends more than %g messages/s (burst %d telemetry, %d "
                        "other): dropping its excess until it slows down (if this rate is "
                        "expected, raise ingest_rate_per_device in the agent config)",
                        device_id, self.rate_per_s, self.burst, self.other_burst)
        else:
            log.warning("device %s is still over %g messages/s: %d messages dropped in the "
                        "last %.0f s, %d in all", device_id, self.rate_per_s,
                        state.dropped - state.logged_dropped, now - state.last_log,
                        state.dropped)
        state.throttled, state.last_log, state.logged_dropped = True, now, state.dropped

    def _calm(self, device_id: str, state: DeviceIngest) -> None:
        state.throttled = False
        log.info("device %s is back under %g messages/s (%d messages dropped in all)",
                 device_id, self.rate_per_s, state.dropped)

    def _forget_idle(self, now: float) -> None:
        """Called with the lock held: forget devices with nothing to report."""
        forget_some(self.devices, lambda s: not s.dropped and s.bucket.full(now)
                    and s.other.full(now))

    def status(self, device_id: str) -> dict[str, object]:
        """``throttled`` (dropped something in the last ``quiet_s``) and ``dropped``."""
        now = self.clock()
        with self._lock:
            state = self.devices.get(device_id)
            if state is None:
                return {"throttled": False, "dropped": 0}
            if state.throttled and now - state.last_drop >= self.quiet_s:
                self._calm(device_id, state)
            return {"throttled": state.throttled, "dropped": state.dropped}

    def snapshot(self) -> dict[str, dict[str, object]]:
        """Every device with counts: admitted, dropped, throttled."""
        with self._lock:
            ids = list(self.devices)
        out: dict[str, dict[str, object]] = {}
        for device_id in ids:
            status = self.status(device_id)
            state = self.devices.get(device_id)
            out[device_id] = {**status, "admitted": state.admitted if state else 0}
        return out


# -- API ---------------------------------------------------------------------------------------
@dataclass
class ApiRateLimiter:
    """Per-token request rate on the API. ``tokens``: name -> secret."""

    tokens: dict[str, str]
    rate_per_s: float = 50.0
    burst: int = 200
    token_rates: dict[str, float] = field(default_factory=dict)  # name -> rate (0: none)
    clock: Clock = time.monotonic
    refused: dict[str, int] = field(default_factory=dict)  # name -> 429s sent
    _buckets: dict[str, TokenBucket] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: AgentConfig, token: str | None) -> ApiRateLimiter:
        """``token``: the daemon's main token (named ``default``), may be None."""
        return cls(api_tokens(config, token), config.api_rate_per_s, config.api_burst,
                   dict(config.api_token_rates))

    @property
    def enabled(self) -> bool:
        """Whether any request can be limited (a rate above 0 for someone)."""
        return self.rate_per_s > 0 or any(rate > 0 for rate in self.token_rates.values())

    def token_name(self, supplied: str) -> str | None:
        """The name of the token ``supplied`` (None: no such token). Constant time per
        token, so the comparison says nothing about the secrets."""
        found = None
        for name, secret in self.tokens.items():
            if hmac.compare_digest(supplied.encode(), secret.encode()):
                found = name
        return found

    def check(self, name: str, client: str) -> float | None:
        """None when ``name`` (from ``client``) may make a request now, else the seconds
        to wait. Requests without a known token are counted per client address."""
        rate = self.token_rates.get(name, self.rate_per_s)
        if rate <= 0:
            return None
        key = name if name in self.tokens else f"{name}@{client}"
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_TRACKED:
                forget_some(self._buckets, lambda b: b.full(now))
            bucket = self._buckets[key] = TokenBucket(rate, self.burst, now)
        if bucket.take(now):
            return None
        self.refused[name] = self.refused.get(name, 0) + 1
        return bucket.wait_s()

    def refusal(self, name: str, wait_s: float) -> web.Response:
        """The 429 answer: which limit, and how to change it."""
        from aiohttp import web

        rate = self.token_rates.get(name, self.rate_per_s)
        setting = (f"api_token_rates.{name}" if name in self.token_rates else "api_rate_per_s")
        who = (f"token {name!r}" if name in self.tokens
               else "requests without a valid token from this address")
        body = {"error": f"rate limit: {who} may make {rate:g} requests/s (burst {self.burst}); "
                         f"retry in {wait_s:.2f} s, or raise {setting} (0: no limit) or "
                         "api_burst in the agent config",
                "limit": "api_rate_per_s", "token": name, "rate_per_s": rate,
                "burst": self.burst, "setting": setting, "retry_after_s": round(wait_s, 3)}
        return web.json_response(body, status=429,
                                 headers={"Retry-After": str(max(1, math.ceil(wait_s)))})

    def middleware(self) -> Callable[..., Awaitable[web.StreamResponse]]:
        """The aiohttp middleware (put it before authentication: wrong tokens count too)."""
        from aiohttp import web

        @web.middleware
        async def rate_limit(request: web.Request,
                             handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                             ) -> web.StreamResponse:
            given = request.headers.get("Authorization", "")
            supplied = given[7:] if given.startswith("Bearer ") else request.query.get("token")
            name = (self.token_name(supplied) if supplied else None) or ANONYMOUS
            wait_s = self.check(name, request.remote or "?")
            if wait_s is not None:
                return self.refusal(name, wait_s)
            return await handler(request)

        return rate_limit


def api_tokens(config: AgentConfig, token: str | None) -> dict[str, str]:
    """Every API token by name: ``default`` (the main token), then ``api_tokens``."""
    tokens = {DEFAULT_TOKEN_NAME: token} if token else {}
    tokens.update(config.api_tokens)
    return tokens


# -- metrics -----------------------------------------------------------------------------------
def metric_families(ingest: IngestLimiter | None,
                    api: ApiRateLimiter | None) -> Iterator[object]:
    """Prometheus families: dropped messages and throttling per device, 429s per token."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    if ingest is not None:
        dropped = CounterMetricFamily("gridcast_ingest_dropped_messages",
                                      "Messages from a device dropped over its rate limit",
                                      labels=["device"])
        throttled = GaugeMetricFamily("gridcast_ingest_throttled",
                                      "1 while a device is over its message rate limit",
                                      labels=["device"])
        for device_id, s in ingest.snapshot().items():
            if s["dropped"]:
                dropped.add_metric([device_id], float(s["dropped"]))  # type: ignore[arg-type]
                throttled.add_metric([device_id], 1.0 if s["throttled"] else 0.0)
        yield dropped
        yield throttled
    if api is not None:
        refused = CounterMetricFamily("gridcast_api_rate_limited",
                                      "API requests refused with 429, per token name",
                                      labels=["token"])
        for name, count in sorted(api.refused.items()):
            refused.add_metric([name], float(count))
        yield refused
