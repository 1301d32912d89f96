"""Entry point of a simulated device: micropython -m gridcast.firmware.boards.sim_main

Measures the heap the firmware's code takes once imported (on a board the
modules are frozen into flash and take none), so the bench can tell code from
the data the firmware keeps while it runs.
"""

import gc

gc.collect()
_before = gc.mem_alloc()

from gridcast.firmware import app, links, mqtt_client  # noqa: E402, F401
from gridcast.firmware.boards import sim  # noqa: E402

gc.collect()
board = sim.Board()
board.code_bytes = gc.mem_alloc() - _before
board.log("heap: code %d bytes" % board.code_bytes)
app.main(board)
