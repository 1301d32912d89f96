"""The agent's configuration: a TOML file, then environment overrides, checked up front.

    [agent]
    broker = "mqtt://127.0.0.1:1883"
    database = "sqlite:///var/lib/gridcast/agent.db"   # or postgresql://user:pw@host/db
    bind = "127.0.0.1"          # any other address requires token
    port = 8750
    token = "..."               # bearer token for writes (and for everything off localhost)
    key_file = "site.key"       # signing key: bundles uploaded to the API are verified with it
    bundle_dir = "bundles"
    maps_dir = "maps"           # beat maps the editor (/editor) lists, besides the player's
    alert_threshold_ms = 1.0
    webhook_url = "https://..."
    links = ["serial:/dev/ttyUSB0", "ble://AA:BB:CC:DD:EE:FF?device=stage-2"]
    room_latency_ms = 12.5      # written by `gridcast calibrate`; the player adds it
    audio_output = "USB Audio"  # the daemon's player plays here (default: the system's)
    ingest_rate_per_device = 100      # messages/s a device may send (0: no limit)
    ingest_burst_per_device = 10000   # telemetry batches at once (a backlog after a restart)
    api_rate_per_s = 50         # API requests/s per token, and per address without one (0: none)
    api_burst = 200
    api_tokens = {ci = "..."}   # more bearer tokens, by name (`token` is named "default")
    api_token_rates = {ci = 0}  # per-name rates instead of api_rate_per_s ("anonymous": no token)

Every field can be overridden with GRIDCAST_<FIELD> (GRIDCAST_DATABASE=...); a list
is comma-separated there (GRIDCAST_LINKS=serial:/dev/ttyUSB0,serial:/dev/ttyUSB1), a
table is NAME=VALUE pairs (GRIDCAST_API_TOKEN_RATES=ci=0,anonymous=10).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tomllib
from dataclasses import dataclass, field
from urllib.parse import urlparse

from gridcast.protocol.errors import GridcastError

LOCAL_BINDS = ("127.0.0.1", "localhost", "::1")
LINK_SCHEMES = ("serial:", "ble://")
# Settings that are gone, and what to do instead.
REMOVED = {"collectors": "an agent process has one MQTT connection and one collector; for more "
                         "throughput run more agent processes with the same collector_group "
                         "(the broker splits the telemetry between them)"}


class ConfigError(GridcastError):
    """The agent's configuration is unusable; the message says which field and why."""


@dataclass
class AgentConfig:
    broker: str = "mqtt://127.0.0.1:1883"
    broker_username: str | None = None
    broker_password: str | None = None
    mqtt_client_id: str | None = None  # default gridcast-agent-<host>-<port>: stable, unique
    database: str = "sqlite://gridcast-agent.db"  # sqlite://PATH: relative, or /absolute
    bind: str = "127.0.0.1"
    port: int = 8750
    token: str | None = None
    https_cert: str | None = None  # the API's certificate (agent/https.py: else provisioned)
    https_key: str | None = None
    insecure_http: bool = False  # plain HTTP on a non-local bind (a network you trust)
    broker_log: str | None = None  # mosquitto's log: devices' TLS refusals (broker_log.py)
    key_file: str | None = None
    bundle_dir: str = "gridcast-bundles"
    maps_dir: str | None = None  # beat maps for the grid editor (agent/map_api.py)
    collector_group: str = "gridcast-collectors"
    shared_subscription: bool = True  # off for brokers without $share (the embedded one)
    links: list[str] = field(default_factory=list)  # serial/BLE devices this agent hosts
    alert_threshold_ms: float = 1.0
    alert_window_s: int = 10
    webhook_url: str | None = None
    raw_retention_days: float = 7.0
    second_retention_days: float = 2.0
    log_level: str = "info"
    room_latency_ms: float = 0.0  # speakers to audience, after PortAudio's DAC time (calibrate)
    audio_output: str | None = None  # the daemon's player: sounddevice name/index (None: default)
    # Rate limits (agent/rate_limit.py, docs/security.md); 0 turns a limit off.
    ingest_rate_per_device: float = 100.0  # telemetry/s, and other messages/s, per device
    ingest_burst_per_device: int = 10_000  # hours of telemetry held by the broker come at once
    api_rate_per_s: float = 50.0  # requests/s per token name (and per address without a token)
    api_burst: int = 200
    api_tokens: dict[str, str] = field(default_factory=dict)  # name -> bearer token
    api_token_rates: dict[str, float] = field(default_factory=dict)  # name -> requests/s

    @property
    def broker_host_port(self) -> tuple[str, int]:
        from gridcast.agent import broker_url

        try:
            address = broker_url.parse(self.broker)
        except broker_url.BrokerUrlError:
            parsed = urlparse(self.broker)
            return parsed.hostname or "127.0.0.1", parsed.port or 1883
        return address.host, address.port

    def check(self) -> AgentConfig:
        from gridcast.agent import broker_url

        try:  # mqtt://HOST:PORT, or mqtts://HOST:PORT?ca=CA_FILE (a provisioned site)
            broker_url.parse(self.broker, option="broker =")
        except broker_url.BrokerUrlError as exc:
            raise ConfigError(str(exc)) from exc
        if not 0 < self.port < 65536:
            raise ConfigError(f"port = {self.port}: expected 1..65535")
        from gridcast.agent import https

        try:
            https.check(self)
        except https.HttpsError as exc:
            raise ConfigError(str(exc)) from exc
        if self.bind not in LOCAL_BINDS and not self.token:
            raise ConfigError(f"bind = {self.bind!r} is not localhost: set token (or "
                              "GRIDCAST_TOKEN) so that the API is not open to the network")
        if self.token is not None and len(self.token) < 16:
            raise ConfigError("token: use at least 16 characters (e.g. `openssl rand -hex 16`)")
        if self.alert_threshold_ms <= 0 or self.alert_window_s <= 0:
            raise ConfigError("alert_threshold_ms and alert_window_s must be positive")
        for url in self.links:
            if not url.startswith(LINK_SCHEMES) or len(url.split(":", 1)[1].strip("/")) == 0:
                raise ConfigError(f"links: {url!r}: expected serial:/dev/PORT or ble://ADDRESS "
                                  "(MQTT devices come through broker)")
        if self.key_file and not os.path.exists(self.key_file):
            raise ConfigError(f"key_file = {self.key_file!r}: no such file (make one with "
                              "`gridcast keygen`)")
        if not -2000.0 <= self.room_latency_ms <= 2000.0:
            raise ConfigError(f"room_latency_ms = {self.room_latency_ms}: expected -2000..2000 "
                              "(measure it with `gridcast calibrate`)")
        if self.ingest_rate_per_device < 0 or self.ingest_burst_per_device < 1:
            raise ConfigError("ingest_rate_per_device must be >= 0 (0: no limit) and "
                              "ingest_burst_per_device >= 1")
        if self.api_rate_per_s < 0 or self.api_burst < 1:
            raise ConfigError("api_rate_per_s must be >= 0 (0: no limit) and api_burst >= 1")
        for name, secret in self.api_tokens.items():
            if name == "default" or len(secret) < 16:
                raise ConfigError(f"api_tokens.{name}: use another name than 'default' (that "
                                  "is `token`) and at least 16 characters")
        for name, rate in self.api_token_rates.items():
            if rate < 0:
                raise ConfigError(f"api_token_rates.{name} = {rate}: expected >= 0 (0: no limit)")
        if self.log_level.lower() not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"log_level = {self.log_level!r}: debug, info, warning or error")
        return self


def _coerce(name: str, value: object, kind: type) -> object:
    if value is None:
        return None
    try:
        if kind is bool:
            return str(value).lower() in ("1", "true", "yes", "on")
        return kind(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} = {value!r}: expected {kind.__name__}") from exc


def _links(value: object) -> list[str]:
    """A TOML list, or a comma-separated string (from the environment)."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigError(f"links = {value!r}: expected a list of link URLs")


def _table(name: str, value: object, kind: type) -> dict:
    """A TOML table, or NAME=VALUE pairs separated by commas (from the environment)."""
    if isinstance(value, str):
        pairs = [p.split("=", 1) for p in value.split(",") if p.strip()]
        if any(len(p) != 2 for p in pairs):
            raise ConfigError(f"{name} = {value!r}: expected NAME=VALUE,NAME=VALUE")
        value = {k.strip(): v.strip() for k, v in pairs}
    if not isinstance(value, dict):
        raise ConfigError(f"{name} = {value!r}: expected a table (NAME = VALUE)")
    return {str(k): _coerce(f"{name}.{k}", v, kind) for k, v in value.items()}


def load(path: str | None = None, environ: dict[str, str] | None = None) -> AgentConfig:
    """Defaults, then the file's [agent] table, then GRIDCAST_* variables."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    if path:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
        table = data.get("agent", data)
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [agent] must be a table")
        values.update(table)
    fields = {f.name: f for f in dataclasses.fields(AgentConfig)}
    for name in REMOVED:
        value = values.pop(name, env.get(f"GRIDCAST_{name.upper()}"))
        if value is None:
            continue
        if str(value) != "1":
            raise ConfigError(f"{name} = {value!r}: this setting was removed; {REMOVED[name]}")
        logging.getLogger("gridcast.agent").warning("%s = 1 is no longer needed (remove it); "
                                                    "%s", name, REMOVED[name])
    for name in values:
        if name not in fields:
            raise ConfigError(f"{path}: unknown setting {name!r} (known: {', '.join(fields)})")
    for name in fields:
        key = f"GRIDCAST_{name.upper()}"
        if key in env:
            values[name] = env[key]
    types = {"shared_subscription": bool, "insecure_http": bool, "port": int,
             "alert_window_s": int,
             "alert_threshold_ms": float, "raw_retention_days": float,
             "second_retention_days": float, "room_latency_ms": float,
             "ingest_rate_per_device": float, "ingest_burst_per_device": int,
             "api_rate_per_s": float, "api_burst": int}
    tables = {"api_tokens": str, "api_token_rates": float}
    for name, value in list(values.items()):
        if name == "links":
            values[name] = _links(value)
            continue
        if name in tables:
            values[name] = _table(name, value, tables[name])
            continue
        values[name] = _coerce(name, value, types.get(name, str))
    return AgentConfig(**values).check()  # type: ignore[arg-type]
