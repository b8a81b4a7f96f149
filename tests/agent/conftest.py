"""Drives the agent (src/agent/agent.lua) over real pipes with the framed protocol."""

import json
import os
import queue
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AGENT_PATH = ROOT / "src" / "agent" / "agent.lua"
AGENT_SOURCE = AGENT_PATH.read_text()
BOOTSTRAP = (ROOT / "src" / "agent" / "bootstrap.lua").read_text().rstrip("\n")

CANDIDATES = ("lua5.1", "lua5.2", "lua5.3", "lua5.4")
REQUIRED = ("lua5.1", "lua5.4")
INTERPRETERS = [name for name in CANDIDATES if shutil.which(name)]

# Default bound on how long one response may take.
TIMEOUT = 20.0
# Frames that carry the request's token as their first field.
TOKEN_KINDS = ("out", "err", "sync", "done", "pong", "code")
# The limit sent with every request (the host's max_output) unless a test says otherwise.
LIMIT = 1 << 30


def encode_frame(kind, *fields):
    fields = [f.encode() if isinstance(f, str) else bytes(f) for f in fields]
    header = " ".join([kind] + [str(len(f)) for f in fields]) + "\n"
    return header.encode() + b"".join(fields)


def read_frame(stream):
    """One frame from a binary stream as [kind, field...], or None at EOF. The token of
    the kinds that carry one is returned apart: (frame, token)."""
    header = stream.readline()
    if not header:
        return None, None
    if not header.endswith(b"\n"):
        raise AssertionError(f"truncated header {header!r}")
    parts = header[:-1].split(b" ")
    fields = []
    for n in parts[1:]:
        data = stream.read(int(n))
        if len(data) != int(n):
            raise AssertionError(f"truncated field after {header!r}")
        fields.append(data)
    kind = parts[0].decode()
    token = None
    if kind in TOKEN_KINDS:
        token = fields.pop(0)
    return [kind] + fields, token


class Result:
    def __init__(self, frames):
        self.frames = frames
        done = frames[-1]
        assert done[0] == "done", frames
        self.status = done[1].decode()
        self.values_json = done[2].decode()
        self.values = json.loads(self.values_json) if self.status != "toobig" else None
        self.error = done[3].decode("utf-8", "replace")
        self.out = b"".join(f[1] for f in frames if f[0] == "out")
        self.err = b"".join(f[1] for f in frames if f[0] == "err")
        self.streams = [(f[0], f[1]) for f in frames[:-1] if f[0] in ("out", "err")]

    def __repr__(self):
        return f"Result({self.frames!r})"


class Agent:
    """A running agent, started as the library starts it: `lua -e <bootstrap>`, the agent
    source on stdin, frames on descriptor 3, the real stdout and stderr apart. Frames and
    both raw streams are read by threads so every wait is bounded."""

    def __init__(self, lua, cwd=None, limit=LIMIT, body=None, expect_ready=True):
        self.lua = lua
        self.limit = limit
        self.tokens = []
        r, w = os.pipe()
        self.proc = subprocess.Popen(
            [lua, "-e", BOOTSTRAP],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            close_fds=False,
            preexec_fn=lambda: os.dup2(w, 3),
        )
        os.close(w)
        self.frames_in = os.fdopen(r, "rb")
        self.frames = queue.Queue()
        self.stderr = b""
        self.stdout = b""
        body = AGENT_SOURCE.encode() if body is None else body
        self.send_raw(str(len(body)).encode() + b"\n" + body)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._err_reader = threading.Thread(target=self._read_err, daemon=True)
        self._err_reader.start()
        self._out_reader = threading.Thread(target=self._read_out, daemon=True)
        self._out_reader.start()
        self.ready = self.next_frame() if expect_ready else None

    def _read(self):
        try:
            while True:
                frame, token = read_frame(self.frames_in)
                if token is not None:
                    expected = self.tokens[0] if self.tokens else None
                    if token != expected:
                        raise AssertionError(f"frame {frame!r} carries token {token!r}, expected {expected!r}")
                    if frame[0] in ("done", "pong", "code"):
                        self.tokens.pop(0)
                self.frames.put(frame)
                if frame is None:
                    return
        except Exception as exc:  # surfaced to the test through the queue
            self.frames.put(exc)

    def _read_err(self):
        self.stderr = self.proc.stderr.read()

    def _read_out(self):
        self.stdout = self.proc.stdout.read()

    def next_frame(self, timeout=TIMEOUT):
        try:
            frame = self.frames.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no frame from {self.lua} within {timeout} s") from None
        if isinstance(frame, Exception):
            raise frame
        return frame

    def request(self, kind, *fields):
        """The bytes of a request, with a fresh token (and the limit for exec and repl)."""
        if kind in ("exec", "repl", "ping", "code"):
            token = os.urandom(8).hex().encode()
            self.tokens.append(token)
            fields = (token,) + fields
            if kind not in ("ping", "code"):
                fields = fields + (str(self.limit),)
        return encode_frame(kind, *fields)

    def send(self, kind, *fields):
        self.send_raw(self.request(kind, *fields))

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
            assert frame[0] in ("out", "err", "sync"), frames

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

    def raw_output(self, timeout=TIMEOUT):
        """The real stdout and stderr, once the interpreter has ended."""
        self._out_reader.join(timeout=timeout)
        self._err_reader.join(timeout=timeout)
        return self.stdout, self.stderr

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=TIMEOUT)
        for stream in (self.proc.stdin, self.frames_in):
            try:
                stream.close()
            except OSError:
                pass
        self._reader.join(timeout=TIMEOUT)
        self._err_reader.join(timeout=TIMEOUT)
        self._out_reader.join(timeout=TIMEOUT)
        self.proc.stderr.close()
        self.proc.stdout.close()


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
