"""Shared fixtures of the bioxen_vm test suite (run once per backend by run_tests.sh).

Environment checked at start (run_tests.sh sets them; unset, nothing is checked):
* ``BIOXEN_VM_EXPECT_BACKEND``: the backend the package must have chosen.
* ``BIOXEN_VM_EXPECT_LIB_SHA256``: the SHA-256 of the library the package must have loaded
  (the freshly built one); anything else stops the run.
* ``BIOXEN_VM_EXPECT_FASTCALL``: ``1`` if executions must take the compiled fast path
  (``bioxen_vm._fastcall`` was built by the install), ``0`` if they must not.
* ``BIOXEN_VM_REQUIRE_INSTALLED=1``: the package must be imported from an installation,
  not from the source tree.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, Optional

import pytest

import bioxen_vm

SOURCE_DIR = Path(__file__).resolve().parents[1]
REPO = SOURCE_DIR.parents[1]


def pytest_report_header(config: pytest.Config) -> str:
    return (f"bioxen_vm {bioxen_vm.__version__}: backend {bioxen_vm.BACKEND}, "
            f"fastcall {bioxen_vm.FASTCALL}, "
            f"library {bioxen_vm.LIBRARY_PATH}, package {Path(bioxen_vm.__file__).parent}")


def pytest_sessionstart(session: pytest.Session) -> None:
    problems = []
    expected_backend = os.environ.get("BIOXEN_VM_EXPECT_BACKEND")
    if expected_backend and bioxen_vm.BACKEND != expected_backend:
        problems.append(f"backend is {bioxen_vm.BACKEND}, expected {expected_backend}")
    expected_fastcall = os.environ.get("BIOXEN_VM_EXPECT_FASTCALL")
    if expected_fastcall and bioxen_vm.FASTCALL != (expected_fastcall == "1"):
        problems.append(f"FASTCALL is {bioxen_vm.FASTCALL}, expected {expected_fastcall} "
                        "(was bioxen_vm._fastcall built by the install?)")
    expected_sha = os.environ.get("BIOXEN_VM_EXPECT_LIB_SHA256")
    if expected_sha:
        with open(bioxen_vm.LIBRARY_PATH, "rb") as f:
            actual = hashlib.sha256(f.read()).hexdigest()
        if actual != expected_sha:
            problems.append(f"the package loaded {bioxen_vm.LIBRARY_PATH} (sha256 {actual}), "
                            f"not the freshly built library (sha256 {expected_sha})")
    if os.environ.get("BIOXEN_VM_REQUIRE_INSTALLED") == "1":
        package = Path(bioxen_vm.__file__).resolve().parent
        if SOURCE_DIR in package.parents or package == SOURCE_DIR / "bioxen_vm":
            problems.append(f"bioxen_vm was imported from the source tree ({package}), "
                            "not from the installed package")
    if problems:
        raise pytest.UsageError("bioxen_vm test environment is wrong: " + "; ".join(problems))


@pytest.fixture
def vm():
    """A standalone VM, closed after the test."""
    v = bioxen_vm.LuaProcess("test_vm")
    yield v
    v.close()


@pytest.fixture
def manager():
    """A manager (4 workers), closed after the test."""
    m = bioxen_vm.VMManager(max_workers=4)
    yield m
    m.close()


def run_python(code: str, cwd: Path, env: Optional[Dict[str, str]] = None,
               timeout: float = 120, input: Optional[bytes] = None
               ) -> subprocess.CompletedProcess:
    """Runs ``code`` in a fresh interpreter in ``cwd`` with HOME set to ``cwd``/home."""
    home = cwd / "home"
    home.mkdir(exist_ok=True)
    full_env = dict(os.environ)
    full_env.update({"HOME": str(home), "PYTHONDONTWRITEBYTECODE": "1"})
    full_env.pop("PYLUA_DEBUG", None)
    full_env.pop("BIOXEN_VM_LOG", None)
    if env:
        full_env.update(env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=str(cwd),
                          env=full_env, capture_output=True, timeout=timeout, input=input)


def tree(path: Path) -> list:
    """Every file and directory under ``path`` (relative), sorted."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))
