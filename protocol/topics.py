"""The MQTT topic tree (docs/protocol.md has the table with QoS and reasons).

    gridcast/v1/dev/<id>/status      device -> all    retained, QoS 1, last will "lost"
    gridcast/v1/dev/<id>/hello       device -> agent  retained, QoS 1
    gridcast/v1/dev/<id>/cmd         agent -> device  QoS 1 (offer, activate, play, stop, ...)
    gridcast/v1/dev/<id>/bundle      agent -> device  QoS 1 (chunks)
    gridcast/v1/dev/<id>/reply       device -> agent  QoS 1 (acks, nacks, activated, rejected)
    gridcast/v1/dev/<id>/sync/req    device -> agent  QoS 0 (a late sync sample is worthless)
    gridcast/v1/dev/<id>/sync/resp   agent -> device  QoS 0
    gridcast/v1/dev/<id>/telemetry   device -> agent  QoS 1 (sequence numbers expose any loss)
    gridcast/v1/all/cmd              agent -> every device, QoS 1 (fleet-wide play/stop)

Runs on CPython and MicroPython.
"""

PREFIX = "gridcast/v1"
MAX_DEVICE_ID_BYTES = 32

STATUS = "status"
HELLO = "hello"
CMD = "cmd"
BUNDLE = "bundle"
REPLY = "reply"
SYNC_REQ = "sync/req"
SYNC_RESP = "sync/resp"
TELEMETRY = "telemetry"

QOS = {STATUS: 1, HELLO: 1, CMD: 1, BUNDLE: 1, REPLY: 1, SYNC_REQ: 0, SYNC_RESP: 0,
       TELEMETRY: 1}
RETAINED = (STATUS, HELLO)
BROADCAST_CMD = PREFIX + "/all/cmd"
SHARED_TELEMETRY = "$share/gridcast-collectors/" + PREFIX + "/dev/+/telemetry"


def valid_device_id(device_id):
    """Ids become topic levels: 1-32 of [A-Za-z0-9_-], no MQTT wildcards or slashes."""
    if not 0 < len(device_id) <= MAX_DEVICE_ID_BYTES:
        return False
    return all(ch.isalpha() or ch.isdigit() or ch in "_-" for ch in device_id)


def device_topic(device_id, leaf):
    return "%s/dev/%s/%s" % (PREFIX, device_id, leaf)


def parse_device_topic(topic):
    """(device id, leaf) of a device topic, or None for any other topic."""
    head = PREFIX + "/dev/"
    if not topic.startswith(head):
        return None
    rest = topic[len(head):]
    slash = rest.find("/")
    if slash <= 0:
        return None
    return rest[:slash], rest[slash + 1:]
