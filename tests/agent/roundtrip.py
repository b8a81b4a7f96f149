#!/usr/bin/env python3
"""Median round trip of `exec "return 1"` through the agent, per installed interpreter.

Not a test: run it by hand (python3 tests/agent/roundtrip.py [N]). The time covers
writing the request frame, the agent running it, and reading the out and done frames.
"""

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

AGENT = (Path(__file__).resolve().parents[2] / "src" / "agent" / "agent.lua").read_text()


def read_frame(stream):
    parts = stream.readline()[:-1].split(b" ")
    return [parts[0]] + [stream.read(int(n)) for n in parts[1:]]


def measure(lua, count):
    proc = subprocess.Popen([lua, "-e", AGENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert read_frame(proc.stdout)[0] == b"ready"
        code = b"return 1"
        request = b"exec %d 0 12\n%s=(bioxen_vm)" % (len(code), code)
        samples = []
        for _ in range(count):
            t0 = time.perf_counter_ns()
            proc.stdin.write(request)
            proc.stdin.flush()
            while read_frame(proc.stdout)[0] != b"done":
                pass
            samples.append(time.perf_counter_ns() - t0)
        proc.stdin.write(b"quit\n")
        proc.stdin.flush()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    warm = samples[count // 10:]
    return statistics.median(warm), min(warm)


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    for lua in ("lua5.1", "lua5.2", "lua5.3", "lua5.4"):
        if not shutil.which(lua):
            continue
        median, best = measure(lua, count)
        print(f"{lua}: median {median / 1000:.1f} us, min {best / 1000:.1f} us ({count} requests)")


if __name__ == "__main__":
    main()
