"""cffi build script for gridcast.native: compiles native/src into one extension.

setup.py names it in ``cffi_modules``, so ``pip install .`` (and an editable
install) build the extension from the same sources the top-level CMakeLists.txt
builds. The cdef is the part of the public header between its cdef markers,
so the binding cannot drift from the C API.
"""

from __future__ import annotations

import os
import re

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HEADER = os.path.join(HERE, "include", "gridcast", "tracker.h")
SOURCES = ["fft.c", "decimator.c", "onset.c", "novelty.c", "beat_model.c", "position_net.c",
           "meter.c", "tracker.c"]


def cdef_source() -> str:
    with open(HEADER, encoding="utf-8") as f:
        text = f.read()
    match = re.search(r"/\* cdef-begin \*/(.*)/\* cdef-end \*/", text, re.S)
    if not match:
        raise RuntimeError(f"{HEADER}: cdef markers not found")
    return match.group(1)


def make_builder(absolute_paths: bool = False,
                 defines: list[tuple[str, str | None]] | None = None) -> FFI:
    # setuptools insists on paths relative to setup.py; cffi's own compile()
    # runs in a temporary folder and needs absolute ones.
    def path(*parts: str) -> str:
        full = os.path.join(HERE, *parts)
        return full if absolute_paths else os.path.relpath(full, ROOT)

    builder = FFI()
    builder.cdef(cdef_source())
    builder.set_source(
        "gridcast.native._tracker_cffi",
        '#include "gridcast/tracker.h"',
        sources=[path("src", s) for s in SOURCES],
        include_dirs=[path("include"), path("src")],
        extra_compile_args=["-std=c11", "-O3", "-fno-math-errno"],  # as CMake's Release build
        libraries=["m"],
        define_macros=defines or [],
    )
    return builder


ffibuilder = make_builder()

if __name__ == "__main__":
    # Development shortcut: rebuild the extension in place after editing native/src.
    # GC_DEFINES="NAME=VALUE,..." overrides the tunable constants (experiments only).
    pairs = [d.split("=", 1) for d in os.environ.get("GC_DEFINES", "").split(",") if d]
    built = make_builder(True, [(k, v) for k, v in pairs]).compile(
        tmpdir=os.path.join(ROOT, "build", "cffi"), verbose=False)
    os.replace(built, os.path.join(HERE, "_tracker_cffi.abi3.so"))
