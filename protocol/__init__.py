"""The wire contract: bundles, messages, framing and topics (docs/protocol.md).

Modules listed in DEVICE_MODULES run on MicroPython too and are copied to
devices; they import only each other and what MicroPython has.
"""

DEVICE_MODULES = ("errors", "reasons", "codec", "frames", "messages", "hmac_sha256",
                  "bundle_format", "bundle_reader", "topics", "transfer", "ble_gatt", "version",
                  "key_id", "command_auth", "bundle_structure")
