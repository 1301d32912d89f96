"""The shared vectors, checked with CPython and with the real MicroPython interpreter."""

import json
import os
import subprocess

import pytest

from tests.device import vector_runner
from tests.device.tree import micropython, protocol_tree
from tests.vectors import auth_runner, make_vectors

VECTORS = os.path.join(os.path.dirname(__file__), "vectors")


def test_vectors_pass_on_cpython(capsys):
    assert vector_runner.main(VECTORS) == 0
    assert capsys.readouterr().out.strip().endswith(" passed, 0 failed")


def test_vectors_pass_on_micropython(tmp_path):
    tree = protocol_tree(str(tmp_path))
    run = subprocess.run([micropython(), os.path.join(os.path.dirname(__file__), "device",
                                                      "vector_runner.py"), VECTORS],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "MICROPYPATH": tree}, cwd=tree)
    assert run.returncode == 0, run.stdout + run.stderr
    passed = int(run.stdout.strip().splitlines()[-1].split()[0])
    assert passed >= 80


def test_sealed_message_vectors_pass_on_cpython(capsys):
    assert auth_runner.main(VECTORS) == 0
    assert capsys.readouterr().out.strip().endswith(" passed, 0 failed")


def test_sealed_message_vectors_pass_on_micropython(tmp_path):
    """The device's checks of sealed messages, and what one costs it (printed: the figure
    in docs/protocol.md 11 comes from here)."""
    tree = protocol_tree(str(tmp_path))
    run = subprocess.run([micropython(), os.path.join(VECTORS, "auth_runner.py"), VECTORS],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "MICROPYPATH": tree}, cwd=tree)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.strip().splitlines()
    assert lines[-1].endswith(" passed, 0 failed") and int(lines[-1].split()[0]) >= 16
    print("\nMicroPython unix port:", lines[-2])


@pytest.mark.parametrize(("name", "make"), [("messages", make_vectors.message_vectors),
                                             ("frames", make_vectors.frame_vectors),
                                             ("bundles", make_vectors.bundle_vectors),
                                             ("command_auth", make_vectors.auth_vectors)])
def test_committed_vectors_match_what_the_code_produces(name, make):
    """Canonical bytes: the builder and encoders still produce exactly the committed vectors."""
    with open(os.path.join(VECTORS, f"{name}.json")) as f:
        committed = json.load(f)
    assert json.loads(json.dumps(make())) == committed
