"""``python -m bioxen_vm``: an interactive Lua REPL on a bioxen_vm session.

Lines are evaluated as the standalone ``lua`` evaluates them (``1 + 1`` prints ``2``, ``=x``
works); an incomplete chunk shows the ``>>`` prompt until it is complete. What Lua prints
goes to stdout, errors and ``io.stderr`` to stderr (the library hands a line's output over
when that line's evaluation ends).
Ctrl-C interrupts the running evaluation (the session and its globals stay) or, at a
prompt, discards the incomplete chunk; Ctrl-D (end of input) exits.

Line editing and history come from :mod:`readline` when stdin is a terminal; the history
lives in memory only (no history file is read or written). Prompts and the banner are shown
when stdin is a terminal, or with ``--prompt``.
"""

from __future__ import annotations

import argparse
import os
import select
import sys
import threading
from typing import List, Optional, Union

from . import __version__
from .exceptions import LuaVMError
from .manager import VMManager

SESSION = "repl"


def _writer(stream_id: int, data: bytes) -> None:
    stream = sys.stderr if stream_id == 2 else sys.stdout
    try:
        stream.flush()  # keep text already written through the text layer in order
        stream.buffer.write(data)
        stream.buffer.flush()
    except (OSError, ValueError, AttributeError):
        pass  # closed or redirected to something without a buffer


def _wait_idle(manager: VMManager) -> None:
    """Waits until the session evaluated everything; Ctrl-C interrupts the evaluation.

    The wait runs on a helper thread, so the main thread stays free to receive the
    KeyboardInterrupt whatever the Ctrl-C mode (see ``_sigint``). The main thread waits on
    an event, not on ``join``: a ``join`` that a KeyboardInterrupt breaks can mark the
    thread as finished while it still runs (CPython 3.11's ``_wait_for_tstate_lock``).
    """
    failure: List[BaseException] = []
    done = threading.Event()

    def wait() -> None:
        try:
            manager._read_output_raw(SESSION, None, 0)  # drains what the callback showed
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)
        finally:
            done.set()

    helper = threading.Thread(target=wait, name="bioxen_vm-repl-wait", daemon=True)
    helper.start()
    while not done.is_set():
        try:
            done.wait(0.1)
        except KeyboardInterrupt:
            manager.interrupt_session(SESSION)
    if failure:
        raise failure[0]


class _PipeLines:
    """Lines of a non-terminal stdin, read so that Ctrl-C is never lost.

    ``input()`` blocks in ``read()``; a SIGINT that lands between writing the prompt and
    entering ``read()`` is only acted on once more input arrives. Waiting in ``select()``
    with a short timeout lets Python run the signal handler at once (or within 0.1 s).
    Lines already read stay buffered across a Ctrl-C; nothing typed ahead is lost.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""
        self.eof = False

    def readline(self, prompt: Optional[str]) -> bytes:
        if prompt is not None:
            sys.stdout.write(prompt)
            sys.stdout.flush()
        while True:
            newline = self.buffer.find(b"\n")
            if newline >= 0:
                line, self.buffer = self.buffer[:newline], self.buffer[newline + 1:]
                return line
            if self.eof:
                if self.buffer:
                    line, self.buffer = self.buffer, b""
                    return line
                raise EOFError
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if ready:
                chunk = os.read(self.fd, 65536)
                if chunk:
                    self.buffer += chunk
                else:
                    self.eof = True


def _incomplete(manager: VMManager) -> bool:
    info = manager.list_interactive_sessions().get(SESSION, {})
    return bool(info.get("incomplete_input"))


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the REPL; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m bioxen_vm",
        description="Interactive Lua 5.4 REPL on a bioxen_vm session. Ctrl-C interrupts, "
                    "Ctrl-D exits.")
    parser.add_argument("--prompt", action="store_true",
                        help="show the banner and prompts even when stdin is not a terminal")
    parser.add_argument("--sandbox", choices=("default", "trusted"),
                        help="the VM's sandbox (default: default)")
    parser.add_argument("--memory-limit", type=int, metavar="BYTES",
                        help="memory limit of the Lua state")
    parser.add_argument("--timeout", type=float, metavar="SECONDS",
                        help="time limit of each evaluation")
    parser.add_argument("--version", action="version", version=f"bioxen_vm {__version__}")
    args = parser.parse_args(argv)

    interactive = sys.stdin.isatty()
    show_prompts = interactive or args.prompt
    if interactive:
        try:
            import readline  # noqa: F401  (line editing; in-memory history only)
        except ImportError:  # pragma: no cover - platform without readline
            pass

    options = {"sandbox": args.sandbox, "memory_limit": args.memory_limit,
               "timeout": args.timeout}
    try:
        manager = VMManager(max_workers=1, **{k: v for k, v in options.items() if v})
        manager.create_interactive_vm(SESSION, auto_attach=False)
        manager._attach_raw(SESSION, lambda _vm, stream, data: _writer(stream, data))
    except (LuaVMError, ValueError) as exc:
        print(f"python -m bioxen_vm: {exc}", file=sys.stderr)
        return 2

    with manager:
        if show_prompts:
            print(f"Lua 5.4 on bioxen_vm {__version__}: Ctrl-C interrupts, Ctrl-D exits",
                  flush=True)
        continuation = False
        pipe = None if interactive else _PipeLines(sys.stdin.fileno())
        while True:
            prompt = (">> " if continuation else "> ") if show_prompts else None
            line: Union[str, bytes]
            try:
                if pipe is not None:
                    line = pipe.readline(prompt)
                else:
                    line = input(prompt or "")
            except EOFError:
                if show_prompts:
                    print(flush=True)
                break
            except KeyboardInterrupt:
                manager.interrupt_session(SESSION)  # drops the incomplete chunk
                print(flush=True)
                continuation = False
                continue
            try:
                manager.send_input(SESSION, line)
                _wait_idle(manager)
                continuation = _incomplete(manager)
            except KeyboardInterrupt:  # between the checks above
                manager.interrupt_session(SESSION)
                continuation = False
            except LuaVMError as exc:
                print(f"python -m bioxen_vm: {exc}", file=sys.stderr, flush=True)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
