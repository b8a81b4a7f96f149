"""Drives the agent (src/agent/agent.lua) over real pipes with the framed protocol."""

import json
import queue
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AGENT_PATH = ROOT / "src" / "agent" / "agent.lua"
AGENT_SOURCE = AGENT_PATH.read_text()

CANDIDATES = ("lua5.1", "lua5.2", "lua5.3", "lua5.4")
REQUIRED = ("lua5.1", "lua5.4")
INTERPRETERS = [name for name in CANDIDATES if shutil.which(name)]

# Default bound on how long one response may take.
TIMEOUT = 20.0


def encode_frame(kind, *fields):
    fields = [f.encode() if isinstance(f, str) else bytes(f) for f in fields]
    header = " ".join([kind] + [str(len(f)) for f in fields]) + "\n"
    return header.encode() + b"".join(fields)


def read_frame(stream):
    """One frame from a binary stream as [kind, field...], or None at EOF."""
    header = stream.readline()
    if not header:
        return None
    if not header.endswith(b"\n"):
        raise AssertionError(f"truncated header {header!r}")
    parts = header[:-1].split(b" ")
    fields = []
    for n in parts[1:]:
        data = stream.read(int(n))
        if len(data) != int(n):
            raise AssertionError(f"truncated field after {header!r}")
        fields.append(data)
    return [parts[0].decode()] + fields


class Result:
    def __init__(self, frames):
        self.frames = frames
        done = frames[-1]
        assert done[0] == "done", frames
        self.status = done[1].decode()
        self.values_json = done[2].decode()
        self.values = json.loads(self.values_json)
        self.error = done[3].decode("utf-8", "replace")
        self.out = b"".join(f[1] for f in frames if f[0] == "out")
        self.err = b"".join(f[1] for f in frames if f[0] == "err")
        self.streams = [(f[0], f[1]) for f in frames[:-1]]

    def __repr__(self):
        return f"Result({self.frames!r})"


class Agent:
    """A running agent; frames are read by a thread so every wait is bounded."""

    def __init__(self, lua, cwd=None):
        self.lua = lua
        self.proc = subprocess.Popen(
            [lua, "-e", AGENT_SOURCE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
        )
        self.frames = queue.Queue()
        self.stderr = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._err_reader = threading.Thread(target=self._read_err, daemon=True)
        self._err_reader.start()
        self.ready = self.next_frame()

    def _read(self):
        try:
            while True:
                frame = read_frame(self.proc.stdout)
                self.frames.put(frame)
                if frame is None:
                    return
        except Exception as exc:  # surfaced to the test through the queue
            self.frames.put(exc)

    def _read_err(self):
        self.stderr = self.proc.stderr.read()

    def next_frame(self, timeout=TIMEOUT):
        try:
            frame = self.frames.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no frame from {self.lua} within {timeout} s") from None
        if isinstance(frame, Exception):
            raise frame
        return frame

    def send(self, kind, *fields):
        self.send_raw(encode_frame(kind, *fields))

    def send_raw(self, data):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def response(self, timeout=TIMEOUT):
        frames = []
        while True:
            frame = self.next_frame(timeout)
            assert frame is not None, f"agent exited early (frames so far: {frames!r})"
            frames.append(frame)
            if frame[0] == "done":
                return Result(frames)
            assert frame[0] in ("out", "err"), frames

    def exec(self, code, args=None, chunkname="=(bioxen_vm)", timeout=TIMEOUT):
        if args is None:
            args_field = b""
        elif isinstance(args, (bytes, str)):
            args_field = args
        else:
            args_field = json.dumps(args)
        self.send("exec", code, args_field, chunkname)
        return self.response(timeout)

    def repl(self, chunk, first=True, timeout=TIMEOUT):
        self.send("repl", chunk, "1" if first else "0")
        return self.response(timeout)

    def wait(self, timeout=TIMEOUT):
        return self.proc.wait(timeout=timeout)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=TIMEOUT)
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self._reader.join(timeout=TIMEOUT)
        self._err_reader.join(timeout=TIMEOUT)
        self.proc.stderr.close()


def lua_version(lua):
    """(major, minor) of an interpreter name like lua5.3."""
    major, minor = lua[3:].split(".")
    return int(major), int(minor)


@pytest.fixture(params=INTERPRETERS)
def lua(request):
    return request.param


@pytest.fixture
def agent(lua, tmp_path):
    a = Agent(lua, cwd=tmp_path)
    yield a
    a.close()
