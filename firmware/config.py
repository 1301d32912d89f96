"""Device configuration: /config.json, checked field by field.

    {"device_id": "stage-left-1", "key_hex": "<64 hex digits>",
     "broker": "192.168.1.10:1883", "led_count": 60, "led_pin": 48,
     "serial": true, "sync_hz": 8, "telemetry_s": 1,
     "mqtt_user": "stage-left-1", "mqtt_password": "..."}   (gridcast provision)

A provisioned (TLS) site gives ``"broker": "mqtts://192.168.1.10:8883"`` and
``"ca_pem"``: the site CA the device verifies the broker's certificate with (and its
host name). ``client_cert_pem`` / ``client_key_pem`` are the device's own certificate
where the broker requires one. ``broker_tls`` tells the link to use TLS.

A missing or corrupt file does not stop the device: it runs with defaults
(serial only, no key: every bundle is refused as unknown_key), shows the error
on the LEDs and reports it in telemetry and status.
"""

import json
import os

from gridcast.protocol.errors import ProtocolError
from gridcast.protocol.reasons import BAD_CONFIG
from gridcast.protocol.version import FIRMWARE_VERSION

PATH = "config.json"
# What the agent sets at run time (docs/protocol.md 9), kept apart from the provisioned
# config.json: {"light_offset_us": -12500}
SETTINGS_PATH = "settings.json"
SETTINGS_DEFAULTS = {"light_offset_us": 0}
FW_VERSION = FIRMWARE_VERSION  # the release, from protocol/version.py

DEFAULTS = {
    "device_id": "",
    "key_hex": "",
    "broker": "",
    "led_count": 16,
    "led_pin": 48,
    "serial": True,
    "sync_hz": 8,
    "telemetry_s": 1,
    "serial_path": "",
    "mqtt_user": "",
    "mqtt_password": "",
    "command_key": "",  # hex; the key sealed commands are checked with (docs/protocol.md 11)
    "ca_pem": "",
    "client_cert_pem": "",
    "client_key_pem": "",
}
MAX_PEM = 4096  # characters; a P-256 certificate is about 700


def _hex_key(value):
    if not isinstance(value, str) or len(value) < 32 or len(value) % 2:
        raise ValueError("key_hex must be an even number (>= 32) of hex digits")
    import binascii

    return binascii.unhexlify(value)


def parse(data):
    """Config dict from JSON text; ProtocolError(BAD_CONFIG) naming the field otherwise."""
    try:
        raw = json.loads(data)
    except ValueError:
        raise ProtocolError(BAD_CONFIG, "config.json is not valid JSON") from None
    if not isinstance(raw, dict):
        raise ProtocolError(BAD_CONFIG, "config.json must hold an object")
    cfg = {}
    for k in DEFAULTS:
        cfg[k] = raw.get(k, DEFAULTS[k])
    for k in raw:
        if k not in DEFAULTS:
            raise ProtocolError(BAD_CONFIG, "config.json: unknown field %r" % k)
    from gridcast.protocol.topics import valid_device_id

    if not valid_device_id(cfg["device_id"]):
        raise ProtocolError(BAD_CONFIG, "config.json: device_id must be 1-32 of A-Z a-z 0-9 _ -")
    try:
        cfg["key"] = _hex_key(cfg["key_hex"])
    except ValueError as exc:
        raise ProtocolError(BAD_CONFIG, "config.json: %s" % exc) from None
    if cfg["command_key"]:
        try:
            cfg["command_key"] = _hex_key(cfg["command_key"])
        except ValueError:
            raise ProtocolError(BAD_CONFIG, "config.json: command_key must be an even number "
                                            "(>= 32) of hex digits") from None
    for k in ("led_count", "led_pin", "sync_hz", "telemetry_s"):
        if not isinstance(cfg[k], int) or cfg[k] < 0:
            raise ProtocolError(BAD_CONFIG, "config.json: %s must be a non-negative integer" % k)
    if not 1 <= cfg["sync_hz"] <= 50:
        raise ProtocolError(BAD_CONFIG, "config.json: sync_hz must be 1..50")
    for k in ("mqtt_user", "mqtt_password"):
        if not isinstance(cfg[k], str) or len(cfg[k]) > 128:
            raise ProtocolError(BAD_CONFIG, "config.json: %s must be text of at most 128 "
                                            "characters" % k)
    for k in ("ca_pem", "client_cert_pem", "client_key_pem"):
        if not isinstance(cfg[k], str) or len(cfg[k]) > MAX_PEM or (
                cfg[k] and "-----BEGIN " not in cfg[k]):
            raise ProtocolError(BAD_CONFIG, "config.json: %s must be one PEM block (at most "
                                            "%d characters)" % (k, MAX_PEM))
    broker = cfg["broker"]
    if not isinstance(broker, str):
        raise ProtocolError(BAD_CONFIG, "config.json: broker must be text")
    cfg["broker_tls"] = broker.startswith("mqtts://")
    if broker:
        if broker.startswith("mqtts://") or broker.startswith("mqtt://"):
            broker = broker.split("://", 1)[1]
        host, _, port = broker.rpartition(":")
        if not host or not port.isdigit():
            raise ProtocolError(BAD_CONFIG, "config.json: broker must be HOST:PORT or "
                                            "mqtts://HOST:PORT")
        cfg["broker_host"], cfg["broker_port"] = host, int(port)
    if cfg["broker_tls"] and not cfg["ca_pem"]:
        raise ProtocolError(BAD_CONFIG, "config.json: an mqtts:// broker needs ca_pem (the "
                                        "site CA; gridcast provision writes it)")
    if bool(cfg["client_cert_pem"]) != bool(cfg["client_key_pem"]):
        raise ProtocolError(BAD_CONFIG, "config.json: give client_cert_pem and client_key_pem "
                                        "together")
    return cfg


def load(path=PATH):
    """(config, error): a usable config always, and the ProtocolError if the file was bad."""
    try:
        with open(path) as f:
            return parse(f.read()), None
    except OSError:
        err = ProtocolError(BAD_CONFIG, "no %s on the device" % path)
    except ProtocolError as exc:
        err = exc
    cfg = {}
    for k in DEFAULTS:
        cfg[k] = DEFAULTS[k]
    cfg["key"] = b""
    cfg["device_id"] = "unconfigured"
    return cfg, err


def load_settings(path=SETTINGS_PATH):
    """The settings the agent made (defaults for a missing or unreadable file: a setting
    is never worth not starting for)."""
    out = {}
    for k in SETTINGS_DEFAULTS:
        out[k] = SETTINGS_DEFAULTS[k]
    try:
        with open(path) as f:
            raw = json.loads(f.read())
    except (OSError, ValueError):
        return out
    if isinstance(raw, dict):
        for k in SETTINGS_DEFAULTS:
            v = raw.get(k)
            if isinstance(v, int) and not isinstance(v, bool):
                out[k] = v
    return out


def save_settings(settings, path=SETTINGS_PATH):
    """Write the settings atomically: a temporary file renamed into place, so a power cut
    leaves the old file or the new one. OSError if the filesystem refuses."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(settings))
    os.rename(tmp, path)
