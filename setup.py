"""Build of pyesca's native parts; the metadata is in pyproject.toml.

Two artefacts come from the one native core (native/core/*.c):

* ``pyesca._core``: the CPython extension (src/pyesca/_core.c + the core).
* ``pyesca/libesca.so``: a plain shared library for ``LD_PRELOAD``
  (native/preload/*.c + the core), built only once native/preload/ has C
  files.  It is not a Python extension: no ``PyInit_``, no ABI tag in its
  name, its exports pinned by native/preload/libesca.map when present.

The public header native/include/esca.h is shipped as pyesca/include/esca.h.
"""

from __future__ import annotations

import os
import shutil
from glob import glob

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
# setuptools wants source paths relative to setup.py.
os.chdir(HERE)

CORE = sorted(glob("native/core/*.c"))
PRELOAD = sorted(glob("native/preload/*.c"))
HEADERS = sorted(glob("native/include/*.h") + glob("native/core/*.h"))
PRELOAD_MAP = "native/preload/libesca.map"

CFLAGS = [
    "-std=gnu11",
    "-D_GNU_SOURCE",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-O2",
    "-fvisibility=hidden",
]

# The name setuptools knows the preload library by; its file is libesca.so.
LIBESCA = "pyesca.libesca"


class BuildExt(build_ext):
    """build_ext that can also build a plain (non-Python) shared library."""

    def get_ext_filename(self, fullname: str) -> str:
        # Called with the full dotted name (get_outputs, copy_extensions_to_source)
        # and with its last part only (get_ext_fullpath, which adds the package).
        if fullname == LIBESCA:
            return os.path.join(*LIBESCA.split(".")[:-1], "libesca.so")
        if fullname == LIBESCA.rpartition(".")[2]:
            return "libesca.so"
        return super().get_ext_filename(fullname)

    def get_export_symbols(self, ext: Extension) -> list[str]:
        if ext.name == LIBESCA:
            return []  # no PyInit_libesca: exports come from the version script
        return super().get_export_symbols(ext)

    def get_libraries(self, ext: Extension) -> list[str]:
        if ext.name == LIBESCA:
            return list(ext.libraries)  # never libpython
        return super().get_libraries(ext)

    def build_extension(self, ext: Extension) -> None:
        # The core's sources are shared by both artefacts: give each its own
        # object directory so one's objects are never linked into the other.
        saved = self.build_temp
        self.build_temp = os.path.join(saved, ext.name)
        try:
            super().build_extension(ext)
        finally:
            self.build_temp = saved


class BuildPy(build_py):
    """build_py that also ships the public C headers as package data."""

    def run(self) -> None:
        super().run()
        if self.dry_run:
            return
        dest = os.path.join(self.build_lib, "pyesca", "include")
        os.makedirs(dest, exist_ok=True)
        for name in ("esca.h", "esca_preload.h"):
            shutil.copy2(os.path.join("native", "include", name), dest)


def extensions() -> list[Extension]:
    exts = [
        Extension(
            "pyesca._core",
            sources=["src/pyesca/_core.c", *CORE],
            include_dirs=["native/include", "native/core", "native/preload"],
            libraries=["uring"],
            extra_compile_args=CFLAGS,
            depends=[*HEADERS, "native/preload/catalog.h", "native/preload/lists.h"],
        )
    ]
    if PRELOAD:
        link_args = []
        depends = list(HEADERS) + sorted(glob("native/preload/*.h"))
        if os.path.exists(PRELOAD_MAP):
            link_args.append("-Wl,--version-script=" + PRELOAD_MAP)
            depends.append(PRELOAD_MAP)
        exts.append(
            Extension(
                LIBESCA,
                sources=[*PRELOAD, *CORE],
                include_dirs=["native/include", "native/core", "native/preload"],
                libraries=["uring", "dl", "pthread"],
                extra_compile_args=CFLAGS,
                extra_link_args=link_args,
                depends=depends,
            )
        )
    return exts


setup(
    ext_modules=extensions(),
    cmdclass={"build_ext": BuildExt, "build_py": BuildPy},
)
