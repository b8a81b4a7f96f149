"""The local rocks servers of the package tests: built once per run by
tests/rocks/build_servers.py (the real luarocks packing the repository's test rocks, plus
rocks made from Debian's lua-* packages) under the repository's target/test-rocks."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


@functools.lru_cache(maxsize=None)
def servers(lua: str = "5.4") -> Path:
    """The directory holding the servers ``main``, ``partial``, ``tampered``, ``broken``."""
    out = subprocess.run([sys.executable, str(REPO / "tests/rocks/build_servers.py"),
                          str(REPO / "target/test-rocks"), lua],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    return Path(out.stdout.strip())


def main_server(lua: str = "5.4") -> str:
    return str(servers(lua) / "main")
