"""Whether a device is online: one rule, applied to the last status it sent.

Devices publish a retained ``status`` (``online`` at start; the broker publishes
their last will ``lost`` when the connection drops; ``offline`` when they leave
cleanly). Links without a broker (serial, BLE) send the same status message, and
the agent records ``lost`` itself when such a link breaks. The registry, the MQTT
transport's ``discover`` and, through the registry's records, the API and the CLI
all use this.
"""

from __future__ import annotations

from gridcast.protocol import messages

ONLINE_STATES = ("online", "playing", "idle")
LOST = "lost"  # the broker's last will, or a broken serial/BLE link


def state_is_online(state: str) -> bool:
    return state in ONLINE_STATES


def is_online(status: messages.Message | None) -> bool:
    """A device's decoded last status (None: never heard of) -> online or not."""
    return status is not None and status.kind == "status" and state_is_online(status.state)
