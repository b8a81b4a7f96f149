"""The Python examples (examples/python/*.py): each runs as a script with the installed
package, in an empty temporary current directory with HOME pointed at another one, exits 0,
prints what it should, and leaves both directories empty."""

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import bioxen_vm

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "python"

EXPECTED = {
    "quickstart.py": [
        r"2 \+ 2 = 4",
        r"values: \['answer', 42, \[1, 2, 3\], \{'x': 1\}\]",
        r"Hello, Lua!",
        r"captured stdout: 'line\\t1\\nline\\t2\\nline\\t3'",
        r"success: True return_code: 0",
        r"6 \* 7 = 42",
    ],
    "managed_vms.py": [
        r"alpha: counter = 101",
        r"beta: counter = 201",
        r"gamma: counter = 301",
        r"alpha via its object: 101",
        r"limited: \{'vm_id': 'limited', 'vm_type': 'basic'\}",
        r"total VMs: 4",
        r"after removing gamma: \['alpha', 'beta', 'limited'\]",
    ],
    "interactive_sessions.py": [
        r"read_output -> 'Value:\\t42\\n'",
        r"1 \+ 1 -> '2\\n'",
        r"square\(12\) -> '144\\n'",
        r"error -> stdin:1: boom",
        r"still alive -> '42\\n'",
        r"x via execute_vm_sync -> 42",
        r"callback received -> 'tick\\t1\\ntick\\t2\\ntick\\t3\\n'",
        r"sessions -> \['repl'\]",
    ],
    "async_and_clusters.py": [
        r"fib\(20\) = 6765",
        r"cluster: \['calc_000', 'calc_001', 'calc_002', 'calc_003'\]",
        r"  calc_000: \[0, 46368\]",
        r"  calc_001: \[1, 46368\]",
        r"  calc_002: \[2, 46368\]",
        r"  calc_003: \[3, 46368\]",
        r"4 x fib\(24\) on the worker pool in \d+\.\d ms",
        r"status: \{'calc_000': 'done', 'calc_001': 'done', 'calc_002': 'done', "
        r"'calc_003': 'done'\}",
        r"sum of shard \* 10: 60",
        r"cancelled the job: True",
        r"removed 4 cluster VMs",
    ],
    "error_handling.py": [
        r"Lua error -> success: False return_code: 1",
        r"  message: .*:2: attempt to index a nil value \(local 't'\)",
        r"syntax error -> success: False",
        r"timeout -> VMTimeoutError \| Lua execution timed out after 0\.1 seconds "
        r"\| is a LuaProcessError: True",
        r"after the timeout: still here",
        r"memory limit -> VMMemoryLimitError",
        r"after the memory limit: 2",
        r"interrupt -> VMInterruptedError",
        r"empty code -> Lua code cannot be empty",
        r"io\.open, os\.execute, require -> nil\tnil\tnil",
        r"unknown session -> SessionNotFoundError \| VM 'nonexistent' not found",
        r"duplicate id -> VM with ID 'a' already exists",
        r"xcpng without a config -> ValueError \| XCP-ng VMs require a config",
    ],
}


def _import_root():
    return str(Path(bioxen_vm.__file__).resolve().parent.parent)


def _snapshot(path):
    return sorted(str(p.relative_to(path)) for p in Path(path).rglob("*"))


def run_example(name):
    with tempfile.TemporaryDirectory(prefix="example-cwd-") as cwd, \
            tempfile.TemporaryDirectory(prefix="example-home-") as home:
        env = dict(os.environ)
        env.pop("PYLUA_DEBUG", None)
        env.pop("BIOXEN_VM_LOG", None)
        env["HOME"] = home
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(
            [_import_root()] + [p for p in [os.environ.get("PYTHONPATH")] if p])
        proc = subprocess.run([sys.executable, str(EXAMPLES / name)], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=120)
        assert _snapshot(cwd) == [], "files written to the current directory"
        assert _snapshot(home) == [], "files written to HOME"
    return proc


def test_every_example_is_tested():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example(name):
    proc = run_example(name)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    patterns = EXPECTED[name]
    assert len(lines) == len(patterns), proc.stdout
    for line, pattern in zip(lines, patterns):
        assert re.fullmatch(pattern, line), (pattern, line)
