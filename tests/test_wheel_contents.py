"""The wheel ships the product and no tests: no test_*.py, no conftest.py, no test data;
the beat network's weights and the dashboard are in it.

The wheel is built for real (pip wheel, about 10 s here with pip's cache warm) from a copy
of the checkout's sources: building in the checkout would reuse its build/ folder, whose
stale copies of moved files end up in the wheel.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import shutil
import subprocess
import sys
import time
import tomllib
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST_FILES = ("test_*.py", "*_test.py", "conftest.py")


def _packages() -> dict[str, str]:
    """Every package the wheel ships -> its folder in the checkout (from pyproject.toml)."""
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        setuptools = tomllib.load(f)["tool"]["setuptools"]
    roots = setuptools["package-dir"]
    folders = {}
    for package in setuptools["packages"]:
        root = max((r for r in roots if package == r or package.startswith(r + ".")), key=len)
        folders[package] = os.path.join(roots[root], *package[len(root):].split(".")[1:])
    return folders


def _is_test_file(name: str) -> bool:
    return any(fnmatch.fnmatch(os.path.basename(name), p) for p in TEST_FILES)


def test_no_test_file_sits_in_a_package_folder():
    """setuptools ships every module of a listed package: a scenario or a conftest.py dropped
    into one (hil/ rather than hil/tests/) would be in the wheel."""
    misplaced = [os.path.join(folder, name)
                 for folder in _packages().values()
                 for name in sorted(os.listdir(os.path.join(ROOT, folder)))
                 if _is_test_file(name)]
    assert not misplaced, ("test files inside packages the wheel ships (move them to the "
                           f"part's tests/ folder, e.g. hil/tests/): {misplaced}")


def _copy_sources(dest: str) -> None:
    """The files git knows or would add (tracked and new, not ignored), as they are now."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = os.path.join(ROOT, rel)
        if os.path.isfile(src):  # a tracked file deleted in the work tree is skipped
            os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
            shutil.copy2(src, os.path.join(dest, rel))


def test_the_wheel_ships_the_product_and_no_tests(tmp_path):
    src, dist = str(tmp_path / "src"), str(tmp_path / "dist")
    _copy_sources(src)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                           "--disable-pip-version-check", "-w", dist, src],
                          capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - started
    # pip builds in isolation: setuptools>=77, wheel and cffi come from the index, or from
    # pip's cache when offline.
    assert done.returncode == 0, "pip wheel failed:\n" + done.stderr[-3000:]
    print(f"\npip wheel took {seconds:.1f} s")
    (wheel,) = glob.glob(os.path.join(dist, "gridcast-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    tests = sorted(n for n in names if _is_test_file(n) or "/tests/" in n
                   or n.startswith(("tests/", "hil/")))
    assert not tests, f"the wheel ships tests: {tests}"
    models = sorted(os.path.basename(p) for p in
                    glob.glob(os.path.join(ROOT, "host", "analysis", "models", "*.npz")))
    dashboard = sorted(os.path.basename(p) for p in
                       glob.glob(os.path.join(ROOT, "agent", "dashboard", "*.html")))
    assert models and dashboard
    expected = ([f"gridcast/host/analysis/models/{m}" for m in models]
                + [f"gridcast/agent/dashboard/{d}" for d in dashboard]
                # what `gridcast sim` and the demo run is product code, so it ships
                + ["gridcast/agent/simulation/devices.py",
                   "gridcast/firmware/boards/sim_main.py"])
    assert not [e for e in expected if e not in names], sorted(names)
