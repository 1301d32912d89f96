"""Simulated devices and what measures them, for `gridcast sim`, the demo and the bench.

- ``devices``: the unmodified firmware in the MicroPython unix port, one process per
  device, each with its own folder, skewed clock and LED log stamped with true time.
- ``broker_witness``: an independent witness on the broker that records the commands
  sent to devices and the telemetry they send back.
- ``led_report``: the true LED error of each beat a device showed, against the play
  command in force, next to the drift the device reported.
"""
