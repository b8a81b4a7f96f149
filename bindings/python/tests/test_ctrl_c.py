"""Ctrl-C: SIGINT stops the main thread's blocking call (bioxen_vm/_sigint.py).

Each case runs a child interpreter (the installed package, as the suite's other subprocess
tests do) that starts a blocking call; a helper thread of the child prints ``STARTED`` once
the Lua code runs and the main thread has sat in the call for 20 ms. Then this process sends
SIGINT and reads what the child reports: when KeyboardInterrupt came out of the call (both
clocks are CLOCK_MONOTONIC, so the times compare across the processes), then what the VM
answers afterwards (``return 1+1``, and a global set before). The child must then exit with
status 0 and nothing on stderr, leaving no process behind (it runs in a process group of its
own, which is killed whole when a test fails).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

import pytest

#: KeyboardInterrupt must come out of the call within this long after the signal.
LIMIT = 1.0
#: How long to wait for a line the child must print (generous; the limit is checked apart).
WAIT = 20.0

PRELUDE = r'''
import json, os, signal, sys, threading, time

MAIN = threading.main_thread()


def say(*words):
    sys.stdout.write(" ".join(str(w) for w in words) + "\n")
    sys.stdout.flush()


def main_blocked():
    """True when the main thread stayed at one instruction for 20 ms: it is in a call
    (the GIL is free meanwhile, so a thread running Python would have moved on)."""
    frame = sys._current_frames().get(MAIN.ident)
    if frame is None:
        return False
    lasti = frame.f_lasti
    time.sleep(0.02)
    again = sys._current_frames().get(MAIN.ident)
    return again is frame and again.f_lasti == lasti


def when(ready, word="STARTED"):
    """Prints `word` once ready() holds and the main thread is blocked (polled)."""
    def poll():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if ready() and main_blocked():
                    say(word)
                    return
            except Exception:
                pass
            time.sleep(0.005)
        say("NEVER-STARTED")
    threading.Thread(target=poll, daemon=True).start()


def interrupted(call):
    """Runs call() on the main thread; reports when KeyboardInterrupt came out of it."""
    try:
        call()
    except KeyboardInterrupt:
        say("KI", repr(time.monotonic()))
        return
    except BaseException as exc:
        say("RAISED", type(exc).__name__, str(exc).replace("\n", " "))
        sys.exit(3)
    say("RETURNED")
    sys.exit(4)


def after(*values):
    say("AFTER", json.dumps(values))
'''


class Child:
    """A child interpreter running PRELUDE + ``body``, read line by line."""

    def __init__(self, tmp_path: Path, body: str, env: Optional[Dict[str, str]] = None
                 ) -> None:
        home = tmp_path / "home"
        home.mkdir(exist_ok=True)
        full_env = dict(os.environ)
        full_env.update({"HOME": str(home), "PYTHONDONTWRITEBYTECODE": "1"})
        for name in ("PYLUA_DEBUG", "BIOXEN_VM_LOG", "BIOXEN_VM_SIGINT"):
            full_env.pop(name, None)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-c", PRELUDE + textwrap.dedent(body)], cwd=str(tmp_path),
            env=full_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True)
        self.lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self.seen: List[str] = []
        self.stderr = b""
        threading.Thread(target=self._read_stdout, daemon=True).start()
        self._stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr_reader.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self.lines.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def expect(self, word: str, timeout: float = WAIT) -> List[str]:
        """The words of the next line starting with ``word`` (other lines are kept)."""
        for i, line in enumerate(self.seen):
            if line.split(" ", 1)[0] == word:
                del self.seen[i]
                return line.split(" ")[1:]
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = "<no line>"
            if line is None or line == "<no line>":
                self.kill()
                pytest.fail(f"the child printed no {word!r} line (got {self.seen!r}; "
                            f"stderr: {self.stderr.decode('utf-8', 'replace')[-2000:]})")
            if line.split(" ", 1)[0] == word:
                return line.split(" ")[1:]
            if line.startswith(("RAISED", "RETURNED", "NEVER-STARTED")):
                self.kill()
                pytest.fail(f"waiting for {word!r}, the child said {line!r}")
            self.seen.append(line)

    def signal(self, signum: int = signal.SIGINT, pid: Optional[int] = None) -> float:
        sent = time.monotonic()
        os.kill(pid or self.proc.pid, signum)
        return sent

    def _group_left(self) -> bool:
        """Whether a process of the child's group (its descendants) is still there."""
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def kill(self) -> None:
        """Kills the child and whatever it started (its process group)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=WAIT)
        self._stderr_reader.join(timeout=WAIT)

    def finish(self) -> int:
        """Waits for the child's exit; its exit status."""
        try:
            rc = self.proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail("the child did not exit")
        self._stderr_reader.join(timeout=WAIT)
        return rc

    def interrupt(self, pid: Optional[int] = None) -> List:
        """Once STARTED: SIGINT (to ``pid``, else the child), KeyboardInterrupt within
        LIMIT of it; AFTER's values."""
        self.expect("STARTED")
        sent = self.signal(pid=pid)
        raised = float(self.expect("KI")[0])
        assert 0 <= raised - sent < LIMIT, f"KeyboardInterrupt {raised - sent:.3f} s after SIGINT"
        return json.loads(" ".join(self.expect("AFTER")))

    def assert_clean_exit(self) -> None:
        """Exit status 0, nothing on stderr, and no descendant left once it has gone."""
        rc = self.finish()
        err = self.stderr.decode("utf-8", "replace")
        assert rc == 0 and not err.strip(), (rc, err[-3000:])
        self.assert_no_leftovers()

    def assert_no_leftovers(self) -> None:
        """Once the child has exited: none of its descendants is left (a bounded poll)."""
        deadline = time.monotonic() + WAIT
        while self._group_left() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not self._group_left(), "the child left processes behind"


def interrupt_once(tmp_path: Path, body: str, env: Optional[Dict[str, str]] = None
                   ) -> List:
    """Runs ``body``; SIGINT once it started; checks the delay; returns AFTER's values."""
    child = Child(tmp_path, body, env)
    try:
        values = child.interrupt()
        child.assert_clean_exit()
    finally:
        child.kill()
    return values


# --- the blocking calls ---------------------------------------------------------------------

VM = '''
import bioxen_vm
vm = bioxen_vm.LuaProcess("t")
vm.execute_string("x = 41")
when(lambda: vm.info()["running"])
'''
VM_AFTER = '''
after(vm.execute_string("return 1+1")["values"], vm.execute_string("return x")["values"])
'''

MANAGER = '''
import bioxen_vm
m = bioxen_vm.VMManager(max_workers=2)
v = m.create_vm("a")
m.execute_vm_sync("a", "x = 41")
when(lambda: m.get_vm_info("a")["running"])
'''
MANAGER_AFTER = '''
after(m.execute_vm_sync("a", "return 1+1")["values"], v.execute_string("return x")["values"],
      m.get_vm_status("a"))
'''

CASES = {
    # A pure Lua loop, then one that calls into C all the time (a busy wait on the clock).
    "execute_string": VM + '''
interrupted(lambda: vm.execute_string("while true do end"))
''' + VM_AFTER,
    "execute_string_clock_loop": VM + '''
interrupted(lambda: vm.execute_string(
    "local t = os.clock() while os.clock() - t < 120 do local s = tostring(t) end"))
''' + VM_AFTER,
    "execute_with_args": VM + '''
interrupted(lambda: vm.execute_string("local n = ... while n > 0 do end", args=[1]))
''' + VM_AFTER,
    "execute_file": VM + '''
with open("loop.lua", "w") as f:
    f.write("while true do end\\n")
interrupted(lambda: vm.execute_file("loop.lua"))
''' + VM_AFTER,
    "execute_temp_script": VM + '''
interrupted(lambda: vm.execute_temp_script("while true do end"))
''' + VM_AFTER,
    "vm_future_result": VM + '''
future = vm.execute_async("while true do end")
interrupted(future.result)
after(vm.execute_string("return 1+1")["values"], vm.execute_string("return x")["values"],
      future.cancelled())
''',
    "manager_execute_vm_sync": MANAGER + '''
interrupted(lambda: m.execute_vm_sync("a", "while true do end"))
''' + MANAGER_AFTER,
    "managed_vm_execute_string": MANAGER + '''
interrupted(lambda: v.execute_string("while true do end"))
''' + MANAGER_AFTER,
    "managed_vm_execute_file": MANAGER + '''
with open("loop.lua", "w") as f:
    f.write("while true do end\\n")
interrupted(lambda: v.execute_file("loop.lua"))
''' + MANAGER_AFTER,
    "manager_future_result": MANAGER + '''
future = m.execute_vm_async("a", "while true do end")
interrupted(future.result)
''' + MANAGER_AFTER,
    "manager_future_exception": MANAGER + '''
future = m.execute_vm_async("a", "while true do end")
interrupted(future.exception)
''' + MANAGER_AFTER,
    "manager_wait_for_vm": MANAGER + '''
m.execute_vm_async("a", "while true do end")
interrupted(lambda: m.wait_for_vm("a"))
''' + MANAGER_AFTER,
    "cluster_wait": '''
import bioxen_vm
m = bioxen_vm.VMManager(max_workers=4)
ids = m.create_vm_cluster("c", 3)
for i in ids:
    m.execute_vm_sync(i, "x = 41")
futures = m.broadcast_to_cluster("c_*", "while true do end")
when(lambda: all(m.get_vm_info(i)["running"] for i in ids))
interrupted(lambda: m.wait_for_cluster(futures))
after([m.execute_vm_sync(i, "return 1+x")["values"] for i in ids],
      sorted(m.get_cluster_status("c_*").values()))
''',
    "cluster_wait_all": '''
import bioxen_vm
m = bioxen_vm.VMManager(max_workers=4)
ids = m.create_vm_cluster("c", 2)
for i in ids:
    m.execute_vm_sync(i, "x = 41")
cluster = bioxen_vm.VMCluster(m, "c", ids)
futures = cluster.broadcast("while true do end")
when(lambda: all(m.get_vm_info(i)["running"] for i in ids))
interrupted(lambda: cluster.wait_all(futures))
after([m.execute_vm_sync(i, "return 1+x")["values"] for i in ids], cluster.get_status())
''',
    # The session's line evaluated by a worker while the main thread waits for it.
    "session_read_output": '''
import bioxen_vm
m = bioxen_vm.VMManager(max_workers=2)
s = m.create_interactive_vm("s")
m.execute_interactive_command("s", "x = 41")
s.send_input("while true do end")
when(lambda: m.list_interactive_sessions()["s"]["evaluating"])
interrupted(lambda: s.read_output(timeout=120))
after(m.execute_interactive_command("s", "print(1+1)"),
      m.execute_interactive_command("s", "print(x)"))
''',
    # The only worker is busy elsewhere: the reading thread evaluates the line itself.
    "session_read_output_evaluating": '''
import bioxen_vm
m = bioxen_vm.VMManager(max_workers=1)
m.create_vm("busy")
s = m.create_interactive_vm("s")
m.execute_interactive_command("s", "x = 41")
busy = m.execute_vm_async("busy", "while true do end")
deadline = time.monotonic() + 30
while not m.get_vm_info("busy")["running"] and time.monotonic() < deadline:
    time.sleep(0.005)
s.send_input("while true do end")
when(lambda: m.list_interactive_sessions()["s"]["evaluating"])
interrupted(lambda: s.read_output(timeout=120))
busy.cancel()
after(m.execute_interactive_command("s", "print(1+1)"),
      m.execute_interactive_command("s", "print(x)"))
''',
    "session_execute_interactive_command": '''
import bioxen_vm
m = bioxen_vm.VMManager(max_workers=2)
s = m.create_interactive_vm("s")
m.execute_interactive_command("s", "x = 41")
when(lambda: m.list_interactive_sessions()["s"]["evaluating"])
interrupted(lambda: s.execute_and_wait("while true do end", timeout=120))
after(m.execute_interactive_command("s", "print(1+1)"),
      m.execute_interactive_command("s", "print(x)"))
''',
    "session_broadcast": '''
import bioxen_vm
m = bioxen_vm.VMManager(max_workers=2)
for i in ("s1", "s2"):
    m.create_interactive_vm(i)
    m.execute_interactive_command(i, "x = 41")
when(lambda: all(m.list_interactive_sessions()[i]["evaluating"] for i in ("s1", "s2")))
interrupted(lambda: m.broadcast_to_interactive_sessions("s*", "while true do end", 120))
after(m.broadcast_to_interactive_sessions("s*", "print(1+x)"))
''',
    "standalone_session_read_output": '''
import bioxen_vm
vm = bioxen_vm.LuaProcess("t")
vm.start()
vm.send_input("x = 41")
vm.read_output(timeout=10)
vm.send_input("while true do end")
when(lambda: vm._session_manager.list_interactive_sessions()["t"]["evaluating"])
interrupted(lambda: vm.read_output(timeout=120))
vm.send_input("print(1+1)")
first = vm.read_output(timeout=10)
vm.send_input("print(x)")
after(first, vm.read_output(timeout=10))
''',
    # The compatibility package is bioxen_vm underneath: the same behaviour.
    "compat_execute_string": '''
import pylua_bioxen_vm_lib as compat
vm = compat.create_vm("c")
vm.execute_string("x = 41")
when(lambda: vm.info()["running"])
interrupted(lambda: vm.execute_string("while true do end"))
''' + VM_AFTER,
    "compat_manager_execute": '''
from pylua_bioxen_vm_lib.vm_manager import VMManager
m = VMManager()
v = m.create_vm("a")
m.execute_vm_sync("a", "x = 41")
when(lambda: m.get_vm_info("a")["running"])
interrupted(lambda: m.execute_vm_sync("a", "while true do end"))
''' + MANAGER_AFTER,
}

EXPECTED = {
    "vm": [[2], [41]],
    "vm_future_result": [[2], [41], True],
    "manager": [[2], [41], None],
    "manager_job": [[2], [41], "cancelled"],
    "cluster_wait": [[[42], [42], [42]], ["cancelled", "cancelled", "cancelled"]],
    "cluster_wait_all": [[[42], [42]], {"c_000": "cancelled", "c_001": "cancelled"}],
    "session": ["2\n", "41\n"],
    "session_broadcast": [{"s1": "42\n", "s2": "42\n"}],
}


def _expected(name: str) -> List:
    if name in EXPECTED:
        return EXPECTED[name]
    if name.startswith(("manager_future", "manager_wait")):
        return EXPECTED["manager_job"]
    if name.startswith(("manager", "managed", "compat_manager")):
        return EXPECTED["manager"]
    if "session" in name:
        return EXPECTED["session"]
    return EXPECTED["vm"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_ctrl_c_stops_the_call(tmp_path: Path, name: str) -> None:
    assert interrupt_once(tmp_path, CASES[name]) == _expected(name)


def test_ctrl_c_stops_a_process_vm(tmp_path: Path) -> None:
    """A process VM (a child interpreter) is stopped too, and answers afterwards (its
    globals may be gone: the library restarts a child it had to kill)."""
    values = interrupt_once(tmp_path, '''
import bioxen_vm
vm = bioxen_vm.create_vm("p", vm_type="process")
vm.execute_string("x = 41")
when(lambda: vm.info()["running"])
interrupted(lambda: vm.execute_string("while true do end"))
after(vm.execute_string("return 1+1")["values"])
''')
    assert values == [[2]]


def test_ctrl_c_stops_a_network_mode(tmp_path: Path) -> None:
    """A networked VM's server mode waiting for a client (a process VM with LuaSocket)."""
    values = interrupt_once(tmp_path, '''
import socket
import bioxen_vm
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
vm = bioxen_vm.NetworkedLuaVM("n")
when(lambda: vm.info()["running"])
interrupted(lambda: vm.start_server(port, accept_timeout=120))
after(vm.execute_string("return 1+1")["values"])
''')
    assert values == [[2]]


def test_a_stop_that_did_not_take_is_made_again(tmp_path: Path) -> None:
    """The library can miss an interrupt (one that comes as a process VM's call begins, for
    one): a stop is made again while its call stays blocked. Here the first stop of a
    registered call does nothing; the second, 0.1 s later, interrupts."""
    values = interrupt_once(tmp_path, '''
import bioxen_vm
from bioxen_vm import _hotpath, _sigint
from bioxen_vm._convert import NO_JSON
vm = bioxen_vm.LuaProcess("t")
vm.execute_string("x = 41")
stops = []
def second_stop_interrupts(frame_locals):
    stops.append(time.monotonic())
    if len(stops) == 2:
        frame_locals["vm"].interrupt()
@_sigint.stops(second_stop_interrupts)
def blocking(vm):
    return _hotpath.execute(vm._handle, "while true do end", NO_JSON, 0)
when(lambda: vm.info()["running"])
interrupted(lambda: blocking(vm))
time.sleep(3 * _sigint.RETRY_EVERY)  # no further stop once the call has ended
after(vm.execute_string("return 1+1")["values"], vm.execute_string("return x")["values"],
      len(stops), stops[1] - stops[0])
''')
    assert values[:3] == [[2], [41], 2]
    assert 0.09 <= values[3] < 0.5  # RETRY_EVERY, and a margin for a loaded machine


def test_uncaught_ctrl_c_ends_the_program(tmp_path: Path) -> None:
    """Uncaught, the KeyboardInterrupt ends the program as Python does (killed by SIGINT
    after the traceback), with jobs still running on a manager: nothing holds up the exit."""
    child = Child(tmp_path, '''
import bioxen_vm
m = bioxen_vm.VMManager(max_workers=2)
m.create_vm("bg")
m.execute_vm_async("bg", "while true do end")
vm = bioxen_vm.LuaProcess("t")
when(lambda: vm.info()["running"])
vm.execute_string("while true do end")
''')
    try:
        child.expect("STARTED")
        sent = child.signal()
        rc = child.finish()
        took = time.monotonic() - sent
        child.assert_no_leftovers()
    finally:
        child.kill()
    assert rc == -signal.SIGINT, child.stderr
    assert b"KeyboardInterrupt" in child.stderr
    assert took < 5 + LIMIT  # the manager's documented grace, at most


def test_stopped_calls_give_their_buffers_back(tmp_path: Path) -> None:
    """The KeyboardInterrupt comes out right after the foreign call returns: the result
    buffer the call took from the backend's pool goes back all the same (none is lost per
    Ctrl-C). With the fast path the backend's pool is not used, and stays as it is."""
    child = Child(tmp_path, '''
import bioxen_vm
from bioxen_vm._native import backend
vm = bioxen_vm.LuaProcess("t")
vm.execute_string("return 1")
pooled = len(backend._into_slots)
for _ in range(3):
    when(lambda: vm.info()["running"])
    interrupted(lambda: vm.execute_string("while true do end"))
after(pooled, len(backend._into_slots), vm.execute_string("return 1+1")["values"])
''')
    try:
        for _ in range(3):
            child.expect("STARTED")
            child.signal()
            child.expect("KI")
        pooled, after, answer = json.loads(" ".join(child.expect("AFTER")))
        child.assert_clean_exit()
    finally:
        child.kill()
    assert after == pooled and answer == [2]


# --- other threads, handlers, modes -------------------------------------------------------

def test_calls_of_other_threads_go_on(tmp_path: Path) -> None:
    """SIGINT is the main thread's: a call running on another thread is not stopped (it
    ends by its own timeout), while the main thread gets its KeyboardInterrupt."""
    values = interrupt_once(tmp_path, '''
import bioxen_vm
vm = bioxen_vm.LuaProcess("w")
outcome = {}
def work():
    started = time.monotonic()
    try:
        vm.execute_string("while true do end", timeout=2)
    except Exception as exc:
        outcome["exc"] = type(exc).__name__
    outcome["took"] = time.monotonic() - started
    done.set()
done = threading.Event()
threading.Thread(target=work).start()
when(lambda: vm.info()["running"])
interrupted(lambda: time.sleep(60))
done.wait(20)
after(outcome["exc"], outcome["took"] >= 1.9, vm.execute_string("return 1+1")["values"])
''')
    assert values == ["VMTimeoutError", True, [2]]


def _handler_child(tmp_path: Path, mode: Optional[str], handler: str, timeout: float) -> Child:
    set_mode = f"bioxen_vm.set_sigint_mode({mode!r})" if mode else ""
    return Child(tmp_path, f'''
import bioxen_vm
{set_mode}
class FromHandler(Exception):
    pass
calls = []
{textwrap.dedent(handler)}
signal.signal(signal.SIGINT, handler)
vm = bioxen_vm.LuaProcess("t")
vm.execute_string("x = 41")
when(lambda: vm.info()["running"])
started = time.monotonic()
try:
    vm.execute_string("while true do end", timeout={timeout})
    outcome = "returned"
except BaseException as exc:
    outcome = type(exc).__name__
say("ENDED", outcome, repr(time.monotonic()), repr(started), json.dumps(calls))
after(vm.execute_string("return 1+1")["values"], vm.execute_string("return x")["values"])
''')


COUNTING_HANDLER = '''
def handler(signum, frame):
    calls.append(time.monotonic())
'''
RAISING_HANDLER = '''
def handler(signum, frame):
    calls.append(time.monotonic())
    raise FromHandler("raised by the handler")
'''


def _handled(child: Child) -> tuple:
    try:
        child.expect("STARTED")
        sent = child.signal()
        outcome, ended, started, calls = child.expect("ENDED")
        after = json.loads(" ".join(child.expect("AFTER")))
        child.assert_clean_exit()
    finally:
        child.kill()
    return outcome, float(ended) - sent, float(ended) - float(started), json.loads(calls), after


def test_a_handler_of_the_user_is_respected(tmp_path: Path) -> None:
    """Mode "auto": with a SIGINT handler of the program's own, the call is not stopped (it
    ends by its timeout, 1.5 s); the handler runs once, as the call ends."""
    outcome, _, took, calls, after = _handled(
        _handler_child(tmp_path, None, COUNTING_HANDLER, 1.5))
    assert outcome == "VMTimeoutError"
    assert took >= 1.45
    assert len(calls) == 1
    assert after == [[2], [41]]


def test_mode_always_stops_and_runs_the_handler(tmp_path: Path) -> None:
    """Mode "always": the call is stopped whatever the handler; a handler that returns
    leaves the call's VMInterruptedError."""
    outcome, delay, _, calls, after = _handled(
        _handler_child(tmp_path, "always", COUNTING_HANDLER, 60))
    assert outcome == "VMInterruptedError"
    assert 0 <= delay < LIMIT
    assert len(calls) == 1
    assert after == [[2], [41]]


def test_mode_always_raises_what_the_handler_raises(tmp_path: Path) -> None:
    outcome, delay, _, calls, after = _handled(
        _handler_child(tmp_path, "always", RAISING_HANDLER, 60))
    assert outcome == "FromHandler"
    assert 0 <= delay < LIMIT
    assert len(calls) == 1
    assert after == [[2], [41]]


def test_mode_off_installs_nothing_and_stops_nothing(tmp_path: Path) -> None:
    """``BIOXEN_VM_SIGINT=off``: the wakeup fd and ``signal.set_wakeup_fd`` are left alone,
    and the call runs on until its timeout (1.5 s) before Python raises KeyboardInterrupt:
    what every test above sees when the mechanism is off."""
    child = Child(tmp_path, '''
import bioxen_vm
say("SETUP", bioxen_vm.sigint_mode(), bioxen_vm._sigint.armed(),
    signal.set_wakeup_fd is bioxen_vm._sigint._real_set_wakeup_fd,
    signal.set_wakeup_fd(-1))
vm = bioxen_vm.LuaProcess("t")
when(lambda: vm.info()["running"])
started = time.monotonic()
try:
    vm.execute_string("while true do end", timeout=1.5)
    say("RETURNED")
except KeyboardInterrupt:
    say("ENDED", repr(time.monotonic() - started))
''', env={"BIOXEN_VM_SIGINT": "off"})
    try:
        assert child.expect("SETUP") == ["off", "False", "True", "-1"]
        child.expect("STARTED")
        child.signal()
        took = float(child.expect("ENDED")[0])
        child.assert_clean_exit()
    finally:
        child.kill()
    assert took >= 1.45


def test_set_sigint_mode_checks_its_argument() -> None:
    import bioxen_vm

    previous = bioxen_vm.sigint_mode()
    with pytest.raises(ValueError):
        bioxen_vm.set_sigint_mode("sometimes")
    assert bioxen_vm.set_sigint_mode(previous) == previous


# --- the wakeup fd, shared ----------------------------------------------------------------

def test_asyncio_after_import_still_gets_its_signals(tmp_path: Path) -> None:
    """An asyncio loop that adds signal handlers after the import (its set_wakeup_fd goes
    through the wrapper) receives its signals, SIGINT included; once it is closed (and has
    set the wakeup fd back to -1), Ctrl-C stops blocking calls again."""
    child = Child(tmp_path, '''
import asyncio
import bioxen_vm
got = []

async def main():
    loop = asyncio.get_running_loop()
    usr1, intr = asyncio.Event(), asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, lambda: (got.append("USR1"), usr1.set()))
    loop.add_signal_handler(signal.SIGINT, lambda: (got.append("INT"), intr.set()))
    say("READY")
    await asyncio.wait_for(usr1.wait(), 20)
    say("GOT-USR1")
    await asyncio.wait_for(intr.wait(), 20)

asyncio.run(main())
say("ASYNC", json.dumps(got), signal.getsignal(signal.SIGINT) is signal.default_int_handler)
''' + VM.replace("import bioxen_vm\n", "") + '''
interrupted(lambda: vm.execute_string("while true do end"))
''' + VM_AFTER)
    try:
        child.expect("READY")
        child.signal(signal.SIGUSR1)
        child.expect("GOT-USR1")
        child.signal(signal.SIGINT)
        assert child.expect("ASYNC") == ['["USR1",', '"INT"]', "True"]
        assert child.interrupt() == [[2], [41]]
        child.assert_clean_exit()
    finally:
        child.kill()


def test_an_owner_of_the_wakeup_fd_before_the_import_keeps_it(tmp_path: Path) -> None:
    """The wakeup fd is an asyncio loop's when bioxen_vm is imported: the loop still gets
    its signals (forwarded), and Ctrl-C stops a blocking call made meanwhile."""
    child = Child(tmp_path, '''
import asyncio
loop = asyncio.new_event_loop()
usr1 = asyncio.Event()
loop.add_signal_handler(signal.SIGUSR1, usr1.set)
import bioxen_vm
say("ARMED", bioxen_vm._sigint.armed())
say("READY")
loop.run_until_complete(asyncio.wait_for(usr1.wait(), 20))
say("GOT-USR1")
''' + VM.replace("import bioxen_vm\n", "") + '''
interrupted(lambda: vm.execute_string("while true do end"))
loop.close()
''' + VM_AFTER)
    try:
        assert child.expect("ARMED") == ["True"]
        child.expect("READY")
        child.signal(signal.SIGUSR1)
        child.expect("GOT-USR1")
        assert child.interrupt() == [[2], [41]]
        child.assert_clean_exit()
    finally:
        child.kill()


def test_the_wrapper_of_set_wakeup_fd_answers_as_the_real_one(tmp_path: Path) -> None:
    """What a caller of ``signal.set_wakeup_fd`` sees: the previous fd of its own view, the
    real function's errors (a blocking fd, another thread), its fd getting signal bytes."""
    child = Child(tmp_path, '''
import bioxen_vm
r, w = os.pipe()
os.set_blocking(w, False)
first = signal.set_wakeup_fd(w)
second = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
signal.signal(signal.SIGUSR1, lambda *a: None)
os.kill(os.getpid(), signal.SIGUSR1)
import select
readable = bool(select.select([r], [], [], 10)[0])
byte = os.read(r, 1) if readable else b""
errors = []
blocking_r, blocking_w = os.pipe()
try:
    signal.set_wakeup_fd(blocking_w)
except ValueError:
    errors.append("blocking")
def other():
    try:
        signal.set_wakeup_fd(w)
    except ValueError:
        errors.append("thread")
t = threading.Thread(target=other)
t.start()
t.join()
last = signal.set_wakeup_fd(-1)
say("WRAPPER", json.dumps([first, second == w, byte == bytes([signal.SIGUSR1]), errors,
                            last == w, signal.set_wakeup_fd(-1)]))
''')
    try:
        assert json.loads(" ".join(child.expect("WRAPPER"))) == [
            -1, True, True, ["blocking", "thread"], True, -1]
        child.assert_clean_exit()
    finally:
        child.kill()


def test_a_forked_child_has_its_own_ctrl_c(tmp_path: Path) -> None:
    """After fork, SIGINT to the child stops the child's call, and not the parent's (which
    runs on to its timeout): each process reads its own signals."""
    child = Child(tmp_path, '''
import bioxen_vm
import select
ready_r, ready_w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(ready_w)
    vm = bioxen_vm.LuaProcess("g")
    vm.execute_string("x = 41")
    say("GPID", os.getpid())
    when(lambda: vm.info()["running"] and select.select([ready_r], [], [], 0)[0])
    interrupted(lambda: vm.execute_string("while true do end"))
    after(vm.execute_string("return 1+1")["values"], vm.execute_string("return x")["values"])
    os._exit(0)
os.close(ready_r)
vm = bioxen_vm.LuaProcess("p")
def tell():
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (vm.info()["running"] and main_blocked()):
        time.sleep(0.005)
    os.write(ready_w, b"p")
threading.Thread(target=tell, daemon=True).start()
started = time.monotonic()
try:
    vm.execute_string("while true do end", timeout=3)
    outcome = "returned"
except BaseException as exc:
    outcome = type(exc).__name__
took = time.monotonic() - started
_, status = os.waitpid(pid, 0)
say("PARENT", outcome, took >= 2.9, status)
''')
    try:
        grandchild = int(child.expect("GPID")[0])
        assert child.interrupt(pid=grandchild) == [[2], [41]]
        assert child.expect("PARENT") == ["VMTimeoutError", "True", "0"]
        child.assert_clean_exit()
    finally:
        child.kill()
