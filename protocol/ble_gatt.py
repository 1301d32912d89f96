"""The BLE link: one GATT service, two characteristics, the serial link's CRC frames.

    service  6e400001-9a1c-4c5c-8c2e-67726964a001
    rx       6e400002-...  agent -> device, write (with or without response)
    tx       6e400003-...  device -> agent, notify

A frame (frames.encode_frame) is split into pieces of at most MTU - 3 bytes; the
receiver's Deframer joins them again, so a piece boundary may fall anywhere. On
every new connection the device sends its hello and status first, as on serial.
Runs on CPython and MicroPython.
"""

SERVICE_UUID = "6e400001-9a1c-4c5c-8c2e-67726964a001"
RX_UUID = "6e400002-9a1c-4c5c-8c2e-67726964a001"
TX_UUID = "6e400003-9a1c-4c5c-8c2e-67726964a001"
ATT_HEADER_BYTES = 3
MIN_MTU = 23


def pieces(frame, mtu):
    """A frame cut to the connection's MTU (an ATT write or notification each)."""
    size = max(MIN_MTU, mtu) - ATT_HEADER_BYTES
    return [frame[i:i + size] for i in range(0, len(frame), size)]
