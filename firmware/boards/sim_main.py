"""Entry point of a simulated device: micropython -m gridcast.firmware.boards.sim_main"""

from gridcast.firmware import app
from gridcast.firmware.boards import sim

app.main(sim.Board())
