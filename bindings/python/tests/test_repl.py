"""``python -m bioxen_vm``: the interactive REPL, driven through a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from conftest import tree


def _env(tmp_path):
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = dict(os.environ, HOME=str(home), PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYLUA_DEBUG", None)
    return env


def _repl(tmp_path, stdin, *args):
    return subprocess.run([sys.executable, "-m", "bioxen_vm", *args], input=stdin,
                          cwd=str(tmp_path), env=_env(tmp_path), capture_output=True,
                          timeout=60)


def test_piped_lines_are_evaluated_like_lua(tmp_path):
    script = (b"x = 42\n"
              b"print('Value:', x)\n"
              b"x * 2\n"
              b"=x\n"
              b"function double(a)\n"
              b"  return a * 2\n"
              b"end\n"
              b"double(21)\n"
              b"error('boom')\n"
              b"'still here'\n")
    r = _repl(tmp_path, script)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"Value:\t42\n84\n42\n42\nstill here\n"
    assert r.stderr.startswith(b"stdin:1: boom\nstack traceback:")
    assert tree(tmp_path) == ["home"]  # no history file, nothing written


def test_prompts_and_continuation(tmp_path):
    r = _repl(tmp_path, b"if true then\nprint('in block')\nend\n1 + 1\n", "--prompt")
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert out.startswith("Lua 5.4 on bioxen_vm ")
    body = out.split("\n", 1)[1]
    assert body == "> >> >> in block\n> 2\n> \n"


def test_end_of_input_exits_cleanly(tmp_path):
    r = _repl(tmp_path, b"")
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
    r = _repl(tmp_path, b"print('no newline')")
    assert (r.returncode, r.stdout) == (0, b"no newline\n")
    r = _repl(tmp_path, b"while true do end\n", "--timeout", "0.2")
    assert r.returncode == 0 and b"timed out" in r.stderr


def test_ctrl_c_interrupts_the_evaluation_and_keeps_the_session(tmp_path):
    p = subprocess.Popen([sys.executable, "-m", "bioxen_vm", "--prompt"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         cwd=str(tmp_path), env=_env(tmp_path))
    seen = bytearray()

    def pump():
        while True:
            chunk = os.read(p.stdout.fileno(), 4096)
            if not chunk:
                return
            seen.extend(chunk)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        # Both lines are in the pipe before the second prompt shows, so once it shows the
        # endless loop is being evaluated (output only comes when an evaluation ends).
        p.stdin.write(b"kept = 'yes'\nwhile true do end\n")
        p.stdin.flush()
        deadline = time.monotonic() + 20
        while bytes(seen).count(b"> ") < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert bytes(seen).count(b"> ") == 2, bytes(seen)
        time.sleep(0.3)
        p.send_signal(signal.SIGINT)
        p.stdin.write(b"print('after', kept)\n")
        p.stdin.close()
        assert p.wait(30) == 0
    finally:
        if p.poll() is None:
            p.kill()
    reader.join(5)
    assert bytes(seen).endswith(b"> after\tyes\n> \n")
    assert b"Lua execution interrupted" in p.stderr.read()


def _read_until(p, out, suffix, seconds=20):
    """Reads the child's stdout into ``out`` until it ends with ``suffix`` (or time runs out)."""
    import select

    deadline = time.monotonic() + seconds
    while not out.endswith(suffix) and time.monotonic() < deadline:
        ready, _, _ = select.select([p.stdout], [], [], 0.1)
        if ready:
            chunk = os.read(p.stdout.fileno(), 4096)
            if not chunk:
                break
            out.extend(chunk)
    return out.endswith(suffix)


def test_ctrl_c_at_the_prompt_discards_the_incomplete_chunk(tmp_path):
    p = subprocess.Popen([sys.executable, "-m", "bioxen_vm", "--prompt"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, cwd=str(tmp_path), env=_env(tmp_path))
    try:
        p.stdin.write(b"function broken(\n")
        p.stdin.flush()
        out = bytearray()
        assert _read_until(p, out, b">> "), bytes(out)
        # At once, with no wait: a Ctrl-C at the prompt is handled even when it arrives
        # before the REPL is back in its read.
        p.send_signal(signal.SIGINT)
        out.clear()
        assert _read_until(p, out, b"\n> "), bytes(out)
        p.stdin.write(b"print('fresh')\n")
        p.stdin.close()
        rest = p.stdout.read()
        assert p.wait(30) == 0
    finally:
        if p.poll() is None:
            p.kill()
    assert rest == b"fresh\n> \n"


def test_lines_typed_ahead_survive_a_ctrl_c_at_the_prompt(tmp_path):
    p = subprocess.Popen([sys.executable, "-m", "bioxen_vm", "--prompt"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, cwd=str(tmp_path), env=_env(tmp_path))
    try:
        out = bytearray()
        assert _read_until(p, out, b"> ")
        for _ in range(3):
            p.send_signal(signal.SIGINT)
            out.clear()
            assert _read_until(p, out, b"\n> "), bytes(out)
        p.stdin.write(b"a = 1\nb = 2\na + b\n")
        p.stdin.close()
        rest = p.stdout.read()
        assert p.wait(30) == 0
    finally:
        if p.poll() is None:
            p.kill()
    assert rest.endswith(b"3\n> \n")


def test_options_and_version(tmp_path):
    r = _repl(tmp_path, b"return io.open ~= nil\n", "--sandbox", "trusted")
    assert r.stdout == b"true\n"
    r = _repl(tmp_path, b"", "--version")
    assert r.returncode == 0 and r.stdout.startswith(b"bioxen_vm ")
    r = _repl(tmp_path, b"", "--memory-limit", "10")
    assert r.returncode == 2 and b"python -m bioxen_vm:" in r.stderr
