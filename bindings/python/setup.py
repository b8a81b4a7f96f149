"""Build step of the bioxen_vm package: compile libbioxen_vm and bundle it.

``pip install ./bindings/python`` (pip builds in the source tree) runs ``cargo build
--release`` at the repository root (two levels above this file) and copies the shared
library and the C header into the package, so the installed package is self-contained.

Environment:
* ``BIOXEN_VM_PREBUILT_LIB=/path/to/libbioxen_vm.so``: bundle that file, skip cargo.
* ``CARGO`` (the cargo to run), ``CARGO_TARGET_DIR`` (where cargo builds): as for cargo.

It also compiles ``bioxen_vm._fastcall`` (``bioxen_vm/_fastcall.c``), the execution hot path
in C against the CPython API. It is optional: without a C compiler or the Python headers
(Debian: ``python3-dev``) the build goes on without it and the package runs executions
through its ctypes or cffi backend alone. It does not link the library (it is handed the
loaded library's function addresses at import), so the wheel is tagged for this CPython.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

if sys.platform == "darwin":
    LIBRARY_FILE = "libbioxen_vm.dylib"
elif sys.platform == "win32":
    LIBRARY_FILE = "bioxen_vm.dll"
else:
    LIBRARY_FILE = "libbioxen_vm.so"


def crate_version() -> str:
    """The version of the Rust crate (the package carries the library's version)."""
    cargo_toml = REPO / "Cargo.toml"
    if cargo_toml.is_file():
        text = cargo_toml.read_text(encoding="utf-8")
        package = text.split("[package]", 1)[-1].split("\n[", 1)[0]
        match = re.search(r'^version\s*=\s*"([^"]+)"', package, re.M)
        if match:
            return match.group(1)
    pkg_info = HERE / "PKG-INFO"  # building from an sdist
    if pkg_info.is_file():
        match = re.search(r"^Version: (.+)$", pkg_info.read_text(encoding="utf-8"), re.M)
        if match:
            return match.group(1).strip()
    raise RuntimeError(f"cannot find the crate version ({cargo_toml} missing)")


def build_native() -> Path:
    """Runs cargo (unless a prebuilt library is given) and returns the library's path."""
    prebuilt = os.environ.get("BIOXEN_VM_PREBUILT_LIB")
    if prebuilt:
        path = Path(prebuilt)
        if not path.is_file():
            raise RuntimeError(f"BIOXEN_VM_PREBUILT_LIB={prebuilt!r} is not a file")
        return path
    if not (REPO / "Cargo.toml").is_file():
        raise RuntimeError(
            f"bioxen_vm is built from a checkout of its repository (no Cargo.toml in {REPO}); "
            "set BIOXEN_VM_PREBUILT_LIB to use a library built elsewhere")
    cargo = os.environ.get("CARGO", "cargo")
    print(f"bioxen_vm: running {cargo} build --release in {REPO}", file=sys.stderr)
    subprocess.run([cargo, "build", "--release"], cwd=str(REPO), check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR") or (REPO / "target"))
    if not target.is_absolute():
        target = REPO / target
    path = target / "release" / LIBRARY_FILE
    if not path.is_file():
        raise RuntimeError(f"cargo build finished but {path} does not exist")
    return path


class BuildPyWithNative(build_py):
    """``build_py`` that also bundles the freshly built library and the header."""

    def run(self) -> None:
        super().run()
        library = build_native().resolve()
        destination = Path(self.build_lib) / "bioxen_vm"
        destination.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(library, destination / LIBRARY_FILE)
        os.chmod(destination / LIBRARY_FILE, 0o755)
        header = REPO / "include" / "bioxen_vm.h"
        if not header.is_file():
            header = HERE / "bioxen_vm" / "bioxen_vm.h"
        shutil.copyfile(header, destination / "bioxen_vm.h")


cmdclass = {"build_py": BuildPyWithNative}


def header_dir() -> str:
    """Where ``bioxen_vm.h`` is for compiling the extension (the checkout's include/)."""
    include = REPO / "include"
    if (include / "bioxen_vm.h").is_file():
        return str(include)
    return str(HERE / "bioxen_vm")


fastcall = Extension(
    "bioxen_vm._fastcall",
    sources=["bioxen_vm/_fastcall.c"],
    include_dirs=[header_dir()],
    extra_compile_args=["-std=c99", "-Wall", "-Wextra"] if sys.platform != "win32" else [],
    optional=True,
)

setup(version=crate_version(), cmdclass=cmdclass, ext_modules=[fastcall])
