"""A short mutation-fuzz run in the suite; the full 100,000-case run is the script itself."""

import os
import subprocess

from tests.device.tree import micropython, protocol_tree
from tests.fuzz import protocol_fuzz

VECTORS = os.path.join(os.path.dirname(__file__), "vectors")


def test_fuzz_smoke_on_cpython(capsys):
    assert protocol_fuzz.main(["fuzz", "3000", VECTORS]) == 0
    assert '"crashes": 0' in capsys.readouterr().out


def test_fuzz_smoke_on_micropython(tmp_path):
    tree = protocol_tree(str(tmp_path))
    script = os.path.join(os.path.dirname(__file__), "fuzz", "protocol_fuzz.py")
    run = subprocess.run([micropython(), script, "2000", VECTORS], capture_output=True,
                         text=True, timeout=300, env={**os.environ, "MICROPYPATH": tree})
    assert run.returncode == 0, run.stdout + run.stderr
    assert '"accepted_altered": 0' in run.stdout
