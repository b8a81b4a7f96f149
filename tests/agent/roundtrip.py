#!/usr/bin/env python3
"""Median round trip of `exec "return 1"` through the agent, per installed interpreter.

Not a test: run it by hand (python3 tests/agent/roundtrip.py [N]). The time covers
writing the request frame, the agent running it, and reading the out and done frames
(through the test harness's reader thread, as the agent tests drive it).
"""

import shutil
import statistics
import sys
import time

from conftest import Agent


def measure(lua, count):
    agent = Agent(lua)
    try:
        samples = []
        for _ in range(count):
            t0 = time.perf_counter_ns()
            agent.exec("return 1")
            samples.append(time.perf_counter_ns() - t0)
        agent.send("quit")
        agent.wait(timeout=10)
    finally:
        agent.close()
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
