"""The device program (MicroPython). See docs/firmware.md.

On a board these files live in /lib/gridcast/firmware/ next to
/lib/gridcast/protocol/; /main.py picks the board and starts the app. The same
files run unmodified in the MicroPython unix port for the simulator and tests.
"""

# Files copied to a device by `gridcast flash` (boards are chosen separately).
MODULES = ("__init__", "app", "config", "store", "clock", "clocksync", "player", "timeline",
           "live", "leds", "telemetry", "mqtt_client", "links", "ble_link", "keystore", "auth")
